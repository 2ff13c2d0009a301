//! Domain events: the facts a region appends to its log.
//!
//! Variants are append-only: postcard encodes the variant index, so a new
//! variant goes at the end and an existing one is never reordered or changed
//! in place (see [`crate::codec`] for how a changed shape gets a new schema
//! version and an upcaster).

use serde::{Deserialize, Serialize};

use crate::StreamId;

use chrono::{DateTime, Utc};

use crate::catalog::{Fridge, FridgeStatus, Meal};
use crate::money::Currency;
use crate::orders::{Channel, OrderId, OrderLine, RefundReason, RefusalReason};
use crate::payments::PaymentKind;
use crate::{FridgeId, KitchenId, MealId};

/// Why a stock level was set to an absolute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockSource {
    /// An admin or kitchen correction through the API.
    Manual,
    /// A fridge inventory scan (through the fridge ACL).
    Scan,
}

/// Externally tagged on purpose: postcard cannot decode internally tagged
/// enums (they need a self-describing format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A meal was created or its definition replaced.
    MealDefined {
        meal: Meal,
    },
    /// A meal left the catalog; open orders keep their snapshot.
    MealDiscontinued {
        meal_id: MealId,
    },
    /// A fridge was registered or its registration updated.
    FridgeRegistered {
        fridge: Fridge,
        /// Present when the registration provisions or rotates the secret.
        secret: Option<String>,
    },
    /// Absolute units of a meal now in a fridge.
    MealStockUpdated {
        fridge_id: FridgeId,
        meal_id: MealId,
        on_hand: u32,
        source: StockSource,
    },
    /// An order was confirmed; its stock is reserved by the
    /// `MealStockReserved` events that follow in the same batch.
    OrderPlaced {
        order_id: OrderId,
        customer: String,
        channel: Channel,
        fridge_id: FridgeId,
        lines: Vec<OrderLine>,
        total: i64,
        currency: Currency,
        payment_method: String,
        hold_until: DateTime<Utc>,
        /// `(key, request fingerprint)` from the `Idempotency-Key` header.
        idempotency: Option<(String, u64)>,
        /// The price after promotions; `None`: the list price (`total`).
        /// Appended in log schema 2: a version-1 log recorded it as a
        /// separate `OrderPriced` event after this one, which is still
        /// applied. One record per order instead of two is what keeps a
        /// priced confirm as cheap as a list-price one (issue 12).
        #[serde(default, deserialize_with = "crate::codec::since_v2")]
        price: Option<crate::promotions::OrderPrice>,
    },
    MealStockReserved {
        order_id: OrderId,
        fridge_id: FridgeId,
        meal_id: MealId,
        qty: u32,
    },
    MealStockReleased {
        order_id: OrderId,
        fridge_id: FridgeId,
        meal_id: MealId,
        qty: u32,
    },
    /// Cancelled by the customer (or an admin) before pickup.
    OrderCancelled {
        order_id: OrderId,
    },
    /// The grace window ended: a charge is requested. This event is the
    /// outbox row: the relay publishes it until a result is recorded.
    PurchaseRequested {
        order_id: OrderId,
        amount: i64,
        currency: Currency,
        deadline: DateTime<Utc>,
    },
    OrderPurchaseConfirmed {
        order_id: OrderId,
        reference: String,
    },
    OrderPurchased {
        order_id: OrderId,
        pickup_code: String,
        pickup_deadline: DateTime<Utc>,
    },
    OrderPurchaseRefused {
        order_id: OrderId,
        reason: RefusalReason,
    },
    /// A refund is requested (outbox row, like `PurchaseRequested`).
    RefundRequested {
        order_id: OrderId,
        amount: i64,
        currency: Currency,
        reason: RefundReason,
    },
    OrderRefunded {
        order_id: OrderId,
        reference: String,
    },
    /// A payment result that changed nothing (duplicate, or declined refund),
    /// kept so the outbox knows the request was answered.
    PaymentResultRecorded {
        order_id: OrderId,
        kind: PaymentKind,
        approved: bool,
    },
    OrderPickedUp {
        order_id: OrderId,
    },
    /// Not picked up by the deadline; units go back to general stock.
    OrderUnclaimed {
        order_id: OrderId,
    },
    /// A telemetry batch was taken in. `cursor_json` is the fridge ACL's
    /// cursor after it (sequence, stock model, temperature story), stored
    /// with the events the batch caused so neither exists without the other;
    /// `outcome_json` is the answer the fridge got.
    FridgeTelemetryReceived {
        fridge_id: FridgeId,
        cursor_json: String,
        outcome_json: String,
        /// The fridge signed with its new secret: the previous one is dropped.
        forget_previous_secret: bool,
    },
    /// The fridge went offline (silent too long) or came back.
    FridgeStatusChanged {
        fridge_id: FridgeId,
        status: FridgeStatus,
        reason: String,
    },
    /// Too warm for too long: every unit in the fridge is withheld and the
    /// fridge leaves the catalog until an operator lifts the quarantine.
    /// `kitchens` are alerted (their meals were in it).
    FridgeQuarantined {
        fridge_id: FridgeId,
        since: DateTime<Utc>,
        max_milli_c: i32,
        limit_milli_c: i32,
        kitchens: Vec<KitchenId>,
    },
    /// An operator cleared the fridge (unsafe meals removed).
    FridgeQuarantineLifted {
        fridge_id: FridgeId,
    },
    /// Units past their best-before on the shelf: not for sale any more.
    MealUnitsExpired {
        fridge_id: FridgeId,
        meal_id: MealId,
        units: u32,
    },
    /// Units moved by a door session other than a pickup (refill, staff
    /// withdrawal, shrinkage). Informational: the absolute count follows as
    /// `MealStockUpdated`.
    StockMovementRecorded {
        fridge_id: FridgeId,
        /// Always a meal since `DoorPickupRefused` exists; `None` (an empty
        /// string on the wire) in the refused door pickups recorded before.
        #[serde(with = "legacy_meal_id")]
        meal_id: Option<MealId>,
        /// Positive for units added, negative for units taken.
        units: i64,
        movement: StockMovement,
        detail: String,
    },
    /// The fridge holds fewer units than this order was promised: its
    /// customer is told before walking there.
    OrderFlagged {
        order_id: OrderId,
        meal_id: MealId,
        reason: String,
    },
    /// Subscriptions, the working-day calendar and scheduled orders.
    Schedule(crate::schedule::ScheduleEvent),
    /// The fridge saw a pickup with an order's code that the order book
    /// could not take (already picked up by hand, cancelled, unknown): kept
    /// so an operator can find it. The stock count that follows in the same
    /// report still sets the shelf right. (Before this variant existed, such
    /// pickups were recorded as a `StockMovementRecorded` shrinkage with an
    /// empty meal id; those records stay as they are.)
    DoorPickupRefused {
        fridge_id: FridgeId,
        order_id: OrderId,
        reason: String,
    },
    /// A kitchen put one unit of a meal in the fridge for one order (a plan
    /// day): on hand +1, reserved for that order, as a lot of its own with
    /// its own best-before. That unit, not the oldest on the shelf, is the
    /// one the order's pickup takes; it goes back on sale only if the order
    /// releases it (unclaimed), with its own best-before. (Placements
    /// recorded before this variant existed are a `MealStockUpdated` plus a
    /// `MealStockReserved`; those records stay as they are.)
    MealUnitPlacedForOrder {
        order_id: OrderId,
        fridge_id: FridgeId,
        meal_id: MealId,
    },
    /// A door session opened with an order's valid pickup code took none of
    /// its meals (often a shortage seen at the shelf). The order stays open;
    /// kept so an operator can follow up.
    PickupNothingTaken {
        fridge_id: FridgeId,
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// The fridge is back at or below the limit after an excursion.
    /// Informational: a quarantine is lifted only by an operator.
    TemperatureRecovered {
        fridge_id: FridgeId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        max_milli_c: i32,
    },
    /// Campaigns, coupons, subsidies and the price of an order after them.
    Promotion(crate::promotions::PromotionEvent),
    /// Back-in-stock waitlists: entries and the short holds they are offered.
    Waitlist(crate::waitlist::WaitlistEvent),
    /// Pickup reminders and quiet hours (most notifications are derived
    /// from the other events: see `district::notifications`).
    Notification(crate::notifications::NotificationEvent),
    /// Webhook endpoints registered and disabled by admins.
    Webhook(crate::webhooks::WebhookEvent),
    /// Par levels per fridge and meal, set by admins (restocking).
    Restock(crate::restock::RestockEvent),
    /// These orders, final for longer than the district's retention, leave
    /// the in-memory state (issue 15): every area drops what it keeps per
    /// order. Their events stay in the log, and the node serves their final
    /// view from its archive index. At most `MAX_ARCHIVED_PER_EVENT` ids.
    OrdersArchived {
        order_ids: Vec<OrderId>,
    },
}

/// The most order ids one [`Event::OrdersArchived`] names: a batch the
/// writer applies in well under a millisecond, and a log record of about
/// 30 KiB.
pub const MAX_ARCHIVED_PER_EVENT: usize = 1024;

/// `StockMovementRecorded.meal_id`: released logs hold refused door pickups
/// as movements with an empty meal id, which is no [`MealId`]. They decode
/// as `None` and re-encode as the empty string, so those records keep their
/// bytes; every other value is parsed like any meal id.
mod legacy_meal_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::MealId;

    pub fn serialize<S: Serializer>(id: &Option<MealId>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_ref().map_or("", |id| id.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MealId>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        MealId::parse(text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Kinds of stock movement a fridge reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockMovement {
    Refill,
    Withdrawal,
    Shrinkage,
    /// Units put in by someone who is not staff (a meal put back).
    Returned,
}

impl Event {
    /// The stream (aggregate) this event belongs to; per-stream versions are
    /// what optimistic concurrency checks.
    /// The stream the event belongs to (optimistic concurrency is per stream).
    pub fn stream(&self) -> StreamId {
        match self {
            Event::MealDefined { meal } => StreamId::Meal(meal.meal_id.clone()),
            Event::MealDiscontinued { meal_id } => StreamId::Meal(meal_id.clone()),
            Event::FridgeRegistered { fridge, .. } => StreamId::Fridge(fridge.fridge_id.clone()),
            Event::MealStockUpdated { fridge_id, .. } => StreamId::Stock(fridge_id.clone()),
            Event::OrderPlaced { order_id, .. }
            | Event::MealStockReserved { order_id, .. }
            | Event::MealStockReleased { order_id, .. }
            | Event::OrderCancelled { order_id }
            | Event::PurchaseRequested { order_id, .. }
            | Event::OrderPurchaseConfirmed { order_id, .. }
            | Event::OrderPurchased { order_id, .. }
            | Event::OrderPurchaseRefused { order_id, .. }
            | Event::RefundRequested { order_id, .. }
            | Event::OrderRefunded { order_id, .. }
            | Event::PaymentResultRecorded { order_id, .. }
            | Event::OrderPickedUp { order_id }
            | Event::OrderUnclaimed { order_id }
            | Event::OrderFlagged { order_id, .. }
            | Event::MealUnitPlacedForOrder { order_id, .. } => StreamId::Order(order_id.clone()),
            Event::FridgeTelemetryReceived { fridge_id, .. }
            | Event::DoorPickupRefused { fridge_id, .. }
            | Event::PickupNothingTaken { fridge_id, .. }
            | Event::TemperatureRecovered { fridge_id, .. } => {
                StreamId::Telemetry(fridge_id.clone())
            }
            Event::FridgeStatusChanged { fridge_id, .. }
            | Event::FridgeQuarantined { fridge_id, .. }
            | Event::FridgeQuarantineLifted { fridge_id } => StreamId::Fridge(fridge_id.clone()),
            Event::MealUnitsExpired { fridge_id, .. }
            | Event::StockMovementRecorded { fridge_id, .. } => StreamId::Stock(fridge_id.clone()),
            Event::Schedule(e) => e.stream(),
            Event::Promotion(e) => e.stream(),
            Event::Waitlist(e) => e.stream(),
            Event::Notification(e) => e.stream(),
            Event::Webhook(e) => e.stream(),
            Event::Restock(e) => e.stream(),
            Event::OrdersArchived { .. } => StreamId::Archive,
        }
    }

    /// The stream id as recorded in envelopes.
    pub fn stream_id(&self) -> String {
        self.stream().to_string()
    }

    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::MealDefined { .. } => "MealDefined",
            Event::MealDiscontinued { .. } => "MealDiscontinued",
            Event::FridgeRegistered { .. } => "FridgeRegistered",
            Event::MealStockUpdated { .. } => "MealStockUpdated",
            Event::OrderPlaced { .. } => "OrderPlaced",
            Event::MealStockReserved { .. } => "MealStockReserved",
            Event::MealStockReleased { .. } => "MealStockReleased",
            Event::OrderCancelled { .. } => "OrderCancelled",
            Event::PurchaseRequested { .. } => "PurchaseRequested",
            Event::OrderPurchaseConfirmed { .. } => "OrderPurchaseConfirmed",
            Event::OrderPurchased { .. } => "OrderPurchased",
            Event::OrderPurchaseRefused { .. } => "OrderPurchaseRefused",
            Event::RefundRequested { .. } => "RefundRequested",
            Event::OrderRefunded { .. } => "OrderRefunded",
            Event::PaymentResultRecorded { .. } => "PaymentResultRecorded",
            Event::OrderPickedUp { .. } => "OrderPickedUp",
            Event::OrderUnclaimed { .. } => "OrderUnclaimed",
            Event::FridgeTelemetryReceived { .. } => "FridgeTelemetryReceived",
            Event::FridgeStatusChanged { .. } => "FridgeStatusChanged",
            Event::FridgeQuarantined { .. } => "FridgeQuarantined",
            Event::FridgeQuarantineLifted { .. } => "FridgeQuarantineLifted",
            Event::MealUnitsExpired { .. } => "MealUnitsExpired",
            Event::StockMovementRecorded { .. } => "StockMovementRecorded",
            Event::OrderFlagged { .. } => "OrderFlagged",
            Event::DoorPickupRefused { .. } => "DoorPickupRefused",
            Event::MealUnitPlacedForOrder { .. } => "MealUnitPlacedForOrder",
            Event::PickupNothingTaken { .. } => "PickupNothingTaken",
            Event::TemperatureRecovered { .. } => "TemperatureRecovered",
            Event::Schedule(e) => e.kind(),
            Event::Promotion(e) => e.kind(),
            Event::Waitlist(e) => e.kind(),
            Event::Notification(e) => e.kind(),
            Event::Webhook(e) => e.kind(),
            Event::Restock(e) => e.kind(),
            Event::OrdersArchived { .. } => "OrdersArchived",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused door pickup as released logs hold it: a shrinkage with an
    /// empty meal id (postcard: variant index, then the fields in order).
    #[test]
    fn movements_without_a_meal_keep_decoding_and_their_bytes() {
        let mut legacy = vec![22u8];
        legacy.extend(
            postcard::to_stdvec(&(
                "f-campus",
                "",
                -1i64,
                StockMovement::Shrinkage,
                "door session 9",
            ))
            .unwrap(),
        );
        let event: Event = postcard::from_bytes(&legacy).unwrap();
        let Event::StockMovementRecorded { meal_id, .. } = &event else {
            panic!("decoded {event:?}");
        };
        assert_eq!(meal_id, &None);
        assert_eq!(postcard::to_stdvec(&event).unwrap(), legacy);

        let mut bad = vec![22u8];
        bad.extend(
            postcard::to_stdvec(&("f-campus", "bad id!", -1i64, StockMovement::Shrinkage, ""))
                .unwrap(),
        );
        assert!(postcard::from_bytes::<Event>(&bad).is_err());
    }
}
