//! Subscriptions through the writer and the log, in process: a plan is
//! charged, materialised, placed in the fridge and picked up; replaying the
//! log after a restart gives the same state and materialises nothing twice.

use chrono::Duration;
use district::{CatalogCommand, Command, OrderCommand, ScheduleCommand};
use protocol::catalog::{MealSpec, StockLevel};
use protocol::orders::{OrderId, OrderStatus};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::schedule::{KitchenEventSpec, KitchenStage, PlanDay, PlanSpec};
use protocol::{DistrictId, FridgeId, KitchenId, MealId, PlanId};
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::store::EventLog;
use region_node::writer::District;
use scheduler::Policy;

mod support;

/// A writer on `dir` and the lifecycle that stops it.
fn start(dir: &std::path::Path, clock: Clock) -> (District, Lifecycle) {
    let lifecycle = Lifecycle::new();
    let log = EventLog::open(dir).unwrap();
    let district = support::writer_until(log, clock, lifecycle.shutdown());
    (district, lifecycle)
}

fn meal() -> MealSpec {
    support::meal_spec(1000)
}

#[tokio::test]
async fn a_plan_day_goes_from_charge_to_pickup_and_survives_replay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::adjustable();
    let (d, writer) = start(dir.path(), clock.clone());
    let policy = Policy::default();
    d.submit(Command::Catalog(CatalogCommand::DefineMeal {
        meal_id: MealId::from_static("m-1"),
        spec: meal(),
    }))
    .await
    .unwrap();
    d.submit(Command::Catalog(CatalogCommand::RegisterFridge {
        fridge_id: FridgeId::from_static("f-1"),
        spec: district::demo::plain_fridge("Lobby"),
    }))
    .await
    .unwrap();

    // Every day of the week, so the test does not depend on today's weekday
    // (weekends do not work by default: only working days materialise).
    let start_date = scheduler::plan::earliest_effective(clock.now(), &Default::default(), &policy);
    let spec = PlanSpec {
        fridge_id: FridgeId::from_static("f-1"),
        days: (1..=7)
            .map(|weekday| PlanDay {
                weekday,
                meal_id: MealId::from_static("m-1"),
            })
            .collect(),
        start_date,
        end_date: start_date + Duration::days(13),
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
    let tick = || Command::Schedule(ScheduleCommand::Tick { policy });
    d.submit(tick()).await.unwrap();
    let state = d.state();
    let charge_id = state.schedule().charges.keys().next().unwrap().clone();
    assert_eq!(
        state.outbox().len(),
        1,
        "the week's charge waits in the outbox"
    );
    assert!(state.orders().is_empty(), "nothing before the money");

    d.submit(Command::RecordPayment {
        result: PaymentResult {
            kind: PaymentKind::Charge,
            order_id: charge_id.clone().into(),
            district_id: DistrictId::from_static("detroit-downtown"),
            outcome: PaymentOutcome::Approved {
                reference: "ref-1".into(),
            },
        },
        pickup_code: "000000".into(),
    })
    .await
    .unwrap();
    assert!(d.state().outbox().is_empty());
    d.submit(tick()).await.unwrap();
    let order_id = OrderId::parse(format!("sub-p1-{start_date}")).unwrap();
    let order = d.state().orders().get(&order_id).cloned().unwrap();
    assert_eq!(order.status, OrderStatus::Scheduled);
    assert_eq!(order.customer, "alice");
    assert!(d
        .state()
        .orders()
        .of_customer("alice")
        .any(|o| o.order_id == order_id));

    let place = |order_ids: Option<Vec<OrderId>>, seed| {
        Command::Schedule(ScheduleCommand::KitchenEvent {
            kitchen_id: KitchenId::from_static("k-1"),
            spec: KitchenEventSpec {
                stage: KitchenStage::PlacedInFridge,
                date: start_date,
                fridge_id: None,
                order_ids,
            },
            seed,
            policy,
        })
    };
    // The kitchen places a meal from the eve of its day.
    let eve = start_date - Duration::days(1);
    let days_to_eve = (eve - scheduler::local_date(clock.now(), &policy)).num_days();
    if days_to_eve > 0 {
        clock.advance(Duration::days(days_to_eve)).unwrap();
        d.submit(tick()).await.unwrap(); // The days now in the horizon.
    }
    let placed = d
        .submit(place(Some(vec![order_id.clone()]), 42))
        .await
        .unwrap();
    let kinds: Vec<_> = placed.events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        [
            "OrderPrepared",
            "OrderDispatched",
            "MealUnitPlacedForOrder",
            "OrderAvailableForPicking"
        ]
    );
    let state = d.state();
    let order = state.orders().get(&order_id).unwrap();
    assert_eq!(order.status, OrderStatus::Available);
    assert_eq!(
        state.stock_level("f-1", "m-1"),
        StockLevel {
            on_hand: 1,
            reserved: 1,
            quarantined: 0,
            expired: 0,
            held: 0,
        },
        "the kitchen's unit is in the fridge, reserved, not for sale"
    );
    let code = order.pickup_code.clone().unwrap();
    d.submit(Command::Order(OrderCommand::Pickup {
        order_id: order_id.clone(),
        pickup_code: code,
    }))
    .await
    .unwrap();
    assert_eq!(d.state().stock_level("f-1", "m-1"), StockLevel::default());
    // The scheduler reads the pickup from the order book: placing the day
    // again moves nothing (and draws no second unit).
    let again = d.submit(place(None, 43)).await.unwrap();
    assert!(again.events.is_empty(), "{:?}", again.events);

    // Restart: the log replays into the same orders and schedule, and the
    // job run again makes nothing new.
    let before = d.state();
    // Stopping the writer's lifecycle waits until it has closed the log.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    writer.stop(deadline).await.unwrap();
    drop(d);
    let (d, _writer) = start(dir.path(), clock.clone());
    let after = d.state();
    assert_eq!(after.schedule(), before.schedule());
    assert!(after.orders().iter().eq(before.orders().iter()));
    let again = d.submit(tick()).await.unwrap();
    assert!(again.events.is_empty(), "{:?}", again.events);
}
