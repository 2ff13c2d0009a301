//! Orders as a pure decider: confirm with reservation, grace window, purchase
//! through a payment request, results, refunds, pickup, unclaimed.
//!
//! The payment requests an order needs (the outbox) and the timers it waits on
//! are part of the state derived here from events, so one atomic log append
//! records a decision, its outbox row and its timer together.

use chrono::{DateTime, Duration, Utc};
use imbl::Vector;
use protocol::catalog::FridgeStatus;
use protocol::orders::{
    Channel, OrderId, OrderLine, OrderStatus, PlaceOrder, RefundReason, RefusalReason, StatusChange,
};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use protocol::{Event, FridgeId, MealId};

use super::{Context, DistrictState, DomainError};

/// What an order is waiting for next; at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderTimer {
    /// The grace window ends: start the purchase.
    GraceWindowEnd,
    /// No payment result by now: refuse.
    PaymentTimeout,
    /// Not picked up by now: unclaimed.
    PickupDeadline,
}

/// Default grace window for app orders, in seconds (undo-send style).
pub const GRACE_WINDOW_DEFAULT_SECS: u32 = 20;
/// Configurable range of the app grace window, in seconds.
pub const GRACE_WINDOW_MIN_SECS: u32 = 10;
pub const GRACE_WINDOW_MAX_SECS: u32 = 30;
/// POS terminals stand next to the fridge: the customer pays right away.
pub const POS_GRACE_WINDOW_DEFAULT_SECS: u32 = 0;
/// How long a purchase may wait for its payment result, in seconds.
pub const PAYMENT_TIMEOUT_DEFAULT_SECS: u32 = 60;
/// How long purchased units stay reserved for pickup, in seconds (4 h:
/// long enough for a lunch bought in the morning, short enough that unclaimed
/// fresh food goes back on sale the same day).
pub const PICKUP_WINDOW_DEFAULT_SECS: u32 = 4 * 3600;

/// Order rules from the node's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPolicy {
    pub grace_window_app: Duration,
    pub grace_window_pos: Duration,
    pub payment_timeout: Duration,
    pub pickup_window: Duration,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy {
            grace_window_app: Duration::seconds(GRACE_WINDOW_DEFAULT_SECS.into()),
            grace_window_pos: Duration::seconds(POS_GRACE_WINDOW_DEFAULT_SECS.into()),
            payment_timeout: Duration::seconds(PAYMENT_TIMEOUT_DEFAULT_SECS.into()),
            pickup_window: Duration::seconds(PICKUP_WINDOW_DEFAULT_SECS.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: OrderId,
    pub customer: String,
    pub channel: Channel,
    pub fridge_id: FridgeId,
    pub lines: Vec<OrderLine>,
    pub total: i64,
    pub currency: protocol::money::Currency,
    pub payment_method: String,
    pub hold_until: DateTime<Utc>,
    pub status: OrderStatus,
    pub pickup_code: Option<String>,
    pub pickup_deadline: Option<DateTime<Utc>>,
    pub refusal_reason: Option<RefusalReason>,
    pub refund_pending: bool,
    pub timer: Option<(DateTime<Utc>, OrderTimer)>,
    pub history: Vector<StatusChange>,
    /// Meals the fridge turned out not to hold enough of for this order.
    pub shortage: Vec<MealId>,
    /// For a subscription order: the day it is for.
    pub delivery_date: Option<chrono::NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    Place {
        order_id: OrderId,
        customer: String,
        channel: Channel,
        request: PlaceOrder,
        idempotency: Option<(String, u64)>,
    },
    /// `customer` is `None` when an admin cancels.
    Cancel {
        order_id: OrderId,
        customer: Option<String>,
    },
    FireTimer {
        order_id: OrderId,
        timer: OrderTimer,
    },
    /// `pickup_code` is drawn by the adapter (randomness is IO).
    RecordPayment {
        result: PaymentResult,
        pickup_code: String,
    },
    Pickup {
        order_id: OrderId,
        pickup_code: String,
    },
}

pub fn decide(
    state: &DistrictState,
    cmd: OrderCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        OrderCommand::Place {
            order_id,
            customer,
            channel,
            request,
            idempotency,
        } => place(
            state,
            order_id,
            customer,
            channel,
            request,
            idempotency,
            ctx,
        ),
        OrderCommand::Cancel { order_id, customer } => {
            let order = find(state, &order_id, customer.as_deref())?;
            match order.status {
                OrderStatus::Held => Ok(with_release(
                    order,
                    vec![Event::OrderCancelled { order_id }],
                )),
                OrderStatus::Purchased => {
                    let mut events = with_release(
                        order,
                        vec![Event::OrderCancelled {
                            order_id: order_id.clone(),
                        }],
                    );
                    events.push(Event::RefundRequested {
                        order_id,
                        amount: order.total,
                        currency: order.currency.clone(),
                        reason: RefundReason::Cancelled,
                    });
                    Ok(events)
                }
                OrderStatus::Paying => Err(DomainError::WrongState {
                    status: order.status,
                    message: "the payment is in progress; try again in a moment".into(),
                }),
                status => Err(DomainError::WrongState {
                    status,
                    message: "the order can no longer be cancelled".into(),
                }),
            }
        }
        OrderCommand::FireTimer { order_id, timer } => {
            let order = find(state, &order_id, None)?;
            // A timer is acted on only if it is still the order's current one
            // and due: firing twice, late or after the state moved is a no-op.
            let due = matches!(order.timer, Some((at, t)) if t == timer && at <= ctx.now);
            if !due {
                return Ok(vec![]);
            }
            Ok(match timer {
                OrderTimer::GraceWindowEnd => vec![Event::PurchaseRequested {
                    order_id,
                    amount: order.total,
                    currency: order.currency.clone(),
                    deadline: ctx.now + ctx.policy.payment_timeout,
                }],
                OrderTimer::PaymentTimeout => with_release(
                    order,
                    vec![Event::OrderPurchaseRefused {
                        order_id,
                        reason: RefusalReason::Timeout,
                    }],
                ),
                OrderTimer::PickupDeadline => {
                    with_release(order, vec![Event::OrderUnclaimed { order_id }])
                }
            })
        }
        OrderCommand::RecordPayment {
            result,
            pickup_code,
        } => record_payment(state, result, pickup_code, ctx),
        OrderCommand::Pickup {
            order_id,
            pickup_code,
        } => {
            let order = find(state, &order_id, None)?;
            if !order.status.awaits_pickup() {
                return Err(DomainError::WrongState {
                    status: order.status,
                    message: "only purchased or available orders can be picked up".into(),
                });
            }
            if order.pickup_code.as_deref() != Some(pickup_code.as_str()) {
                return Err(DomainError::WrongPickupCode);
            }
            Ok(vec![Event::OrderPickedUp { order_id }])
        }
    }
}

fn find<'a>(
    state: &'a DistrictState,
    order_id: &str,
    customer: Option<&str>,
) -> Result<&'a Order, DomainError> {
    match state.orders.get(order_id) {
        // Someone else's order is reported as missing: existence must not leak.
        Some(order) if customer.is_none_or(|c| c == order.customer) => Ok(order),
        _ => Err(DomainError::UnknownOrder(order_id.to_string())),
    }
}

/// Appends the releases of every reserved line after `events`.
fn with_release(order: &Order, mut events: Vec<Event>) -> Vec<Event> {
    events.extend(order.lines.iter().map(|line| Event::MealStockReleased {
        order_id: order.order_id.clone(),
        fridge_id: order.fridge_id.clone(),
        meal_id: line.meal_id.clone(),
        qty: line.qty,
    }));
    events
}

fn place(
    state: &DistrictState,
    order_id: OrderId,
    customer: String,
    channel: Channel,
    request: PlaceOrder,
    idempotency: Option<(String, u64)>,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    if let Some((key, fingerprint)) = &idempotency {
        if let Some((_, first)) = state.idempotency.get(&(customer.clone(), key.clone())) {
            return if first == fingerprint {
                Ok(vec![]) // The first answer stands; the adapter reads it back.
            } else {
                Err(DomainError::IdempotencyKeyReused)
            };
        }
    }
    request
        .validate()
        .map_err(|e| DomainError::Invalid(e.to_string()))?;
    let fridge = state
        .fridges
        .get(&request.fridge_id)
        .ok_or_else(|| DomainError::UnknownFridge(request.fridge_id.clone()))?;
    if fridge.status != FridgeStatus::Online {
        return Err(DomainError::FridgeUnavailable(fridge.fridge_id.clone()));
    }
    let mut lines = Vec::with_capacity(request.items.len());
    let mut shortfall = false;
    let mut available: Vec<(MealId, u32)> = vec![];
    for item in &request.items {
        let meal = state
            .meals
            .get(&item.meal_id)
            .ok_or_else(|| DomainError::UnknownMeal(item.meal_id.clone()))?;
        let free = state
            .stock_level(&request.fridge_id, &item.meal_id)
            .available();
        shortfall |= free < item.qty;
        available.push((item.meal_id.clone(), free));
        lines.push(OrderLine {
            meal_id: item.meal_id.clone(),
            name: meal.spec.name.clone(),
            qty: item.qty,
            unit_price: meal.spec.price,
        });
    }
    if shortfall {
        return Err(DomainError::InsufficientStock { available });
    }
    let currency = state
        .meals
        .get(&request.items[0].meal_id)
        .map(|m| m.spec.currency.clone());
    let currency =
        currency.ok_or_else(|| DomainError::UnknownMeal(request.items[0].meal_id.clone()))?;
    if request.items.iter().any(|i| {
        state
            .meals
            .get(&i.meal_id)
            .is_some_and(|m| m.spec.currency != currency)
    }) {
        return Err(DomainError::Invalid(
            "all meals of an order must share one currency".into(),
        ));
    }
    // Prices are bounded (MAX_MEAL_PRICE_MINOR × MAX_QTY × MAX_LINES), so this cannot overflow.
    let total = lines.iter().map(|l| l.unit_price * i64::from(l.qty)).sum();
    let grace = match channel {
        Channel::App => ctx.policy.grace_window_app,
        Channel::Pos => ctx.policy.grace_window_pos,
    };
    let mut events = vec![Event::OrderPlaced {
        order_id: order_id.clone(),
        customer,
        channel,
        fridge_id: request.fridge_id.clone(),
        lines: lines.clone(),
        total,
        currency,
        payment_method: request.payment_method,
        hold_until: ctx.now + grace,
        idempotency,
    }];
    events.extend(lines.into_iter().map(|l| Event::MealStockReserved {
        order_id: order_id.clone(),
        fridge_id: request.fridge_id.clone(),
        meal_id: l.meal_id,
        qty: l.qty,
    }));
    Ok(events)
}

fn record_payment(
    state: &DistrictState,
    result: PaymentResult,
    pickup_code: String,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let order = find(state, &result.order_id, None)?;
    let order_id = result.order_id.clone();
    let events = match (result.kind, result.outcome, order.status) {
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
            vec![Event::RefundRequested {
                order_id,
                amount: order.total,
                currency: order.currency.clone(),
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

pub(super) fn set_timer(
    state: &mut DistrictState,
    order: &mut Order,
    timer: Option<(DateTime<Utc>, OrderTimer)>,
) {
    if let Some((at, _)) = order.timer.take() {
        state.timers.remove(&(at, order.order_id.clone()));
    }
    if let Some((at, kind)) = timer {
        state.timers.insert((at, order.order_id.clone()), kind);
    }
    order.timer = timer;
}

fn payment_request(
    order: &Order,
    kind: PaymentKind,
    district: &str,
    amount: i64,
    deadline: DateTime<Utc>,
) -> PaymentRequest {
    PaymentRequest {
        kind,
        order_id: order.order_id.clone(),
        district_id: district.to_string(),
        amount,
        currency: order.currency.clone(),
        payment_method: order.payment_method.clone(),
        deadline_unix_ms: deadline.timestamp_millis(),
    }
}

/// Applies order events; returns whether what the catalog shows changed.
pub fn evolve(state: &mut DistrictState, event: &Event, at: DateTime<Utc>, district: &str) -> bool {
    let order_id = match event {
        Event::OrderPlaced {
            order_id,
            customer,
            channel,
            fridge_id,
            lines,
            total,
            currency,
            payment_method,
            hold_until,
            idempotency,
        } => {
            let mut order = Order {
                order_id: order_id.clone(),
                customer: customer.clone(),
                channel: *channel,
                fridge_id: fridge_id.clone(),
                lines: lines.clone(),
                total: *total,
                currency: currency.clone(),
                payment_method: payment_method.clone(),
                hold_until: *hold_until,
                status: OrderStatus::Held,
                pickup_code: None,
                pickup_deadline: None,
                refusal_reason: None,
                refund_pending: false,
                shortage: Vec::new(),
                delivery_date: None,
                timer: None,
                history: Vector::unit(StatusChange {
                    status: OrderStatus::Held,
                    at,
                }),
            };
            set_timer(
                state,
                &mut order,
                Some((*hold_until, OrderTimer::GraceWindowEnd)),
            );
            if let Some((key, fingerprint)) = idempotency {
                state.idempotency.insert(
                    (customer.clone(), key.clone()),
                    (order_id.clone(), *fingerprint),
                );
            }
            state.add_order(order);
            return false;
        }
        Event::MealStockReserved {
            fridge_id,
            meal_id,
            qty,
            ..
        } => {
            state.adjust_stock(fridge_id, meal_id, |l| {
                l.reserved = l.reserved.saturating_add(*qty)
            });
            return true;
        }
        Event::MealStockReleased {
            fridge_id,
            meal_id,
            qty,
            ..
        } => {
            state.adjust_stock(fridge_id, meal_id, |l| {
                l.reserved = l.reserved.saturating_sub(*qty)
            });
            return true;
        }
        Event::OrderCancelled { order_id }
        | Event::PurchaseRequested { order_id, .. }
        | Event::OrderPurchaseConfirmed { order_id, .. }
        | Event::OrderPurchased { order_id, .. }
        | Event::OrderPurchaseRefused { order_id, .. }
        | Event::RefundRequested { order_id, .. }
        | Event::OrderRefunded { order_id, .. }
        | Event::PaymentResultRecorded { order_id, .. }
        | Event::OrderPickedUp { order_id }
        | Event::OrderUnclaimed { order_id } => order_id,
        _ => return false,
    };
    let Some(mut order) = state.orders.get(order_id).cloned() else {
        return false;
    };
    let mut status = None;
    let mut stock_changed = false;
    match event {
        Event::OrderCancelled { .. } => {
            set_timer(state, &mut order, None);
            status = Some(OrderStatus::Cancelled);
        }
        Event::PurchaseRequested {
            amount, deadline, ..
        } => {
            set_timer(
                state,
                &mut order,
                Some((*deadline, OrderTimer::PaymentTimeout)),
            );
            let req = payment_request(&order, PaymentKind::Charge, district, *amount, *deadline);
            state.outbox.insert(req.msg_id(), req);
            status = Some(OrderStatus::Paying);
        }
        Event::OrderPurchaseConfirmed { .. } => {
            state
                .outbox
                .remove(&protocol::payments::msg_id(PaymentKind::Charge, order_id));
        }
        Event::OrderPurchased {
            pickup_code,
            pickup_deadline,
            ..
        } => {
            order.pickup_code = Some(pickup_code.clone());
            order.pickup_deadline = Some(*pickup_deadline);
            set_timer(
                state,
                &mut order,
                Some((*pickup_deadline, OrderTimer::PickupDeadline)),
            );
            status = Some(OrderStatus::Purchased);
        }
        Event::OrderPurchaseRefused { reason, .. } => {
            set_timer(state, &mut order, None);
            state
                .outbox
                .remove(&protocol::payments::msg_id(PaymentKind::Charge, order_id));
            order.refusal_reason = Some(*reason);
            status = Some(OrderStatus::Refused);
        }
        Event::RefundRequested { amount, .. } => {
            order.refund_pending = true;
            // Refunds have no deadline: money owed is paid back whenever it can be.
            let req = payment_request(
                &order,
                PaymentKind::Refund,
                district,
                *amount,
                DateTime::<Utc>::MAX_UTC,
            );
            state.outbox.insert(req.msg_id(), req);
        }
        Event::OrderRefunded { .. } => {
            order.refund_pending = false;
            state
                .outbox
                .remove(&protocol::payments::msg_id(PaymentKind::Refund, order_id));
            status = Some(OrderStatus::Refunded);
        }
        Event::PaymentResultRecorded { kind, .. } => {
            state
                .outbox
                .remove(&protocol::payments::msg_id(*kind, order_id));
        }
        Event::OrderPickedUp { .. } => {
            set_timer(state, &mut order, None);
            for line in &order.lines {
                state.adjust_stock(&order.fridge_id, &line.meal_id, |l| {
                    l.on_hand = l.on_hand.saturating_sub(line.qty);
                    l.reserved = l.reserved.saturating_sub(line.qty);
                });
            }
            stock_changed = true;
            status = Some(OrderStatus::PickedUp);
        }
        Event::OrderUnclaimed { .. } => {
            set_timer(state, &mut order, None);
            status = Some(OrderStatus::Unclaimed);
        }
        _ => {}
    }
    if let Some(s) = status {
        order.status = s;
        order.history.push_back(StatusChange { status: s, at });
    }
    state.orders.insert(order_id.clone(), order);
    stock_changed
}
