//! The district's domain logic as a pure decider.
//!
//! `decide(&DistrictState, Command, &Context) -> Result<Vec<Event>, DomainError>`
//! says what happens; `evolve(&mut DistrictState, &EventEnvelope)` applies a
//! recorded fact. No tokio, sled, axum or NATS here: the writer task, the
//! store and the HTTP layer call in, tests call in directly.
//!
//! `DistrictState` uses `imbl` (persistent) maps so the writer can publish a
//! snapshot to readers after every batch with an O(1) clone.

pub mod catalog;
pub mod demo;
pub mod expiry;
pub mod fridges;
pub mod orders;
pub mod push;
pub mod query;
pub mod schedule;

use chrono::{DateTime, Utc};
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet, Vector};
use protocol::catalog::{Fridge, Meal, StockLevel};
use protocol::geo::DistrictArea;
use protocol::orders::{OrderId, OrderStatus};
use protocol::payments::PaymentRequest;
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, MealId};

pub use catalog::CatalogCommand;
pub use fridges::{FridgeCommand, FridgePolicy};
pub use orders::{Order, OrderCommand, OrderPolicy, OrderTimer};
pub use schedule::ScheduleCommand;

/// Everything a command may need besides the state: the district's identity
/// and the time, passed in so the core never reads a clock.
#[derive(Debug, Clone)]
pub struct Context {
    pub district_id: DistrictId,
    pub area: DistrictArea,
    pub now: DateTime<Utc>,
    pub policy: OrderPolicy,
    pub fridges: FridgePolicy,
}

/// A request to change the district.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Catalog(CatalogCommand),
    Order(OrderCommand),
    Fridge(FridgeCommand),
    Schedule(ScheduleCommand),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("meal {0} does not exist")]
    UnknownMeal(MealId),
    #[error("fridge {0} does not exist")]
    UnknownFridge(FridgeId),
    #[error("the point ({lat}, {lon}) is outside this district")]
    OutsideDistrict { lat: f64, lon: f64 },
    #[error("order {0} does not exist")]
    UnknownOrder(OrderId),
    #[error("fridge {0} is not taking orders right now")]
    FridgeUnavailable(FridgeId),
    #[error("not enough stock")]
    InsufficientStock { available: Vec<(MealId, u32)> },
    #[error("{message}")]
    WrongState {
        status: OrderStatus,
        message: String,
    },
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the pickup code does not match")]
    WrongPickupCode,
    #[error("stream {stream} is at version {actual}, the command expected {expected}")]
    VersionConflict {
        stream: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Schedule(#[from] scheduler::ScheduleError),
}

/// In-memory state of one district, rebuilt from the log at start-up.
#[derive(Debug, Clone, Default)]
pub struct DistrictState {
    /// Sequence number of the last applied event (0 for an empty log).
    pub last_seq: u64,
    /// Version of the catalog: the seq of the last event that changed what
    /// `GET /v1/catalog` shows. Drives ETags and WebSocket `catalog_updated`.
    pub catalog_version: u64,
    pub meals: OrdMap<MealId, Meal>,
    pub fridges: OrdMap<FridgeId, Fridge>,
    /// Fridge telemetry secrets; never served.
    pub fridge_secrets: HashMap<FridgeId, String>,
    /// The secret before the last rotation, until the fridge signs with the
    /// new one.
    pub fridge_previous_secrets: HashMap<FridgeId, String>,
    /// The fridge ACL's cursor per fridge (sequence, stock model, temperature).
    pub fridge_cursors: HashMap<FridgeId, Arc<fridge_acl::FridgeCursor>>,
    /// Units on the shelf by arrival, for their best-before (see `expiry`).
    pub lots: expiry::Lots,
    /// Orders holding stock, per fridge; ULID order ids sort oldest first.
    pub open_orders_by_fridge: HashMap<FridgeId, OrdSet<OrderId>>,
    /// Stock per fridge, then per meal.
    pub stock: OrdMap<FridgeId, OrdMap<MealId, StockLevel>>,
    /// Current version of every stream, for optimistic concurrency.
    pub stream_versions: HashMap<String, u64>,
    pub orders: OrdMap<OrderId, Order>,
    /// Each customer's orders, oldest first.
    pub customer_orders: HashMap<String, Vector<OrderId>>,
    /// `(customer, Idempotency-Key)` → (order, request fingerprint).
    pub idempotency: HashMap<(String, String), (OrderId, u64)>,
    /// Payment requests without a recorded result, by message id. Derived
    /// from the log, so it is exactly as durable as the decisions behind it.
    pub outbox: OrdMap<String, PaymentRequest>,
    /// Open timers by due time.
    pub timers: OrdMap<(DateTime<Utc>, OrderId), OrderTimer>,
    /// Plans, calendar, charges and scheduled orders. Behind an `Arc` so
    /// snapshots stay O(1); a batch that changes it copies it once.
    pub schedule: Arc<scheduler::ScheduleState>,
}

impl DistrictState {
    pub fn stream_version(&self, stream: &str) -> u64 {
        self.stream_versions.get(stream).copied().unwrap_or(0)
    }

    pub fn stock_level(&self, fridge: &str, meal: &str) -> StockLevel {
        self.stock
            .get(fridge)
            .and_then(|m| m.get(meal))
            .copied()
            .unwrap_or_default()
    }

    /// Records a new order and lists it under its customer (oldest first).
    pub fn add_order(&mut self, order: Order) {
        self.customer_orders
            .entry(order.customer.clone())
            .or_default()
            .push_back(order.order_id.clone());
        self.orders.insert(order.order_id.clone(), order);
    }

    /// Changes one stock level (creating it at zero if new). The one way
    /// `evolve` functions write a level, so a level is never half-updated.
    pub fn adjust_stock(&mut self, fridge: &str, meal: &str, f: impl FnOnce(&mut StockLevel)) {
        let mut per_meal = self.stock.get(fridge).cloned().unwrap_or_default();
        let mut level = per_meal.get(meal).copied().unwrap_or_default();
        f(&mut level);
        per_meal.insert(meal.to_string(), level);
        self.stock.insert(fridge.to_string(), per_meal);
    }
}

/// Decide what a command means in the current state.
pub fn decide(
    state: &DistrictState,
    cmd: Command,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        Command::Catalog(c) => catalog::decide(state, c, ctx),
        // Results for plan charges go to the schedule, the rest to orders.
        Command::Order(OrderCommand::RecordPayment { result, .. })
            if state.schedule.charges.contains_key(&result.order_id) =>
        {
            Ok(schedule::record_payment(state, result))
        }
        Command::Order(c) => orders::decide(state, c, ctx),
        Command::Fridge(c) => fridges::decide(state, c, ctx),
        Command::Schedule(c) => schedule::decide(state, c, ctx),
    }
}

/// Apply a recorded event. Total: an event in the log is a fact, so `evolve`
/// never fails; it may only ignore what it cannot place.
pub fn evolve(state: &mut DistrictState, env: &EventEnvelope) {
    state.last_seq = env.seq;
    state
        .stream_versions
        .insert(env.stream_id.clone(), env.stream_version);
    let stock_before = state.stock.clone();
    let changed = catalog::evolve(state, &env.event)
        | orders::evolve(state, &env.event, env.recorded_at, &env.district_id)
        | fridges::evolve(state, &env.event)
        | schedule::evolve(state, &env.event, env.recorded_at, &env.district_id)
        | expiry::track(state, &stock_before, &env.event, env.recorded_at);
    if let Some(order_id) = env.stream_id.strip_prefix("order-") {
        index_open_order(state, order_id);
    }
    if changed {
        state.catalog_version = env.seq;
    }
}

/// Keeps `open_orders_by_fridge` in step with an order's status.
fn index_open_order(state: &mut DistrictState, order_id: &str) {
    let Some(order) = state.orders.get(order_id) else {
        return;
    };
    let fridge_id = order.fridge_id.clone();
    let holds = order.status.holds_stock();
    let mut set = state
        .open_orders_by_fridge
        .get(&fridge_id)
        .cloned()
        .unwrap_or_default();
    let changed = if holds {
        set.insert(order_id.to_string()).is_none()
    } else {
        set.remove(order_id).is_some()
    };
    if changed {
        if set.is_empty() {
            state.open_orders_by_fridge.remove(&fridge_id);
        } else {
            state.open_orders_by_fridge.insert(fridge_id, set);
        }
    }
}
