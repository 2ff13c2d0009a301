//! Stock and money invariants of the pure order decider, for any sequence of
//! commands: places, cancels, timers, payment results (duplicated, late, out
//! of order), pickups and stock corrections.

use protocol::orders::OrderId;
use protocol::{DistrictId, FridgeId, MealId};
use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use district::outbox::OutboxKey;
use district::{CatalogCommand, Command, Context, DistrictState, OrderCommand, OrderTimer};
use proptest::prelude::*;
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderItem, OrderStatus, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::Event;

mod support;

const MEALS: [&str; 2] = ["m-a", "m-b"];
const FRIDGE: &str = "f-1";

#[derive(Debug, Clone)]
enum Step {
    Place {
        customer: u8,
        meal: usize,
        qty: u32,
        pos: bool,
    },
    Cancel {
        order: usize,
    },
    Timer {
        order: usize,
        timer: u8,
    },
    Result {
        order: usize,
        refund: bool,
        approved: bool,
    },
    Pickup {
        order: usize,
        right_code: bool,
    },
    SetStock {
        meal: usize,
        units: u32,
    },
    Advance {
        secs: i64,
    },
    /// Jump past the retention and archive what may be (issue 15).
    Archive,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0usize..2, 1u32..4, any::<bool>()).prop_map(|(customer, meal, qty, pos)| Step::Place { customer, meal, qty, pos }),
        1 => (0usize..16).prop_map(|order| Step::Cancel { order }),
        3 => (0usize..16, 0u8..3).prop_map(|(order, timer)| Step::Timer { order, timer }),
        3 => (0usize..16, any::<bool>(), any::<bool>()).prop_map(|(order, refund, approved)| Step::Result { order, refund, approved }),
        1 => (0usize..16, any::<bool>()).prop_map(|(order, right_code)| Step::Pickup { order, right_code }),
        1 => (0usize..2, 0u32..8).prop_map(|(meal, units)| Step::SetStock { meal, units }),
        2 => (0i64..120).prop_map(|secs| Step::Advance { secs }),
        1 => Just(Step::Archive),
    ]
}

struct Harness {
    state: DistrictState,
    ctx: Context,
    orders: Vec<OrderId>,
    charges_requested: BTreeMap<OrderId, u32>,
}

impl Harness {
    fn new() -> Self {
        let ctx = Context {
            district_id: DistrictId::from_static("d"),
            area: protocol::geo::DistrictArea::new(vec!["dpsby".into()]).unwrap(),
            now: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
            policy: district::OrderPolicy {
                payment_timeout: Duration::seconds(30),
                pickup_window: Duration::seconds(300),
                ..Default::default()
            },
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        };
        let mut h = Harness {
            state: DistrictState::default(),
            ctx,
            orders: vec![],
            charges_requested: BTreeMap::new(),
        };
        for meal in MEALS {
            let spec = support::meal_spec(500);
            h.run(Command::Catalog(CatalogCommand::DefineMeal {
                meal_id: MealId::from_static(meal),
                spec,
            }));
        }
        let fridge = district::demo::plain_fridge("F");
        let registered = h.run(Command::Catalog(CatalogCommand::RegisterFridge {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: fridge,
        }));
        // `run` drops refused commands; the setup must not be refused, or
        // every later step would be vacuous.
        assert_eq!(registered.len(), 1, "fridge registration refused");
        assert_eq!(
            h.state.catalog().meals().len(),
            MEALS.len(),
            "meal definitions refused"
        );
        h.set_stock(0, 5);
        h.set_stock(1, 5);
        h
    }

    fn set_stock(&mut self, meal: usize, units: u32) {
        let spec = StockSpec {
            counts: vec![StockCount {
                meal_id: MealId::from_static(MEALS[meal]),
                units,
            }],
        };
        self.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec,
        }));
    }

    fn run(&mut self, cmd: Command) -> Vec<Event> {
        let Ok(events) = district::decide(&self.state, cmd, &self.ctx) else {
            return vec![];
        };
        for event in &events {
            if let Event::PurchaseRequested { order_id, .. } = event {
                *self.charges_requested.entry(order_id.clone()).or_default() += 1;
            }
        }
        support::apply(&mut self.state, &events, self.ctx.now);
        events
    }

    fn order(&self, i: usize) -> Option<OrderId> {
        (!self.orders.is_empty()).then(|| self.orders[i % self.orders.len()].clone())
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Place {
                customer,
                meal,
                qty,
                pos,
            } => {
                let order_id = OrderId::parse(format!("o-{}", self.orders.len())).unwrap();
                let request = PlaceOrder {
                    fridge_id: FridgeId::from_static(FRIDGE),
                    items: vec![OrderItem {
                        meal_id: MealId::from_static(MEALS[meal]),
                        qty,
                    }],
                    coupon: None,
                    share_code: None,
                    points: None,
                    payment_method: "tok".into(),
                    pickup_date: None,
                };
                let channel = if pos { Channel::Pos } else { Channel::App };
                let cmd = OrderCommand::Place {
                    order_id: order_id.clone(),
                    customer: format!("c{customer}"),
                    channel,
                    request,
                    idempotency: None,
                    referral: None,
                };
                if !self.run(Command::Order(cmd)).is_empty() {
                    self.orders.push(order_id);
                }
            }
            Step::Cancel { order } => {
                if let Some(order_id) = self.order(order) {
                    self.run(Command::Order(OrderCommand::Cancel {
                        order_id,
                        customer: None,
                    }));
                }
            }
            Step::Timer { order, timer } => {
                if let Some(order_id) = self.order(order) {
                    let timer = [
                        OrderTimer::GraceWindowEnd,
                        OrderTimer::PaymentTimeout,
                        OrderTimer::PickupDeadline,
                    ][timer as usize];
                    self.run(Command::Order(OrderCommand::FireTimer { order_id, timer }));
                }
            }
            Step::Result {
                order,
                refund,
                approved,
            } => {
                if let Some(order_id) = self.order(order) {
                    let outcome = if approved {
                        PaymentOutcome::Approved {
                            reference: "r".into(),
                        }
                    } else {
                        PaymentOutcome::Declined {
                            reason: "no".into(),
                        }
                    };
                    let kind = if refund {
                        PaymentKind::Refund
                    } else {
                        PaymentKind::Charge
                    };
                    let result = PaymentResult {
                        kind,
                        order_id,
                        district_id: DistrictId::from_static("d"),
                        outcome,
                    };
                    self.run(Command::RecordPayment {
                        result,
                        pickup_code: "123456".into(),
                    });
                }
            }
            Step::Pickup { order, right_code } => {
                if let Some(order_id) = self.order(order) {
                    let pickup_code = if right_code { "123456" } else { "000000" }.to_string();
                    self.run(Command::Order(OrderCommand::Pickup {
                        order_id,
                        pickup_code,
                    }));
                }
            }
            Step::SetStock { meal, units } => self.set_stock(meal, units),
            Step::Advance { secs } => self.ctx.now += Duration::seconds(secs),
            Step::Archive => {
                self.ctx.now += self.ctx.policy.retention + Duration::seconds(1);
                let events = self.run(Command::Order(OrderCommand::Archive));
                // Only final orders owing nothing go; their reservations
                // were released before (the stock check below holds).
                for event in &events {
                    let Event::OrdersArchived { order_ids } = event else {
                        panic!("archiving decided {event:?}");
                    };
                    for id in order_ids {
                        assert!(self.state.orders().get(id).is_none(), "{id} archived");
                    }
                }
            }
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for meal in MEALS {
            let held: u32 = self
                .state
                .orders()
                .iter()
                .filter(|o| o.status.holds_stock())
                .flat_map(|o| o.lines.iter())
                .filter(|l| l.meal_id == meal)
                .map(|l| l.qty)
                .sum();
            let level = self.state.stock_level(FRIDGE, meal);
            prop_assert_eq!(
                level.reserved,
                held,
                "reserved units = units held by open orders ({})",
                meal
            );
        }
        for (order, n) in &self.charges_requested {
            prop_assert!(*n <= 1, "order {} asked for money {} times", order, n);
        }
        for order in self.state.orders().iter() {
            // Money is only ever asked for by orders that went past the grace window.
            if order.status == OrderStatus::Purchased || order.status == OrderStatus::PickedUp {
                prop_assert!(self.charges_requested.contains_key(&order.order_id));
                prop_assert!(order.pickup_code.is_some());
            }
            if order.status == OrderStatus::Cancelled && !order.refund_pending {
                let refund_row = OutboxKey::Order {
                    order_id: order.order_id.clone(),
                    kind: PaymentKind::Refund,
                };
                prop_assert!(!self.state.outbox().contains(&refund_row));
            }
        }
        // The outbox holds requests only for orders still waiting on a result.
        for (id, _) in self.state.outbox().iter() {
            let OutboxKey::Order { order_id, .. } = id else {
                panic!("only orders here, not {id:?}");
            };
            let order = self
                .state
                .orders()
                .get(order_id)
                .expect("outbox row for a known order");
            prop_assert!(
                order.status == OrderStatus::Paying || order.refund_pending,
                "{:?} in outbox while {:?}",
                id,
                order.status
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        // PROPTEST_CASES soaks it longer.
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn stock_and_money_invariants_hold_for_any_command_sequence(steps in proptest::collection::vec(step(), 1..80)) {
        let mut h = Harness::new();
        for s in steps {
            // Never more reserved than on hand when a new order is placed.
            let before = MEALS.map(|m| h.state.stock_level(FRIDGE, m));
            let placed_before = h.orders.len();
            h.apply(s);
            if h.orders.len() > placed_before {
                let order = h.state.orders().get(h.orders.last().unwrap()).unwrap();
                let line = &order.lines[0];
                let i = MEALS.iter().position(|m| *m == line.meal_id).unwrap();
                prop_assert!(line.qty <= before[i].available(), "sold {} with {} available", line.qty, before[i].available());
            }
            h.check()?;
        }
    }
}
