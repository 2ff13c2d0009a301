//! Orders as a pure decider: confirm with reservation, grace window,
//! cancel, timers, pickup, unclaimed. The money half of an order's life
//! (purchase, results, refunds) is [`payment`]; the book with its indexes
//! and the one `Order` constructor is [`book`].
//!
//! The payment requests an order needs (the outbox) and the timers it waits on
//! are part of the state derived from events, so one atomic log append
//! records a decision, its outbox row and its timer together.

pub mod archive;
pub mod book;
pub mod hoarding;
pub mod payment;

use chrono::Duration;
use protocol::catalog::FridgeStatus;
use protocol::orders::{
    Channel, OrderId, OrderLine, OrderStatus, PlaceOrder, RefundReason, RefusalReason,
};
use protocol::promotions::{OrderPrice, PromotionEvent};
use protocol::{Event, MealId};

use super::{Context, DistrictState, DomainError, Recorded};

pub use book::{customer_of_new_order, NewOrder, Order, OrderBook, OrderTimer, Preorder};

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
    pub holds: hoarding::HoldPolicy,
    /// How long a final order stays in the in-memory state before it is
    /// archived ([`archive`]).
    pub retention: Duration,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy {
            grace_window_app: Duration::seconds(GRACE_WINDOW_DEFAULT_SECS.into()),
            grace_window_pos: Duration::seconds(POS_GRACE_WINDOW_DEFAULT_SECS.into()),
            payment_timeout: Duration::seconds(PAYMENT_TIMEOUT_DEFAULT_SECS.into()),
            pickup_window: Duration::seconds(PICKUP_WINDOW_DEFAULT_SECS.into()),
            holds: hoarding::HoldPolicy::default(),
            retention: Duration::days(archive::RETENTION_DEFAULT_DAYS.into()),
        }
    }
}

// `Place` is the big one and the common one: a command is built once per
// request and moved into the writer's queue, so boxing it would only add an
// allocation per order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    Place {
        order_id: OrderId,
        customer: String,
        channel: Channel,
        request: PlaceOrder,
        idempotency: Option<(String, u64)>,
        /// The owner of the request's share code, as the node found it in
        /// the global ledger (after its self-referral and farming checks).
        referral: Option<String>,
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
    Pickup {
        order_id: OrderId,
        pickup_code: String,
    },
    /// Archive the orders final for longer than the policy's retention at
    /// the context's `now` (the node's tick: see [`archive`]).
    Archive,
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
            referral,
        } => {
            let placed = Placement {
                order_id,
                customer,
                channel,
                request,
                idempotency,
                referral,
            };
            place(state, placed, ctx)
        }
        OrderCommand::Cancel { order_id, customer } => cancel(state, order_id, customer, ctx),
        OrderCommand::Archive => archive::decide(state, ctx),
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
                    amount: order.charged().amount_minor,
                    currency: order.total.currency.clone(),
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
        OrderCommand::Pickup {
            order_id,
            pickup_code,
        } => {
            let order = find(state, &order_id, None)?;
            if !order.status.awaits_pickup() {
                return Err(pickup_refused(order.status));
            }
            if order.pickup_code.as_deref() != Some(pickup_code.as_str()) {
                return Err(DomainError::WrongPickupCode);
            }
            Ok(vec![Event::OrderPickedUp { order_id }])
        }
    }
}

/// A cancel: free in the grace window; after the purchase, refunded.
fn cancel(
    state: &DistrictState,
    order_id: OrderId,
    customer: Option<String>,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
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
            let charged = order.charged();
            events.push(Event::RefundRequested {
                order_id,
                amount: charged.amount_minor,
                currency: charged.currency,
                reason: RefundReason::Cancelled,
            });
            Ok(events)
        }
        OrderStatus::Paying => Err(DomainError::WrongState {
            status: order.status,
            message: "the payment is in progress; try again in a moment".into(),
        }),
        OrderStatus::Scheduled if order.preorder.is_some() => {
            crate::preorders::cancel(order, ctx.now)
        }
        status => Err(cancel_refused(status)),
    }
}

/// The answer to a cancel of an order in `status` that cannot be
/// cancelled: also what the node answers for an archived order, which is
/// final (the answer it got just before it was archived).
pub fn cancel_refused(status: OrderStatus) -> DomainError {
    DomainError::WrongState {
        status,
        message: "the order can no longer be cancelled".into(),
    }
}

/// The answer to a pickup of an order in `status` that does not await one
/// (likewise answered for an archived order).
pub fn pickup_refused(status: OrderStatus) -> DomainError {
    DomainError::WrongState {
        status,
        message: "only purchased or available orders can be picked up".into(),
    }
}

pub(crate) fn find<'a>(
    state: &'a DistrictState,
    order_id: &OrderId,
    customer: Option<&str>,
) -> Result<&'a Order, DomainError> {
    match state.orders.get(order_id) {
        // Someone else's order is reported as missing: existence must not leak.
        Some(order) if customer.is_none_or(|c| c == order.customer) => Ok(order),
        _ => Err(DomainError::UnknownOrder(order_id.clone())),
    }
}

/// Appends the releases of every reserved line after `events` (none for
/// an order that holds no stock: an order ahead before its placement).
pub(crate) fn with_release(order: &Order, mut events: Vec<Event>) -> Vec<Event> {
    if !order.holds_stock() {
        return events;
    }
    events.extend(order.lines.iter().map(|line| Event::MealStockReleased {
        order_id: order.order_id.clone(),
        fridge_id: order.fridge_id.clone(),
        meal_id: line.meal_id.clone(),
        qty: line.qty,
    }));
    events
}

/// An order to place, as the command brought it.
pub(crate) struct Placement {
    pub order_id: OrderId,
    pub customer: String,
    pub channel: Channel,
    pub request: PlaceOrder,
    pub idempotency: Option<(String, u64)>,
    pub referral: Option<String>,
}

/// The checks every confirm shares (a retry's first answer, the request's
/// own rules), then an order for now or an order ahead.
fn place(state: &DistrictState, p: Placement, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    if let Some((key, fingerprint)) = &p.idempotency {
        if let Some((_, first)) = state.orders.by_idempotency_key(&p.customer, key) {
            return if first == fingerprint {
                Ok(vec![]) // The first answer stands; the adapter reads it back.
            } else {
                Err(DomainError::IdempotencyKeyReused)
            };
        }
    }
    p.request
        .validate()
        .map_err(|e| DomainError::Invalid(e.to_string()))?;
    match p.request.pickup_date {
        Some(date) => crate::preorders::place(state, p, date, ctx),
        None => place_now(state, p, ctx),
    }
}

/// An order from what is on the shelf now: reserved at once.
fn place_now(
    state: &DistrictState,
    p: Placement,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let Placement {
        order_id,
        customer,
        channel,
        request,
        idempotency,
        referral,
    } = p;
    let fridge = state
        .catalog
        .fridge(&request.fridge_id)
        .ok_or_else(|| DomainError::UnknownFridge(request.fridge_id.clone()))?;
    if fridge.status != FridgeStatus::Online {
        return Err(DomainError::FridgeUnavailable(fridge.fridge_id.clone()));
    }
    at_a_till(channel, &request, referral.as_deref())?;
    if channel == Channel::App {
        let meals: Vec<&MealId> = request.items.iter().map(|i| &i.meal_id).collect();
        hoarding::check(&state.orders, &customer, &meals, ctx.now, &ctx.policy.holds)?;
    }
    // Units a waitlist hold keeps for this customer count as theirs.
    let (held, hold_events) = match channel {
        Channel::App => crate::waitlist::holds_for_order(state, &customer, &request, &order_id),
        Channel::Pos => (vec![0; request.items.len()], vec![]),
    };
    let (lines, currency) = lines_in_stock(state, &request, &held)?;
    // Prices are bounded (MAX_MEAL_PRICE_MINOR × MAX_QTY × MAX_LINES), so this cannot overflow.
    let total = lines.iter().map(|l| l.unit_price * i64::from(l.qty)).sum();
    let grace = match channel {
        Channel::App => ctx.policy.grace_window_app,
        Channel::Pos => ctx.policy.grace_window_pos,
    };
    let price = crate::promotions::price_order(
        state,
        &customer,
        &request.fridge_id,
        &lines,
        request.coupon.as_deref(),
        request.points,
        ctx,
    )?;
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
        // In the placement itself, not a record of its own: every record
        // costs the log, the feed and each follower (issue 12).
        price: price.map(|(local_date, split)| OrderPrice {
            local_date,
            split: std::sync::Arc::new(split),
        }),
    }];
    if let Some(owner) = referral {
        events.push(Event::Promotion(PromotionEvent::OrderReferred {
            order_id: order_id.clone(),
            owner,
        }));
    }
    events.extend(hold_events);
    events.extend(lines.into_iter().map(|l| Event::MealStockReserved {
        order_id: order_id.clone(),
        fridge_id: request.fridge_id.clone(),
        meal_id: l.meal_id,
        qty: l.qty,
    }));
    Ok(events)
}

/// Share codes and points belong to a customer's app, not to a till.
fn at_a_till(
    channel: Channel,
    request: &PlaceOrder,
    referral: Option<&str>,
) -> Result<(), DomainError> {
    if channel != Channel::Pos {
        return Ok(());
    }
    if request.share_code.is_some() || referral.is_some() {
        return Err(DomainError::Invalid(
            "share codes are used from the customer's app, not at a till".into(),
        ));
    }
    if request.points.is_some() {
        return Err(DomainError::Invalid(
            "bonus points are spent from the customer's app, not at a till".into(),
        ));
    }
    Ok(())
}

/// The order's lines at today's list prices, and their one currency;
/// refused when the fridge holds too few of a meal (with what it holds).
fn lines_in_stock(
    state: &DistrictState,
    request: &PlaceOrder,
    held: &[u32],
) -> Result<(Vec<OrderLine>, protocol::money::Currency), DomainError> {
    let mut lines = Vec::with_capacity(request.items.len());
    let mut shortfall = false;
    let mut available: Vec<(MealId, u32)> = vec![];
    for (item, held) in request
        .items
        .iter()
        .zip(held.iter().chain(std::iter::repeat(&0)))
    {
        let meal = state
            .catalog
            .meal(&item.meal_id)
            .ok_or_else(|| DomainError::UnknownMeal(item.meal_id.clone()))?;
        let free = state
            .stock_level(&request.fridge_id, &item.meal_id)
            .available()
            + held;
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
        .catalog
        .meal(&request.items[0].meal_id)
        .map(|m| m.spec.currency.clone());
    let currency =
        currency.ok_or_else(|| DomainError::UnknownMeal(request.items[0].meal_id.clone()))?;
    if request.items.iter().any(|i| {
        state
            .catalog
            .meal(&i.meal_id)
            .is_some_and(|m| m.spec.currency != currency)
    }) {
        return Err(DomainError::Invalid(
            "all meals of an order must share one currency".into(),
        ));
    }
    Ok((lines, currency))
}

/// Applies the placement and fulfilment events of an order; returns
/// whether what the catalog shows changed (a pickup empties a shelf).
pub(crate) fn evolve(state: &mut DistrictState, event: &Event, rec: Recorded) -> bool {
    match event {
        Event::OrderPlaced {
            order_id,
            customer,
            channel,
            fridge_id,
            lines,
            currency,
            payment_method,
            hold_until,
            idempotency,
            price,
            ..
        } => {
            let mut order = Order::new(
                NewOrder {
                    order_id: order_id.clone(),
                    customer: customer.clone(),
                    channel: *channel,
                    fridge_id: fridge_id.clone(),
                    lines: lines.clone(),
                    currency: currency.clone(),
                    payment_method: payment_method.clone(),
                    hold_until: *hold_until,
                    status: OrderStatus::Held,
                    delivery_date: None,
                },
                rec.at,
            );
            order.timer = Some((*hold_until, OrderTimer::GraceWindowEnd));
            if let Some(price) = price {
                crate::promotions::hold(&mut state.promotions, &mut order, price);
            }
            state.orders.add(order, idempotency.as_ref());
            false
        }
        Event::OrderCancelled { order_id } => {
            // Touches the promotions too: a cancel in the grace window gives
            // the coupon use and budgets back; after the purchase the order
            // is refunded and only the sponsor's share goes back.
            let release = match state.orders.get(order_id).map(|o| o.status) {
                Some(OrderStatus::Held) => crate::promotions::Release::All,
                _ => crate::promotions::Release::Subsidy,
            };
            crate::promotions::release(state, order_id, release);
            end(state, order_id, OrderStatus::Cancelled, rec);
            false
        }
        Event::OrderUnclaimed { order_id } => {
            end(state, order_id, OrderStatus::Unclaimed, rec);
            false
        }
        Event::OrderPickedUp { order_id } => picked_up(state, order_id, rec),
        Event::OrderFlagged {
            order_id, meal_id, ..
        } => {
            state.orders.update(order_id, |order| {
                if !order.shortage.contains(meal_id) {
                    order.shortage.push(meal_id.clone());
                }
            });
            false
        }
        _ => false,
    }
}

/// The order ends without a pickup; its timer goes with it.
fn end(state: &mut DistrictState, order_id: &str, status: OrderStatus, rec: Recorded) {
    state.orders.update(order_id, |order| {
        order.timer = None;
        order.advance(status, rec.at);
    });
}

/// The reserved units leave the fridge with the customer.
fn picked_up(state: &mut DistrictState, order_id: &str, rec: Recorded) -> bool {
    let Some(order) = state.orders.get(order_id).cloned() else {
        return false;
    };
    for line in &order.lines {
        let shelf_life = state.catalog.shelf_life(&line.meal_id);
        state.stock.hand_out(
            &order.fridge_id,
            &line.meal_id,
            &order.order_id,
            line.qty,
            rec.at,
            shelf_life,
        );
    }
    end(state, order_id, OrderStatus::PickedUp, rec);
    true
}
