//! Specs of the reporting projection: given these committed events, the
//! report says exactly these numbers.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use insights::{Projection, Range, RangeError, Section, MAX_DAYS_KEPT};
use protocol::events::StockMovement;
use protocol::orders::{Channel, OrderLine, RefusalReason};
use protocol::schedule::ScheduleEvent;
use protocol::{Event, EventEnvelope};
use serde_json::{json, Value};

/// District-local time is UTC+01:00 in these specs.
const OFFSET_MINUTES: i32 = 60;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, h, m, s).unwrap()
}

fn monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
}

/// A log: events get dense seqs in the order they are pushed.
struct Log {
    events: Vec<EventEnvelope>,
}

impl Log {
    fn new() -> Log {
        let mut log = Log { events: vec![] };
        log.push(at(6, 0, 0), meal("m-bowl", "k-north", 1000));
        log.push(at(6, 0, 0), meal("m-soup", "k-south", 500));
        log.push(at(6, 0, 0), fridge("f-a", "dpsbx1234"));
        log.push(at(6, 0, 0), fridge("f-b", "dpsby9999"));
        log
    }

    fn push(&mut self, recorded_at: DateTime<Utc>, event: Event) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(EventEnvelope {
            event_id: ulid::Ulid::nil(),
            seq,
            stream_id: event.stream_id(),
            stream_version: 1,
            district_id: "d-test".parse().unwrap(),
            recorded_at,
            valid_from: recorded_at,
            correlation_id: None,
            causation_id: None,
            schema_version: 1,
            event,
        });
    }

    fn projection(&self) -> Projection {
        let mut p = Projection::new(OFFSET_MINUTES);
        for e in &self.events {
            p.apply(e);
        }
        p
    }
}

fn meal(id: &str, kitchen: &str, price: i64) -> Event {
    let meal = json!({"meal_id": id, "spec": {
        "name": id, "description": "", "kitchen_id": kitchen, "price": price,
        "currency": "EUR", "allergens": [], "ingredients": [], "tags": [],
        "nutrition": {"kcal": 1, "protein_mg": 1, "fat_mg": 1, "carbs_mg": 1, "sugar_mg": 1, "salt_mg": 1},
        "shelf_life_hours": 24}});
    Event::MealDefined {
        meal: serde_json::from_value(meal).unwrap(),
    }
}

fn fridge(id: &str, geohash: &str) -> Event {
    let fridge = json!({"fridge_id": id, "name": id, "address": "",
        "position": {"lat": 42.0, "lon": -83.0}, "geohash": geohash,
        "vendor": "frostline-json", "status": "online"});
    Event::FridgeRegistered {
        fridge: serde_json::from_value(fridge).unwrap(),
        secret: None,
    }
}

fn placed(order: &str, fridge: &str, meal: &str, qty: u32) -> Event {
    Event::OrderPlaced {
        order_id: order.parse().unwrap(),
        customer: "alice".into(),
        channel: Channel::Pos,
        fridge_id: fridge.parse().unwrap(),
        lines: vec![OrderLine {
            meal_id: meal.parse().unwrap(),
            name: meal.into(),
            qty,
            unit_price: 1000,
        }],
        total: 1000 * i64::from(qty),
        currency: serde_json::from_value(json!("EUR")).unwrap(),
        payment_method: "tok_visa".into(),
        hold_until: at(0, 0, 0),
        idempotency: None,
        price: None,
    }
}

fn purchased(order: &str) -> Event {
    Event::OrderPurchased {
        order_id: order.parse().unwrap(),
        pickup_code: "123456".into(),
        pickup_deadline: at(23, 0, 0),
    }
}

fn oid(order: &str) -> protocol::OrderId {
    order.parse().unwrap()
}

/// The scripted day of the specs (times UTC; local is one hour later).
fn scripted_day() -> Log {
    let mut log = Log::new();
    log.push(at(7, 0, 0), stock("f-a", "m-bowl", 10));
    // o1: bought 30 s after confirming, picked up 29.5 min later.
    log.push(at(9, 0, 0), placed("o1", "f-a", "m-bowl", 2));
    log.push(at(9, 0, 30), purchased("o1"));
    log.push(
        at(9, 30, 0),
        Event::OrderPickedUp {
            order_id: oid("o1"),
        },
    );
    // o2: cancelled in its grace window.
    log.push(at(9, 10, 0), placed("o2", "f-a", "m-bowl", 1));
    log.push(
        at(9, 10, 5),
        Event::OrderCancelled {
            order_id: oid("o2"),
        },
    );
    // o3 declined, o4 timed out.
    log.push(at(10, 0, 0), placed("o3", "f-a", "m-bowl", 1));
    log.push(at(10, 1, 0), refused("o3", RefusalReason::Declined));
    log.push(at(10, 5, 0), placed("o4", "f-a", "m-bowl", 1));
    log.push(at(10, 7, 0), refused("o4", RefusalReason::Timeout));
    // o5: bought 10 s after confirming, never collected.
    log.push(at(11, 0, 0), placed("o5", "f-a", "m-bowl", 1));
    log.push(at(11, 0, 10), purchased("o5"));
    log.push(
        at(13, 0, 0),
        Event::OrderUnclaimed {
            order_id: oid("o5"),
        },
    );
    // Two units expire, then one more; one vanishes.
    log.push(at(20, 0, 0), expired("f-a", "m-bowl", 2));
    log.push(at(21, 0, 0), expired("f-a", "m-bowl", 3));
    log.push(at(21, 30, 0), shrinkage("f-a", "m-bowl", -1));
    // A warm half hour in quarantine; the recovery is the same excursion.
    let since = at(12, 0, 0);
    log.push(at(12, 5, 0), quarantined("f-a", since));
    log.push(at(12, 20, 0), recovered("f-a", since));
    log.push(
        at(12, 35, 0),
        Event::FridgeQuarantineLifted {
            fridge_id: "f-a".parse().unwrap(),
        },
    );
    // A plan day for k-south: prepared, placed, picked up.
    log.push(at(6, 30, 0), scheduled("p1", "k-south", "f-b", "m-soup"));
    log.push(
        at(7, 30, 0),
        Event::Schedule(ScheduleEvent::OrderPrepared {
            order_id: oid("p1"),
        }),
    );
    log.push(
        at(8, 0, 0),
        Event::MealUnitPlacedForOrder {
            order_id: oid("p1"),
            fridge_id: "f-b".parse().unwrap(),
            meal_id: "m-soup".parse().unwrap(),
        },
    );
    log.push(
        at(12, 0, 0),
        Event::OrderPickedUp {
            order_id: oid("p1"),
        },
    );
    log
}

fn stock(fridge: &str, meal: &str, on_hand: u32) -> Event {
    Event::MealStockUpdated {
        fridge_id: fridge.parse().unwrap(),
        meal_id: meal.parse().unwrap(),
        on_hand,
        source: protocol::events::StockSource::Manual,
    }
}

fn refused(order: &str, reason: RefusalReason) -> Event {
    Event::OrderPurchaseRefused {
        order_id: oid(order),
        reason,
    }
}

fn expired(fridge: &str, meal: &str, units: u32) -> Event {
    Event::MealUnitsExpired {
        fridge_id: fridge.parse().unwrap(),
        meal_id: meal.parse().unwrap(),
        units,
    }
}

fn shrinkage(fridge: &str, meal: &str, units: i64) -> Event {
    Event::StockMovementRecorded {
        fridge_id: fridge.parse().unwrap(),
        meal_id: Some(meal.parse().unwrap()),
        units,
        movement: StockMovement::Shrinkage,
        detail: "door session 7".into(),
    }
}

fn quarantined(fridge: &str, since: DateTime<Utc>) -> Event {
    Event::FridgeQuarantined {
        fridge_id: fridge.parse().unwrap(),
        since,
        max_milli_c: 9000,
        limit_milli_c: 5000,
        kitchens: vec![],
    }
}

fn recovered(fridge: &str, since: DateTime<Utc>) -> Event {
    Event::TemperatureRecovered {
        fridge_id: fridge.parse().unwrap(),
        since,
        until: at(12, 20, 0),
        max_milli_c: 9000,
    }
}

fn scheduled(order: &str, kitchen: &str, fridge: &str, meal: &str) -> Event {
    Event::Schedule(ScheduleEvent::OrderScheduled {
        order_id: oid(order),
        plan_id: "plan1".parse().unwrap(),
        customer: "bob".into(),
        date: monday(),
        fridge_id: fridge.parse().unwrap(),
        kitchen_id: kitchen.parse().unwrap(),
        meal_id: meal.parse().unwrap(),
        meal_name: meal.into(),
        price: 500,
        currency: serde_json::from_value(json!("EUR")).unwrap(),
        debit: 0,
    })
}

fn report(log: &Log) -> Value {
    let range = Range::new(monday(), monday()).unwrap();
    serde_json::to_value(log.projection().aggregates().report("d-test", range)).unwrap()
}

#[test]
fn a_day_of_known_orders_gives_exact_volumes_and_rates() {
    let r = report(&scripted_day());
    assert_eq!(r["time_zone"], "UTC+01:00");
    assert_eq!(
        r["volumes"]["days"],
        json!([{"date": "2026-03-02", "placed": 5, "purchased": 2, "picked_up": 1,
            "cancelled": 1, "refused": 1, "timed_out": 1, "refunded": 0, "unclaimed": 1}])
    );
    let hours = r["volumes"]["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[10]["placed"], 2, "09:00Z and 09:10Z are 10:00 local");
    assert_eq!(hours[11]["placed"], 2);
    assert_eq!(hours[12]["placed"], 1);
    assert_eq!(
        r["rates"],
        json!({"fulfilment": 0.2, "cancellation": 0.2, "refusal": 0.2, "timeout": 0.2})
    );
    assert_eq!(r["failed_payments"], json!({"attempts": 1, "orders": 1}));
}

#[test]
fn processing_times_count_every_purchase_and_pickup() {
    let r = report(&scripted_day());
    let confirm = &r["processing"]["confirm_to_purchased_ms"];
    assert_eq!(confirm["count"], 2);
    assert_eq!(confirm["max"], 30_000);
    let p50 = confirm["p50"].as_u64().unwrap();
    assert!((10_000..10_000 + 10_000 / 16).contains(&p50), "{confirm}");
    assert_eq!(confirm["p99"], 30_000);
    let pickup = &r["processing"]["purchased_to_picked_up_secs"];
    assert_eq!(pickup["count"], 1);
    assert_eq!(pickup["max"], 1770);
}

#[test]
fn popularity_counts_bought_orders_per_meal_fridge_cell_and_hour_of_week() {
    let r = report(&scripted_day());
    let p = &r["popularity"];
    assert_eq!(
        p["meals"],
        json!([{"meal_id": "m-bowl", "kitchen_id": "k-north", "units": 3, "orders": 2}])
    );
    assert_eq!(
        p["fridges"],
        json!([{"fridge_id": "f-a", "units": 3, "orders": 2}])
    );
    assert_eq!(
        p["cells"],
        json!([{"cell": "dpsbx1", "units": 3, "orders": 2}])
    );
    assert_eq!(
        p["hour_of_week"],
        json!([{"weekday": 1, "hour": 10, "orders": 1}, {"weekday": 1, "hour": 12, "orders": 1}])
    );
}

#[test]
fn waste_per_kitchen_and_fridge_follows_units_from_production_to_loss() {
    let r = report(&scripted_day());
    assert_eq!(
        r["waste"]["fridges"],
        json!([
            {"fridge_id": "f-a", "kitchen_id": "k-north", "produced": 0, "placed": 10, "sold": 3,
             "picked_up": 2, "unclaimed": 1, "expired": 3, "shrinkage_units": 1,
             "shrinkage_cents": 1000, "waste_units": 4, "waste_cents": 4000},
            {"fridge_id": "f-b", "kitchen_id": "k-south", "produced": 1, "placed": 1, "sold": 0,
             "picked_up": 1, "unclaimed": 0, "expired": 0, "shrinkage_units": 0,
             "shrinkage_cents": 0, "waste_units": 0, "waste_cents": 0}
        ])
    );
    let kitchens = r["waste"]["kitchens"].as_array().unwrap();
    assert_eq!(kitchens.len(), 2);
    assert_eq!(kitchens[0]["kitchen_id"], "k-north");
    assert_eq!(kitchens[0]["waste_cents"], 4000);
}

#[test]
fn temperature_counts_one_excursion_and_the_quarantine_time() {
    let r = report(&scripted_day());
    assert_eq!(
        r["temperature"]["fridges"],
        json!([{"fridge_id": "f-a", "excursions": 1, "quarantines": 1, "quarantined_secs": 1800}])
    );
}

#[test]
fn a_kitchen_sees_only_its_own_meals_fridges_and_waste() {
    let p = scripted_day().projection();
    let range = Range::new(monday(), monday()).unwrap();
    let south = p
        .aggregates()
        .kitchen_report("d-test", &"k-south".parse().unwrap(), range);
    let v = serde_json::to_value(&south).unwrap();
    assert_eq!(v["popularity"]["meals"], json!([]));
    assert_eq!(v["waste"]["fridges"].as_array().unwrap().len(), 1);
    assert_eq!(v["waste"]["fridges"][0]["fridge_id"], "f-b");
    assert!(south.to_csv(Section::Volumes, "volumes").is_err());
    let csv = south
        .to_csv(Section::WasteFridges, "waste_fridges")
        .unwrap();
    assert_eq!(
        csv,
        "fridge_id,kitchen_id,produced,placed,sold,picked_up,unclaimed,expired,shrinkage_units,shrinkage_cents,waste_units,waste_cents\n\
         f-b,k-south,1,1,0,1,0,0,0,0,0,0\n"
    );
}

#[test]
fn the_csv_of_the_volumes_is_one_line_per_day() {
    let p = scripted_day().projection();
    let range = Range::new(monday(), monday().succ_opt().unwrap()).unwrap();
    let csv = p
        .aggregates()
        .report("d-test", range)
        .to_csv(Section::Volumes);
    assert_eq!(
        csv,
        "date,placed,purchased,picked_up,cancelled,refused,timed_out,refunded,unclaimed\n\
         2026-03-02,5,2,1,1,1,1,0,1\n\
         2026-03-03,0,0,0,0,0,0,0,0\n"
    );
}

#[test]
fn events_seen_twice_count_once_and_a_replay_gives_the_same_report() {
    let log = scripted_day();
    let mut p = log.projection();
    for e in &log.events {
        p.apply(e);
    }
    let range = Range::new(monday(), monday()).unwrap();
    let again = serde_json::to_value(p.aggregates().report("d-test", range)).unwrap();
    assert_eq!(again, report(&log));
}

#[test]
fn an_order_counts_in_its_district_local_day() {
    let mut log = Log::new();
    log.push(at(23, 30, 0), placed("late", "f-a", "m-bowl", 1));
    let p = log.projection();
    let tuesday = monday().succ_opt().unwrap();
    let a = p.aggregates();
    assert!(a.day_of(monday()).is_none());
    assert_eq!(a.day_of(tuesday).unwrap().hours[0].placed, 1);
}

#[test]
fn at_most_max_days_are_kept_and_the_oldest_go_first() {
    let mut log = Log::new();
    let first = at(12, 0, 0);
    for n in 0..=MAX_DAYS_KEPT as i64 {
        let t = first + chrono::Duration::days(n);
        log.push(t, placed(&format!("o{n}"), "f-a", "m-bowl", 1));
    }
    let p = log.projection();
    let a = p.aggregates();
    assert!(a.day_of(monday()).is_none(), "the oldest day was dropped");
    assert!(a.day_of(monday().succ_opt().unwrap()).is_some());
}

#[test]
fn ranges_are_inclusive_forwards_and_at_most_93_days() {
    let d = monday();
    assert!(Range::new(d, d).is_ok());
    assert!(matches!(
        Range::new(d.succ_opt().unwrap(), d),
        Err(RangeError::Backwards { .. })
    ));
    assert!(Range::new(d, d + chrono::Duration::days(92)).is_ok());
    assert_eq!(
        Range::new(d, d + chrono::Duration::days(93)),
        Err(RangeError::TooLong { days: 94 })
    );
}
