//! Stream ids: which aggregate an event belongs to. Envelopes record them
//! as strings (`order-01J…`, `plan-p1`, `calendar-2026-12-01`); code uses
//! [`StreamId`] so nobody parses an id back out of its string shape.

use std::fmt;

use chrono::NaiveDate;

use crate::orders::OrderId;
use crate::schedule::PlanId;
use crate::{CampaignId, CouponCode, FridgeId, MealId, SubsidyId, WebhookId};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    Meal(MealId),
    /// A fridge's registration and operational status.
    Fridge(FridgeId),
    /// A fridge's shelves.
    Stock(FridgeId),
    /// A fridge's telemetry (the ACL cursor and door anomalies).
    Telemetry(FridgeId),
    Order(OrderId),
    Plan(PlanId),
    Calendar(NaiveDate),
    Campaign(CampaignId),
    Coupon(CouponCode),
    Subsidy(SubsidyId),
    /// The district's loyalty rules and its ledger outbox.
    Loyalty,
    /// One back-in-stock waitlist entry and its holds.
    Waitlist(crate::WaitlistId),
    /// Pickup reminders and customers' quiet hours.
    Notifications,
    /// A webhook endpoint's registration.
    Webhook(WebhookId),
    /// A fridge's par levels (restocking).
    Restock(FridgeId),
    /// The district's decisions to archive final orders.
    Archive,
}

impl StreamId {
    /// How an order's stream id starts: `order-{id}`. The district keeps
    /// order streams' versions apart from the others by it.
    pub const ORDER_PREFIX: &'static str = "order-";
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Meal(id) => write!(f, "meal-{id}"),
            StreamId::Fridge(id) => write!(f, "fridge-{id}"),
            StreamId::Stock(id) => write!(f, "stock-{id}"),
            StreamId::Telemetry(id) => write!(f, "telemetry-{id}"),
            StreamId::Order(id) => write!(f, "{}{id}", StreamId::ORDER_PREFIX),
            StreamId::Plan(id) => write!(f, "plan-{id}"),
            StreamId::Calendar(date) => write!(f, "calendar-{date}"),
            StreamId::Campaign(id) => write!(f, "campaign-{id}"),
            StreamId::Coupon(code) => write!(f, "coupon-{code}"),
            StreamId::Subsidy(id) => write!(f, "subsidy-{id}"),
            StreamId::Loyalty => write!(f, "loyalty"),
            StreamId::Waitlist(id) => write!(f, "waitlist-{id}"),
            StreamId::Notifications => write!(f, "notifications"),
            StreamId::Webhook(id) => write!(f, "webhook-{id}"),
            StreamId::Restock(id) => write!(f, "restock-{id}"),
            StreamId::Archive => write!(f, "archive"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_shapes_stay_as_released() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let cases = [
            (StreamId::Meal(MealId::from_static("m-1")), "meal-m-1"),
            (StreamId::Fridge(FridgeId::from_static("f-1")), "fridge-f-1"),
            (StreamId::Stock(FridgeId::from_static("f-1")), "stock-f-1"),
            (
                StreamId::Telemetry(FridgeId::from_static("f-1")),
                "telemetry-f-1",
            ),
            (StreamId::Order(OrderId::from_static("01J")), "order-01J"),
            (StreamId::Plan(PlanId::from_static("p-1")), "plan-p-1"),
            (StreamId::Calendar(date), "calendar-2026-12-01"),
            (
                StreamId::Restock(FridgeId::from_static("f-1")),
                "restock-f-1",
            ),
            (StreamId::Archive, "archive"),
        ];
        for (id, text) in cases {
            assert_eq!(id.to_string(), text);
        }
    }
}
