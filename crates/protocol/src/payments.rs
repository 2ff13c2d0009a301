//! Messages between region nodes and the global payments service over NATS
//! JetStream (postcard-encoded, each well under 1 KB).
//!
//! A node publishes [`PaymentRequest`]s and the payments service answers
//! with [`PaymentResult`]s, many to a message (`bus::batch`, under a hash
//! of their [`PaymentRequest::msg_id`]s) or, in the first wire shape, one
//! to a message under its own msg id. Both sides are idempotent per
//! `(kind, order_id)`, so redelivery and repeats are harmless. The shapes live here because the log and the
//! pure decider use them (the outbox is keyed by [`msg_id`]); subjects,
//! streams and consumers are the broker's business and live in the `bus`
//! crate.

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::orders::OrderId;
use crate::DistrictId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PaymentKind {
    Charge,
    Refund,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    pub kind: PaymentKind,
    pub order_id: OrderId,
    pub district_id: DistrictId,
    pub amount: i64,
    pub currency: Currency,
    pub payment_method: String,
    /// A charge must not be made after this instant (unix ms).
    pub deadline_unix_ms: i64,
}

impl PaymentRequest {
    /// What is asked for: the charge or the refund, in its currency.
    pub fn money(&self) -> Money {
        Money::new(self.amount, self.currency.clone())
    }

    /// De-duplication id for JetStream and the payments service's records.
    pub fn msg_id(&self) -> String {
        msg_id(self.kind, &self.order_id)
    }
}

pub fn msg_id(kind: PaymentKind, order_id: &str) -> String {
    match kind {
        PaymentKind::Charge => format!("charge-{order_id}"),
        PaymentKind::Refund => format!("refund-{order_id}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentOutcome {
    Approved { reference: String },
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub kind: PaymentKind,
    pub order_id: OrderId,
    pub district_id: DistrictId,
    pub outcome: PaymentOutcome,
}
