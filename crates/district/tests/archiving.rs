//! Archiving final orders (issue 15), given/when/then against the pure
//! core: an order final for longer than the retention is named by
//! `OrderCommand::Archive` and leaves every area; an open order, or one
//! final too recently, or one still owed a payment, never is.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use district::orders::archive::MAX_ARCHIVED_PER_BATCH;
use district::{
    CatalogCommand, Command, DistrictState, OrderCommand, OrderTimer, PromotionCommand,
};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderItem, OrderStatus, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::promotions::SubsidySpec;
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, MealId, SubsidyId};

mod support;

const FRIDGE: &str = "f-1";
const MEAL: &str = "m-a";
const CODE: &str = "123456";

struct District {
    state: DistrictState,
    now: DateTime<Utc>,
    log: Vec<EventEnvelope>,
}

impl District {
    fn new() -> Self {
        let mut d = District {
            state: DistrictState::default(),
            now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            log: vec![],
        };
        d.run(Command::Catalog(CatalogCommand::DefineMeal {
            meal_id: MealId::from_static(MEAL),
            spec: support::meal_spec(500),
        }))
        .unwrap();
        d.run(Command::Catalog(CatalogCommand::RegisterFridge {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: district::demo::plain_fridge("F"),
        }))
        .unwrap();
        d.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static(MEAL),
                    units: 50,
                }],
            },
        }))
        .unwrap();
        d
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Event>, district::DomainError> {
        let ctx = support::context(self.now);
        let events = district::decide(&self.state, cmd, &ctx)?;
        let recorded = support::record(&mut self.state, &events, self.now);
        self.log.extend(recorded);
        Ok(events)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// An app order placed with an `Idempotency-Key`, in its grace window.
    fn place(&mut self, id: &str) -> OrderId {
        self.place_at(id, Channel::App)
    }

    fn place_at(&mut self, id: &str, channel: Channel) -> OrderId {
        let order_id = OrderId::parse(id).unwrap();
        let request = PlaceOrder {
            fridge_id: FridgeId::from_static(FRIDGE),
            items: vec![OrderItem {
                meal_id: MealId::from_static(MEAL),
                qty: 1,
            }],
            coupon: None,
            share_code: None,
            points: None,
            payment_method: "tok".into(),
            pickup_date: None,
        };
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: "ann".into(),
            channel,
            request,
            idempotency: Some((format!("key-{id}"), 7)),
            referral: None,
        }))
        .unwrap();
        order_id
    }

    fn result(&mut self, order_id: &OrderId, kind: PaymentKind) {
        let result = PaymentResult {
            kind,
            order_id: order_id.clone(),
            district_id: DistrictId::from_static(support::DISTRICT),
            outcome: PaymentOutcome::Approved {
                reference: "r".into(),
            },
        };
        self.run(Command::RecordPayment {
            result,
            pickup_code: CODE.into(),
        })
        .unwrap();
    }

    /// Placed, past its grace window, charged: waiting in the fridge.
    fn purchased(&mut self, id: &str) -> OrderId {
        let order_id = self.place(id);
        self.advance(Duration::seconds(60));
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: OrderTimer::GraceWindowEnd,
        }))
        .unwrap();
        self.result(&order_id, PaymentKind::Charge);
        order_id
    }

    fn picked_up(&mut self, id: &str) -> OrderId {
        let order_id = self.purchased(id);
        self.run(Command::Order(OrderCommand::Pickup {
            order_id: order_id.clone(),
            pickup_code: CODE.into(),
        }))
        .unwrap();
        order_id
    }

    fn archive(&mut self) -> Vec<OrderId> {
        let events = self.run(Command::Order(OrderCommand::Archive)).unwrap();
        match events.as_slice() {
            [] => vec![],
            [Event::OrdersArchived { order_ids }] => order_ids.clone(),
            other => panic!("archiving decided {other:?}"),
        }
    }
}

fn retention() -> Duration {
    district::OrderPolicy::default().retention
}

#[test]
fn a_picked_up_order_older_than_the_retention_is_archived_and_leaves_the_book() {
    let mut d = District::new();
    let id = d.picked_up("o-1");
    d.advance(retention() + Duration::seconds(1));

    assert_eq!(d.archive(), vec![id.clone()]);

    let s = &d.state;
    assert!(s.orders().get(&id).is_none(), "the order left the book");
    assert_eq!(s.orders().of_customer("ann").count(), 0);
    assert!(
        s.orders().by_idempotency_key("ann", "key-o-1").is_none(),
        "its idempotency key went with it"
    );
    assert_eq!(s.stream_version(&format!("order-{id}")), 0);
    assert_eq!(s.orders().customers().count(), 0);
    assert!(district::promotions::priced(s, &id).is_none());
    assert!(!s.loyalty().knows_order(&id));
    assert_eq!(s.stock_level(FRIDGE, MEAL).reserved, 0);
    assert_eq!(s.stock_level(FRIDGE, MEAL).on_hand, 49, "the pickup stays");
    // Archiving twice names nothing.
    assert!(d.archive().is_empty());
}

#[test]
fn a_final_order_within_the_retention_is_not_archived() {
    let mut d = District::new();
    let id = d.place("o-1");
    d.run(Command::Order(OrderCommand::Cancel {
        order_id: id.clone(),
        customer: Some("ann".into()),
    }))
    .unwrap();
    d.advance(retention() - Duration::seconds(1));
    assert!(d.archive().is_empty());
    assert_eq!(
        d.state.orders().get(&id).map(|o| o.status),
        Some(OrderStatus::Cancelled)
    );

    d.advance(Duration::seconds(1));
    assert_eq!(d.archive(), vec![id], "final for exactly the retention");
}

#[test]
fn an_open_order_is_never_archived_however_old() {
    let mut d = District::new();
    let held = d.place("o-held");
    let waiting = d.purchased("o-waiting");
    d.advance(retention() * 10);
    assert!(d.archive().is_empty());
    assert!(d.state.orders().get(&held).is_some());
    assert!(d.state.orders().get(&waiting).is_some());
}

#[test]
fn a_cancelled_order_waiting_for_its_refund_is_archived_only_after_the_result() {
    let mut d = District::new();
    let id = d.purchased("o-1");
    d.run(Command::Order(OrderCommand::Cancel {
        order_id: id.clone(),
        customer: None,
    }))
    .unwrap();
    d.advance(retention() * 2);
    assert!(
        d.archive().is_empty(),
        "the refund is still owed (outbox row): {:?}",
        d.state
            .orders()
            .get(&id)
            .map(|o| (o.status, o.refund_pending))
    );
    d.result(&id, PaymentKind::Refund);
    assert!(d.archive().is_empty(), "refunded just now");
    d.advance(retention());
    assert_eq!(d.archive(), vec![id]);
}

#[test]
fn one_decision_names_at_most_the_batch_limit_oldest_first() {
    let mut d = District::new();
    let n = MAX_ARCHIVED_PER_BATCH + 3;
    let mut ids = vec![];
    for i in 0..n {
        // Till orders: an app's customer cancelling this often would be
        // refused by the hoarding rules.
        let id = d.place_at(&format!("o-{i:05}"), Channel::Pos);
        d.run(Command::Order(OrderCommand::Cancel {
            order_id: id.clone(),
            customer: None,
        }))
        .unwrap();
        ids.push(id);
        d.advance(Duration::milliseconds(10));
    }
    d.advance(retention());
    let first = d.archive();
    assert_eq!(first.len(), MAX_ARCHIVED_PER_BATCH);
    assert_eq!(first[..], ids[..MAX_ARCHIVED_PER_BATCH]);
    assert_eq!(d.archive(), ids[MAX_ARCHIVED_PER_BATCH..].to_vec());
    assert!(d.state.orders().is_empty());
}

#[test]
fn a_restart_rebuilds_the_archived_state_from_the_recorded_decision() {
    let mut d = District::new();
    let old = d.picked_up("o-old");
    d.advance(retention());
    let recent = d.picked_up("o-recent");
    d.advance(Duration::seconds(1));
    assert_eq!(d.archive(), vec![old.clone()]);

    let restarted = support::restart(&d.log);
    assert_eq!(restarted, d.state);
    assert!(restarted.orders().get(&old).is_none());
    assert!(restarted.orders().get(&recent).is_some());
}

/// A sponsor's statement lists every order it paid part of, also once the
/// order has left the book: the archived order's price stays with what it
/// was charged. A cancelled one never counted, so nothing of it stays.
#[test]
fn a_subsidised_order_archived_after_its_pickup_stays_on_the_sponsors_statement() {
    let mut d = District::new();
    d.run(Command::Promotion(PromotionCommand::DefineSubsidy {
        subsidy_id: SubsidyId::from_static("acme"),
        spec: SubsidySpec {
            sponsor: "ACME".into(),
            fridges: vec![FridgeId::from_static(FRIDGE)],
            percent: 20,
            cap_per_customer_day_minor: 500,
        },
    }))
    .unwrap();
    let kept = d.picked_up("o-kept");
    let cancelled = d.place("o-cancelled");
    d.run(Command::Order(OrderCommand::Cancel {
        order_id: cancelled.clone(),
        customer: Some("ann".into()),
    }))
    .unwrap();
    let month = d.now.date_naive().with_day(1).unwrap();
    let before =
        district::promotions::statement(&d.state, &SubsidyId::from_static("acme"), month).unwrap();
    assert_eq!(before.orders.len(), 1, "{before:?}");
    assert_eq!(before.total_minor, 100, "20 % of 5.00");
    d.advance(retention() + Duration::seconds(1));

    let archived = d.archive();

    assert!(archived.contains(&kept) && archived.contains(&cancelled));
    let after =
        district::promotions::statement(&d.state, &SubsidyId::from_static("acme"), month).unwrap();
    assert_eq!(
        after, before,
        "the statement does not change when its orders are archived"
    );
    assert!(district::promotions::priced(&d.state, &kept).is_some());
    assert!(district::promotions::priced(&d.state, &cancelled).is_none());
}
