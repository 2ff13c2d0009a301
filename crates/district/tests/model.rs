//! The district core against a plain reference model of stock, orders and
//! money, for any sequence of operations: counts and restocks, app and POS
//! orders, cancels inside and after the grace window, timers (due, early,
//! twice), a payments service that decides each request once and whose
//! results arrive late, twice or out of order, pickups with right and wrong
//! codes, discontinued and redefined meals, and restarts that rebuild the
//! state from the recorded events alone.
//!
//! The model ([`Model`]) is a few `BTreeMap`s advanced by hand from the
//! rules in DESIGN.md §4; after every operation the district's answer to
//! the command and everything its read API shows (stock levels, orders,
//! outbox, due timers, catalog, idempotency keys) must equal the model's,
//! and the §6 invariants must hold. At the end the payments service
//! answers everything it was asked, and every charged order must be kept
//! (purchased, picked up, unclaimed) or refunded exactly once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use district::outbox::OutboxKey;
use district::{
    CatalogCommand, Command, Context, DistrictState, DomainError, OrderCommand, OrderTimer,
};
use proptest::prelude::*;
use protocol::catalog::{StockCount, StockLevel, StockSpec};
use protocol::orders::{Channel, OrderId, OrderItem, OrderStatus, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, MealId};

mod support;

const MEALS: [&str; 3] = ["m-a", "m-b", "m-c"];
/// Each meal's price in minor units, so totals tell meals apart.
const PRICES_MINOR: [i64; 3] = [500, 750, 1200];
const FRIDGES: [&str; 2] = ["f-1", "f-2"];
/// Units of every meal in every fridge when a sequence starts.
const INITIAL_UNITS: u32 = 6;
const CUSTOMERS: usize = 4;
/// Idempotency keys per customer the sequences draw from.
const KEYS: u8 = 3;
const GRACE_APP_SECS: i64 = 20;
const PAYMENT_TIMEOUT_SECS: i64 = 30;
const PICKUP_WINDOW_SECS: i64 = 300;
/// The longest single step of time. 200 of them stay under the meals'
/// 24 h shelf life, so no unit expires and the model needs no lots.
const MAX_ADVANCE_SECS: i64 = 400;
/// The hoarding rules of `HoldPolicy::default()`, restated.
const MAX_HELD_ORDERS: usize = 3;
const FREE_CANCELS_PER_MEAL: usize = 3;
const FREE_CANCEL_WINDOW_SECS: i64 = 600;
const HELD_LOOKBACK_MARGIN_SECS: i64 = 3600;
/// `Model::pick` misses one draw in this many, and picks from every order
/// (not the ones the operation aims at) in three.
const PICK_SPREAD: usize = 16;
/// A code no delivery ever hands out (delivered codes count up from 1).
const WRONG_CODE: &str = "999999";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Owner,
    Admin,
    Stranger,
}

/// One operation. `order` picks among the orders placed so far, or one
/// that does not exist (`order % (placed + 1) == placed`).
#[derive(Debug, Clone)]
enum Op {
    /// A manual count of one or two meals (a repeated meal is invalid).
    Count {
        fridge: usize,
        counts: Vec<(usize, u32)>,
    },
    /// A kitchen restock: the count rises by `units`.
    Restock {
        fridge: usize,
        meal: usize,
        units: u32,
    },
    Place {
        customer: usize,
        fridge: usize,
        items: Vec<(usize, u32)>,
        pos: bool,
        key: Option<u8>,
    },
    Cancel {
        order: usize,
        who: Who,
    },
    /// The node's timer task: fire every timer due now.
    Tick,
    /// A timer fired by hand: maybe early, twice, or not the order's.
    FireTimer {
        order: usize,
        timer: OrderTimer,
    },
    Advance {
        secs: i64,
    },
    /// The payments service decides one of the requests it was sent and
    /// has not answered (it answers each once).
    Settle {
        request: usize,
        approve: bool,
    },
    /// One of its decisions reaches the district (again, late, out of order).
    Deliver {
        request: usize,
    },
    /// A result for a payment nobody asked for (a declined charge or any
    /// refund result).
    Spurious {
        order: usize,
        kind: PaymentKind,
        approve: bool,
    },
    Pickup {
        order: usize,
        right_code: bool,
    },
    Discontinue {
        meal: usize,
    },
    Redefine {
        meal: usize,
    },
    Restart,
}

fn kind() -> impl Strategy<Value = PaymentKind> {
    prop_oneof![Just(PaymentKind::Charge), Just(PaymentKind::Refund)]
}

fn op() -> impl Strategy<Value = Op> {
    let meal = 0..MEALS.len();
    let fridge = 0..FRIDGES.len();
    // Mostly what a customer buys; now and then more than a line may hold.
    let qty = prop_oneof![12 => 1u32..=3, 2 => 4u32..=10, 1 => Just(11u32)];
    let items = prop_oneof![
        4 => (meal.clone(), qty.clone()).prop_map(|line| vec![line]),
        1 => proptest::collection::vec((meal.clone(), qty), 2),
    ];
    let who = prop_oneof![
        6 => Just(Who::Owner),
        2 => Just(Who::Admin),
        1 => Just(Who::Stranger)
    ];
    let timer = prop_oneof![
        Just(OrderTimer::GraceWindowEnd),
        Just(OrderTimer::PaymentTimeout),
        Just(OrderTimer::PickupDeadline)
    ];
    // One busy customer, so the hoarding limits are reached.
    let customer = prop_oneof![3 => Just(0), 2 => 1..CUSTOMERS];
    let secs = prop_oneof![3 => 0..=10i64, 2 => 10..=60i64, 1 => 60..=MAX_ADVANCE_SECS];
    prop_oneof![
        1 => (fridge.clone(), proptest::collection::vec((meal.clone(), 0u32..12), 1..=2))
            .prop_map(|(fridge, counts)| Op::Count { fridge, counts }),
        2 => (fridge.clone(), meal.clone(), 1u32..6)
            .prop_map(|(fridge, meal, units)| Op::Restock { fridge, meal, units }),
        6 => (customer, fridge, items, any::<bool>(), proptest::option::of(0..KEYS))
            .prop_map(|(customer, fridge, items, pos, key)| Op::Place { customer, fridge, items, pos, key }),
        2 => (any::<usize>(), who).prop_map(|(order, who)| Op::Cancel { order, who }),
        3 => Just(Op::Tick),
        1 => (any::<usize>(), timer).prop_map(|(order, timer)| Op::FireTimer { order, timer }),
        3 => secs.prop_map(|secs| Op::Advance { secs }),
        3 => (any::<usize>(), prop::bool::weighted(0.8))
            .prop_map(|(request, approve)| Op::Settle { request, approve }),
        3 => any::<usize>().prop_map(|request| Op::Deliver { request }),
        1 => (any::<usize>(), kind(), any::<bool>())
            .prop_map(|(order, kind, approve)| Op::Spurious { order, kind, approve }),
        2 => (any::<usize>(), any::<bool>())
            .prop_map(|(order, right_code)| Op::Pickup { order, right_code }),
        1 => meal.clone().prop_map(|meal| Op::Discontinue { meal }),
        3 => meal.prop_map(|meal| Op::Redefine { meal }),
        1 => Just(Op::Restart),
    ]
}

/// What a command did: nothing, something, or refused (with the reason
/// and the details a client is told).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Noop,
    Changed,
    Refused(String),
}

fn refused(reason: impl Into<String>) -> Outcome {
    Outcome::Refused(reason.into())
}

fn wrong_state(status: OrderStatus) -> Outcome {
    refused(format!("wrong_state {status:?}"))
}

/// The district's answer in the model's terms.
fn outcome(result: &Result<Vec<Event>, DomainError>) -> Outcome {
    let e = match result {
        Ok(events) if events.is_empty() => return Outcome::Noop,
        Ok(_) => return Outcome::Changed,
        Err(e) => e,
    };
    refused(match e {
        DomainError::Invalid(_) => "invalid".to_string(),
        DomainError::UnknownMeal(m) => format!("unknown_meal {m}"),
        DomainError::UnknownOrder(_) => "unknown_order".to_string(),
        DomainError::InsufficientStock { available } => {
            insufficient(available.iter().map(|(m, n)| (m.to_string(), *n)).collect())
        }
        DomainError::WrongState { status, .. } => format!("wrong_state {status:?}"),
        DomainError::IdempotencyKeyReused => "key_reused".to_string(),
        DomainError::WrongPickupCode => "wrong_code".to_string(),
        DomainError::TooManyHeldOrders {
            retry_after_secs, ..
        } => format!("too_many_held {retry_after_secs}"),
        DomainError::CancelCooldown {
            meal_id,
            retry_after_secs,
        } => format!("cancel_cooldown {meal_id} {retry_after_secs}"),
        other => format!("unexpected {other}"),
    })
}

fn insufficient(available: Vec<(String, u32)>) -> String {
    format!("insufficient_stock {available:?}")
}

type Pair = (usize, usize);

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Level {
    on_hand: u32,
    reserved: u32,
}

#[derive(Debug, Clone)]
struct ModelOrder {
    id: OrderId,
    customer: usize,
    pos: bool,
    fridge: usize,
    lines: Vec<(usize, u32)>,
    total_minor: i64,
    status: OrderStatus,
    placed_at: DateTime<Utc>,
    timer: Option<(DateTime<Utc>, OrderTimer)>,
    pickup_code: Option<String>,
    refund_pending: bool,
    /// When it was cancelled from its grace window (hoarding counts these).
    free_cancel_at: Option<DateTime<Utc>>,
}

/// The reference model: stock per (fridge, meal), orders by placement
/// index (`o-{i}`), the outbox, and the payments service's book of
/// decisions with the money it moved.
#[derive(Debug, Clone)]
struct Model {
    now: DateTime<Utc>,
    meals: BTreeSet<usize>,
    stock: BTreeMap<Pair, Level>,
    /// The last count of the pair, and the units picked up since.
    counted: BTreeMap<Pair, (u32, u32)>,
    /// Pairs whose last count found fewer units than were reserved.
    short: BTreeSet<Pair>,
    /// Pairs where a pickup took more units than were on hand.
    overdrawn: BTreeSet<Pair>,
    orders: Vec<ModelOrder>,
    keys: BTreeMap<(usize, u8), (usize, u64)>,
    /// Pending payment requests: amount and deadline (unix ms).
    outbox: BTreeMap<(usize, PaymentKind), (i64, i64)>,
    /// Every request ever sent to the payments service, with its deadline.
    asked: BTreeMap<(usize, PaymentKind), DateTime<Utc>>,
    /// The payments service's one answer per request: approved or not.
    book: BTreeMap<(usize, PaymentKind), bool>,
    charged_minor: BTreeMap<usize, i64>,
    refunded_minor: BTreeMap<usize, i64>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn order_id(i: usize) -> OrderId {
    OrderId::parse(format!("o-{i}")).unwrap()
}

/// What the adapter's request fingerprint would tell apart.
fn fingerprint(fridge: usize, items: &[(usize, u32)], pos: bool) -> u64 {
    items
        .iter()
        .fold(fridge as u64 * 2 + u64::from(pos), |fp, (m, q)| {
            fp * 1000 + *m as u64 * 100 + u64::from(*q)
        })
}

impl Model {
    fn new() -> Self {
        Model {
            now: t0(),
            meals: (0..MEALS.len()).collect(),
            stock: BTreeMap::new(),
            counted: BTreeMap::new(),
            short: BTreeSet::new(),
            overdrawn: BTreeSet::new(),
            orders: vec![],
            keys: BTreeMap::new(),
            outbox: BTreeMap::new(),
            asked: BTreeMap::new(),
            book: BTreeMap::new(),
            charged_minor: BTreeMap::new(),
            refunded_minor: BTreeMap::new(),
        }
    }

    fn level(&self, pair: Pair) -> Level {
        self.stock.get(&pair).copied().unwrap_or_default()
    }

    /// `order` as a placed order's index: mostly one `focus` likes (an
    /// operation aimed at random orders would mostly hit finished ones),
    /// sometimes any, now and then `None`, one that does not exist.
    fn pick(&self, order: usize, focus: impl Fn(&ModelOrder) -> bool) -> Option<usize> {
        let (aim, order) = (order % PICK_SPREAD, order / PICK_SPREAD);
        let any: Vec<usize> = (0..self.orders.len()).collect();
        let liked: Vec<usize> = any
            .iter()
            .copied()
            .filter(|&i| focus(&self.orders[i]))
            .collect();
        let from = match aim {
            0 => return None,
            1..=3 => &any,
            _ if liked.is_empty() => &any,
            _ => &liked,
        };
        (!from.is_empty()).then(|| from[order % from.len()])
    }

    fn count(&mut self, fridge: usize, counts: &[(usize, u32)]) -> Outcome {
        let meals: BTreeSet<usize> = counts.iter().map(|(m, _)| *m).collect();
        if meals.len() != counts.len() {
            return refused("invalid");
        }
        if let Some((m, _)) = counts.iter().find(|(m, _)| !self.meals.contains(m)) {
            return refused(format!("unknown_meal {}", MEALS[*m]));
        }
        let mut outcome = Outcome::Noop;
        for &(meal, units) in counts {
            let pair = (fridge, meal);
            let level = self.stock.entry(pair).or_default();
            if level.on_hand == units {
                continue;
            }
            level.on_hand = units;
            if units < level.reserved {
                self.short.insert(pair);
            } else {
                self.short.remove(&pair);
            }
            self.overdrawn.remove(&pair);
            self.counted.insert(pair, (units, 0));
            outcome = Outcome::Changed;
        }
        outcome
    }

    fn place(
        &mut self,
        customer: usize,
        fridge: usize,
        items: &[(usize, u32)],
        pos: bool,
        key: Option<u8>,
    ) -> Outcome {
        let fp = fingerprint(fridge, items, pos);
        if let Some(&(_, first)) = key.and_then(|k| self.keys.get(&(customer, k))) {
            return if first == fp {
                Outcome::Noop
            } else {
                refused("key_reused")
            };
        }
        let meals: BTreeSet<usize> = items.iter().map(|(m, _)| *m).collect();
        if meals.len() != items.len() || items.iter().any(|(_, q)| !(1..=10).contains(q)) {
            return refused("invalid");
        }
        if !pos {
            if let Err(refusal) = self.hoarding(customer, items) {
                return refusal;
            }
        }
        let mut available = vec![];
        for &(meal, _) in items {
            if !self.meals.contains(&meal) {
                return refused(format!("unknown_meal {}", MEALS[meal]));
            }
            let level = self.level((fridge, meal));
            available.push((
                MEALS[meal].to_string(),
                level.on_hand.saturating_sub(level.reserved),
            ));
        }
        if items
            .iter()
            .zip(&available)
            .any(|((_, q), (_, free))| q > free)
        {
            return refused(insufficient(available));
        }
        self.add_order(customer, fridge, items, pos);
        if let Some(k) = key {
            self.keys.insert((customer, k), (self.orders.len() - 1, fp));
        }
        Outcome::Changed
    }

    fn add_order(&mut self, customer: usize, fridge: usize, items: &[(usize, u32)], pos: bool) {
        let grace = if pos { 0 } else { GRACE_APP_SECS };
        let hold_until = self.now + Duration::seconds(grace);
        for &(meal, qty) in items {
            self.stock.entry((fridge, meal)).or_default().reserved += qty;
        }
        self.orders.push(ModelOrder {
            id: order_id(self.orders.len()),
            customer,
            pos,
            fridge,
            lines: items.to_vec(),
            total_minor: items
                .iter()
                .map(|(m, q)| PRICES_MINOR[*m] * i64::from(*q))
                .sum(),
            status: OrderStatus::Held,
            placed_at: self.now,
            timer: Some((hold_until, OrderTimer::GraceWindowEnd)),
            pickup_code: None,
            refund_pending: false,
            free_cancel_at: None,
        });
    }

    /// The two hoarding rules for an app order: at most three orders in
    /// their grace window, at most three free cancels of a meal per ten
    /// minutes; the scan looks back over the cancel window plus an hour.
    fn hoarding(&self, customer: usize, items: &[(usize, u32)]) -> Result<(), Outcome> {
        let now = self.now;
        let window = Duration::seconds(FREE_CANCEL_WINDOW_SECS);
        let since = now - window - Duration::seconds(HELD_LOOKBACK_MARGIN_SECS);
        let recent: Vec<&ModelOrder> = (self.orders.iter().rev())
            .filter(|o| o.customer == customer)
            .take_while(|o| o.placed_at >= since)
            .collect();
        let held: Vec<&&ModelOrder> = recent
            .iter()
            .filter(|o| o.status == OrderStatus::Held)
            .collect();
        if held.len() >= MAX_HELD_ORDERS {
            let first_free = held.iter().filter_map(|o| o.timer).map(|(at, _)| at).min();
            let wait = (first_free.unwrap_or(now) - now).num_seconds().max(1);
            return Err(refused(format!("too_many_held {wait}")));
        }
        for (meal, _) in items {
            let mut cancels: Vec<DateTime<Utc>> = recent
                .iter()
                .filter(|o| o.status == OrderStatus::Cancelled)
                .filter(|o| o.lines.iter().any(|(m, _)| m == meal))
                .filter_map(|o| o.free_cancel_at)
                .filter(|at| *at > now - window)
                .collect();
            if cancels.len() >= FREE_CANCELS_PER_MEAL {
                cancels.sort_unstable_by(|a, b| b.cmp(a));
                let wait = cancels[FREE_CANCELS_PER_MEAL - 1] + window - now;
                let wait = wait.num_seconds().max(1);
                return Err(refused(format!("cancel_cooldown {} {wait}", MEALS[*meal])));
            }
        }
        Ok(())
    }

    fn release(&mut self, i: usize) {
        let o = &self.orders[i];
        for &(meal, qty) in &o.lines {
            let level = self.stock.entry((o.fridge, meal)).or_default();
            level.reserved -= qty;
        }
    }

    /// A payment request goes to the outbox (and so to the payments service).
    fn ask(&mut self, i: usize, kind: PaymentKind, deadline: DateTime<Utc>) {
        let row = (self.orders[i].total_minor, deadline.timestamp_millis());
        self.outbox.insert((i, kind), row);
        self.asked.insert((i, kind), deadline);
        if kind == PaymentKind::Refund {
            self.orders[i].refund_pending = true;
        }
    }

    fn cancel(&mut self, i: Option<usize>, who: Who) -> Outcome {
        let Some(i) = i.filter(|_| who != Who::Stranger) else {
            return refused("unknown_order");
        };
        let status = self.orders[i].status;
        match status {
            OrderStatus::Held | OrderStatus::Purchased => {
                self.release(i);
                let o = &mut self.orders[i];
                o.status = OrderStatus::Cancelled;
                o.timer = None;
                if status == OrderStatus::Held {
                    o.free_cancel_at = Some(self.now);
                } else {
                    self.ask(i, PaymentKind::Refund, DateTime::<Utc>::MAX_UTC);
                }
                Outcome::Changed
            }
            status => wrong_state(status),
        }
    }

    fn fire(&mut self, i: Option<usize>, timer: OrderTimer) -> Outcome {
        let Some(i) = i else {
            return refused("unknown_order");
        };
        let now = self.now;
        let due = matches!(self.orders[i].timer, Some((at, t)) if t == timer && at <= now);
        if !due {
            return Outcome::Noop;
        }
        let (status, timer) = match timer {
            OrderTimer::GraceWindowEnd => {
                let deadline = now + Duration::seconds(PAYMENT_TIMEOUT_SECS);
                self.ask(i, PaymentKind::Charge, deadline);
                (
                    OrderStatus::Paying,
                    Some((deadline, OrderTimer::PaymentTimeout)),
                )
            }
            OrderTimer::PaymentTimeout => {
                self.outbox.remove(&(i, PaymentKind::Charge));
                self.release(i);
                (OrderStatus::Refused, None)
            }
            OrderTimer::PickupDeadline => {
                self.release(i);
                (OrderStatus::Unclaimed, None)
            }
        };
        let o = &mut self.orders[i];
        o.status = status;
        o.timer = timer;
        Outcome::Changed
    }

    /// The payments service decides a request once: a charge past its
    /// deadline is declined whatever the card says.
    fn settle(&mut self, i: usize, kind: PaymentKind, approve: bool) {
        let Some(&deadline) = self.asked.get(&(i, kind)) else {
            return;
        };
        if self.book.contains_key(&(i, kind)) {
            return;
        }
        let approved = approve && self.now <= deadline;
        self.book.insert((i, kind), approved);
        if approved {
            let moved = match kind {
                PaymentKind::Charge => &mut self.charged_minor,
                PaymentKind::Refund => &mut self.refunded_minor,
            };
            let before = moved.insert(i, self.orders[i].total_minor);
            assert!(before.is_none(), "the book moved money twice for o-{i}");
        }
    }

    /// A payment result reaches the district.
    fn record(&mut self, i: usize, kind: PaymentKind, approved: bool, code: &str) -> Outcome {
        let o = &self.orders[i];
        let (status, pending) = (o.status, o.refund_pending);
        match (kind, approved, status) {
            (PaymentKind::Charge, true, OrderStatus::Paying) => {
                self.outbox.remove(&(i, kind));
                let o = &mut self.orders[i];
                o.status = OrderStatus::Purchased;
                o.pickup_code = Some(code.to_string());
                let deadline = self.now + Duration::seconds(PICKUP_WINDOW_SECS);
                o.timer = Some((deadline, OrderTimer::PickupDeadline));
            }
            (PaymentKind::Charge, true, OrderStatus::Refused | OrderStatus::Cancelled)
                if !pending =>
            {
                self.ask(i, PaymentKind::Refund, DateTime::<Utc>::MAX_UTC);
            }
            (PaymentKind::Charge, false, OrderStatus::Paying) => {
                self.outbox.remove(&(i, kind));
                self.release(i);
                let o = &mut self.orders[i];
                o.status = OrderStatus::Refused;
                o.timer = None;
            }
            (PaymentKind::Refund, true, _) if pending => {
                self.outbox.remove(&(i, kind));
                let o = &mut self.orders[i];
                o.refund_pending = false;
                o.status = OrderStatus::Refunded;
            }
            // A declined refund waits for an operator; its row is done.
            (PaymentKind::Refund, false, _) if pending => {
                self.outbox.remove(&(i, kind));
            }
            _ => return Outcome::Noop,
        }
        Outcome::Changed
    }

    fn pickup(&mut self, i: usize, code: &str) -> Outcome {
        let o = &self.orders[i];
        if o.status != OrderStatus::Purchased {
            return wrong_state(o.status);
        }
        if o.pickup_code.as_deref() != Some(code) {
            return refused("wrong_code");
        }
        for &(meal, qty) in &o.lines {
            let pair = (o.fridge, meal);
            let level = self.stock.entry(pair).or_default();
            if qty > level.on_hand {
                self.overdrawn.insert(pair);
            }
            level.on_hand = level.on_hand.saturating_sub(qty);
            level.reserved -= qty;
            self.counted.entry(pair).or_default().1 += qty;
        }
        let o = &mut self.orders[i];
        o.status = OrderStatus::PickedUp;
        o.timer = None;
        Outcome::Changed
    }

    /// Timers due now, as the node's timer task would see them.
    fn due(&self) -> Vec<(&str, OrderTimer)> {
        let mut due: Vec<_> = (self.orders.iter())
            .filter_map(|o| {
                o.timer
                    .filter(|(at, _)| *at <= self.now)
                    .map(|(_, t)| (o.id.as_str(), t))
            })
            .collect();
        due.sort_unstable();
        due
    }
}

/// The district under test, the model, and the log a restart rebuilds from.
struct Harness {
    state: DistrictState,
    ctx: Context,
    log: Vec<EventEnvelope>,
    model: Model,
    /// Pickup codes handed to deliveries count up, so a duplicate carries
    /// a different code than the delivery that completed the purchase.
    codes_drawn: u32,
    /// Money requests per (order, kind), from the decided events.
    requests: BTreeMap<(OrderId, PaymentKind), u32>,
}

impl Harness {
    fn new() -> Self {
        let ctx = Context {
            district_id: DistrictId::from_static(support::DISTRICT),
            area: support::demo_area(),
            now: t0(),
            policy: district::OrderPolicy {
                grace_window_app: Duration::seconds(GRACE_APP_SECS),
                grace_window_pos: Duration::zero(),
                payment_timeout: Duration::seconds(PAYMENT_TIMEOUT_SECS),
                pickup_window: Duration::seconds(PICKUP_WINDOW_SECS),
                holds: Default::default(),
                retention: district::OrderPolicy::default().retention,
            },
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        };
        let mut h = Harness {
            state: DistrictState::default(),
            ctx,
            log: vec![],
            model: Model::new(),
            codes_drawn: 0,
            requests: BTreeMap::new(),
        };
        for meal in 0..MEALS.len() {
            assert_eq!(h.run(define(meal)), Outcome::Changed, "meal refused");
        }
        for fridge in FRIDGES {
            let cmd = CatalogCommand::RegisterFridge {
                fridge_id: FridgeId::from_static(fridge),
                spec: district::demo::plain_fridge(fridge),
            };
            assert_eq!(
                h.run(Command::Catalog(cmd)),
                Outcome::Changed,
                "fridge refused"
            );
        }
        for fridge in 0..FRIDGES.len() {
            let counts: Vec<(usize, u32)> = (0..MEALS.len()).map(|m| (m, INITIAL_UNITS)).collect();
            let expected = h.model.count(fridge, &counts);
            assert_eq!(h.run(set_stock(fridge, &counts)), expected, "count refused");
        }
        h
    }

    /// Decides `cmd` at the model's time and commits what it decided.
    fn run(&mut self, cmd: Command) -> Outcome {
        self.ctx.now = self.model.now;
        let result = district::decide(&self.state, cmd, &self.ctx);
        if let Ok(events) = &result {
            for event in events {
                let asked = match event {
                    Event::PurchaseRequested { order_id, .. } => (order_id, PaymentKind::Charge),
                    Event::RefundRequested { order_id, .. } => (order_id, PaymentKind::Refund),
                    _ => continue,
                };
                *self.requests.entry((asked.0.clone(), asked.1)).or_default() += 1;
            }
            let recorded = support::record(&mut self.state, events, self.ctx.now);
            self.log.extend(recorded);
        }
        outcome(&result)
    }

    /// Runs `cmd` and checks the district answered as the model expects.
    fn expect(&mut self, cmd: Command, expected: Outcome) -> Result<(), TestCaseError> {
        let got = self.run(cmd);
        prop_assert_eq!(got, expected);
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let m = &mut self.model;
        match op {
            Op::Count { fridge, counts } => {
                let expected = m.count(fridge, &counts);
                self.expect(set_stock(fridge, &counts), expected)?;
            }
            Op::Restock {
                fridge,
                meal,
                units,
            } => {
                let counts = [(meal, m.level((fridge, meal)).on_hand + units)];
                let expected = m.count(fridge, &counts);
                self.expect(set_stock(fridge, &counts), expected)?;
            }
            Op::Place {
                customer,
                fridge,
                items,
                pos,
                key,
            } => {
                let cmd = place(m.orders.len(), customer, fridge, &items, pos, key);
                let expected = m.place(customer, fridge, &items, pos, key);
                self.expect(cmd, expected)?;
                self.compare_keys(customer)?;
            }
            Op::Cancel { order, who } => self.cancel(order, who)?,
            Op::Tick => self.tick()?,
            Op::FireTimer { order, timer } => {
                let i = m.pick(order, |o| o.timer.is_some());
                let expected = m.fire(i, timer);
                self.expect(fire(i, timer), expected)?;
            }
            Op::Advance { secs } => m.now += Duration::seconds(secs),
            Op::Settle { request, approve } => {
                let open: Vec<&(usize, PaymentKind)> = (m.asked.keys())
                    .filter(|key| !m.book.contains_key(key))
                    .collect();
                if let Some(&&(i, kind)) = open.get(request % open.len().max(1)) {
                    m.settle(i, kind, approve);
                }
            }
            Op::Deliver { request } => {
                let decided: Vec<&(usize, PaymentKind)> = m.book.keys().collect();
                if let Some(&&(i, kind)) = decided.get(request % decided.len().max(1)) {
                    self.deliver(i, kind)?;
                }
            }
            Op::Discontinue { meal } => self.discontinue(meal)?,
            Op::Spurious {
                order,
                kind,
                approve,
            } => self.spurious(order, kind, approve)?,
            Op::Pickup { order, right_code } => self.pickup(order, right_code)?,
            Op::Redefine { meal } => {
                // The same definition again changes nothing.
                let expected = match self.model.meals.insert(meal) {
                    true => Outcome::Changed,
                    false => Outcome::Noop,
                };
                self.expect(define(meal), expected)?;
                self.compare_catalog()?;
            }
            Op::Restart => self.restart()?,
        }
        self.compare()?;
        self.invariants()
    }

    /// The meal leaves the catalog; its units stay where they are.
    fn discontinue(&mut self, meal: usize) -> Result<(), TestCaseError> {
        let expected = if self.model.meals.remove(&meal) {
            Outcome::Changed
        } else {
            refused(format!("unknown_meal {}", MEALS[meal]))
        };
        let cmd = Command::Catalog(CatalogCommand::DiscontinueMeal {
            meal_id: meal_id(meal),
        });
        self.expect(cmd, expected)?;
        self.compare_catalog()
    }

    fn cancel(&mut self, order: usize, who: Who) -> Result<(), TestCaseError> {
        let i = (self.model).pick(order, |o| {
            matches!(o.status, OrderStatus::Held | OrderStatus::Purchased)
        });
        let customer = match (i, who) {
            (_, Who::Admin) => None,
            (Some(i), Who::Owner) => Some(self.model.orders[i].customer),
            (Some(i), Who::Stranger) => Some((self.model.orders[i].customer + 1) % CUSTOMERS),
            (None, _) => Some(0),
        };
        let cmd = OrderCommand::Cancel {
            order_id: id_or_missing(i),
            customer: customer.map(|c| CUSTOMER_NAMES[c].to_string()),
        };
        let expected = self.model.cancel(i, who);
        self.expect(Command::Order(cmd), expected)
    }

    /// The node's timer task: every timer the district says is due, fired.
    fn tick(&mut self) -> Result<(), TestCaseError> {
        let due: Vec<(OrderId, OrderTimer)> = (self.state.orders())
            .due_timers(self.model.now)
            .map(|(id, t)| (id.clone(), t))
            .collect();
        for (order_id, timer) in due {
            let i = self.model.orders.iter().position(|o| o.id == order_id);
            let expected = self.model.fire(i, timer);
            prop_assert_eq!(&expected, &Outcome::Changed, "{} not due", order_id);
            self.expect(fire(i, timer), expected)?;
        }
        Ok(())
    }

    /// Delivers the payments service's decision on (order, kind), if it made one.
    fn deliver(&mut self, i: usize, kind: PaymentKind) -> Result<(), TestCaseError> {
        let Some(&approved) = self.model.book.get(&(i, kind)) else {
            return Ok(());
        };
        self.codes_drawn += 1;
        let code = format!("{:06}", self.codes_drawn);
        let expected = self.model.record(i, kind, approved, &code);
        self.expect(payment(Some(i), kind, approved, code), expected)
    }

    /// A result nobody asked for: it must change nothing. An approved
    /// charge is never made up: the payments service charges only what
    /// it was asked to.
    fn spurious(
        &mut self,
        order: usize,
        kind: PaymentKind,
        approve: bool,
    ) -> Result<(), TestCaseError> {
        let i = self.model.pick(order, |_| true);
        if i.is_some_and(|i| self.model.asked.contains_key(&(i, kind))) {
            return Ok(());
        }
        let approved = approve && kind == PaymentKind::Refund;
        let expected = match i {
            Some(i) => self.model.record(i, kind, approved, WRONG_CODE),
            None => refused("unknown_order"),
        };
        prop_assert_ne!(
            &expected,
            &Outcome::Changed,
            "the model changed on a spurious result"
        );
        self.expect(payment(i, kind, approved, WRONG_CODE.into()), expected)
    }

    fn pickup(&mut self, order: usize, right_code: bool) -> Result<(), TestCaseError> {
        let i = (self.model).pick(order, |o| o.status == OrderStatus::Purchased);
        let code = match i.and_then(|i| self.model.orders[i].pickup_code.clone()) {
            Some(code) if right_code => code,
            _ => WRONG_CODE.to_string(),
        };
        let expected = match i {
            Some(i) => self.model.pickup(i, &code),
            None => refused("unknown_order"),
        };
        let cmd = OrderCommand::Pickup {
            order_id: id_or_missing(i),
            pickup_code: code,
        };
        self.expect(Command::Order(cmd), expected)
    }

    /// A restart: the state rebuilt from the log alone answers every read
    /// exactly as the state it replaces.
    fn restart(&mut self) -> Result<(), TestCaseError> {
        let rebuilt = support::restart(&self.log);
        same_answers(&self.state, &rebuilt, &self.log)?;
        self.state = rebuilt;
        // The catalog query is costly in a debug build: it is compared
        // here, after meal changes and at the end, not after every step.
        self.compare_catalog()
    }
}

fn meal_id(meal: usize) -> MealId {
    MealId::from_static(MEALS[meal])
}

fn fridge_id(fridge: usize) -> FridgeId {
    FridgeId::from_static(FRIDGES[fridge])
}

fn define(meal: usize) -> Command {
    Command::Catalog(CatalogCommand::DefineMeal {
        meal_id: meal_id(meal),
        spec: support::meal_spec(PRICES_MINOR[meal]),
    })
}

fn set_stock(fridge: usize, counts: &[(usize, u32)]) -> Command {
    let counts = counts
        .iter()
        .map(|&(meal, units)| StockCount {
            meal_id: meal_id(meal),
            units,
        })
        .collect();
    Command::Catalog(CatalogCommand::SetStock {
        fridge_id: fridge_id(fridge),
        spec: StockSpec { counts },
    })
}

fn place(
    next: usize,
    customer: usize,
    fridge: usize,
    items: &[(usize, u32)],
    pos: bool,
    key: Option<u8>,
) -> Command {
    let idempotency = key.map(|k| (format!("key-{k}"), fingerprint(fridge, items, pos)));
    let items = items
        .iter()
        .map(|&(meal, qty)| OrderItem {
            meal_id: meal_id(meal),
            qty,
        })
        .collect();
    Command::Order(OrderCommand::Place {
        order_id: order_id(next),
        customer: CUSTOMER_NAMES[customer].to_string(),
        channel: if pos { Channel::Pos } else { Channel::App },
        request: PlaceOrder {
            fridge_id: fridge_id(fridge),
            items,
            coupon: None,
            share_code: None,
            points: None,
            payment_method: "tok".into(),
            pickup_date: None,
        },
        idempotency,
        referral: None,
    })
}

/// The id of a placed order, or of one the district never saw.
fn id_or_missing(i: Option<usize>) -> OrderId {
    i.map_or_else(|| OrderId::from_static("o-missing"), order_id)
}

fn fire(i: Option<usize>, timer: OrderTimer) -> Command {
    Command::Order(OrderCommand::FireTimer {
        order_id: id_or_missing(i),
        timer,
    })
}

fn payment(i: Option<usize>, kind: PaymentKind, approved: bool, pickup_code: String) -> Command {
    let outcome = if approved {
        PaymentOutcome::Approved {
            reference: format!("ref-{kind:?}"),
        }
    } else {
        PaymentOutcome::Declined {
            reason: "declined".into(),
        }
    };
    Command::RecordPayment {
        result: PaymentResult {
            kind,
            order_id: id_or_missing(i),
            district_id: DistrictId::from_static(support::DISTRICT),
            outcome,
        },
        pickup_code,
    }
}

const CUSTOMER_NAMES: [&str; CUSTOMERS] = ["c0", "c1", "c2", "c3"];
const KEY_NAMES: [&str; KEYS as usize] = ["key-0", "key-1", "key-2"];

impl Harness {
    /// Everything the district's read API shows equals the model.
    fn compare(&self) -> Result<(), TestCaseError> {
        self.compare_stock()?;
        self.compare_orders()?;
        let (state, m) = (&self.state, &self.model);
        // Borrowed and sorted rather than cloned into sets: this runs after
        // every one of a million operations.
        let mut outbox = Vec::with_capacity(state.outbox().len());
        for (key, request) in state.outbox().iter() {
            let OutboxKey::Order { order_id, kind } = key else {
                return Err(TestCaseError::fail(format!("{key:?} in the outbox")));
            };
            outbox.push((
                order_id.as_str(),
                *kind,
                request.amount,
                request.deadline_unix_ms,
            ));
        }
        let mut expected: Vec<_> = (m.outbox.iter())
            .map(|(&(i, kind), &(amount, deadline))| {
                (m.orders[i].id.as_str(), kind, amount, deadline)
            })
            .collect();
        expected.sort_unstable();
        prop_assert_eq!(outbox, expected, "outbox");
        let mut due: Vec<_> = (state.orders().due_timers(m.now))
            .map(|(id, t)| (id.as_str(), t))
            .collect();
        due.sort_unstable();
        prop_assert_eq!(due, m.due(), "due timers");
        let meals: BTreeSet<&str> = state.catalog().meals().keys().map(|k| k.as_str()).collect();
        let expected: BTreeSet<&str> = m.meals.iter().map(|i| MEALS[*i]).collect();
        prop_assert_eq!(meals, expected, "meals");
        Ok(())
    }

    /// The customer's idempotency keys name the orders the model's do.
    fn compare_keys(&self, c: usize) -> Result<(), TestCaseError> {
        let (customer, m) = (CUSTOMER_NAMES[c], &self.model);
        for (k, key) in KEY_NAMES.iter().enumerate() {
            let got = self.state.orders().by_idempotency_key(customer, key);
            let expected = (m.keys.get(&(c, k as u8))).map(|&(i, fp)| (m.orders[i].id.clone(), fp));
            prop_assert_eq!(got, expected.as_ref(), "key {} of {}", key, customer);
        }
        Ok(())
    }

    /// Every level the district keeps (one pass over them, no lookups by
    /// name) equals the model's; nothing is quarantined or expired.
    fn compare_stock(&self) -> Result<(), TestCaseError> {
        let empty = StockLevel::default();
        let levels = self.state.stock().levels().iter();
        let got: Vec<(&str, &str, StockLevel)> = levels
            .flat_map(|(f, per)| per.iter().map(move |(m, l)| (f.as_str(), m.as_str(), *l)))
            .filter(|(_, _, l)| *l != empty)
            .collect();
        let expected: Vec<(&str, &str, StockLevel)> = (self.model.stock.iter())
            .map(|(&(f, m), l)| {
                let level = StockLevel {
                    on_hand: l.on_hand,
                    reserved: l.reserved,
                    quarantined: 0,
                    expired: 0,
                    held: 0,
                };
                (FRIDGES[f], MEALS[m], level)
            })
            .filter(|(_, _, l)| *l != empty)
            .collect();
        prop_assert_eq!(got, expected, "stock levels");
        Ok(())
    }

    /// The fridges offer the defined meals with units available.
    fn compare_catalog(&self) -> Result<(), TestCaseError> {
        let m = &self.model;
        let at = protocol::geo::GeoPoint {
            lat: 42.3316,
            lon: -83.0466,
        };
        let district_id = DistrictId::from_static(support::DISTRICT);
        let view =
            district::query::catalog_near(&self.state, &district_id, &at, 1_000, &support::when());
        prop_assert_eq!(view.fridges.len(), FRIDGES.len());
        for fridge in &view.fridges {
            let f = FRIDGES
                .iter()
                .position(|id| *id == fridge.fridge_id.as_str())
                .unwrap();
            let offered: Vec<(&str, u32)> = (fridge.meals.iter())
                .map(|a| (a.meal_id.as_str(), a.available))
                .collect();
            let expected: Vec<(&str, u32)> = (m.meals.iter())
                .map(|&i| (MEALS[i], m.level((f, i))))
                .map(|(meal, l)| (meal, l.on_hand.saturating_sub(l.reserved)))
                .filter(|(_, available)| *available > 0)
                .collect();
            prop_assert_eq!(offered, expected, "catalog of {}", fridge.fridge_id);
        }
        Ok(())
    }

    fn compare_orders(&self) -> Result<(), TestCaseError> {
        let m = &self.model;
        prop_assert_eq!(self.state.orders().len(), m.orders.len());
        for o in &m.orders {
            let Some(got) = self.state.orders().get(&o.id) else {
                return Err(TestCaseError::fail(format!("{} missing", o.id)));
            };
            let lines: Vec<(usize, u32)> = (got.lines.iter())
                .map(|l| {
                    (
                        MEALS.iter().position(|m| *m == l.meal_id.as_str()).unwrap(),
                        l.qty,
                    )
                })
                .collect();
            prop_assert_eq!(&lines, &o.lines, "lines of {}", o.id);
            prop_assert_eq!(got.customer.as_str(), CUSTOMER_NAMES[o.customer]);
            prop_assert_eq!(got.channel == Channel::Pos, o.pos);
            prop_assert_eq!(got.fridge_id.as_str(), FRIDGES[o.fridge]);
            prop_assert_eq!(got.total.amount_minor, o.total_minor);
            prop_assert_eq!(got.status, o.status, "status of {}", o.id);
            prop_assert_eq!(got.timer, o.timer, "timer of {}", o.id);
            prop_assert_eq!(&got.pickup_code, &o.pickup_code, "code of {}", o.id);
            prop_assert_eq!(got.refund_pending, o.refund_pending, "refund of {}", o.id);
        }
        Ok(())
    }
}

/// Whether an order's money is the district's to keep.
fn kept(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Purchased | OrderStatus::PickedUp | OrderStatus::Unclaimed
    )
}

impl Harness {
    /// DESIGN.md §6 on its own terms, beside the model equality.
    fn invariants(&self) -> Result<(), TestCaseError> {
        let m = &self.model;
        let mut promised: BTreeMap<Pair, u32> = BTreeMap::new();
        for o in m.orders.iter().filter(|o| o.status.holds_stock()) {
            for &(meal, qty) in &o.lines {
                *promised.entry((o.fridge, meal)).or_default() += qty;
            }
        }
        for (f, fridge) in FRIDGES.iter().enumerate() {
            for (i, meal) in MEALS.iter().enumerate() {
                let pair = (f, i);
                // `compare` has just found the district's level equal to this.
                let level = m.level(pair);
                prop_assert_eq!(
                    level.reserved,
                    promised.get(&pair).copied().unwrap_or(0),
                    "reserved = open lines, {} {}",
                    fridge,
                    meal
                );
                // Never oversold: no more promised than on the shelf, unless
                // a count found fewer units than were already promised.
                let short = m.short.contains(&pair);
                prop_assert!(
                    level.reserved <= level.on_hand || short,
                    "oversold {} {}",
                    fridge,
                    meal
                );
                // Stock falls only by the lines picked up since the last
                // count, and a pickup takes no more than is there unless the
                // count was short.
                prop_assert!(!m.overdrawn.contains(&pair) || short);
                let (counted, picked) = m.counted.get(&pair).copied().unwrap_or_default();
                if !m.overdrawn.contains(&pair) {
                    prop_assert_eq!(
                        level.on_hand,
                        counted - picked,
                        "decrements {} {}",
                        fridge,
                        meal
                    );
                }
            }
        }
        for ((order, kind), n) in &self.requests {
            prop_assert!(*n == 1, "{} asked for {:?} {} times", order, kind, n);
        }
        for (i, o) in m.orders.iter().enumerate() {
            let charged = m.charged_minor.get(&i);
            if kept(o.status) {
                prop_assert_eq!(
                    charged,
                    Some(&o.total_minor),
                    "{} kept without its charge",
                    o.id
                );
                prop_assert!(o.pickup_code.is_some());
            }
            if let Some(refunded) = m.refunded_minor.get(&i) {
                prop_assert_eq!(
                    Some(refunded),
                    charged,
                    "{} refunded what it was not charged",
                    o.id
                );
            }
        }
        Ok(())
    }

    /// The payments service answers everything it was ever asked (approving
    /// what it still may) and every answer arrives, until nothing is owed:
    /// then every charged order is kept or refunded in full (or waits for an
    /// operator after a declined refund).
    fn settle_everything(&mut self) -> Result<(), TestCaseError> {
        // A late approval asks for a refund, which the next round answers.
        for _round in 0..3 {
            let open: Vec<(usize, PaymentKind)> = (self.model.asked.keys())
                .filter(|key| !self.model.book.contains_key(key))
                .copied()
                .collect();
            for (i, kind) in open {
                self.model.settle(i, kind, true);
            }
            let decided: Vec<(usize, PaymentKind)> = self.model.book.keys().copied().collect();
            for (i, kind) in decided {
                self.deliver(i, kind)?;
                self.compare()?;
                self.invariants()?;
            }
        }
        let m = &self.model;
        prop_assert!(m.outbox.is_empty(), "still owed: {:?}", m.outbox);
        for (i, o) in m.orders.iter().enumerate() {
            let refunded = m.refunded_minor.get(&i);
            let Some(&charged) = m.charged_minor.get(&i) else {
                prop_assert!(refunded.is_none());
                continue;
            };
            prop_assert_eq!(
                charged,
                o.total_minor,
                "{} charged a different amount",
                o.id
            );
            if kept(o.status) {
                prop_assert!(refunded.is_none(), "{} kept and refunded", o.id);
            } else {
                let operator = m.book.get(&(i, PaymentKind::Refund)) == Some(&false);
                let back = refunded == Some(&charged) || (operator && o.refund_pending);
                prop_assert!(back, "{} {:?} charged, not refunded", o.id, o.status);
            }
        }
        Ok(())
    }
}

/// Every read a node serves answers the same from `a` as from `b` (a
/// state and its rebuild); compared in place, without copies, since every
/// sequence restarts a few times.
fn same_answers(
    a: &DistrictState,
    b: &DistrictState,
    log: &[EventEnvelope],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.last_seq(), b.last_seq());
    prop_assert_eq!(a.catalog_version(), b.catalog_version());
    let streams: BTreeSet<&str> = log.iter().map(|e| e.stream_id.as_str()).collect();
    for stream in streams {
        let (x, y) = (a.stream_version(stream), b.stream_version(stream));
        prop_assert_eq!(x, y, "version of {}", stream);
    }
    prop_assert_eq!(a.catalog().meals(), b.catalog().meals());
    prop_assert_eq!(a.catalog().fridges(), b.catalog().fridges());
    prop_assert_eq!(a.stock().levels(), b.stock().levels());
    for fridge in FRIDGES.map(FridgeId::from_static) {
        for meal in MEALS.map(MealId::from_static) {
            let lots = (
                a.stock().lots(&fridge, &meal),
                b.stock().lots(&fridge, &meal),
            );
            prop_assert_eq!(lots.0, lots.1, "lots of {} {}", fridge, meal);
        }
    }
    let (x, y) = (a.orders(), b.orders());
    same(x.iter(), y.iter(), "orders")?;
    for c in CUSTOMER_NAMES {
        let ids = |book: &district::orders::OrderBook| -> Vec<OrderId> {
            book.of_customer(c).map(|o| o.order_id.clone()).collect()
        };
        prop_assert_eq!(ids(x), ids(y), "orders of {}", c);
        for k in KEY_NAMES {
            let keys = (x.by_idempotency_key(c, k), y.by_idempotency_key(c, k));
            prop_assert_eq!(keys.0, keys.1, "key {} of {}", k, c);
        }
    }
    same(
        x.due_timers(DateTime::<Utc>::MAX_UTC),
        y.due_timers(DateTime::<Utc>::MAX_UTC),
        "timers",
    )?;
    same(a.outbox().iter(), b.outbox().iter(), "outbox")?;
    let by_seq = |state: &DistrictState| -> Vec<OutboxKey> {
        state
            .outbox()
            .requested_after(0)
            .map(|(k, _)| k.clone())
            .collect()
    };
    prop_assert_eq!(by_seq(a), by_seq(b), "outbox by seq");
    let at = protocol::geo::GeoPoint {
        lat: 42.3316,
        lon: -83.0466,
    };
    let district_id = DistrictId::from_static(support::DISTRICT);
    let catalog =
        |state| district::query::catalog_near(state, &district_id, &at, 1_000, &support::when());
    prop_assert_eq!(catalog(a), catalog(b), "catalog");
    Ok(())
}

/// Two iterations yield equal items, pairwise.
fn same<T: PartialEq + std::fmt::Debug>(
    mut a: impl Iterator<Item = T>,
    mut b: impl Iterator<Item = T>,
    what: &str,
) -> Result<(), TestCaseError> {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ok(()),
            (x, y) => prop_assert_eq!(x, y, "{}", what),
        }
    }
}

/// Operations per sequence, at most.
const MAX_OPS: usize = 200;

proptest! {
    // 10,000 sequences in every `cargo test`; `PROPTEST_CASES` overrides.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_district_answers_as_the_reference_model(ops in proptest::collection::vec(op(), 1..=MAX_OPS)) {
        let mut h = Harness::new();
        for op in ops {
            h.step(op)?;
        }
        h.restart()?;
        h.compare()?;
        h.settle_everything()?;
    }
}
