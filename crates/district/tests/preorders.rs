//! Orders ahead, given/when/then through the pure decider: a one-off order
//! for a future day is charged like any order, made by the kitchen like a
//! plan day, and refunded when it cannot be delivered.

mod support;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use district::schedule::StateCatalog;
use district::{Command, Context, DistrictState, DomainError, OrderCommand, ScheduleCommand};
use protocol::orders::{Channel, OrderId, OrderStatus, PlaceOrder, RefundReason};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::schedule::{CalendarDaySpec, KitchenEventSpec, KitchenStage, WithdrawReason};
use protocol::{DistrictId, Event, KitchenId};

const FRIDGE: &str = "f-fox-theatre";
const MEAL: &str = "m-kale-caesar";
const KITCHEN: &str = "k-midtown-greens";
/// The demo's list price of a kale caesar, in cents.
const KALE_PRICE: i64 = 1095;

/// Wednesday 2026-11-25, 10:00 in the district (UTC, the default policy):
/// before the 18:00 change cutoff.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

struct District {
    state: DistrictState,
    ctx: Context,
    log: Vec<protocol::EventEnvelope>,
}

impl District {
    /// The demo district, at `t0`.
    fn new() -> District {
        let mut d = District {
            state: DistrictState::default(),
            ctx: support::context(t0()),
            log: vec![],
        };
        for cmd in district::demo::commands(district::demo::detroit().unwrap()) {
            d.run(cmd).expect("demo district");
        }
        d
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Event>, DomainError> {
        let events = district::decide(&self.state, cmd, &self.ctx)?;
        let recorded = support::record(&mut self.state, &events, self.ctx.now);
        self.log.extend(recorded);
        Ok(events)
    }

    fn at(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.ctx.now = now;
        self
    }

    fn order_ahead(&mut self, body: serde_json::Value) -> Result<OrderId, DomainError> {
        let order_id = OrderId::from(ulid::Ulid::from_parts(
            self.ctx.now.timestamp_millis() as u64,
            u128::from(self.state.last_seq()),
        ));
        let request: PlaceOrder = serde_json::from_value(body).expect("an order request");
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: "alice".into(),
            channel: Channel::App,
            request,
            idempotency: None,
            referral: None,
        }))?;
        Ok(order_id)
    }

    /// Alice orders one kale caesar ahead for `date`.
    fn kale_for(&mut self, date: NaiveDate) -> OrderId {
        self.order_ahead(body(date)).expect("an order ahead")
    }

    /// The grace window ends and the charge is approved.
    fn pay(&mut self, order_id: &OrderId) {
        let grace_end = self.ctx.now + self.ctx.policy.grace_window_app;
        self.at(grace_end);
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: district::OrderTimer::GraceWindowEnd,
        }))
        .expect("the charge is requested");
        self.result(order_id, PaymentKind::Charge);
    }

    fn result(&mut self, order_id: &OrderId, kind: PaymentKind) -> Vec<Event> {
        self.run(Command::RecordPayment {
            result: PaymentResult {
                kind,
                order_id: order_id.clone(),
                district_id: DistrictId::from_static(support::DISTRICT),
                outcome: PaymentOutcome::Approved {
                    reference: "ref".into(),
                },
            },
            pickup_code: "123456".into(),
        })
        .expect("a payment result is recorded")
    }

    fn kitchen(&mut self, stage: KitchenStage, date: NaiveDate) -> Result<Vec<Event>, DomainError> {
        self.run(Command::Schedule(ScheduleCommand::KitchenEvent {
            kitchen_id: KitchenId::from_static(KITCHEN),
            spec: KitchenEventSpec {
                stage,
                date,
                fridge_id: None,
                order_ids: None,
            },
            seed: 9,
            policy: Default::default(),
        }))
    }

    fn tick(&mut self) -> Vec<Event> {
        self.run(Command::Schedule(ScheduleCommand::Tick {
            policy: Default::default(),
        }))
        .expect("a tick")
    }

    fn status(&self, order_id: &OrderId) -> OrderStatus {
        self.state.orders().get(order_id).expect("the order").status
    }

    fn shelf(&self) -> (u32, u32) {
        let level = self.state.stock_level(FRIDGE, MEAL);
        (level.on_hand, level.reserved)
    }

    /// `(pre-order units, subscription units)` in the kitchen's prep report.
    fn prep(&self, date: NaiveDate) -> (u32, u32) {
        let report = scheduler::prep::prep_report(
            self.state.schedule(),
            &StateCatalog(&self.state),
            &KitchenId::from_static(KITCHEN),
            date,
            &|m| m.to_string(),
            &[],
            &[],
        );
        (report.total_preorder_units, report.total_subscription_units)
    }
}

fn body(date: NaiveDate) -> serde_json::Value {
    serde_json::json!({
        "fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}],
        "payment_method": "tok_visa", "pickup_date": date
    })
}

fn refunds(events: &[Event]) -> Vec<(i64, RefundReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RefundRequested { amount, reason, .. } => Some((*amount, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_order_ahead_is_paid_cooked_placed_and_picked_up_without_touching_todays_shelf() {
    let mut d = District::new();
    let shelf = d.shelf();
    let id = d.kale_for(day(26));
    assert_eq!(d.shelf(), shelf, "nothing is reserved on today's shelf");
    assert_eq!(d.prep(day(26)), (0, 0), "not firm before it is paid");

    d.pay(&id);
    assert_eq!(d.status(&id), OrderStatus::Scheduled);
    let told: Vec<&str> = d
        .state
        .notifications()
        .of_customer_after("alice", 0, d.ctx.now)
        .map(|n| n.kind.name())
        .collect();
    assert_eq!(told, ["order_placed", "order_ahead_confirmed"]);
    assert_eq!(
        d.prep(day(26)),
        (1, 0),
        "a firm order ahead, not a plan day"
    );
    assert_eq!(d.state.orders().get(&id).unwrap().pickup_code, None);

    d.at(Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap());
    d.kitchen(KitchenStage::PlacedInFridge, day(26)).unwrap();
    let order = d.state.orders().get(&id).unwrap().clone();
    assert_eq!(order.status, OrderStatus::Available);
    assert!(order.pickup_code.is_some(), "placed: a pickup code");
    assert_eq!(d.shelf(), (shelf.0 + 1, shelf.1 + 1), "its unit, set aside");

    d.run(Command::Order(OrderCommand::Pickup {
        order_id: id.clone(),
        pickup_code: order.pickup_code.unwrap(),
    }))
    .unwrap();
    assert_eq!(d.status(&id), OrderStatus::PickedUp);
    assert_eq!(d.shelf(), shelf);
}

#[test]
fn an_order_ahead_the_kitchen_never_places_is_refunded_when_its_day_ends() {
    let mut d = District::new();
    let id = d.kale_for(day(26));
    d.pay(&id);
    d.at(Utc.with_ymd_and_hms(2026, 11, 26, 23, 0, 0).unwrap());
    assert!(refunds(&d.tick()).is_empty(), "its day is not over");

    d.at(Utc.with_ymd_and_hms(2026, 11, 27, 0, 1, 0).unwrap());
    let events = d.tick();
    assert_eq!(refunds(&events), [(KALE_PRICE, RefundReason::NotDelivered)]);
    let order = d.state.orders().get(&id).unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        order.withdrawn.as_ref().unwrap().reason,
        WithdrawReason::NotProduced
    );
    assert!(d.tick().is_empty(), "refunded once");

    d.result(&id, PaymentKind::Refund);
    assert_eq!(d.status(&id), OrderStatus::Refunded);
    assert_eq!(d.prep(day(26)), (0, 0));
}

#[test]
fn a_day_closed_later_withdraws_and_refunds_its_orders_ahead() {
    let mut d = District::new();
    let id = d.kale_for(day(27));
    d.pay(&id);
    let events = d
        .run(Command::Schedule(ScheduleCommand::SetCalendarDay {
            date: day(27),
            spec: CalendarDaySpec {
                kitchen_id: Some(KitchenId::from_static(KITCHEN)),
                working: false,
                note: "kitchen closed".into(),
            },
            policy: Default::default(),
        }))
        .unwrap();
    assert_eq!(refunds(&events), [(KALE_PRICE, RefundReason::NotDelivered)]);
    assert_eq!(d.status(&id), OrderStatus::Cancelled);
}

#[test]
fn an_order_ahead_is_cancelled_for_a_refund_until_the_cutoff_of_the_day_before() {
    let mut d = District::new();
    let early = d.kale_for(day(27));
    let late = d.kale_for(day(26));
    d.pay(&early);
    d.pay(&late);
    let cancel = |id: &OrderId| {
        Command::Order(OrderCommand::Cancel {
            order_id: id.clone(),
            customer: Some("alice".into()),
        })
    };
    // 18:00 on the 25th is the 26th's cutoff, not yet the 27th's.
    d.at(Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0).unwrap());
    let refused = d.run(cancel(&late));
    assert!(
        matches!(refused, Err(DomainError::WrongState { .. })),
        "{refused:?}"
    );
    assert_eq!(d.status(&late), OrderStatus::Scheduled, "unchanged");
    let events = d.run(cancel(&early)).unwrap();
    assert_eq!(refunds(&events), [(KALE_PRICE, RefundReason::Cancelled)]);
    assert_eq!(d.prep(day(27)), (0, 0), "the kitchen no longer makes it");
}

#[test]
fn an_order_ahead_is_cancelled_for_free_in_its_grace_window() {
    let mut d = District::new();
    let shelf = d.shelf();
    let id = d.kale_for(day(26));
    let events = d
        .run(Command::Order(OrderCommand::Cancel {
            order_id: id.clone(),
            customer: Some("alice".into()),
        }))
        .unwrap();
    assert_eq!(events.len(), 1, "no release, no refund: {events:?}");
    assert_eq!(d.status(&id), OrderStatus::Cancelled);
    assert_eq!(d.shelf(), shelf);
}

#[test]
fn orders_ahead_outside_the_rules_are_refused_and_change_nothing() {
    let mut d = District::new();
    let before = d.state.clone();
    let refused = |d: &mut District, body: serde_json::Value| {
        let r = d.order_ahead(body);
        assert!(matches!(r, Err(DomainError::Invalid(_))), "{r:?}");
    };
    refused(&mut d, body(day(25))); // today
    refused(&mut d, body(day(30))); // beyond the 3-day horizon
    refused(&mut d, body(day(28))); // a Saturday
    let mut two = body(day(26));
    two["items"][0]["qty"] = 2.into();
    refused(&mut d, two);
    let mut coupon = body(day(26));
    coupon["coupon"] = "SAVE".into();
    refused(&mut d, coupon);
    d.at(Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0).unwrap());
    refused(&mut d, body(day(26))); // after the day before's cutoff
    assert_eq!(d.state, before);
}

#[test]
fn a_restarted_district_knows_its_orders_ahead() {
    let mut d = District::new();
    let id = d.kale_for(day(26));
    d.pay(&id);
    let restarted = support::restart(&d.log);
    assert_eq!(restarted, d.state);
    assert_eq!(
        restarted.orders().get(&id).unwrap().preorder,
        d.state.orders().get(&id).unwrap().preorder
    );
}
