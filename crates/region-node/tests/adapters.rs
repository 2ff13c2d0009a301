//! The adapter loops (timers, schedule tick, payment relay, push hub) in
//! process, under paused tokio time: they do their work on their own ticks
//! and stop at the shutdown signal without waiting for the next one.
//!
//! Each test runs on a paused current-thread runtime inside [`paused`], which
//! fails the test if it does not finish within [`REAL_DEADLINE`] of real
//! time: under paused time a missing wake-up would otherwise spin forever.
//! Virtual-time timeouts are avoided around commits, because time jumps
//! while the writer waits for a real fsync.

use protocol::{DistrictId, FridgeId, MealId, PlanId};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use district::{CatalogCommand, Command, OrderCommand, OrderPolicy, OrderTimer, ScheduleCommand};
use futures::future::BoxFuture;
use futures::FutureExt;
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderStatus, PlaceOrder};
use protocol::payments::PaymentRequest;
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::schedule::{PlanDay, PlanSpec, ScheduleEvent};
use protocol::Event;
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::metrics::Metrics;
use region_node::nats::{self, Outlet, REPUBLISH_SECS};
use region_node::push::hub::{Hub, HubConfig};
use region_node::schedule_tick::{self, SCHEDULE_TICK_MS};
use region_node::store::EventLog;
use region_node::timers::{self, TIMER_TICK_MS};
use region_node::writer::District;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

mod support;

/// Real time a paused test may take before it counts as hung.
const REAL_DEADLINE: Duration = Duration::from_secs(60);
const FRIDGE: &str = "f-1";
const MEAL: &str = "m-1";

/// Runs `test` on a current-thread runtime with paused time, on its own
/// thread, and fails if it has not finished within [`REAL_DEADLINE`].
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
        // The test panicked: re-raise its panic here.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("test still running after {REAL_DEADLINE:?} of real time")
        }
    }
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// A district with one meal in one fridge (10 units), on a node clock the
/// test moves. Returns the district, the clock and the tempdir it lives in.
async fn district() -> (District, Clock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::adjustable();
    let d = support::writer(EventLog::open(dir.path()).unwrap(), clock.clone());
    for cmd in [
        CatalogCommand::DefineMeal {
            meal_id: MealId::from_static(MEAL),
            spec: support::meal_spec(1000),
        },
        CatalogCommand::RegisterFridge {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: district::demo::plain_fridge("Lobby"),
        },
        CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static(MEAL),
                    units: 10,
                }],
            },
        },
    ] {
        d.submit(Command::Catalog(cmd)).await.unwrap();
    }
    (d, clock, dir)
}

/// Places an app order for one unit; returns its id.
async fn place(d: &District, order_id: &'static str) -> OrderId {
    let request: PlaceOrder = serde_json::from_value(serde_json::json!({
        "fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"
    }))
    .unwrap();
    d.submit(Command::Order(OrderCommand::Place {
        order_id: OrderId::from_static(order_id),
        customer: "alice".into(),
        channel: Channel::App,
        request,
        idempotency: None,
        referral: None,
    }))
    .await
    .unwrap();
    OrderId::from_static(order_id)
}

fn status(d: &District, order_id: &str) -> OrderStatus {
    d.state().orders().get(order_id).unwrap().status
}

#[test]
fn timers_fire_a_due_timer_on_their_tick_and_stop_at_the_signal() {
    paused(|| async {
        let (d, clock, _dir) = district().await;
        let id = place(&d, "o-1").await;
        assert_eq!(status(&d, &id), OrderStatus::Held);
        let grace = OrderPolicy::default().grace_window_app;
        clock.advance(grace + chrono::Duration::seconds(1)).unwrap();

        let mut feed = d.subscribe_feed();
        let lifecycle = Lifecycle::new();
        let (district, timer_clock) = (d.clone(), clock.clone());
        lifecycle.spawn("timers", |s| {
            timers::run(district, timer_clock, Default::default(), 0, s)
        });
        while status(&d, &id) == OrderStatus::Held {
            feed.recv().await.unwrap();
        }
        assert_ne!(status(&d, &id), OrderStatus::Cancelled);
        assert!(
            d.state()
                .outbox()
                .iter()
                .any(|(k, _)| k.msg_id().contains(id.as_str())),
            "the grace window's end asked for the charge"
        );

        // Nothing is due now: the loop waits for its next tick, and the
        // signal must end it before that tick.
        lifecycle
            .stop(in_ms(TIMER_TICK_MS / 2))
            .await
            .expect("timers stop without waiting for their tick");
    });
}

#[test]
fn the_schedule_tick_charges_a_new_plan_and_stops_at_the_signal() {
    paused(|| async {
        let (d, clock, _dir) = district().await;
        let policy = scheduler::Policy::default();
        let start_date =
            scheduler::plan::earliest_effective(clock.now(), &Default::default(), &policy);
        let spec = PlanSpec {
            fridge_id: FridgeId::from_static(FRIDGE),
            days: (1..=7)
                .map(|weekday| PlanDay {
                    weekday,
                    meal_id: MealId::from_static(MEAL),
                })
                .collect(),
            start_date,
            end_date: start_date + chrono::Duration::days(6),
            payment_method: "tok_visa".into(),
        };
        d.submit(Command::Schedule(ScheduleCommand::CreatePlan {
            plan_id: PlanId::from_static("p1"),
            customer: "alice".into(),
            spec,
            policy,
        }))
        .await
        .unwrap();

        let mut feed = d.subscribe_feed();
        let lifecycle = Lifecycle::new();
        let (district, tick_clock) = (d.clone(), clock.clone());
        lifecycle.spawn("schedule-tick", |s| {
            schedule_tick::run(district, tick_clock, policy, s)
        });
        let charged = loop {
            let batch = feed.recv().await.unwrap();
            if batch.events.iter().any(|e| {
                matches!(
                    e.event,
                    Event::Schedule(ScheduleEvent::ChargeRequested { .. })
                )
            }) {
                break batch;
            }
        };
        assert_eq!(charged.state.outbox().len(), 1, "the week's charge");

        lifecycle
            .stop(in_ms(SCHEDULE_TICK_MS / 2))
            .await
            .expect("the schedule tick stops without waiting for its tick");
    });
}

/// How the recorder's broker answers the requests it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Not yet: every ack waits.
    Wait,
    /// Stored: every ack is `Ok`.
    Store,
    /// Lost or refused: every ack is an error.
    Refuse,
}

/// Records what the relay sends and holds its acks until the test says how
/// the broker answers (`answer`). `stall` makes every send hang, as a
/// broker that accepted the connection and then stopped reading.
#[derive(Clone)]
struct Recorder {
    sent: mpsc::UnboundedSender<(String, Instant)>,
    /// The request ids of each message sent, in order.
    messages: mpsc::UnboundedSender<Vec<String>>,
    stall: Arc<Mutex<bool>>,
    answer: watch::Receiver<Answer>,
    /// Messages whose ack has not landed, and the most there ever were.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    max_per_message: usize,
}

/// The test's side of a [`Recorder`].
struct Broker {
    published: mpsc::UnboundedReceiver<(String, Instant)>,
    messages: mpsc::UnboundedReceiver<Vec<String>>,
    answer: watch::Sender<Answer>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Broker {
    /// The next `n` request ids sent, in order. Fails when the relay stops
    /// sending short of `n` for longer than a republish period: sending
    /// does no real I/O, so virtual time is safe here.
    async fn next(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        let wait = Duration::from_secs(REPUBLISH_SECS);
        while ids.len() < n {
            match tokio::time::timeout(wait, self.published.recv()).await {
                Ok(Some((id, _))) => ids.push(id),
                _ => panic!("{} of {n} requests sent, then none for {wait:?}", ids.len()),
            }
        }
        ids
    }

    fn answer(&self, answer: Answer) {
        self.answer.send_replace(answer);
    }
}

/// A recorder that takes one request per message, so a test counts
/// messages and requests alike.
fn recorder(answer: Answer, max_in_flight: usize) -> (Recorder, Broker) {
    batch_recorder(answer, max_in_flight, 1)
}

fn batch_recorder(
    answer: Answer,
    max_in_flight: usize,
    max_per_message: usize,
) -> (Recorder, Broker) {
    let (sent, published) = mpsc::unbounded_channel();
    let (sent_messages, messages) = mpsc::unbounded_channel();
    let (answer_tx, answer_rx) = watch::channel(answer);
    let (in_flight, most_in_flight) = (Arc::default(), Arc::default());
    let outlet = Recorder {
        sent,
        messages: sent_messages,
        stall: Arc::default(),
        answer: answer_rx,
        in_flight: Arc::clone(&in_flight),
        most_in_flight: Arc::clone(&most_in_flight),
        max_in_flight,
        max_per_message,
    };
    let broker = Broker {
        published,
        messages,
        answer: answer_tx,
        in_flight,
        most_in_flight,
    };
    (outlet, broker)
}

impl Outlet for Recorder {
    type Ack = BoxFuture<'static, Result<(), String>>;

    async fn ready(&mut self) -> bool {
        true
    }

    async fn send(&self, requests: &[(String, PaymentRequest)]) -> Result<Self::Ack, String> {
        let stall = self.stall.lock().map(|s| *s).unwrap_or(false);
        if stall {
            std::future::pending::<()>().await;
        }
        assert!(!requests.is_empty() && requests.len() <= self.max_per_message);
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_in_flight.fetch_max(now, SeqCst);
        for (id, _) in requests {
            let _ = self.sent.send((id.clone(), Instant::now()));
        }
        let _ = self
            .messages
            .send(requests.iter().map(|(id, _)| id.clone()).collect());
        let (mut answer, in_flight) = (self.answer.clone(), Arc::clone(&self.in_flight));
        Ok(async move {
            let answered = *answer
                .wait_for(|a| *a != Answer::Wait)
                .await
                .map_err(|e| e.to_string())?;
            in_flight.fetch_sub(1, SeqCst);
            match answered {
                Answer::Store => Ok(()),
                _ => Err("the broker refused it".to_string()),
            }
        }
        .boxed())
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn max_requests_per_message(&self) -> usize {
        self.max_per_message
    }
}

/// A district with one order whose charge is in the outbox; returns its
/// message id (`charge-{order}`).
/// Starts the relay over `outlet` on `district`: its lifecycle (stopped by
/// the test) and the metrics it counts into.
fn start_relay<O: Outlet + 'static>(outlet: O, district: &District) -> (Lifecycle, Arc<Metrics>) {
    let lifecycle = Lifecycle::new();
    let metrics = Arc::new(Metrics::default());
    let (district, relay_metrics) = (district.clone(), metrics.clone());
    lifecycle.spawn("relay", |s| nats::relay(outlet, district, relay_metrics, s));
    (lifecycle, metrics)
}

async fn with_pending_charge() -> (District, tempfile::TempDir, String) {
    let (d, dir, mut ids) = with_pending_charges(&["o-1"]).await;
    (d, dir, ids.remove(0))
}

/// A district with one order per id whose charges are in the outbox;
/// returns their message ids (`charge-{order}`), in order.
async fn with_pending_charges(
    order_ids: &[&'static str],
) -> (District, tempfile::TempDir, Vec<String>) {
    let (d, clock, dir) = district().await;
    let mut msg_ids = vec![];
    for &order_id in order_ids {
        // One at a time: a customer may hold only a few orders at once.
        let id = place(&d, order_id).await;
        clock
            .advance(OrderPolicy::default().grace_window_app + chrono::Duration::seconds(1))
            .unwrap();
        d.submit(Command::Order(OrderCommand::FireTimer {
            order_id: id.clone(),
            timer: OrderTimer::GraceWindowEnd,
        }))
        .await
        .unwrap();
        let key = d
            .state()
            .outbox()
            .iter()
            .map(|(k, _)| k.msg_id())
            .find(|m| m.contains(id.as_str()));
        msg_ids.push(key.expect("the charge is in the outbox"));
    }
    assert_eq!(d.state().outbox().len(), order_ids.len());
    (d, dir, msg_ids)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn the_relay_publishes_the_outbox_republishes_after_its_period_and_stops_at_the_signal() {
    paused(|| async {
        let (d, _dir, msg_id) = with_pending_charge().await;
        let (outlet, mut broker) = recorder(Answer::Store, nats::MAX_PUBLISH_IN_FLIGHT);
        let started = Instant::now();
        let (lifecycle, _metrics) = start_relay(outlet, &d);

        let (first, at) = broker.published.recv().await.unwrap();
        assert_eq!(first, msg_id);
        assert_eq!(at, started, "pending requests go out at start-up");

        // Rescans before the republish period find it published already.
        tokio::time::sleep(Duration::from_secs(REPUBLISH_SECS - 1)).await;
        assert!(
            broker.published.try_recv().is_err(),
            "republished too early"
        );
        let (again, at) = broker.published.recv().await.unwrap();
        assert_eq!(again, msg_id);
        let waited = at - started;
        assert!(
            waited >= Duration::from_secs(REPUBLISH_SECS)
                && waited <= Duration::from_secs(REPUBLISH_SECS + 2),
            "republished after {waited:?}"
        );

        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the relay stops between rounds at once");
    });
}

#[test]
fn a_relay_stuck_on_a_silent_broker_still_stops_at_the_signal() {
    paused(|| async {
        let (d, _dir, _) = with_pending_charge().await;
        let (outlet, mut broker) = recorder(Answer::Store, nats::MAX_PUBLISH_IN_FLIGHT);
        *outlet.stall.lock().unwrap() = true;
        let (lifecycle, _metrics) = start_relay(outlet, &d);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            broker.published.try_recv().is_err(),
            "the broker never answered"
        );
        lifecycle
            .stop(in_ms(1))
            .await
            .expect("an unanswered publish does not hold the shutdown");
    });
}

#[test]
fn a_round_sends_every_request_before_awaiting_an_ack_and_counts_them_published_once_acked() {
    paused(|| async {
        let orders = ["o-1", "o-2", "o-3", "o-4", "o-5"];
        let (d, _dir, msg_ids) = with_pending_charges(&orders).await;
        let (outlet, mut broker) = recorder(Answer::Wait, nats::MAX_PUBLISH_IN_FLIGHT);
        let (lifecycle, metrics) = start_relay(outlet, &d);

        let sent = broker.next(orders.len()).await;
        assert_eq!(sorted(sent), sorted(msg_ids.clone()), "each once");
        assert_eq!(
            broker.in_flight.load(SeqCst),
            orders.len(),
            "all sent while no ack has landed"
        );
        // The round waits for its acks: no rescan sends anything meanwhile.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            broker.published.try_recv().is_err(),
            "sent again before an answer"
        );

        broker.answer(Answer::Store);
        tokio::time::sleep(Duration::from_secs(REPUBLISH_SECS - 1)).await;
        assert_eq!(broker.in_flight.load(SeqCst), 0, "every ack landed");
        assert_eq!(metrics.payments_published.load(SeqCst), orders.len() as u64);
        assert!(
            broker.published.try_recv().is_err(),
            "acked requests are not republished before their period"
        );
        let again = broker.next(orders.len()).await;
        assert_eq!(
            sorted(again),
            sorted(msg_ids),
            "republished without a result"
        );

        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the relay stops at the signal");
    });
}

#[test]
fn a_round_packs_requests_into_messages_and_marks_each_published_when_its_message_is_acked() {
    paused(|| async {
        let orders = ["o-1", "o-2", "o-3", "o-4", "o-5"];
        let (d, _dir, msg_ids) = with_pending_charges(&orders).await;
        let (outlet, mut broker) = batch_recorder(Answer::Wait, nats::MAX_PUBLISH_IN_FLIGHT, 2);
        let (lifecycle, metrics) = start_relay(outlet, &d);

        let sent = broker.next(orders.len()).await;
        assert_eq!(sorted(sent), sorted(msg_ids.clone()), "each once");
        let mut sizes = vec![];
        while let Ok(message) = broker.messages.try_recv() {
            sizes.push(message.len());
        }
        assert_eq!(sizes, vec![2, 2, 1], "up to the cap per message");
        assert_eq!(broker.in_flight.load(SeqCst), 3, "all sent before an ack");
        assert_eq!(metrics.payments_published.load(SeqCst), 0, "none acked yet");

        broker.answer(Answer::Store);
        tokio::time::sleep(Duration::from_secs(REPUBLISH_SECS - 1)).await;
        assert_eq!(broker.in_flight.load(SeqCst), 0, "every ack landed");
        assert_eq!(
            metrics.payments_published.load(SeqCst),
            orders.len() as u64,
            "every request of an acked message counts"
        );
        assert!(
            broker.published.try_recv().is_err(),
            "requests of acked messages are not republished before their period"
        );
        let again = broker.next(orders.len()).await;
        assert_eq!(sorted(again), sorted(msg_ids), "republished per request");

        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the relay stops at the signal");
    });
}

#[test]
fn no_more_than_max_in_flight_requests_await_their_ack() {
    paused(|| async {
        let orders = ["o-1", "o-2", "o-3", "o-4", "o-5"];
        let (d, _dir, msg_ids) = with_pending_charges(&orders).await;
        let limit = 2;
        let (outlet, mut broker) = recorder(Answer::Wait, limit);
        let (lifecycle, _metrics) = start_relay(outlet, &d);

        let first = broker.next(limit).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            broker.published.try_recv().is_err(),
            "a third request was sent while two awaited their ack"
        );
        broker.answer(Answer::Store);
        let rest = broker.next(orders.len() - limit).await;
        let all: Vec<String> = first.into_iter().chain(rest).collect();
        assert_eq!(sorted(all), sorted(msg_ids), "each once");
        assert_eq!(broker.most_in_flight.load(SeqCst), limit);

        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the relay stops at the signal");
    });
}

#[test]
fn a_refused_publish_is_sent_again_at_the_next_rescan_not_after_the_republish_period() {
    paused(|| async {
        let (d, _dir, msg_id) = with_pending_charge().await;
        let (outlet, mut broker) = recorder(Answer::Refuse, nats::MAX_PUBLISH_IN_FLIGHT);
        let (lifecycle, metrics) = start_relay(outlet, &d);

        let (first, at) = broker.published.recv().await.unwrap();
        let (again, again_at) = broker.published.recv().await.unwrap();
        assert_eq!((first, again), (msg_id.clone(), msg_id));
        assert!(
            again_at - at <= Duration::from_millis(nats::RESCAN_MS),
            "sent again after {:?}",
            again_at - at
        );
        assert!(metrics.payment_publish_failures.load(SeqCst) >= 1);
        assert_eq!(metrics.payments_published.load(SeqCst), 0);

        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the relay stops at the signal");
    });
}

/// A result message as JetStream delivers it (one result, or a batch);
/// its ack records whether the results of all its orders were already
/// durable (none of them still `paying`).
struct FakeDelivery {
    payload: Vec<u8>,
    headers: Option<async_nats::HeaderMap>,
    order_ids: Vec<OrderId>,
    district: District,
    acked: mpsc::UnboundedSender<(Vec<OrderId>, bool)>,
}

impl nats::Delivery for FakeDelivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn headers(&self) -> Option<&async_nats::HeaderMap> {
        self.headers.as_ref()
    }

    async fn ack(&self) -> Result<(), String> {
        let durable = self
            .order_ids
            .iter()
            .all(|id| status(&self.district, id) != OrderStatus::Paying);
        let _ = self.acked.send((self.order_ids.clone(), durable));
        Ok(())
    }
}

fn approved_result(order_id: &OrderId) -> PaymentResult {
    PaymentResult {
        kind: PaymentKind::Charge,
        order_id: order_id.clone(),
        district_id: DistrictId::from_static("detroit-downtown"),
        outcome: PaymentOutcome::Approved {
            reference: format!("ref-{order_id}"),
        },
    }
}

/// One approved result alone, the first wire shape.
fn approved(order_id: &OrderId) -> Vec<u8> {
    protocol::codec::to_postcard(&approved_result(order_id)).unwrap()
}

/// Approved results of `order_ids` as one batch message: payload, headers.
fn approved_batch(order_ids: &[OrderId]) -> (Vec<u8>, async_nats::HeaderMap) {
    let results: Vec<_> = order_ids.iter().map(approved_result).collect();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(bus::BATCH_HEADER, bus::BATCH_HEADER_VALUE);
    (bus::encode_batch(&results).unwrap(), headers)
}

#[test]
fn a_batch_of_results_is_committed_together_and_acked_only_once_durable() {
    paused(|| async {
        let orders = ["o-1", "o-2", "o-3"];
        let (d, _dir, _) = with_pending_charges(&orders).await;
        let (acked, mut acks) = mpsc::unbounded_channel();
        let delivery = |payload, headers, order_ids| FakeDelivery {
            payload,
            headers,
            order_ids,
            district: d.clone(),
            acked: acked.clone(),
        };
        let ids: Vec<OrderId> = orders.iter().copied().map(OrderId::from_static).collect();
        // o-1 alone (an older service), o-2 and o-3 in one batch message.
        let (payload, headers) = approved_batch(&ids[1..]);
        let batch = vec![
            delivery(approved(&ids[0]), None, vec![ids[0].clone()]),
            delivery(payload, Some(headers), ids[1..].to_vec()),
            delivery(b"not a result".to_vec(), None, vec![]),
        ];
        let mut feed = d.subscribe_feed();

        let done = nats::record_results(&d, batch).await;
        assert_eq!(
            done,
            nats::ResultsRecorded {
                recorded: 3,
                dropped: 1,
                left: 0,
                acked: 3,
            }
        );
        let committed = feed.try_recv().expect("the results' batch");
        let purchased = committed
            .events
            .iter()
            .filter(|e| matches!(e.event, Event::OrderPurchaseConfirmed { .. }))
            .count();
        assert_eq!(purchased, orders.len(), "all three in one group commit");
        assert!(d.state().outbox().is_empty(), "every charge settled");
        drop(acked);
        let mut seen = 0;
        while let Some((order_id, durable)) = acks.recv().await {
            assert!(durable, "{order_id:?} acked before its result was durable");
            seen += 1;
        }
        assert_eq!(seen, 3, "each message acked once, the undecodable one too");
    });
}

#[test]
fn results_the_writer_did_not_record_are_left_unacked_for_redelivery() {
    paused(|| async {
        let dir = tempfile::tempdir().unwrap();
        let lifecycle = Lifecycle::new();
        let d = support::writer_until(
            EventLog::open(dir.path()).unwrap(),
            Clock::adjustable(),
            lifecycle.shutdown(),
        );
        lifecycle
            .stop(in_ms(60_000))
            .await
            .expect("the writer stops");
        let (acked, mut acks) = mpsc::unbounded_channel();
        let ids = [OrderId::from_static("o-1"), OrderId::from_static("o-2")];
        let (payload, headers) = approved_batch(&ids);
        let batch = vec![FakeDelivery {
            payload,
            headers: Some(headers),
            order_ids: ids.to_vec(),
            district: d.clone(),
            acked,
        }];
        let done = nats::record_results(&d, batch).await;
        assert_eq!((done.left, done.acked), (2, 0));
        assert!(acks.recv().await.is_none(), "not acked");
    });
}

#[test]
fn the_hub_closes_every_connection_queue_at_the_signal() {
    paused(|| async {
        let (d, _clock, _dir) = district().await;
        let lifecycle = Lifecycle::new();
        let hub = Hub::start(
            d.clone(),
            HubConfig {
                district_id: DistrictId::from_static("detroit-downtown"),
                district_prefixes: district::demo::PREFIXES
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                utc_offset_minutes: 0,
                queue_frames: 16,
                resume_messages: 16,
            },
            Arc::new(Metrics::default()),
            &lifecycle.shutdown(),
        );
        let mut sub = hub.connect().await.unwrap();
        lifecycle
            .stop(in_ms(1))
            .await
            .expect("the hub stops at once");
        assert!(sub.frames.recv().await.is_none(), "queue closed");
        assert!(
            !sub.kick.flag.load(std::sync::atomic::Ordering::SeqCst),
            "closed for shutdown (1001), not kicked for being slow (1008)"
        );
        assert!(hub.connect().await.is_none(), "no new connections");
    });
}
