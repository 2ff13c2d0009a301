//! The money half of an order's life: a purchase asks the payments service
//! for a charge (an outbox row), its result confirms or refuses the
//! purchase, money that arrived for an order no longer buying is refunded.
//! Results reach [`record`] through `outbox::record_result`.

use chrono::{DateTime, Utc};
use protocol::money::Money;
use protocol::orders::OrderId;
use protocol::orders::{OrderStatus, RefundReason, RefusalReason};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use protocol::{DistrictId, Event};

use super::{find, with_release, Order, OrderTimer};
use crate::outbox::OutboxKey;
use crate::{Context, DistrictState, DomainError, Recorded};

/// What a payment result means for its order.
pub(crate) fn record(
    state: &DistrictState,
    result: PaymentResult,
    pickup_code: String,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let order = find(state, &result.order_id, None)?;
    let order_id = result.order_id.clone();
    let events = match (result.kind, result.outcome, order.status) {
        (PaymentKind::Charge, PaymentOutcome::Approved { reference }, OrderStatus::Paying)
            if order.preorder.is_some() =>
        {
            crate::preorders::paid(order, reference)
        }
        (PaymentKind::Charge, PaymentOutcome::Approved { reference }, OrderStatus::Paying) => vec![
            Event::OrderPurchaseConfirmed {
                order_id: order_id.clone(),
                reference,
            },
            Event::OrderPurchased {
                order_id,
                pickup_code,
                pickup_deadline: ctx.now + ctx.policy.pickup_window,
            },
        ],
        // Money came in for an order that is no longer buying: give it back.
        (
            PaymentKind::Charge,
            PaymentOutcome::Approved { .. },
            OrderStatus::Refused | OrderStatus::Cancelled,
        ) if !order.refund_pending => {
            let charged = order.charged();
            vec![Event::RefundRequested {
                order_id,
                amount: charged.amount_minor,
                currency: charged.currency,
                reason: RefundReason::LateConfirmation,
            }]
        }
        (PaymentKind::Charge, PaymentOutcome::Declined { .. }, OrderStatus::Paying) => {
            with_release(
                order,
                vec![Event::OrderPurchaseRefused {
                    order_id,
                    reason: RefusalReason::Declined,
                }],
            )
        }
        (PaymentKind::Refund, PaymentOutcome::Approved { reference }, _)
            if order.refund_pending =>
        {
            vec![Event::OrderRefunded {
                order_id,
                reference,
            }]
        }
        (PaymentKind::Refund, PaymentOutcome::Declined { .. }, _) if order.refund_pending => {
            // The refund stays pending for an operator; the outbox row is done.
            vec![Event::PaymentResultRecorded {
                order_id,
                kind: PaymentKind::Refund,
                approved: false,
            }]
        }
        // Duplicates and results for orders that moved on change nothing.
        _ => vec![],
    };
    Ok(events)
}

/// The request for `amount` as the event that asked for it says (amount
/// and currency together, so the request cannot pair one with another's).
fn request(
    order: &Order,
    kind: PaymentKind,
    district: &DistrictId,
    amount: Money,
    deadline: DateTime<Utc>,
) -> PaymentRequest {
    PaymentRequest {
        kind,
        order_id: order.order_id.clone(),
        district_id: district.clone(),
        amount: amount.amount_minor,
        currency: amount.currency,
        payment_method: order.payment_method.clone(),
        deadline_unix_ms: deadline.timestamp_millis(),
    }
}

fn key(order_id: &OrderId, kind: PaymentKind) -> OutboxKey {
    OutboxKey::Order {
        order_id: order_id.clone(),
        kind,
    }
}

/// Applies the payment events of an order (its outbox rows and status);
/// they never change what the catalog shows.
pub(crate) fn evolve(state: &mut DistrictState, event: &Event, rec: Recorded) -> bool {
    match event {
        Event::PurchaseRequested {
            order_id,
            amount,
            currency,
            deadline,
        } => {
            let Some(order) = state.orders.get(order_id) else {
                return false;
            };
            let req = request(
                order,
                PaymentKind::Charge,
                rec.district_id,
                Money::new(*amount, currency.clone()),
                *deadline,
            );
            state
                .outbox
                .owe(key(order_id, PaymentKind::Charge), req, rec.seq);
            state.orders.update(order_id, |order| {
                order.timer = Some((*deadline, OrderTimer::PaymentTimeout));
                order.advance(OrderStatus::Paying, rec.at);
            });
        }
        Event::OrderPurchaseConfirmed { order_id, .. } => {
            state.outbox.settle(&key(order_id, PaymentKind::Charge));
        }
        Event::OrderPurchased {
            order_id,
            pickup_code,
            pickup_deadline,
        } => {
            let (code, deadline) = (pickup_code.as_str(), *pickup_deadline);
            let status = OrderStatus::Purchased;
            state
                .orders
                .await_pickup(order_id, status, code, deadline, rec.at);
        }
        Event::OrderPurchaseRefused { order_id, reason } => {
            state.outbox.settle(&key(order_id, PaymentKind::Charge));
            // Nothing was bought: the coupon use and budgets go back.
            crate::promotions::release(state, order_id, crate::promotions::Release::All);
            state.orders.update(order_id, |order| {
                order.timer = None;
                order.refusal_reason = Some(*reason);
                order.advance(OrderStatus::Refused, rec.at);
            });
        }
        Event::RefundRequested {
            order_id,
            amount,
            currency,
            ..
        } => {
            let Some(order) = state.orders.get(order_id) else {
                return false;
            };
            // Refunds have no deadline: money owed is paid back whenever it can be.
            let req = request(
                order,
                PaymentKind::Refund,
                rec.district_id,
                Money::new(*amount, currency.clone()),
                DateTime::<Utc>::MAX_UTC,
            );
            state
                .outbox
                .owe(key(order_id, PaymentKind::Refund), req, rec.seq);
            state
                .orders
                .update(order_id, |order| order.refund_pending = true);
        }
        Event::OrderRefunded { order_id, .. } => {
            state.outbox.settle(&key(order_id, PaymentKind::Refund));
            state.orders.update(order_id, |order| {
                order.refund_pending = false;
                order.advance(OrderStatus::Refunded, rec.at);
            });
        }
        Event::PaymentResultRecorded { order_id, kind, .. } => {
            state.outbox.settle(&key(order_id, *kind));
        }
        _ => {}
    }
    false
}
