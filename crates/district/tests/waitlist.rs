//! Back-in-stock waitlists through the pure decider: who is offered a
//! hold, in which order, and that a unit is never held twice or held and
//! sold (the property test at the end).

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use district::{
    CatalogCommand, Command, Context, DistrictState, DomainError, OrderCommand, WaitlistCommand,
    WaitlistPolicy,
};
use proptest::prelude::*;
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, PlaceOrder};
use protocol::waitlist::{JoinWaitlist, WaitlistStatus};
use protocol::{Event, FridgeId, MealId, WaitlistId};

const FRIDGE: &str = "f-fox-theatre";
/// Another demo fridge, farther from the fox theatre's door.
const OTHER_FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-kale-caesar";
const HOLD_SECS: i64 = 300;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

struct District {
    state: DistrictState,
    ctx: Context,
    next_id: u128,
}

impl District {
    /// The demo district with no kale caesar anywhere.
    fn new() -> District {
        let mut d = District {
            state: DistrictState::default(),
            ctx: support::context(t0()),
            next_id: 0,
        };
        for cmd in district::demo::commands(district::demo::detroit().unwrap()) {
            d.run(cmd).expect("demo district");
        }
        let fridges: Vec<FridgeId> = d.state.catalog().fridges().keys().cloned().collect();
        for f in fridges {
            d.count(&f, 0);
        }
        d
    }

    fn run(&mut self, cmd: Command) -> Result<Vec<Event>, DomainError> {
        let events = district::decide(&self.state, cmd, &self.ctx)?;
        support::apply(&mut self.state, &events, self.ctx.now);
        Ok(events)
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    /// An admin count of kale caesars at `fridge`.
    fn count(&mut self, fridge: &str, units: u32) {
        let spec = StockSpec {
            counts: vec![StockCount {
                meal_id: MealId::from_static(MEAL),
                units,
            }],
        };
        self.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::parse(fridge).unwrap(),
            spec,
        }))
        .expect("a stock count");
    }

    fn join(&mut self, customer: &str, request: JoinWaitlist) -> Result<WaitlistId, DomainError> {
        let entry_id = WaitlistId::parse(format!("w{}", self.id())).unwrap();
        self.run(Command::Waitlist(WaitlistCommand::Join {
            entry_id: entry_id.clone(),
            customer: customer.into(),
            request,
            policy: policy(),
        }))?;
        Ok(entry_id)
    }

    fn wait_at(&mut self, customer: &str, fridge: &str) -> WaitlistId {
        self.join(customer, at_fridge(fridge)).expect("joined")
    }

    fn tick(&mut self) -> Vec<Event> {
        self.run(Command::Waitlist(WaitlistCommand::Tick {
            policy: policy(),
        }))
        .expect("a tick")
    }

    fn later(&mut self, secs: i64) {
        self.ctx.now += Duration::seconds(secs);
    }

    fn order(&mut self, customer: &str, fridge: &str, qty: u32) -> Result<OrderId, DomainError> {
        let order_id = OrderId::parse(format!("o{}", self.id())).unwrap();
        let request: PlaceOrder = serde_json::from_value(serde_json::json!({
            "fridge_id": fridge, "items": [{"meal_id": MEAL, "qty": qty}], "payment_method": "tok_visa"
        }))
        .unwrap();
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: customer.into(),
            channel: Channel::App,
            request,
            idempotency: None,
            referral: None,
        }))?;
        Ok(order_id)
    }

    fn status(&self, entry: &WaitlistId) -> WaitlistStatus {
        self.state
            .waitlist()
            .entry(entry)
            .expect("the entry")
            .status
    }

    fn held_at(&self, entry: &WaitlistId) -> Option<String> {
        let e = self.state.waitlist().entry(entry)?;
        e.hold.as_ref().map(|h| h.fridge_id.to_string())
    }

    fn available(&self, fridge: &str) -> u32 {
        self.state.stock_level(fridge, MEAL).available()
    }
}

fn policy() -> WaitlistPolicy {
    WaitlistPolicy {
        hold: Duration::seconds(HOLD_SECS),
        entry_ttl: Duration::hours(24),
    }
}

fn at_fridge(fridge: &str) -> JoinWaitlist {
    JoinWaitlist {
        meal_id: MealId::from_static(MEAL),
        fridge_id: Some(FridgeId::parse(fridge).unwrap()),
        near: None,
    }
}

fn offered(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Waitlist(protocol::waitlist::WaitlistEvent::HoldOffered {
                entry_id, ..
            }) => Some(entry_id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn three_wait_two_arrive_the_first_two_hold_and_a_lapsed_hold_passes_to_the_third() {
    let mut d = District::new();
    let ann = d.wait_at("ann", FRIDGE);
    let bob = d.wait_at("bob", FRIDGE);
    let cat = d.wait_at("cat", FRIDGE);
    assert!(d.tick().is_empty(), "nothing arrived");

    d.count(FRIDGE, 2);
    assert_eq!(offered(&d.tick()), [ann.to_string(), bob.to_string()]);
    let told: Vec<&str> = d
        .state
        .notifications()
        .of_customer_after("ann", 0, d.ctx.now)
        .map(|n| n.kind.name())
        .collect();
    assert_eq!(told, ["waitlist_hold"], "ann is told her unit is held");
    assert_eq!(d.available(FRIDGE), 0, "both units held");
    assert_eq!(d.status(&cat), WaitlistStatus::Waiting);
    assert!(
        matches!(
            d.order("dan", FRIDGE, 1),
            Err(DomainError::InsufficientStock { .. })
        ),
        "a held unit is not for sale to anyone else"
    );

    let order = d.order("ann", FRIDGE, 1).expect("ann orders with her hold");
    assert_eq!(d.status(&ann), WaitlistStatus::Ordered);
    let level = d.state.stock_level(FRIDGE, MEAL);
    assert_eq!((level.reserved, level.held), (1, 1), "{level:?}");
    assert!(d.state.orders().get(&order).is_some());

    d.later(HOLD_SECS - 1);
    assert!(d.tick().is_empty(), "bob's hold still runs");
    d.later(1);
    let events = d.tick();
    assert_eq!(d.status(&bob), WaitlistStatus::Lapsed);
    assert_eq!(offered(&events), [cat.to_string()]);
    assert_eq!(d.held_at(&cat).as_deref(), Some(FRIDGE));
    assert_eq!(d.available(FRIDGE), 0);
}

#[test]
fn leaving_gives_a_held_unit_back_and_an_entry_expires_after_its_time() {
    let mut d = District::new();
    let ann = d.wait_at("ann", FRIDGE);
    let bob = d.wait_at("bob", OTHER_FRIDGE);
    d.count(FRIDGE, 1);
    d.tick();
    assert_eq!(d.available(FRIDGE), 0);
    d.run(Command::Waitlist(WaitlistCommand::Leave {
        entry_id: ann.clone(),
        customer: Some("ann".into()),
    }))
    .unwrap();
    assert_eq!(d.status(&ann), WaitlistStatus::Left);
    assert_eq!(d.available(FRIDGE), 1, "back on sale");
    let again = d.run(Command::Waitlist(WaitlistCommand::Leave {
        entry_id: ann,
        customer: Some("ann".into()),
    }));
    assert!(matches!(
        again,
        Err(DomainError::WaitlistEntryClosed { .. })
    ));

    d.later(24 * 3600);
    d.tick();
    assert_eq!(d.status(&bob), WaitlistStatus::Expired);
}

#[test]
fn an_area_entry_is_offered_the_nearest_fridge_that_has_the_meal() {
    let mut d = District::new();
    let fox = d.state.catalog().fridge(FRIDGE).unwrap().position;
    let request = JoinWaitlist {
        meal_id: MealId::from_static(MEAL),
        fridge_id: None,
        near: Some(protocol::waitlist::Near {
            lat: fox.lat,
            lon: fox.lon,
            radius_m: 5_000,
        }),
    };
    let ann = d.join("ann", request).unwrap();
    let entry = d.state.waitlist().entry(&ann).unwrap().clone();
    assert_eq!(
        entry.fridges[0], FRIDGE,
        "nearest first: {:?}",
        entry.fridges
    );
    assert!(entry.fridges.len() > 1);
    let far = entry.fridges.last().unwrap().to_string();
    d.count(&far, 1);
    d.tick();
    assert_eq!(d.held_at(&ann), Some(far));
}

#[test]
fn joins_that_make_no_sense_are_refused_and_change_nothing() {
    let mut d = District::new();
    d.count(OTHER_FRIDGE, 2);
    let before = d.state.clone();
    let available = d.join("ann", at_fridge(OTHER_FRIDGE));
    assert!(
        matches!(&available, Err(DomainError::MealAvailable { available, .. }) if available[0].1 == 2),
        "{available:?}"
    );
    let both = JoinWaitlist {
        near: Some(protocol::waitlist::Near {
            lat: 42.33,
            lon: -83.05,
            radius_m: 100,
        }),
        ..at_fridge(FRIDGE)
    };
    assert!(matches!(d.join("ann", both), Err(DomainError::Invalid(_))));
    let unknown = JoinWaitlist {
        meal_id: MealId::from_static("m-nope"),
        ..at_fridge(FRIDGE)
    };
    assert!(matches!(
        d.join("ann", unknown),
        Err(DomainError::UnknownMeal(_))
    ));
    assert_eq!(d.state, before);
    d.wait_at("ann", FRIDGE);
    assert!(matches!(
        d.join("ann", at_fridge(FRIDGE)),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn a_restart_rebuilds_the_lines_and_holds() {
    let mut d = District::new();
    let mut log = vec![];
    let mut run = |d: &mut District, cmd: Command| {
        let events = district::decide(&d.state, cmd, &d.ctx).unwrap();
        log.extend(support::record(&mut d.state, &events, d.ctx.now));
    };
    for c in ["ann", "bob", "cat"] {
        let entry_id = WaitlistId::parse(format!("w-{c}")).unwrap();
        run(
            &mut d,
            Command::Waitlist(WaitlistCommand::Join {
                entry_id,
                customer: c.into(),
                request: at_fridge(FRIDGE),
                policy: policy(),
            }),
        );
    }
    let restarted = support::restart(&log);
    assert_eq!(restarted.waitlist(), d.state.waitlist());
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// A count that never lowers the shelf (refills): units added.
    Refill {
        fridge: usize,
        add: u32,
    },
    Join {
        customer: usize,
        fridge: usize,
    },
    Order {
        customer: usize,
        fridge: usize,
        qty: u32,
    },
    Cancel {
        order: usize,
    },
    Leave {
        entry: usize,
    },
    Later {
        secs: i64,
    },
    Tick,
}

const FRIDGES: [&str; 2] = [FRIDGE, OTHER_FRIDGE];
const CUSTOMERS: [&str; 4] = ["ann", "bob", "cat", "dan"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 1..3u32).prop_map(|(fridge, add)| Op::Refill { fridge, add }),
        (0..4usize, 0..2usize).prop_map(|(customer, fridge)| Op::Join { customer, fridge }),
        (0..4usize, 0..2usize, 1..3u32).prop_map(|(customer, fridge, qty)| Op::Order {
            customer,
            fridge,
            qty
        }),
        (0..8usize).prop_map(|order| Op::Cancel { order }),
        (0..8usize).prop_map(|entry| Op::Leave { entry }),
        (1..400i64).prop_map(|secs| Op::Later { secs }),
        Just(Op::Tick),
        Just(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Holds plus orders never exceed the units on the shelf, and every
    /// held unit belongs to exactly one open hold.
    #[test]
    fn holds_and_orders_never_exceed_the_shelf(ops in prop::collection::vec(op(), 1..60)) {
        let mut d = District::new();
        let mut orders: Vec<(String, OrderId)> = vec![];
        let mut entries: Vec<(String, WaitlistId)> = vec![];
        for op in ops {
            match op {
                Op::Refill { fridge, add } => {
                    let on_hand = d.state.stock_level(FRIDGES[fridge], MEAL).on_hand;
                    d.count(FRIDGES[fridge], on_hand + add);
                }
                Op::Join { customer, fridge } => {
                    if let Ok(id) = d.join(CUSTOMERS[customer], at_fridge(FRIDGES[fridge])) {
                        entries.push((CUSTOMERS[customer].into(), id));
                    }
                }
                Op::Order { customer, fridge, qty } => {
                    if let Ok(id) = d.order(CUSTOMERS[customer], FRIDGES[fridge], qty) {
                        orders.push((CUSTOMERS[customer].into(), id));
                    }
                }
                Op::Cancel { order } => {
                    if let Some((customer, id)) = orders.get(order).cloned() {
                        let _ = d.run(Command::Order(OrderCommand::Cancel {
                            order_id: id,
                            customer: Some(customer),
                        }));
                    }
                }
                Op::Leave { entry } => {
                    if let Some((customer, id)) = entries.get(entry).cloned() {
                        let _ = d.run(Command::Waitlist(WaitlistCommand::Leave {
                            entry_id: id,
                            customer: Some(customer),
                        }));
                    }
                }
                Op::Later { secs } => d.later(secs),
                Op::Tick => { d.tick(); }
            }
            for fridge in FRIDGES {
                let level = d.state.stock_level(fridge, MEAL);
                prop_assert!(level.reserved + level.held <= level.on_hand, "{fridge}: {level:?}");
                let open_holds = d
                    .state
                    .waitlist()
                    .holding()
                    .filter(|e| e.hold.as_ref().is_some_and(|h| h.fridge_id == fridge))
                    .count();
                prop_assert_eq!(level.held as usize, open_holds, "{}", fridge);
                let reserved: u32 = d
                    .state
                    .orders()
                    .iter()
                    .filter(|o| o.fridge_id == fridge && o.holds_stock())
                    .flat_map(|o| o.lines.iter())
                    .map(|l| l.qty)
                    .sum();
                prop_assert_eq!(level.reserved, reserved, "{}", fridge);
            }
        }
    }
}
