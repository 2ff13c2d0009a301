//! Restocking, given/when/then through the pure decider: par levels set by
//! admins, suggestions from the shelves' history of sold, unclaimed and
//! expired units, and the kitchen's pick list (docs/restocking.md).

mod support;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use district::restock::{pick_list, suggestions, DeliverLine, RestockCommand};
use district::schedule::StateCatalog;
use district::{
    CatalogCommand, Command, Context, DistrictState, DomainError, OrderCommand, OrderTimer,
};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, KitchenId, MealId};
use scheduler::prep::Sale;

const FRIDGE: &str = "f-fox-theatre";
const MEAL: &str = "m-kale-caesar";
const KITCHEN: &str = "k-midtown-greens";

/// Wednesday 2026-11-25, 10:00 UTC (the district's offset is 0 here).
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn fridge() -> FridgeId {
    FridgeId::from_static(FRIDGE)
}

fn meal() -> MealId {
    MealId::from_static(MEAL)
}

struct District {
    state: DistrictState,
    ctx: Context,
    log: Vec<EventEnvelope>,
    orders: u64,
}

impl District {
    fn new() -> District {
        let mut d = District {
            state: DistrictState::default(),
            ctx: support::context(t0()),
            log: vec![],
            orders: 0,
        };
        for cmd in district::demo::commands(district::demo::detroit().unwrap()) {
            d.run(cmd).expect("demo district");
        }
        d
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Event>, DomainError> {
        let events = district::decide(&self.state, cmd, &self.ctx)?;
        self.given(&events);
        Ok(events)
    }

    fn given(&mut self, events: &[Event]) {
        let recorded = support::record(&mut self.state, events, self.ctx.now);
        self.log.extend(recorded);
    }

    fn at(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.ctx.now = now;
        self
    }

    fn par(&mut self, units: u32) -> Result<Vec<Event>, DomainError> {
        self.run(Command::Restock(RestockCommand::SetParLevel {
            fridge_id: fridge(),
            meal_id: meal(),
            units,
        }))
    }

    fn stock(&mut self, units: u32) {
        self.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge(),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: meal(),
                    units,
                }],
            },
        }))
        .expect("a stock count");
    }

    /// A POS customer buys `qty` kale caesars now; returns the paid order.
    fn buy(&mut self, qty: u32, pickup_date: Option<NaiveDate>) -> OrderId {
        self.orders += 1;
        let order_id = OrderId::from(ulid::Ulid::from_parts(
            self.ctx.now.timestamp_millis() as u64,
            u128::from(self.orders),
        ));
        let request: PlaceOrder = serde_json::from_value(serde_json::json!({
            "fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": qty}],
            "payment_method": "tok_visa", "pickup_date": pickup_date
        }))
        .expect("an order request");
        let channel = if pickup_date.is_some() {
            Channel::App
        } else {
            Channel::Pos
        };
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: "alice".into(),
            channel,
            request,
            idempotency: None,
            referral: None,
        }))
        .expect("an order");
        let now = self.ctx.now;
        self.at(now + Duration::minutes(10));
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: OrderTimer::GraceWindowEnd,
        }))
        .expect("the charge is requested");
        self.run(Command::RecordPayment {
            result: PaymentResult {
                kind: PaymentKind::Charge,
                order_id: order_id.clone(),
                district_id: DistrictId::from_static(support::DISTRICT),
                outcome: PaymentOutcome::Approved {
                    reference: "ref".into(),
                },
            },
            pickup_code: "123456".into(),
        })
        .expect("paid");
        self.at(now);
        order_id
    }

    fn pick_up(&mut self, order_id: &OrderId) {
        self.run(Command::Order(OrderCommand::Pickup {
            order_id: order_id.clone(),
            pickup_code: "123456".into(),
        }))
        .expect("picked up");
    }

    /// The order's pickup deadline passes.
    fn leave_unclaimed(&mut self, order_id: &OrderId) {
        let deadline = self
            .state
            .orders()
            .get(order_id)
            .unwrap()
            .pickup_deadline
            .unwrap();
        let now = self.ctx.now;
        self.at(deadline + Duration::seconds(1));
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: OrderTimer::PickupDeadline,
        }))
        .expect("unclaimed");
        self.at(now);
    }

    fn expire(&mut self, units: u32) {
        self.given(&[Event::MealUnitsExpired {
            fridge_id: fridge(),
            meal_id: meal(),
            units,
        }]);
    }

    fn suggested(&self, days: u32) -> Vec<(u32, u32, u32, u32)> {
        let today = self.ctx.local_now().date();
        suggestions(&self.state, today, self.ctx.utc_offset_minutes, days)
            .expect("a window")
            .into_iter()
            .filter(|s| s.fridge_id == fridge() && s.meal_id == meal())
            .map(|s| (s.units, s.sold, s.expired, s.unclaimed))
            .collect()
    }

    fn line(&self, date: NaiveDate) -> Option<DeliverLine> {
        self.line_with(date, &[])
    }

    /// The line with `sales` as the forecast's one-off history.
    fn line_with(&self, date: NaiveDate, sales: &[Sale]) -> Option<DeliverLine> {
        let kitchen = KitchenId::from_static(KITCHEN);
        let prep = scheduler::prep::prep_report(
            self.state.schedule(),
            &StateCatalog(&self.state),
            &kitchen,
            date,
            &|m| m.to_string(),
            &[meal()],
            sales,
        );
        let list = pick_list(&self.state, &prep);
        let cooked: u32 = list.cook.iter().map(|c| c.units).sum();
        let delivered: u32 = list.deliver.iter().map(|l| l.units).sum();
        assert_eq!(cooked, delivered, "everything cooked goes somewhere");
        list.deliver
            .into_iter()
            .find(|l| l.fridge_id == fridge() && l.meal_id == meal())
    }
}

#[test]
fn an_admin_sets_changes_and_clears_a_par_level() {
    let mut d = District::new();
    assert_eq!(d.par(6).unwrap().len(), 1);
    assert_eq!(d.state.restock().par(&fridge(), &meal()), 6);
    assert!(
        d.par(6).unwrap().is_empty(),
        "the same level again records nothing"
    );
    d.par(4).unwrap();
    assert_eq!(d.state.restock().par(&fridge(), &meal()), 4);
    d.par(0).unwrap();
    assert_eq!(d.state.restock().par(&fridge(), &meal()), 0);
    assert_eq!(d.state.restock().levels().count(), 0);
    assert!(d.par(0).unwrap().is_empty(), "nothing to clear");
}

#[test]
fn a_bad_par_level_is_refused_and_changes_nothing() {
    let mut d = District::new();
    d.par(3).unwrap();
    let before = d.state.clone();
    assert!(matches!(d.par(501), Err(DomainError::Invalid(_))));
    let unknown_fridge = d.run(Command::Restock(RestockCommand::SetParLevel {
        fridge_id: FridgeId::from_static("f-nowhere"),
        meal_id: meal(),
        units: 2,
    }));
    assert!(matches!(unknown_fridge, Err(DomainError::UnknownFridge(_))));
    let unknown_meal = d.run(Command::Restock(RestockCommand::SetParLevel {
        fridge_id: fridge(),
        meal_id: MealId::from_static("m-nothing"),
        units: 2,
    }));
    assert!(matches!(unknown_meal, Err(DomainError::UnknownMeal(_))));
    assert_eq!(d.state, before);
}

#[test]
fn the_pick_list_brings_the_shelf_to_par_on_top_of_the_orders_ahead() {
    let mut d = District::new();
    d.stock(5);
    d.par(8).unwrap();
    // Two units on the shelf are sold and waiting for pickup: not for sale.
    d.buy(2, None);
    // One unit ahead for tomorrow, paid: cooked for its order, set aside.
    d.buy(1, Some(day(26)));

    let line = d.line(day(26)).expect("a line for the fridge");
    assert_eq!(
        (line.par, line.available, line.arriving),
        (8, 3, 1),
        "available: 5 on the shelf − 2 sold; arriving: the order ahead"
    );
    assert_eq!(
        (line.for_orders_ahead, line.for_restock, line.units),
        (1, 5, 6),
        "restock = par − available (the arriving unit is not for sale)"
    );
    assert_eq!(line.for_forecast, 0, "a par replaces the forecast");
}

#[test]
fn without_a_par_level_the_forecast_fills_the_shelf_and_without_either_there_is_no_line() {
    let mut d = District::new();
    assert_eq!(d.line(day(26)), None);
    // Three sold on each of the four Thursdays before: forecast 3.
    let sales: Vec<Sale> = [5, 12, 19]
        .into_iter()
        .map(day)
        .chain([NaiveDate::from_ymd_opt(2026, 10, 29).unwrap()])
        .map(|date| Sale {
            date,
            fridge_id: fridge(),
            meal_id: meal(),
            units: 3,
        })
        .collect();
    d.stock(1);
    let line = d
        .line_with(day(26), &sales)
        .expect("a forecast makes a line");
    assert_eq!(
        (line.forecast, line.available, line.for_forecast, line.units),
        (3, 1, 2, 2),
        "forecast − available"
    );
    d.par(2).unwrap();
    d.stock(7);
    let line = d.line(day(26)).expect("a par makes a line");
    assert_eq!(
        (line.for_restock, line.units),
        (0, 0),
        "the shelf is above par"
    );
    d.par(0).unwrap();
    assert_eq!(d.line(day(26)), None, "a cleared par leaves no line");
}

#[test]
fn suggestions_read_the_last_complete_days_of_sales_unclaimed_and_expired_units() {
    let mut d = District::new();
    d.stock(400);
    // Over the week before the 25th: 14 units picked up, 7 left unclaimed.
    for n in 1..=7 {
        d.at(Utc.with_ymd_and_hms(2026, 11, 17 + n, 12, 0, 0).unwrap());
        let picked = d.buy(2, None);
        d.pick_up(&picked);
        let left = d.buy(1, None);
        d.leave_unclaimed(&left);
    }
    // Today's sale is not a complete day yet; 8 days back is outside 7.
    d.at(t0());
    let today = d.buy(5, None);
    d.pick_up(&today);
    d.at(Utc.with_ymd_and_hms(2026, 11, 17, 12, 0, 0).unwrap());
    let old = d.buy(9, None);
    d.pick_up(&old);
    d.at(t0());
    // mean (14 + 7) / 7 = 3, cushion √3: ceil(4.73) = 5.
    assert_eq!(d.suggested(7), [(5, 14, 0, 7)]);
    // Over 8+ days the old sale counts too: (23 + 7) / 8 → ceil(3.75 + 1.94) = 6.
    assert_eq!(d.suggested(8), [(6, 23, 0, 7)]);

    // Waste: two units expired yesterday, so no cushion: ceil(3) = 3.
    d.at(Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).unwrap());
    d.expire(2);
    d.at(t0());
    assert_eq!(d.suggested(7), [(3, 14, 2, 7)]);

    let applied = d
        .run(Command::Restock(RestockCommand::ApplySuggestions {
            days: 7,
        }))
        .unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(d.state.restock().par(&fridge(), &meal()), 3);
}

#[test]
fn a_suggestion_window_outside_7_to_28_days_is_refused() {
    let d = District::new();
    for days in [0, 6, 29] {
        assert!(suggestions(&d.state, day(25), 0, days).is_err(), "{days}");
    }
}

#[test]
fn local_days_follow_the_districts_offset() {
    let mut d = District::new();
    d.stock(50);
    d.ctx.utc_offset_minutes = -300; // UTC−5
                                     // 03:00 UTC on the 25th is 22:00 on the 24th in the district.
    d.at(Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap());
    let late = d.buy(7, None);
    d.pick_up(&late);
    d.at(Utc.with_ymd_and_hms(2026, 11, 25, 16, 0, 0).unwrap()); // 11:00 local
    assert_eq!(
        d.suggested(7).first().map(|s| s.1),
        Some(7),
        "yesterday, locally"
    );
    d.ctx.utc_offset_minutes = 0;
    assert_eq!(d.suggested(7), [], "today in UTC: not complete yet");
}

#[test]
fn history_older_than_the_retention_is_dropped_and_a_restart_keeps_the_rest() {
    let mut d = District::new();
    d.par(5).unwrap();
    d.at(Utc.with_ymd_and_hms(2026, 10, 1, 12, 0, 0).unwrap());
    d.expire(1);
    assert_eq!(d.state.restock().history_len(), 1);
    d.at(t0());
    d.expire(1);
    assert_eq!(
        d.state.restock().history_len(),
        1,
        "the October bucket is more than 30 days old"
    );
    let restarted = support::restart(&d.log);
    assert_eq!(restarted.restock(), d.state.restock());
    assert_eq!(restarted.restock().par(&fridge(), &meal()), 5);
}
