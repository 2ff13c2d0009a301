//! The webhook sender loop in process, under paused tokio time, with a
//! recording transport: retries with backoff on the node's clock, order
//! per stream, independence of endpoints, and the stop signal.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use district::{Command, WebhookCommand};
use protocol::webhooks::{WebhookFamily, WebhookSpec};
use protocol::WebhookId;
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::metrics::Metrics;
use region_node::store::EventLog;
use region_node::webhooks::sender::{self, Transport};
use region_node::webhooks::store::{Delivery, DeliveryState, DeliveryStore};
use region_node::writer::District;
use tokio::sync::mpsc;

mod support;

const REAL_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `test` on a paused current-thread runtime on its own thread; fails
/// if it has not finished within [`REAL_DEADLINE`] of real time.
fn paused<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(test());
        let _ = done.send(());
    });
    match finished.recv_timeout(REAL_DEADLINE) {
        Ok(()) => runner.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("test still running after {REAL_DEADLINE:?} of real time")
        }
    }
}

/// Answers 500 to the first `fail_first` posts to a URL, then 200 (or
/// never, for a URL containing `dead`), recording each post.
#[derive(Clone)]
struct Recorder {
    fail_first: usize,
    posts: Arc<Mutex<Vec<(String, String, u16)>>>,
    sent: mpsc::UnboundedSender<(String, String, u16)>,
}

impl Transport for Recorder {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        _body: String,
    ) -> Result<u16, String> {
        if url.contains("dead") {
            std::future::pending::<()>().await;
        }
        let delivery = headers
            .iter()
            .find(|(n, _)| *n == sender::DELIVERY_HEADER)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let status = {
            let mut posts = self.posts.lock().unwrap();
            let tries = posts.iter().filter(|(u, _, _)| u == url).count();
            let status = if tries < self.fail_first { 500 } else { 200 };
            posts.push((url.to_string(), delivery.clone(), status));
            status
        };
        let _ = self.sent.send((url.to_string(), delivery, status));
        Ok(status)
    }
}

async fn register(d: &District, id: &'static str, url: &str) {
    register_for(d, id, url, WebhookFamily::Orders).await
}

async fn register_for(d: &District, id: &'static str, url: &str, family: WebhookFamily) {
    d.submit(Command::Webhook(WebhookCommand::Register {
        endpoint_id: WebhookId::from_static(id),
        spec: WebhookSpec {
            url: url.into(),
            families: vec![family],
            secret: "whsec-0123456789abcdef".into(),
        },
    }))
    .await
    .unwrap();
}

fn delivery(
    endpoint: &'static str,
    seq: u64,
    stream: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Delivery {
    let payload = district::webhooks::Payload {
        family: WebhookFamily::Orders,
        seq,
        stream: stream.into(),
        event_type: "order.placed",
        body: serde_json::json!({}),
    };
    Delivery::new(
        WebhookId::from_static(endpoint),
        &payload,
        format!("{{\"seq\":{seq}}}"),
        now,
    )
}

fn sender(
    endpoint: &'static str,
    transport: &Arc<Recorder>,
    store: &DeliveryStore,
    district: &District,
    clock: &Clock,
    metrics: &Arc<Metrics>,
) -> sender::Sender<Recorder> {
    sender::Sender {
        endpoint_id: WebhookId::from_static(endpoint),
        transport: transport.clone(),
        store: store.clone(),
        district: district.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
    }
}

#[test]
fn a_failing_endpoint_is_retried_with_backoff_in_stream_order_while_another_is_served() {
    paused(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::adjustable();
        let d = support::writer(
            EventLog::open(&dir.path().join("log")).unwrap(),
            clock.clone(),
        );
        register(&d, "flaky", "http://flaky.example/hook").await;
        register(&d, "dead", "http://dead.example/hook").await;
        let store = DeliveryStore::open(&dir.path().join("webhooks")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sent, mut posted) = mpsc::unbounded_channel();
        let transport = Arc::new(Recorder {
            fail_first: 3,
            posts: Arc::default(),
            sent,
        });
        let lifecycle = Lifecycle::new();
        let now = clock.now();
        let mut inboxes = vec![];
        for endpoint in ["flaky", "dead"] {
            let (tx, rx) = mpsc::unbounded_channel();
            // Two deliveries of one stream, one of another.
            let ds = [
                delivery(endpoint, 10, "order-a", now),
                delivery(endpoint, 11, "order-a", now),
                delivery(endpoint, 12, "order-b", now),
            ];
            store.append(&ds, 12).await.unwrap();
            for x in ds {
                tx.send(x).unwrap();
            }
            let sender = sender(endpoint, &transport, &store, &d, &clock, &metrics);
            lifecycle.spawn("webhook-sender", move |s| sender::run(sender, rx, s));
            inboxes.push(tx);
        }

        // The flaky endpoint: three 500s, then every delivery once, with
        // order-a's 10 before its 11; the dead one never answers and
        // holds nobody up. The node clock is moved past each backoff.
        let mut delivered = vec![];
        let mut failures = 0;
        while delivered.len() < 3 {
            let next = tokio::select! {
                p = posted.recv() => p,
                () = tokio::time::sleep(Duration::from_millis(sender::TICK_MS * 2)) => {
                    clock.advance(chrono::Duration::seconds(1)).unwrap();
                    continue;
                }
            };
            let (url, id, status) = next.unwrap();
            assert!(url.contains("flaky"), "{url}");
            if status == 500 {
                failures += 1;
            } else {
                delivered.push(id);
            }
        }
        assert_eq!(failures, 3);
        let mut sorted = delivered.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec!["flaky-10", "flaky-11", "flaky-12"],
            "each once"
        );
        let pos = |id: &str| delivered.iter().position(|x| x == id).unwrap();
        assert!(
            pos("flaky-10") < pos("flaky-11"),
            "in order per stream: {delivered:?}"
        );

        // What the log says, durably.
        let log = store.latest("flaky", 10).unwrap();
        assert!(
            log.iter().all(|x| x.state == DeliveryState::Delivered),
            "{log:?}"
        );
        let attempts: u32 = log.iter().map(|x| x.attempts).sum();
        assert_eq!(attempts, 6);
        let dead = store.latest("dead", 10).unwrap();
        assert!(dead.iter().all(|x| x.state == DeliveryState::Pending));

        lifecycle
            .stop(tokio::time::Instant::now() + Duration::from_millis(1))
            .await
            .expect("senders stop at the signal, even with an attempt hanging");
        drop(inboxes);
    });
}

#[test]
fn after_the_retry_window_a_delivery_is_failed_and_its_stream_moves_on() {
    paused(|| async {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::adjustable();
        let d = support::writer(
            EventLog::open(&dir.path().join("log")).unwrap(),
            clock.clone(),
        );
        register(&d, "down", "http://down.example/hook").await;
        let store = DeliveryStore::open(&dir.path().join("webhooks")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (sent, mut posted) = mpsc::unbounded_channel();
        let transport = Arc::new(Recorder {
            fail_first: usize::MAX,
            posts: Arc::default(),
            sent,
        });
        let lifecycle = Lifecycle::new();
        let now = clock.now();
        let (tx, rx) = mpsc::unbounded_channel();
        let ds = [
            delivery("down", 5, "order-a", now),
            delivery("down", 6, "order-a", now),
        ];
        store.append(&ds, 6).await.unwrap();
        for x in ds {
            tx.send(x).unwrap();
        }
        let sender = sender("down", &transport, &store, &d, &clock, &metrics);
        lifecycle.spawn("webhook-sender", move |s| sender::run(sender, rx, s));
        // Jump the node clock an hour after each attempt: past every backoff.
        let mut failed_at = None;
        for _ in 0..200 {
            let (_, id, _) = posted.recv().await.unwrap();
            if id == "down-6" {
                failed_at = Some(clock.now());
                break;
            }
            clock.advance(chrono::Duration::hours(1)).unwrap();
        }
        assert!(failed_at.is_some(), "6 waited for 5 to fail");
        let five = store.get("down", 5).unwrap().unwrap();
        assert_eq!(five.state, DeliveryState::Failed);
        assert_eq!(five.next_attempt_at, None);
        let last = five.last_attempts.last().unwrap().at;
        assert!(
            last >= now + chrono::Duration::hours(24),
            "tried until the window's end"
        );
        // 6 was queued with 5, so its window is over too once it is tried.
        let failed = metrics
            .webhook_failed
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!((1..=2).contains(&failed), "{failed}");
        lifecycle
            .stop(tokio::time::Instant::now() + Duration::from_millis(1))
            .await
            .unwrap();
        drop(tx);
    });
}

async fn count(d: &District, units: u32) {
    use protocol::catalog::{StockCount, StockSpec};
    use protocol::{FridgeId, MealId};
    d.submit(Command::Catalog(district::CatalogCommand::SetStock {
        fridge_id: FridgeId::from_static("f-1"),
        spec: StockSpec {
            counts: vec![StockCount {
                meal_id: MealId::from_static("m-1"),
                units,
            }],
        },
    }))
    .await
    .unwrap();
}

/// Real time: the outbox's own task, its store and an endpoint that
/// refuses connections (nothing listens on port 9 here).
#[tokio::test]
async fn the_outbox_catches_up_from_the_log_then_follows_the_feed() {
    use protocol::{FridgeId, MealId};
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::adjustable();
    let log = EventLog::open(&dir.path().join("log")).unwrap();
    let reader = log.reader();
    let d = support::writer(log, clock.clone());
    for cmd in [
        district::CatalogCommand::DefineMeal {
            meal_id: MealId::from_static("m-1"),
            spec: support::meal_spec(1000),
        },
        district::CatalogCommand::RegisterFridge {
            fridge_id: FridgeId::from_static("f-1"),
            spec: district::demo::plain_fridge("Lobby"),
        },
    ] {
        d.submit(Command::Catalog(cmd)).await.unwrap();
    }
    count(&d, 1).await; // before the endpoint: not for it
    register_for(&d, "w", "http://127.0.0.1:9/hook", WebhookFamily::Stock).await;
    count(&d, 2).await;
    count(&d, 3).await;

    // Committed before the outbox started: found in the log.
    let tasks = Lifecycle::new();
    let metrics = Arc::new(Metrics::default());
    let hooks = region_node::webhooks::Webhooks::start(
        dir.path(),
        d.clone(),
        reader,
        clock.clone(),
        metrics,
        &tasks,
    )
    .unwrap();
    let on_hand = |hooks: &region_node::webhooks::Webhooks| -> Vec<u64> {
        let mut list = hooks.deliveries("w").unwrap();
        list.sort_by_key(|x| x.seq);
        list.iter()
            .map(|x| {
                serde_json::from_str::<serde_json::Value>(&x.body).unwrap()["data"]["on_hand"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + REAL_DEADLINE;
    while on_hand(&hooks).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no catch-up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then from the feed.
    count(&d, 4).await;
    while on_hand(&hooks).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed was not followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        on_hand(&hooks),
        vec![2, 3, 4],
        "each once, nothing before the registration"
    );
    // Refused connections are failed attempts, retried later.
    while hooks
        .deliveries("w")
        .unwrap()
        .iter()
        .all(|x| x.attempts == 0)
    {
        assert!(std::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tried = hooks.deliveries("w").unwrap();
    let first = tried.iter().find(|x| x.attempts > 0).unwrap();
    assert_eq!(first.state, DeliveryState::Pending);
    assert_eq!(first.last_attempts[0].status, None);
    assert!(first.last_attempts[0].error.is_some());
    assert!(first.next_attempt_at.is_some());
    tasks
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .expect("the outbox and its sender stop at the signal");
}
