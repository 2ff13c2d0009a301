//! Orders ahead: a one-off order for one meal at a fridge on a future
//! district-local day, made by the kitchen for that day.
//!
//! An order ahead is an ordinary order for its money and an ordinary
//! kitchen order for its food, so it reuses both paths instead of growing
//! a third:
//! - confirm: `OrderPlaced` (held for the app's grace window, then charged
//!   through the outbox like any order) followed in the same batch by
//!   `PreorderPlaced` (its day, kitchen and cancel deadline). Nothing is
//!   reserved on a shelf: the unit does not exist yet
//!   ([`crate::Order::holds_stock`] is false until it is placed);
//! - paid: `OrderPurchaseConfirmed` + `PreorderScheduled` instead of
//!   `OrderPurchased`: the scheduler now counts it in the kitchen's prep
//!   report (as `preorder_units`, firm) and the kitchen's stages move it
//!   like a plan day's order; "placed in fridge" puts its unit on the shelf
//!   set aside for it and issues the pickup code (`OrderAvailableForPicking`);
//! - not delivered (its day ended before placement, the day became
//!   non-working, or its fridge is closed on the day): the scheduler
//!   withdraws it (`PreorderWithdrawn`) and [`refunds`] adds the refund of
//!   what was charged in the same batch;
//! - cancel: free (refunded in full) until the change cutoff of the day
//!   before, like a plan day; after it the kitchen is cooking.
//!
//! Coupons, share codes and points are not taken for orders ahead yet: the
//! pricing rules read the best-before of units on the shelf, which an
//! order ahead does not have.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use protocol::orders::Withdrawal;
use protocol::orders::{Channel, OrderStatus, RefundReason};
use protocol::schedule::ScheduleEvent;
use protocol::Event;

use crate::orders::{Order, Placement};
use crate::{Context, DistrictState, DomainError};

/// At most this many orders ahead may wait for their day per customer, so
/// one account cannot fill a kitchen's week.
pub const MAX_OPEN_PREORDERS_PER_CUSTOMER: usize = 20;

/// The confirm of an order ahead for `date` (the placement's request is
/// already validated and not a retry).
pub(crate) fn place(
    state: &DistrictState,
    p: Placement,
    date: NaiveDate,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let request = &p.request;
    if p.channel != Channel::App {
        return Err(invalid("orders ahead are placed from the customer's app"));
    }
    if request.coupon.is_some() || request.share_code.is_some() || request.points.is_some() {
        return Err(invalid(
            "coupons, share codes and points do not apply to orders ahead",
        ));
    }
    let [item] = request.items.as_slice() else {
        return Err(invalid(
            "an order ahead is for one meal; place one per meal",
        ));
    };
    if item.qty != 1 {
        return Err(invalid("an order ahead is for one unit (qty 1)"));
    }
    let fridge_id = &request.fridge_id;
    if state.catalog.fridge(fridge_id).is_none() {
        return Err(DomainError::UnknownFridge(fridge_id.clone()));
    }
    let meal = state
        .catalog
        .meal(&item.meal_id)
        .ok_or_else(|| DomainError::UnknownMeal(item.meal_id.clone()))?;
    let kitchen_id = meal.spec.kitchen_id.clone();
    let cancel_until = check_day(state, date, &kitchen_id, ctx)?;
    if open_preorders(state, &p.customer) >= MAX_OPEN_PREORDERS_PER_CUSTOMER {
        return Err(invalid(format!(
            "at most {MAX_OPEN_PREORDERS_PER_CUSTOMER} orders ahead may wait for their day; \
             cancel one or wait for a day to pass"
        )));
    }
    let line = protocol::orders::OrderLine {
        meal_id: item.meal_id.clone(),
        name: meal.spec.name.clone(),
        qty: 1,
        unit_price: meal.spec.price,
    };
    Ok(vec![
        Event::OrderPlaced {
            order_id: p.order_id.clone(),
            customer: p.customer,
            channel: p.channel,
            fridge_id: fridge_id.clone(),
            total: line.unit_price,
            lines: vec![line],
            currency: meal.spec.currency.clone(),
            payment_method: request.payment_method.clone(),
            hold_until: ctx.now + ctx.policy.grace_window_app,
            idempotency: p.idempotency,
            // Orders ahead are charged the list price of their meal.
            price: None,
        },
        Event::Schedule(ScheduleEvent::PreorderPlaced {
            order_id: p.order_id,
            date,
            kitchen_id,
            cancel_until,
        }),
    ])
}

/// Whether `date` can be ordered ahead at `ctx.now`: within the kitchen's
/// horizon, a working day for the district and the kitchen, and before the
/// change cutoff of the day before (which is then the cancel deadline).
fn check_day(
    state: &DistrictState,
    date: NaiveDate,
    kitchen_id: &protocol::KitchenId,
    ctx: &Context,
) -> Result<DateTime<Utc>, DomainError> {
    let policy = &ctx.schedule;
    let today = scheduler::local_date(ctx.now, policy);
    let last = today + Duration::days(i64::from(policy.days_ahead));
    let cancel_until = cancel_deadline(date, policy);
    if date <= today || ctx.now >= cancel_until {
        return Err(invalid(format!(
            "{date} can no longer be ordered ahead: orders for a day close at \
             {cancel_until} (the change cutoff of the day before)"
        )));
    }
    if date > last {
        return Err(invalid(format!(
            "orders ahead reach {} days ahead (until {last})",
            policy.days_ahead
        )));
    }
    if !state.schedule.calendar.is_working(date, Some(kitchen_id)) {
        return Err(invalid(format!(
            "{date} is not a working day for kitchen {kitchen_id}"
        )));
    }
    Ok(cancel_until)
}

/// The change cutoff of the day before `date`: until then an order ahead
/// for `date` may be placed or cancelled, as a plan day may be changed.
pub fn cancel_deadline(date: NaiveDate, policy: &scheduler::Policy) -> DateTime<Utc> {
    let day_before = date.pred_opt().unwrap_or(date);
    scheduler::local_instant(day_before, policy.cutoff_hour, policy)
}

/// The customer's orders ahead still waiting for their day (held, paying,
/// or paid and not yet placed).
fn open_preorders(state: &DistrictState, customer: &str) -> usize {
    state
        .orders
        .of_customer(customer)
        .filter(|o| o.preorder.is_some())
        .filter(|o| {
            matches!(
                o.status,
                OrderStatus::Held
                    | OrderStatus::Paying
                    | OrderStatus::Scheduled
                    | OrderStatus::Prepared
                    | OrderStatus::Dispatched
            )
        })
        .count()
}

/// A paid order ahead cancelled by its customer: refunded in full until
/// its cancel deadline; after it the kitchen is cooking.
pub(crate) fn cancel(order: &Order, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    let Some(pre) = &order.preorder else {
        return Err(invalid("not an order ahead"));
    };
    if now >= pre.cancel_until {
        return Err(DomainError::WrongState {
            status: order.status,
            message: format!(
                "an order ahead can be cancelled until {} (the change cutoff of the day before); \
                 the kitchen is making it now",
                pre.cancel_until
            ),
        });
    }
    Ok(vec![
        Event::OrderCancelled {
            order_id: order.order_id.clone(),
        },
        refund(order, RefundReason::Cancelled),
    ])
}

/// What the payment of an order ahead records: the charge, and the order
/// handed to the kitchen (no pickup code yet: there is nothing to pick up).
pub(crate) fn paid(order: &Order, reference: String) -> Vec<Event> {
    let (Some(pre), [line]) = (&order.preorder, order.lines.as_slice()) else {
        return vec![];
    };
    vec![
        Event::OrderPurchaseConfirmed {
            order_id: order.order_id.clone(),
            reference,
        },
        Event::Schedule(ScheduleEvent::PreorderScheduled {
            order_id: order.order_id.clone(),
            customer: order.customer.clone(),
            date: pre.date,
            fridge_id: order.fridge_id.clone(),
            kitchen_id: pre.kitchen_id.clone(),
            meal_id: line.meal_id.clone(),
            meal_name: line.name.clone(),
            price: order.charged().amount_minor,
            currency: order.total.currency.clone(),
        }),
    ]
}

/// Adds the refund of every order ahead the scheduler withdrew, right
/// after its withdrawal, so the money goes back in the same batch.
pub(crate) fn refunds(state: &DistrictState, events: Vec<ScheduleEvent>) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let order = match &e {
            ScheduleEvent::PreorderWithdrawn { order_id, .. } => state.orders.get(order_id),
            _ => None,
        };
        out.push(Event::Schedule(e));
        if let Some(order) = order {
            out.push(refund(order, RefundReason::NotDelivered));
        }
    }
    out
}

fn refund(order: &Order, reason: RefundReason) -> Event {
    let charged = order.charged();
    Event::RefundRequested {
        order_id: order.order_id.clone(),
        amount: charged.amount_minor,
        currency: charged.currency,
        reason,
    }
}

/// The order-book side of an order ahead's schedule events (its day, paid,
/// withdrawn); the scheduler's side is `ScheduleState::apply`. Called by
/// `schedule::evolve` for every schedule event; others are ignored.
pub(crate) fn evolve(state: &mut DistrictState, e: &ScheduleEvent, rec: crate::Recorded) {
    match e {
        ScheduleEvent::PreorderPlaced {
            order_id,
            date,
            kitchen_id,
            cancel_until,
        } => {
            let preorder = crate::orders::Preorder {
                date: *date,
                kitchen_id: kitchen_id.clone(),
                cancel_until: *cancel_until,
            };
            state.orders.update(order_id, |order| {
                order.delivery_date = Some(preorder.date);
                order.preorder = Some(Box::new(preorder));
            });
        }
        ScheduleEvent::PreorderScheduled { order_id, .. } => {
            state.orders.update(order_id, |order| {
                order.timer = None; // Paid: the payment timeout is done.
                order.advance(OrderStatus::Scheduled, rec.at);
            });
        }
        ScheduleEvent::PreorderWithdrawn {
            order_id, reason, ..
        } => {
            let withdrawn = Withdrawal {
                reason: *reason,
                credited: 0, // Refunded instead (`RefundRequested` follows).
            };
            state.orders.update(order_id, |order| {
                order.timer = None;
                order.withdrawn = Some(Box::new(withdrawn));
                order.advance(OrderStatus::Cancelled, rec.at);
            });
        }
        _ => {}
    }
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}
