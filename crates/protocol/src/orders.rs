//! Orders: what a customer or POS sends, what the order keeps (its own
//! snapshot of names and prices), its statuses, and the API views.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::ValidationError;
use crate::{FridgeId, MealId};

pub use crate::ids::OrderId;

/// Most lines in one order.
pub const MAX_ORDER_LINES: usize = 10;
/// Most units of one meal in one order.
pub const MAX_QTY_PER_LINE: u32 = 10;
/// Longest `Idempotency-Key` header, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Longest payment method token, in bytes.
pub const MAX_PAYMENT_METHOD_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    pub meal_id: MealId,
    pub qty: u32,
}

/// Body of `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub fridge_id: FridgeId,
    pub items: Vec<OrderItem>,
    #[serde(default)]
    pub coupon: Option<String>,
    #[serde(default)]
    pub share_code: Option<String>,
    /// Bonus points to spend on this order (reserved with the global
    /// ledger before the order is confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    /// A token from the payment provider's client SDK (the sandbox declines
    /// `tok_decline`).
    pub payment_method: String,
    /// Order ahead: the district-local date to pick the meal up on. The
    /// kitchen makes it for that day; nothing is taken from today's shelf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_date: Option<chrono::NaiveDate>,
}

impl PlaceOrder {
    /// Rules beyond the ids (which are valid by their types).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.items.is_empty() || self.items.len() > MAX_ORDER_LINES {
            return Err(ValidationError::LineCount {
                max: MAX_ORDER_LINES,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for item in &self.items {
            if !(1..=MAX_QTY_PER_LINE).contains(&item.qty) {
                return Err(ValidationError::NotBetweenOneAnd {
                    field: "qty",
                    max: MAX_QTY_PER_LINE,
                });
            }
            if !seen.insert(item.meal_id.as_str()) {
                return Err(ValidationError::OrderedTwice {
                    meal_id: item.meal_id.clone(),
                });
            }
        }
        if self.payment_method.is_empty() || self.payment_method.len() > MAX_PAYMENT_METHOD_LEN {
            return Err(ValidationError::Length {
                field: "payment_method",
                min: 1,
                max: MAX_PAYMENT_METHOD_LEN,
            });
        }
        Ok(())
    }
}

/// One line of an order, with the name and price at confirm time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub meal_id: MealId,
    pub name: String,
    pub qty: u32,
    pub unit_price: i64,
}

/// Who placed an order, which decides the grace window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    App,
    Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    Declined,
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Held,
    Paying,
    Purchased,
    PickedUp,
    Cancelled,
    Refused,
    Refunded,
    Unclaimed,
    /// A subscription order: made from a plan, prepaid, not yet cooked.
    Scheduled,
    /// The kitchen cooked it.
    Prepared,
    /// On its way to the fridge.
    Dispatched,
    /// In the fridge, reserved for the subscriber, pickup code issued.
    Available,
}

impl OrderStatus {
    /// Whether the order waits in the fridge for its pickup code: a
    /// purchased one-off order, or a subscription order placed there.
    pub fn awaits_pickup(self) -> bool {
        matches!(self, OrderStatus::Purchased | OrderStatus::Available)
    }

    /// Whether the order's life is over: nothing moves it on any more
    /// (picked up, cancelled, refused, refunded, unclaimed). A cancelled
    /// order may still owe a refund: see the order's `refund_pending`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::PickedUp
                | OrderStatus::Cancelled
                | OrderStatus::Refused
                | OrderStatus::Refunded
                | OrderStatus::Unclaimed
        )
    }

    /// Whether the order still holds stock.
    pub fn holds_stock(self) -> bool {
        matches!(
            self,
            OrderStatus::Held
                | OrderStatus::Paying
                | OrderStatus::Purchased
                | OrderStatus::Available
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// The customer cancelled after paying, before pickup.
    Cancelled,
    /// The charge was confirmed after the order had timed out.
    LateConfirmation,
    /// An order ahead was not placed in its fridge on its day (not
    /// produced, the kitchen or fridge closed that day).
    NotDelivered,
}

/// `201` body of `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccepted {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub hold_until: DateTime<Utc>,
    /// What the payment method is charged: the list price after any
    /// campaign, coupon and subsidy.
    pub total: i64,
    pub currency: Currency,
    /// How promotions got from the list price to `total` (absent when
    /// none applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::promotions::PriceSplit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
}

/// `GET /v1/orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub fridge_id: FridgeId,
    pub lines: Vec<OrderLine>,
    /// What the payment method is charged (after promotions).
    pub total: i64,
    pub currency: Currency,
    /// How promotions got from the list price to `total` (absent when
    /// none applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::promotions::PriceSplit>,
    /// The buyer's share code, on a bought app order: a purchase made
    /// with it credits the buyer (`/v1/me/referrals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_code: Option<String>,
    /// When the grace window ends (app and POS orders; a subscription order
    /// is prepaid and has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<DateTime<Utc>>,
    /// While the order awaits its pickup, or once picked up; never on an
    /// order that ended without one (unclaimed, cancelled, refunded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_deadline: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_reason: Option<RefusalReason>,
    pub refund_pending: bool,
    pub history: Vec<StatusChange>,
    /// Meals the fridge turned out to hold too few of for this order (from
    /// its inventory scan): the customer should not walk there for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortage: Vec<MealId>,
    /// For a subscription order: the day it is for (the district's date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_date: Option<chrono::NaiveDate>,
    /// For a withdrawn subscription order (`cancelled`): why, and what was
    /// credited to the subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Withdrawal>,
    /// For an order ahead (a `pickup_date` was given): until when it may
    /// be cancelled for a full refund (the change cutoff of the day before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_until: Option<DateTime<Utc>>,
}

/// Why a subscription order was withdrawn and what it credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub reason: crate::schedule::WithdrawReason,
    pub credited: i64,
}
