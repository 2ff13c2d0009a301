//! The district's reaction to fridge telemetry, through the pure decider:
//! the ACL's facts become events, and for any delivery of a fridge's reports
//! (duplicated, reordered, split into batches any way) the stock comes out
//! as if each report had arrived once, in order.

use protocol::orders::OrderId;
use protocol::{FridgeId, MealId};
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use district::{Command, Context, DistrictState, FridgeCommand, OrderCommand};
use fridge_acl::{Batch, DoorActor, DoorSession, Report, ReportBody, Scan, SecretUsed};
use proptest::prelude::*;
use protocol::catalog::FridgeStatus;
use protocol::orders::{Channel, PlaceOrder};
use protocol::Event;

/// A frostline-json fridge of the demo district, and three of its meals
/// (all from the k-midtown-greens kitchen).
mod support;

const FRIDGE: &str = "f-fox-theatre";
const MEALS: [&str; 3] = ["m-kale-caesar", "m-quinoa-bowl", "m-greek-salad"];
const KITCHEN: &str = "k-midtown-greens";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

struct District {
    state: DistrictState,
    ctx: Context,
}

impl District {
    /// The demo district (its fridges, meals and stock), as a node seeds it.
    fn new() -> District {
        let mut d = District {
            state: DistrictState::default(),
            ctx: support::context(t0()),
        };
        for cmd in district::demo::commands(district::demo::detroit().unwrap()) {
            d.run(cmd).expect("demo district");
        }
        d
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Event>, district::DomainError> {
        let events = district::decide(&self.state, cmd, &self.ctx)?;
        support::apply(&mut self.state, &events, self.ctx.now);
        Ok(events)
    }

    fn upload(&mut self, reports: Vec<Report>) -> Vec<Event> {
        let batch = Batch {
            fridge_id: FridgeId::from_static(FRIDGE),
            sent_at: self.ctx.now,
            reports,
        };
        self.run(Command::Fridge(FridgeCommand::Telemetry {
            fridge_id: FridgeId::from_static(FRIDGE),
            batch,
            secret_used: SecretUsed::Current,
        }))
        .expect("telemetry is never refused by the decider")
    }

    /// A customer order for `qty` of `meal` at FRIDGE; returns its id.
    fn place(&mut self, customer: &str, meal: &str, qty: u32) -> OrderId {
        let order_id = OrderId::from(ulid::Ulid::from_parts(
            self.ctx.now.timestamp_millis() as u64,
            u128::from(self.state.last_seq()),
        ));
        let request: PlaceOrder = serde_json::from_value(serde_json::json!({
            "fridge_id": FRIDGE, "items": [{"meal_id": meal, "qty": qty}], "payment_method": "tok_visa"
        }))
        .expect("order request");
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: customer.into(),
            channel: Channel::App,
            request,
            idempotency: None,
            referral: None,
        }))
        .expect("order placed");
        order_id
    }

    fn on_hand(&self) -> BTreeMap<String, u32> {
        MEALS
            .iter()
            .map(|m| (m.to_string(), self.state.stock_level(FRIDGE, m).on_hand))
            .collect()
    }

    fn status(&self) -> FridgeStatus {
        self.state.catalog().fridge(FRIDGE).unwrap().status
    }
}

fn scan(seq: u64, counts: &[(&'static str, u32)]) -> Report {
    Report {
        seq,
        at: t0() - Duration::seconds(600) + Duration::seconds(seq as i64),
        body: ReportBody::Scan(Scan {
            counts: counts
                .iter()
                .map(|(m, u)| (MealId::from_static(m), *u))
                .collect(),
            expired: BTreeMap::new(),
        }),
    }
}

fn door(
    seq: u64,
    who: DoorActor,
    taken: &[(&'static str, u32)],
    added: &[(&'static str, u32)],
) -> Report {
    let map = |l: &[(&'static str, u32)]| {
        l.iter()
            .map(|(m, u)| (MealId::from_static(m), *u))
            .collect()
    };
    Report {
        seq,
        at: t0() - Duration::seconds(600) + Duration::seconds(seq as i64),
        body: ReportBody::Door(DoorSession {
            who,
            taken: map(taken),
            added: map(added),
        }),
    }
}

fn temp(seq: u64, at: DateTime<Utc>, milli_c: i32) -> Report {
    Report {
        seq,
        at,
        body: ReportBody::Temperature { milli_c },
    }
}

#[test]
fn a_scan_sets_the_counts_and_the_cursor_is_kept_with_them() {
    let mut d = District::new();
    let events = d.upload(vec![scan(1, &[(MEALS[0], 4), (MEALS[1], 2)])]);
    assert_eq!(d.on_hand()[MEALS[0]], 4);
    assert_eq!(d.on_hand()[MEALS[1]], 2);
    assert!(matches!(
        events.last(),
        Some(Event::FridgeTelemetryReceived { .. })
    ));
    // The same batch again changes nothing: its report is a duplicate.
    let again = d.upload(vec![scan(1, &[(MEALS[0], 9)])]);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(d.on_hand()[MEALS[0]], 4);
}

#[test]
fn too_warm_for_too_long_quarantines_the_fridge_until_an_operator_lifts_it() {
    let mut d = District::new();
    d.upload(vec![scan(1, &[(MEALS[0], 4)])]);
    let order = d.place("alice", MEALS[0], 1);
    d.upload(vec![temp(2, t0(), 8_000)]);
    assert_eq!(d.status(), FridgeStatus::Online, "warm, but not for long");
    d.ctx.now = t0() + Duration::minutes(16);
    let events = d.upload(vec![temp(3, d.ctx.now, 8_500)]);
    assert!(
        events.iter().any(|e| matches!(e,
            Event::FridgeQuarantined { kitchens, .. } if kitchens == &vec![KITCHEN.to_string()])),
        "{events:?}"
    );
    assert_eq!(d.status(), FridgeStatus::Quarantined);
    assert_eq!(d.state.stock_level(FRIDGE, MEALS[0]).available(), 0);
    // Alice is told before she walks there.
    assert_eq!(
        d.state.orders().get(&order).unwrap().shortage,
        vec![MEALS[0].to_string()]
    );
    // Cooling down again does not make the meals safe.
    d.upload(vec![temp(4, d.ctx.now, 3_000)]);
    assert_eq!(d.status(), FridgeStatus::Quarantined);
    d.run(Command::Fridge(FridgeCommand::LiftQuarantine {
        fridge_id: FridgeId::from_static(FRIDGE),
    }))
    .unwrap();
    assert_eq!(d.status(), FridgeStatus::Online);
    // The four units sat in the warm fridge: withheld until a fresh scan.
    assert_eq!(d.state.stock_level(FRIDGE, MEALS[0]).available(), 0);
    d.upload(vec![scan(5, &[(MEALS[0], 4)])]);
    // Four on the shelf, one still promised to Alice.
    assert_eq!(d.state.stock_level(FRIDGE, MEALS[0]).available(), 3);
}

#[test]
fn a_lift_is_refused_while_the_fridge_is_still_warm() {
    let mut d = District::new();
    d.upload(vec![scan(1, &[(MEALS[0], 4)])]);
    d.upload(vec![temp(2, t0(), 8_000)]);
    d.ctx.now = t0() + Duration::minutes(16);
    d.upload(vec![temp(3, d.ctx.now, 8_000)]);
    assert_eq!(d.status(), FridgeStatus::Quarantined);
    let lift = || {
        Command::Fridge(FridgeCommand::LiftQuarantine {
            fridge_id: FridgeId::from_static(FRIDGE),
        })
    };
    assert!(matches!(
        d.run(lift()),
        Err(district::DomainError::FridgeOutOfRange(_))
    ));
    d.ctx.now = t0() + Duration::minutes(17);
    d.upload(vec![temp(4, d.ctx.now, 4_000)]);
    d.run(lift()).unwrap();
    assert_eq!(d.status(), FridgeStatus::Online);
}

#[test]
fn a_silent_fridge_goes_offline_and_comes_back_when_it_reports() {
    let mut d = District::new();
    d.upload(vec![scan(1, &[(MEALS[0], 1)])]);
    assert!(d
        .run(Command::Fridge(FridgeCommand::CheckSilence))
        .unwrap()
        .is_empty());
    d.ctx.now = t0() + Duration::minutes(11);
    d.run(Command::Fridge(FridgeCommand::CheckSilence)).unwrap();
    assert_eq!(d.status(), FridgeStatus::Offline);
    d.upload(vec![]);
    assert_eq!(d.status(), FridgeStatus::Online);
}

#[derive(Debug, Clone)]
enum Kind {
    Scan([u32; 3]),
    Refill(usize, u32),
    Shrink(usize, u32),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => prop::array::uniform3(0u32..6).prop_map(Kind::Scan),
        1 => (0usize..3, 1u32..4).prop_map(|(m, u)| Kind::Refill(m, u)),
        1 => (0usize..3, 1u32..3).prop_map(|(m, u)| Kind::Shrink(m, u)),
    ]
}

fn report(seq: u64, k: &Kind) -> Report {
    match k {
        Kind::Scan(c) => scan(seq, &[(MEALS[0], c[0]), (MEALS[1], c[1]), (MEALS[2], c[2])]),
        Kind::Refill(m, u) => door(seq, DoorActor::Staff("B-1".into()), &[], &[(MEALS[*m], *u)]),
        Kind::Shrink(m, u) => door(seq, DoorActor::Unknown, &[(MEALS[*m], *u)], &[]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        // PROPTEST_CASES soaks it longer.
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
    ))]

    #[test]
    fn any_delivery_of_the_reports_gives_the_stock_of_one_in_order_delivery(
        kinds in prop::collection::vec(kind(), 1..12),
        // Each delivery picks a report (with repeats) and a batch break.
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..40),
    ) {
        let reports: Vec<Report> = kinds.iter().enumerate().map(|(i, k)| report(i as u64 + 1, k)).collect();

        let mut in_order = District::new();
        in_order.upload(reports.clone());

        let mut messy = District::new();
        let mut batch = Vec::new();
        for (pick, cut) in &picks {
            batch.push(reports[pick.index(reports.len())].clone());
            if *cut {
                messy.upload(std::mem::take(&mut batch));
            }
        }
        messy.upload(batch);
        // Whatever was lost on the way is resent at the end, as firmware does
        // for the `missing` ranges the node reports.
        messy.upload(reports.clone());

        prop_assert_eq!(messy.on_hand(), in_order.on_hand());
    }
}

#[test]
fn units_past_their_best_before_leave_the_available_count_oldest_first() {
    let mut d = District::new();
    let meal = MEALS[0];
    let shelf_life = d.state.catalog().shelf_life(meal);
    d.upload(vec![scan(1, &[(meal, 4)])]);
    let scanned_at = d.ctx.now;

    // Six hours later two more arrive (a staff refill, then the count).
    d.ctx.now = scanned_at + Duration::hours(6);
    d.upload(vec![scan(2, &[(meal, 6)])]);
    assert!(d.state.stock().expiry_due(d.ctx.now).is_empty());

    // The first four pass their best-before; the two newer ones do not.
    d.ctx.now = scanned_at + shelf_life;
    let ours = |d: &District| {
        d.state
            .stock()
            .expiry_due(d.ctx.now)
            .into_iter()
            .filter(|(f, m)| f == FRIDGE && m == meal)
            .count()
    };
    assert_eq!(ours(&d), 1);
    let (fridge_id, meal_id) = (FridgeId::from_static(FRIDGE), MealId::from_static(meal));
    d.run(Command::Fridge(FridgeCommand::ExpireUnits {
        fridge_id,
        meal_id,
    }))
    .unwrap();
    assert_eq!(d.state.stock_level(FRIDGE, meal).available(), 2);
    // Asking again changes nothing.
    assert_eq!(ours(&d), 0);

    // Staff take the four old ones out: nothing is withheld any more.
    d.upload(vec![scan(3, &[(meal, 2)])]);
    let level = d.state.stock_level(FRIDGE, meal);
    assert_eq!((level.on_hand, level.expired, level.available()), (2, 0, 2));
}
