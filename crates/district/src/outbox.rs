//! The one money path: what the district owes the payments service.
//!
//! A row is a payment request whose result is not recorded yet, keyed by
//! what it pays for ([`OutboxKey`]): an order's charge or refund, a
//! plan's weekly charge, or a refund of a subscriber's credit against one
//! (`CreditRefundRequested`). Rows are written only by the handlers of the
//! events that ask for money (`PurchaseRequested`, `RefundRequested`,
//! `ChargeRequested`) and of those that settle it, so the outbox is exactly
//! as durable as the decisions behind it. The NATS relay publishes rows
//! (new ones from each committed batch via [`Outbox::requested_after`],
//! and all of them on a rescan) and a result comes back through
//! [`record_result`], which sends a plan charge's result to the schedule
//! and every other result to the order book.
//!
//! ```text
//! orders::decide ─PurchaseRequested/RefundRequested─┐
//! schedule::decide ─ChargeRequested─────────────────┤ evolve → Outbox::owe
//!                                                   ▼
//!            region-node nats relay ── publish ──▶ payments service
//!                                                   │ result
//!  Command::RecordPayment ─▶ outbox::record_result ─┤─ OutboxKey::Order ─▶ orders::payment
//!                                                   └─ OutboxKey::PlanCharge ─▶ schedule
//! ```

use imbl::OrdMap;
use protocol::orders::OrderId;
use protocol::payments::{msg_id, PaymentKind, PaymentRequest, PaymentResult};
use protocol::{ChargeId, Event};

use crate::{Context, DistrictState, DomainError};

/// What a payment is for.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum OutboxKey {
    /// An order's charge or refund.
    Order {
        order_id: OrderId,
        kind: PaymentKind,
    },
    /// A plan's weekly charge (`plan-{plan}-{monday}`).
    PlanCharge { charge_id: ChargeId },
    /// A refund of the subscriber's credit against that paid charge.
    PlanRefund { charge_id: ChargeId },
}

impl OutboxKey {
    /// The JetStream message id of the request: JetStream de-duplicates a
    /// republish by it, and the payments book answers it once.
    pub fn msg_id(&self) -> String {
        match self {
            OutboxKey::Order { order_id, kind } => msg_id(*kind, order_id),
            OutboxKey::PlanCharge { charge_id } => msg_id(PaymentKind::Charge, charge_id),
            OutboxKey::PlanRefund { charge_id } => msg_id(PaymentKind::Refund, charge_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Row {
    request: PaymentRequest,
    /// The seq of the event that asked for the payment.
    requested_seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outbox {
    rows: OrdMap<OutboxKey, Row>,
    /// Rows by the seq that asked for them, for the relay's "what is new".
    by_seq: OrdMap<u64, OutboxKey>,
}

impl Outbox {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn contains(&self, key: &OutboxKey) -> bool {
        self.rows.contains_key(key)
    }

    /// Every pending request.
    pub fn iter(&self) -> impl Iterator<Item = (&OutboxKey, &PaymentRequest)> {
        self.rows.iter().map(|(k, r)| (k, &r.request))
    }

    /// Pending requests asked for by events after `seq` (a committed batch's
    /// new requests: `seq` = the seq before the batch).
    pub fn requested_after(&self, seq: u64) -> impl Iterator<Item = (&OutboxKey, &PaymentRequest)> {
        self.by_seq
            .range(seq.saturating_add(1)..)
            .filter_map(|(_, key)| self.rows.get(key).map(|r| (key, &r.request)))
    }

    pub(crate) fn owe(&mut self, key: OutboxKey, request: PaymentRequest, requested_seq: u64) {
        if let Some(old) = self.rows.get(&key) {
            self.by_seq.remove(&old.requested_seq);
        }
        self.by_seq.insert(requested_seq, key.clone());
        self.rows.insert(
            key,
            Row {
                request,
                requested_seq,
            },
        );
    }

    pub(crate) fn settle(&mut self, key: &OutboxKey) {
        if let Some(row) = self.rows.remove(key) {
            self.by_seq.remove(&row.requested_seq);
        }
    }
}

/// A payment result, routed by what the payment was for: a charge id the
/// schedule knows (it records every `ChargeRequested`, also those fully
/// paid from credit, which owe nothing) goes to the schedule, anything else
/// to the order book. A duplicate or late result takes the same way and is
/// a no-op there.
pub fn record_result(
    state: &DistrictState,
    result: PaymentResult,
    pickup_code: String,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    // `ChargeRequested` records the charge in the schedule with its outbox
    // row, so a charge id the schedule knows is all there is to ask.
    let for_plan = state
        .schedule
        .charges
        .contains_key(result.order_id.as_str());
    if for_plan {
        Ok(crate::schedule::record_payment(state, result))
    } else {
        crate::orders::payment::record(state, result, pickup_code, ctx)
    }
}
