//! Archiving (issue 15): an order final for longer than the retention
//! leaves the in-memory state, so memory and the cost of every batch stay
//! flat however long the district has run. Its events stay in the log; the
//! node keeps each archived order's final view in its own index and serves
//! it from there.
//!
//! Archiving is a decision like any other: the node's tick submits
//! [`OrderCommand::Archive`](super::OrderCommand::Archive) with its clock's
//! `now`, [`decide`] names the orders (at most
//! [`MAX_ARCHIVED_PER_BATCH`]), and `OrdersArchived` makes every area drop
//! what it keeps per order. A replay applies the recorded decision, so the
//! state after a restart does not depend on when the node starts.
//!
//! Not archived, whatever their age:
//! - an order that still owes the payments service a charge or refund
//!   (an outbox row), or the points ledger an operation: those rows are
//!   money, settled by results that name the order;
//! - an order the schedule knows (a plan day's order or an order ahead):
//!   the scheduler reads its stage from the order book
//!   (`Catalog::order_status`) for the plan's credits and prep reports, so
//!   those stay until the schedule keeps its own record (a follow-up).

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use protocol::orders::OrderId;
use protocol::payments::PaymentKind;
use protocol::Event;

use super::Order;
use crate::outbox::OutboxKey;
use crate::{Context, DistrictState, DomainError};

/// The most orders one archiving decision names.
pub const MAX_ARCHIVED_PER_BATCH: usize = protocol::events::MAX_ARCHIVED_PER_EVENT;

/// How many final orders past the retention one decision looks at before
/// it stops, so a run of orders that may not be archived yet (a refund
/// waiting for its result) cannot make a tick walk the whole book.
pub const MAX_SCANNED_PER_BATCH: usize = 4 * MAX_ARCHIVED_PER_BATCH;

/// Default retention of final orders in the hot state, in days.
pub const RETENTION_DEFAULT_DAYS: u32 = 7;

/// The orders that may be archived at `now`, oldest final first.
pub fn candidates(state: &DistrictState, now: DateTime<Utc>, retention: Duration) -> Vec<&OrderId> {
    let mut finished = state
        .orders
        .finished_by(now - retention)
        .take(MAX_SCANNED_PER_BATCH)
        .peekable();
    // The common answer, asked every tick: nothing is old enough.
    if finished.peek().is_none() {
        return vec![];
    }
    let owed = crate::loyalty::orders_owed(state);
    finished
        .filter(|o| archivable(state, o, &owed))
        .map(|o| &o.order_id)
        .take(MAX_ARCHIVED_PER_BATCH)
        .collect()
}

/// Whether the node's tick has anything to submit.
pub fn due(state: &DistrictState, now: DateTime<Utc>, retention: Duration) -> bool {
    !candidates(state, now, retention).is_empty()
}

fn archivable(state: &DistrictState, order: &Order, owed: &HashSet<&str>) -> bool {
    debug_assert!(order.status.is_final());
    let id = &order.order_id;
    let owes_payment = [PaymentKind::Charge, PaymentKind::Refund]
        .into_iter()
        .any(|kind| {
            state.outbox.contains(&OutboxKey::Order {
                order_id: id.clone(),
                kind,
            })
        });
    let scheduled = order.delivery_date.is_some() || order.preorder.is_some();
    order.status.is_final()
        && !order.refund_pending
        && !owes_payment
        && !owed.contains(id.as_str())
        && !scheduled
}

/// `OrdersArchived` for the orders [`candidates`] names; nothing when none.
pub fn decide(state: &DistrictState, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let order_ids: Vec<OrderId> = candidates(state, ctx.now, ctx.policy.retention)
        .into_iter()
        .cloned()
        .collect();
    if order_ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![Event::OrdersArchived { order_ids }])
}

/// The order book's part of `OrdersArchived`: the orders and every index
/// entry they have leave the book. Only final orders go (a log written by
/// a decider that archived anything else would be wrong; it is ignored).
pub(crate) fn evolve(state: &mut DistrictState, order_ids: &[OrderId]) {
    for id in order_ids {
        let is_final = state.orders.get(id).map(|o| o.status.is_final());
        if is_final == Some(true) {
            state.orders.remove(id);
            state.order_versions.remove(id);
        }
    }
}
