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
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderStatus, PlaceOrder};
use protocol::payments::PaymentRequest;
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
use tokio::sync::mpsc;
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

/// Records what the relay publishes; `stall` makes every publish hang, as
/// a broker that accepted the connection and then stopped answering.
#[derive(Clone)]
struct Recorder {
    sent: mpsc::UnboundedSender<(String, Instant)>,
    stall: Arc<Mutex<bool>>,
}

impl Outlet for Recorder {
    async fn ready(&mut self) -> bool {
        true
    }

    async fn publish(&self, id: &str, _request: &PaymentRequest) -> Result<(), String> {
        let stall = self.stall.lock().map(|s| *s).unwrap_or(false);
        if stall {
            std::future::pending::<()>().await;
        }
        let _ = self.sent.send((id.to_string(), Instant::now()));
        Ok(())
    }
}

/// A district with one order whose charge is in the outbox; returns its
/// message id (`charge-{order}`).
async fn with_pending_charge() -> (District, tempfile::TempDir, String) {
    let (d, clock, dir) = district().await;
    let id = place(&d, "o-1").await;
    clock
        .advance(OrderPolicy::default().grace_window_app + chrono::Duration::seconds(1))
        .unwrap();
    d.submit(Command::Order(OrderCommand::FireTimer {
        order_id: id.clone(),
        timer: OrderTimer::GraceWindowEnd,
    }))
    .await
    .unwrap();
    let msg_id = d.state().outbox().iter().next().unwrap().0.msg_id();
    assert!(msg_id.contains(id.as_str()), "{msg_id}");
    (d, dir, msg_id)
}

#[test]
fn the_relay_publishes_the_outbox_republishes_after_its_period_and_stops_at_the_signal() {
    paused(|| async {
        let (d, _dir, msg_id) = with_pending_charge().await;
        let (sent, mut published) = mpsc::unbounded_channel();
        let outlet = Recorder {
            sent,
            stall: Arc::default(),
        };
        let lifecycle = Lifecycle::new();
        let started = Instant::now();
        let district = d.clone();
        lifecycle.spawn("relay", |s| nats::relay(outlet, district, s));

        let (first, at) = published.recv().await.unwrap();
        assert_eq!(first, msg_id);
        assert_eq!(at, started, "pending requests go out at start-up");

        // Rescans before the republish period find it published already.
        tokio::time::sleep(Duration::from_secs(REPUBLISH_SECS - 1)).await;
        assert!(published.try_recv().is_err(), "republished too early");
        let (again, at) = published.recv().await.unwrap();
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
        let (sent, mut published) = mpsc::unbounded_channel();
        let outlet = Recorder {
            sent,
            stall: Arc::new(Mutex::new(true)),
        };
        let lifecycle = Lifecycle::new();
        let district = d.clone();
        lifecycle.spawn("relay", |s| nats::relay(outlet, district, s));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(published.try_recv().is_err(), "the broker never answered");
        lifecycle
            .stop(in_ms(1))
            .await
            .expect("an unanswered publish does not hold the shutdown");
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
