//! The district's domain logic as a pure decider.
//!
//! `decide(&DistrictState, Command, &Context) -> Result<Vec<Event>, DomainError>`
//! says what happens; `evolve(&mut DistrictState, &EventEnvelope)` applies a
//! recorded fact. No tokio, sled, axum or NATS here: the writer task, the
//! store and the HTTP layer call in, tests call in directly.
//!
//! `DistrictState` is one small struct per area, each in its own module with
//! private fields: the catalog ([`catalog::Catalog`]), the stock with its
//! best-before lots ([`stock::Stock`]), the orders ([`orders::OrderBook`]),
//! what is owed to the payments service ([`outbox::Outbox`]), the fridges'
//! secrets and ACL cursors ([`links::FridgeLinks`]) and the schedule. Every
//! event has exactly one handler (`evolve` dispatches by event family); a
//! handler that touches two areas says so in its own code, so no handler
//! depends on another having run first. The areas use `imbl` (persistent)
//! maps so the writer can publish a snapshot to readers after every batch
//! with an O(1) clone.

pub mod catalog;
pub mod demo;
pub mod expiry;
pub mod fridges;
pub mod links;
pub mod loyalty;
pub mod notifications;
pub mod orders;
pub mod outbox;
pub mod preorders;
pub mod promotions;
pub mod push;
pub mod query;
pub mod restock;
pub mod schedule;
pub mod stock;
pub mod waitlist;
pub mod webhooks;

use chrono::{DateTime, Utc};
use std::sync::Arc;

use imbl::OrdMap;
use protocol::catalog::StockLevel;
use protocol::geo::DistrictArea;
use protocol::orders::{OrderId, OrderStatus};
use protocol::payments::PaymentResult;
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, MealId};

use catalog::Catalog;
use links::FridgeLinks;
use orders::OrderBook;
use outbox::Outbox;
use stock::Stock;

pub use catalog::CatalogCommand;
pub use fridges::{FridgeCommand, FridgePolicy};
pub use notifications::NotificationCommand;
pub use orders::{Order, OrderCommand, OrderPolicy, OrderTimer};
pub use promotions::PromotionCommand;
pub use restock::RestockCommand;
pub use schedule::ScheduleCommand;
pub use waitlist::{WaitlistCommand, WaitlistPolicy};
pub use webhooks::WebhookCommand;

/// Everything a command may need besides the state: the district's identity
/// and the time, passed in so the core never reads a clock.
#[derive(Debug, Clone)]
pub struct Context {
    pub district_id: DistrictId,
    pub area: DistrictArea,
    pub now: DateTime<Utc>,
    pub policy: OrderPolicy,
    pub fridges: FridgePolicy,
    /// The district's offset from UTC, in minutes: campaigns and coupons
    /// are in district-local time, subsidy caps per district-local day.
    pub utc_offset_minutes: i32,
    /// The kitchen calendar's rules (horizon, change cutoff) that orders
    /// ahead follow like plan days.
    pub schedule: scheduler::Policy,
}

impl Context {
    /// The district's wall clock now.
    pub fn local_now(&self) -> chrono::NaiveDateTime {
        (self.now + chrono::Duration::minutes(i64::from(self.utc_offset_minutes))).naive_utc()
    }
}

/// A request to change the district.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Catalog(CatalogCommand),
    Order(OrderCommand),
    Fridge(FridgeCommand),
    Schedule(ScheduleCommand),
    Promotion(PromotionCommand),
    Waitlist(WaitlistCommand),
    /// Pickup reminders and quiet hours.
    Notification(NotificationCommand),
    /// Webhook endpoints (admin).
    Webhook(WebhookCommand),
    /// Par levels (admin).
    Restock(RestockCommand),
    /// A payment result from the payments service, for an order or a plan
    /// charge (the outbox knows which). `pickup_code` is drawn by the
    /// adapter (randomness is IO) and used if the result completes a
    /// purchase.
    RecordPayment {
        result: PaymentResult,
        pickup_code: String,
    },
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
    #[error("fridge {0} is not quarantined")]
    NotQuarantined(FridgeId),
    #[error("fridge {0} has not reported a temperature back in range since its excursion; the quarantine stays until it does")]
    FridgeOutOfRange(FridgeId),
    #[error("fridge {fridge_id}'s telemetry cursor cannot be read ({reason}); its reports are refused until an operator re-registers it")]
    CursorUnreadable { fridge_id: FridgeId, reason: String },
    #[error(
        "at most {max} orders may wait in their grace window at once; pay or cancel one first"
    )]
    TooManyHeldOrders { max: u32, retry_after_secs: i64 },
    #[error("{meal_id} was reserved and cancelled too often; it can be held again in {retry_after_secs} s")]
    CancelCooldown {
        meal_id: MealId,
        retry_after_secs: i64,
    },
    #[error(transparent)]
    Schedule(#[from] scheduler::ScheduleError),
    /// No campaign, coupon or subsidy by that id.
    #[error("{0} is not a campaign, coupon or subsidy of this district")]
    UnknownPromotion(String),
    /// The order names a coupon code this district does not know.
    #[error("this coupon code is not valid here")]
    UnknownCoupon,
    #[error("{0}")]
    CouponRefused(promotions::CouponRefusal),
    /// A waitlist join for a meal that is for sale now where the customer
    /// would wait: buy it instead.
    #[error("{meal_id} is available now; order it instead of waiting")]
    MealAvailable {
        meal_id: MealId,
        available: Vec<(FridgeId, u32)>,
    },
    #[error("waitlist entry {0} does not exist")]
    UnknownWaitlistEntry(protocol::WaitlistId),
    #[error("the waitlist entry is {status:?}, no longer waiting")]
    WaitlistEntryClosed {
        status: protocol::waitlist::WaitlistStatus,
    },
}

/// In-memory state of one district, rebuilt from the log at start-up: one
/// part per area, each written only by the handlers of its own events.
///
/// Serializable for the node's state snapshots (a cache of the replay: see
/// [`STATE_SNAPSHOT_VERSION`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DistrictState {
    /// Sequence number of the last applied event (0 for an empty log).
    last_seq: u64,
    /// The seq of the last event that changed what `GET /v1/catalog` shows.
    /// Drives ETags and WebSocket `catalog_updated`.
    catalog_version: u64,
    /// Current version of every stream but the orders', for optimistic
    /// concurrency. An `OrdMap`, not a `HashMap`: imbl's HAMT left its
    /// 1.3 KiB leaves ~5 entries full.
    stream_versions: OrdMap<String, u64>,
    /// Current version of each order's stream (`order-{id}`), apart from
    /// the other streams: keyed by the order's id (the same `Arc` as the
    /// book's), not by a string of its own, so an order costs no second
    /// copy of its id here; and new ids sort last here, where among the
    /// other streams (`plan-…`, `stock-…` sort after `order-`) they landed
    /// mid-node and left the B-tree's nodes half full (130 bytes per order
    /// with the string, 41 now: BENCHMARKS.md, "Full B-tree nodes").
    order_versions: OrdMap<OrderId, u64>,
    catalog: Catalog,
    stock: Stock,
    orders: OrderBook,
    outbox: Outbox,
    links: FridgeLinks,
    /// Campaigns, coupons, subsidies and the orders they priced.
    promotions: promotions::Promotions,
    /// Bonus-point rules and what the orders owe the global ledger.
    loyalty: loyalty::Loyalty,
    /// Back-in-stock waitlists and their holds.
    waitlist: waitlist::Waitlist,
    /// Plans, calendar, charges and scheduled orders. Behind an `Arc` so
    /// snapshots stay O(1); a batch that changes it copies it once.
    #[serde(with = "shared")]
    schedule: Arc<scheduler::ScheduleState>,
    /// Each customer's notifications of the last day, pending pickup
    /// reminders and quiet hours.
    notifications: notifications::Notifications,
    /// Webhook endpoints registered by admins.
    webhooks: webhooks::Webhooks,
    /// Par levels and the shelves' demand history.
    restock: restock::Restock,
}

/// The shape of [`DistrictState`] as a snapshot stores it. A snapshot is a
/// cache of the log's replay, so a snapshot of another version is ignored
/// (the node replays the log instead), never upcast. Bump it whenever a
/// change to the state's types changes their serialized form; the golden
/// test `tests/snapshot_shape.rs` fails until you do.
pub const STATE_SNAPSHOT_VERSION: u32 = 7;

/// Parts shared between snapshots by `Arc` are stored as their value.
pub(crate) mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

impl DistrictState {
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn catalog_version(&self) -> u64 {
        self.catalog_version
    }

    pub fn stream_version(&self, stream: &str) -> u64 {
        let version = match stream.strip_prefix(protocol::StreamId::ORDER_PREFIX) {
            // (An `order-` stream whose rest is no order id is kept by its
            // string: `record_stream_version`.)
            Some(order_id) => self
                .order_versions
                .get(order_id)
                .or_else(|| self.stream_versions.get(stream)),
            None => self.stream_versions.get(stream),
        };
        version.copied().unwrap_or(0)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn stock(&self) -> &Stock {
        &self.stock
    }

    pub fn orders(&self) -> &OrderBook {
        &self.orders
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn links(&self) -> &FridgeLinks {
        &self.links
    }

    pub fn promotions(&self) -> &promotions::Promotions {
        &self.promotions
    }

    pub fn loyalty(&self) -> &loyalty::Loyalty {
        &self.loyalty
    }

    pub fn waitlist(&self) -> &waitlist::Waitlist {
        &self.waitlist
    }

    pub fn schedule(&self) -> &scheduler::ScheduleState {
        &self.schedule
    }

    pub fn notifications(&self) -> &notifications::Notifications {
        &self.notifications
    }

    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.webhooks
    }

    pub fn restock(&self) -> &restock::Restock {
        &self.restock
    }

    /// Shorthand for `stock().level(..)`.
    pub fn stock_level(&self, fridge: &str, meal: &str) -> StockLevel {
        self.stock.level(fridge, meal)
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
        Command::Order(c) => orders::decide(state, c, ctx),
        Command::Fridge(c) => fridges::decide(state, c, ctx),
        Command::Schedule(c) => schedule::decide(state, c, ctx),
        Command::Promotion(c) => promotions::decide(state, c, ctx),
        Command::Waitlist(c) => waitlist::decide(state, c, ctx),
        Command::Notification(c) => notifications::decide(state, c, ctx),
        Command::Webhook(c) => webhooks::decide(state, c, ctx),
        Command::Restock(c) => restock::decide(state, c, ctx),
        Command::RecordPayment {
            result,
            pickup_code,
        } => outbox::record_result(state, result, pickup_code, ctx),
    }
}

/// What every handler may know about the event it applies besides the
/// event itself: where it sits in the log and when it was recorded.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub district_id: &'a DistrictId,
}

/// The envelope's stream is now at its version. The envelope's string is
/// what counts: an order's stream goes to `order_versions`, any other (an
/// `order-` stream whose rest is no order id included) to
/// `stream_versions`.
fn record_stream_version(state: &mut DistrictState, env: &EventEnvelope) {
    match order_stream_key(state, env) {
        Some(id) => state.order_versions.insert(id, env.stream_version),
        None => state
            .stream_versions
            .insert(env.stream_id.clone(), env.stream_version),
    };
}

/// The key of the envelope's order stream: the book's copy of the id when
/// the book has the order (events decoded from the log or parsed from a
/// payment result carry copies of their own), else the event's when it
/// names the same order (`OrderPlaced`, whose id the book then keeps),
/// else parsed from the string. None: not an order stream.
fn order_stream_key(state: &DistrictState, env: &EventEnvelope) -> Option<OrderId> {
    let order_id = env
        .stream_id
        .strip_prefix(protocol::StreamId::ORDER_PREFIX)?;
    if let Some(id) = state.orders.id(order_id) {
        return Some(id.clone());
    }
    match env.event.stream() {
        protocol::StreamId::Order(id) if id.as_str() == order_id => Some(id),
        _ => OrderId::parse(order_id).ok(),
    }
}

/// Apply a recorded event. Total: an event in the log is a fact, so `evolve`
/// never fails; it may only ignore what it cannot place. Each event family
/// has exactly one handler, chosen here without a catch-all, so a new
/// variant must be given a home before the crate compiles.
pub fn evolve(state: &mut DistrictState, env: &EventEnvelope) {
    state.last_seq = env.seq;
    record_stream_version(state, env);
    let rec = Recorded {
        seq: env.seq,
        at: env.recorded_at,
        district_id: &env.district_id,
    };
    let event = &env.event;
    let changed = match event {
        Event::MealDefined { .. }
        | Event::MealDiscontinued { .. }
        | Event::FridgeRegistered { .. } => catalog::evolve(state, event),
        Event::MealStockUpdated { .. }
        | Event::MealStockReserved { .. }
        | Event::MealStockReleased { .. }
        | Event::MealUnitsExpired { .. }
        | Event::StockMovementRecorded { .. }
        | Event::MealUnitPlacedForOrder { .. } => stock::evolve(state, event, rec),
        Event::OrderPlaced { .. }
        | Event::OrderCancelled { .. }
        | Event::OrderPickedUp { .. }
        | Event::OrderUnclaimed { .. }
        | Event::OrderFlagged { .. } => orders::evolve(state, event, rec),
        Event::PurchaseRequested { .. }
        | Event::OrderPurchaseConfirmed { .. }
        | Event::OrderPurchased { .. }
        | Event::OrderPurchaseRefused { .. }
        | Event::RefundRequested { .. }
        | Event::OrderRefunded { .. }
        | Event::PaymentResultRecorded { .. } => orders::payment::evolve(state, event, rec),
        Event::FridgeTelemetryReceived { .. }
        | Event::DoorPickupRefused { .. }
        | Event::PickupNothingTaken { .. }
        | Event::TemperatureRecovered { .. }
        | Event::FridgeStatusChanged { .. }
        | Event::FridgeQuarantined { .. }
        | Event::FridgeQuarantineLifted { .. } => fridges::evolve(state, event),
        Event::Schedule(e) => schedule::evolve(state, e, rec),
        Event::Promotion(e) => promotions::evolve(state, e),
        Event::Waitlist(e) => waitlist::evolve(state, e, rec),
        Event::Notification(e) => notifications::evolve(state, e),
        Event::Webhook(e) => webhooks::evolve(state, e, rec),
        Event::Restock(e) => restock::evolve(state, e),
        Event::OrdersArchived { order_ids } => {
            // The orders leave every area. Promotions first: it reads the
            // order's final status from the book to keep what a statement
            // needs; the book then drops the orders. Loyalty drops its
            // per-order record in `follow` below. The outbox has no row for
            // them (archiving waits for every payment), nor do stock,
            // notifications or the waitlist keep anything per final order.
            promotions::archived(state, order_ids);
            orders::archive::evolve(state, order_ids);
            false
        }
    };
    // Not a second handler of the event: a reader of what the order
    // handlers decided, queueing what it means for the points ledger.
    loyalty::follow(state, event, rec);
    // Likewise: what the event means for its customers' notifications.
    notifications::follow(state, event, rec);
    // Likewise: the shelves' demand history behind par suggestions.
    restock::follow(state, event, rec);
    if changed {
        state.catalog_version = env.seq;
    }
}

/// Given/when/then helpers for the crate's unit tests: a state is built
/// from events, as the log would build it.
#[cfg(test)]
pub(crate) mod given {
    use super::*;

    /// A fixed instant: tests never read the clock either.
    pub fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    /// `event` recorded in district `d` at `at`, as the `seq`th event and
    /// its stream's `stream_version`th.
    pub fn envelope(
        seq: u64,
        stream_id: String,
        stream_version: u64,
        event: Event,
        at: DateTime<Utc>,
    ) -> EventEnvelope {
        EventEnvelope {
            event_id: Default::default(),
            seq,
            stream_id,
            stream_version,
            district_id: DistrictId::from_static("d"),
            recorded_at: at,
            valid_from: at,
            correlation_id: None,
            causation_id: None,
            schema_version: 1,
            event,
        }
    }

    /// Applies `events` to `state` as the writer would (next seqs, `at`).
    pub fn apply(state: &mut DistrictState, events: Vec<Event>, at: DateTime<Utc>) {
        for event in events {
            let stream_id = event.stream_id();
            let version = state.stream_version(&stream_id) + 1;
            let env = envelope(state.last_seq + 1, stream_id, version, event, at);
            evolve(state, &env);
        }
    }

    /// `customer`'s order `order_id` for one 12.50 USD bowl (`m1`) at
    /// fridge `f1`, at list price, paid with `tok_visa`.
    pub fn bowl_placed(
        order_id: &str,
        customer: &str,
        channel: protocol::orders::Channel,
    ) -> Event {
        use protocol::money::Currency;
        use protocol::orders::OrderLine;
        Event::OrderPlaced {
            order_id: OrderId::parse(order_id).unwrap_or_else(|_| unreachable!()),
            customer: customer.into(),
            channel,
            fridge_id: FridgeId::from_static("f1"),
            lines: vec![OrderLine {
                meal_id: MealId::from_static("m1"),
                name: "Bowl".into(),
                qty: 1,
                unit_price: 1_250,
            }],
            total: 1_250,
            currency: Currency::try_from("USD".to_string()).unwrap_or_else(|_| unreachable!()),
            payment_method: "tok_visa".into(),
            hold_until: t0(),
            idempotency: None,
            price: None,
        }
    }

    /// The state the events leave.
    pub fn state(events: Vec<Event>) -> DistrictState {
        let mut state = DistrictState::default();
        apply(&mut state, events, t0());
        state
    }
}

#[cfg(test)]
mod stream_versions {
    use super::*;

    fn recorded(stream_id: &str, stream_version: u64, event: Event) -> EventEnvelope {
        given::envelope(1, stream_id.to_string(), stream_version, event, given::t0())
    }

    fn cancelled(order_id: &'static str) -> Event {
        Event::OrderCancelled {
            order_id: OrderId::from_static(order_id),
        }
    }

    #[test]
    fn an_orders_stream_is_kept_by_the_events_own_id() {
        let mut state = DistrictState::default();
        let env = recorded("order-o-1", 3, cancelled("o-1"));
        evolve(&mut state, &env);

        assert_eq!(state.stream_version("order-o-1"), 3);
        let (kept, _) = state.order_versions.iter().next().unwrap();
        let Event::OrderCancelled { order_id } = &env.event else {
            unreachable!()
        };
        assert_eq!(
            kept.as_str().as_ptr(),
            order_id.as_str().as_ptr(),
            "the event's id, not a copy"
        );
        assert!(state.stream_versions.is_empty(), "no string key beside it");
    }

    #[test]
    fn an_event_with_its_own_copy_of_a_booked_orders_id_is_kept_by_the_books() {
        let mut state = DistrictState::default();
        let placed = given::bowl_placed("o-1", "ann", protocol::orders::Channel::App);
        evolve(&mut state, &recorded("order-o-1", 1, placed));
        // As a payment result or the log's decoding makes it: a new copy.
        let copy = OrderId::parse(String::from("o-1")).unwrap_or_else(|_| unreachable!());
        let cancel = Event::OrderCancelled { order_id: copy };
        evolve(&mut state, &recorded("order-o-1", 2, cancel));

        assert_eq!(state.stream_version("order-o-1"), 2);
        let (kept, _) = state.order_versions.iter().next().unwrap();
        let booked = state.orders().id("o-1").unwrap();
        assert_eq!(kept.as_str().as_ptr(), booked.as_str().as_ptr());
    }

    #[test]
    fn the_envelopes_stream_counts_even_when_the_event_names_another_order() {
        let mut state = DistrictState::default();
        evolve(&mut state, &recorded("order-o-2", 5, cancelled("o-1")));

        assert_eq!(state.stream_version("order-o-2"), 5);
        assert_eq!(state.stream_version("order-o-1"), 0);
    }

    #[test]
    fn an_order_stream_without_a_valid_id_and_other_streams_are_kept_by_their_string() {
        let mut state = DistrictState::default();
        let bad = format!("order-{}", "x".repeat(OrderId::MAX_LEN + 1));
        evolve(&mut state, &recorded(&bad, 2, cancelled("o-1")));
        evolve(&mut state, &recorded("loyalty", 7, cancelled("o-1")));

        assert_eq!(state.stream_version(&bad), 2);
        assert_eq!(state.stream_version("loyalty"), 7);
        assert!(state.order_versions.is_empty());
    }
}
