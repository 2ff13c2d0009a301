//! The order book: every order of the district (app, POS and subscription
//! alike) with its lifecycle, and the indexes that answer whose an order
//! is, which request an `Idempotency-Key` made, which timer is due next and
//! which orders hold a fridge's stock.
//!
//! The indexes are kept by [`OrderBook::add`] and [`OrderBook::update`]
//! only, from the order as it is after a change, so they cannot drift from
//! the orders they index.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use imbl::{HashMap, OrdMap, OrdSet, Vector};
use protocol::money::{Currency, Money};
use protocol::orders::{
    Channel, OrderId, OrderLine, OrderStatus, RefusalReason, StatusChange, Withdrawal,
};
use protocol::{FridgeId, MealId};

/// What an order is waiting for next; at most one at a time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum OrderTimer {
    /// The grace window ends: start the purchase.
    GraceWindowEnd,
    /// No payment result by now: refuse.
    PaymentTimeout,
    /// Not picked up by now: unclaimed.
    PickupDeadline,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub customer: String,
    pub channel: Channel,
    pub fridge_id: FridgeId,
    pub lines: Vec<OrderLine>,
    /// The lines' sum, in the currency every line is priced in.
    pub total: Money,
    pub payment_method: String,
    pub hold_until: DateTime<Utc>,
    pub status: OrderStatus,
    pub pickup_code: Option<String>,
    pub pickup_deadline: Option<DateTime<Utc>>,
    pub refusal_reason: Option<RefusalReason>,
    pub refund_pending: bool,
    pub timer: Option<(DateTime<Utc>, OrderTimer)>,
    /// A `Vec`, not an `imbl::Vector`: past three entries the latter moves
    /// to a 64-slot chunk (~1 KiB) however short the history, and an order
    /// is copied whole on change anyway (it sits behind an `Arc`). Same
    /// serialized form.
    pub history: Vec<StatusChange>,
    /// Meals the fridge turned out not to hold enough of for this order.
    pub shortage: Vec<MealId>,
    /// For a subscription order: the day it is for.
    pub delivery_date: Option<NaiveDate>,
    /// For a withdrawn subscription order: why, and what was credited.
    /// Boxed, as `preorder` is: few orders have either.
    pub withdrawn: Option<Box<Withdrawal>>,
    /// What its price holds (coupon use, budgets, the sponsor's cap) and
    /// which of that is still held; `None` for a list-price order. Kept
    /// in the order rather than in a map of its own beside the book: a
    /// second map grew by one entry per priced order, and its inserts,
    /// snapshots and drops were most of what promotions cost a confirm
    /// (issue 12). Archived orders that still count move to
    /// `Promotions`' archive.
    pub promo: Option<std::sync::Arc<crate::promotions::PricedOrder>>,
    /// For an order ahead (`PreorderPlaced`): its day, kitchen and cancel
    /// deadline. `delivery_date` is its day too. Boxed: few orders are
    /// orders ahead, and inline it made every order 32 bytes larger (the
    /// `Arc<Order>` then fell into mimalloc's 384-byte size class instead
    /// of the 320-byte one: `order_fits_its_size_class`). Same serialized
    /// form.
    pub preorder: Option<Box<Preorder>>,
    /// The `Idempotency-Key` that placed it, so archiving the order can
    /// drop the key's entry without a reverse index.
    pub idempotency_key: Option<String>,
}

/// What makes an order an order ahead: the kitchen makes it for `date`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preorder {
    pub date: NaiveDate,
    pub kitchen_id: protocol::KitchenId,
    /// Until when its customer may cancel it for a full refund.
    pub cancel_until: DateTime<Utc>,
}

/// What every order starts from, whichever way it was made: placed by an
/// app or a POS terminal (`Held`, with its grace window), or made by the
/// schedule for a plan day (`Scheduled`, prepaid).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub customer: String,
    pub channel: Channel,
    pub fridge_id: FridgeId,
    pub lines: Vec<OrderLine>,
    pub currency: Currency,
    pub payment_method: String,
    pub hold_until: DateTime<Utc>,
    pub status: OrderStatus,
    pub delivery_date: Option<NaiveDate>,
}

impl Order {
    /// Whether units on a shelf are reserved for it: an order ahead takes
    /// none until the kitchen places its unit (`Available`).
    pub fn holds_stock(&self) -> bool {
        self.status.holds_stock()
            && (self.preorder.is_none() || self.status == OrderStatus::Available)
    }

    /// The split after promotions; `None`: the list price.
    pub fn price(&self) -> Option<&std::sync::Arc<protocol::promotions::PriceSplit>> {
        self.promo.as_ref().map(|p| &p.split)
    }

    /// What the customer's payment method is charged (and refunded): the
    /// total after promotions.
    pub fn charged(&self) -> Money {
        match self.price() {
            Some(split) => Money::new(split.charged_minor, self.total.currency.clone()),
            None => self.total.clone(),
        }
    }

    /// The one constructor: the total is the lines' sum, the history starts
    /// with the first status at `at`.
    pub fn new(new: NewOrder, at: DateTime<Utc>) -> Order {
        // Prices and quantities are bounded by validation
        // (MAX_MEAL_PRICE_MINOR × MAX_QTY × MAX_LINES), so this cannot overflow.
        let total = Money::new(
            new.lines
                .iter()
                .map(|l| l.unit_price * i64::from(l.qty))
                .sum(),
            new.currency,
        );
        Order {
            order_id: new.order_id,
            customer: new.customer,
            channel: new.channel,
            fridge_id: new.fridge_id,
            lines: new.lines,
            total,
            payment_method: new.payment_method,
            hold_until: new.hold_until,
            status: new.status,
            pickup_code: None,
            pickup_deadline: None,
            refusal_reason: None,
            refund_pending: false,
            timer: None,
            history: vec![StatusChange {
                status: new.status,
                at,
            }],
            shortage: Vec::new(),
            delivery_date: new.delivery_date,
            withdrawn: None,
            promo: None,
            preorder: None,
            idempotency_key: None,
        }
    }

    /// Moves the order to `status` at `at`, in its history too.
    pub(crate) fn advance(&mut self, status: OrderStatus, at: DateTime<Utc>) {
        self.status = status;
        self.history.push(StatusChange { status, at });
    }

    /// The order becomes `status` (purchased, or a prepaid order placed in
    /// the fridge) at `at`: it may be collected with `pickup_code` until
    /// `deadline`, when its unclaimed timer fires.
    pub(crate) fn await_pickup(
        &mut self,
        status: OrderStatus,
        pickup_code: &str,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) {
        self.pickup_code = Some(pickup_code.to_string());
        self.pickup_deadline = Some(deadline);
        self.timer = Some((deadline, OrderTimer::PickupDeadline));
        self.advance(status, at);
    }
}

/// The customer whose order `event` adds to the book, if it adds one: an
/// order placed (app or POS) or a plan's order scheduled. The one place
/// that knows which events do, so whoever follows the log for "who has
/// orders here" (the region's customer index) sees what
/// [`OrderBook::customers`] sees.
pub fn customer_of_new_order(event: &protocol::Event) -> Option<&str> {
    match event {
        protocol::Event::OrderPlaced { customer, .. } => Some(customer),
        protocol::Event::Schedule(protocol::schedule::ScheduleEvent::OrderScheduled {
            customer,
            ..
        }) => Some(customer),
        _ => None,
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderBook {
    /// Behind an `Arc`: the map's nodes then hold pointers, so the path
    /// copy after a published snapshot copies pointers, not orders, and
    /// removing one (archiving) does not move large entries around.
    orders: OrdMap<OrderId, Arc<Order>>,
    /// Each customer's orders, oldest first.
    by_customer: HashMap<String, Vector<OrderId>>,
    /// `(customer, Idempotency-Key)` → (order, request fingerprint).
    idempotency: HashMap<(String, String), (OrderId, u64)>,
    /// Open timers by due time.
    timers: OrdMap<(DateTime<Utc>, OrderId), OrderTimer>,
    /// Orders holding stock, per fridge; ULID order ids sort oldest first.
    open_by_fridge: HashMap<FridgeId, OrdSet<OrderId>>,
    /// Orders in a final status, by when they reached it: what archiving
    /// reads oldest first, without walking the book.
    finished: OrdSet<(DateTime<Utc>, OrderId)>,
}

impl OrderBook {
    pub fn get(&self, order_id: &str) -> Option<&Order> {
        self.orders.get(order_id).map(Arc::as_ref)
    }

    /// The book's own copy of an order's id (one shared allocation), for
    /// other maps to key the order by without a copy of their own.
    pub fn id(&self, order_id: &str) -> Option<&OrderId> {
        self.orders.get_key_value(order_id).map(|(id, _)| id)
    }

    /// `order_id` as a key for another map: the book's copy when it has
    /// the order, else `order_id` itself. An event's id may be a copy of
    /// its own (a payment result's, the log's), and imbl's insert keeps
    /// the newest key.
    pub fn shared_id(&self, order_id: &OrderId) -> OrderId {
        self.id(order_id).unwrap_or(order_id).clone()
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Every order, by id.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Order> {
        self.orders.values().map(Arc::as_ref)
    }

    /// A customer's orders, oldest first.
    pub fn of_customer<'a>(&'a self, customer: &str) -> impl DoubleEndedIterator<Item = &'a Order> {
        self.by_customer
            .get(customer)
            .into_iter()
            .flatten()
            .filter_map(|id| self.orders.get(id).map(Arc::as_ref))
    }

    /// Every customer with an order here (for the global customer index,
    /// which lists the districts a customer has orders in).
    pub fn customers(&self) -> impl Iterator<Item = &str> {
        self.by_customer.keys().map(String::as_str)
    }

    /// The order a customer's `Idempotency-Key` made, with the fingerprint
    /// of the request that made it.
    pub fn by_idempotency_key(&self, customer: &str, key: &str) -> Option<&(OrderId, u64)> {
        self.idempotency
            .get(&(customer.to_string(), key.to_string()))
    }

    /// Timers due at `now`, earliest first.
    pub fn due_timers(&self, now: DateTime<Utc>) -> impl Iterator<Item = (&OrderId, OrderTimer)> {
        self.timers
            .iter()
            .take_while(move |((at, _), _)| *at <= now)
            .map(|((_, id), timer)| (id, *timer))
    }

    /// Orders holding stock in the fridge, oldest first.
    pub fn open_at<'a>(&'a self, fridge_id: &str) -> impl Iterator<Item = &'a Order> {
        self.open_by_fridge
            .get(fridge_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.orders.get(id).map(Arc::as_ref))
    }

    /// Final orders that reached their status at or before `cutoff`,
    /// oldest first.
    pub fn finished_by(&self, cutoff: DateTime<Utc>) -> impl Iterator<Item = &Order> {
        self.finished
            .iter()
            .take_while(move |(at, _)| *at <= cutoff)
            .filter_map(|(_, id)| self.orders.get(id).map(Arc::as_ref))
    }

    /// The order leaves the book with every index entry it has (archiving:
    /// its events stay in the log).
    pub(crate) fn remove(&mut self, order_id: &str) {
        let Some(order) = self.orders.remove(order_id) else {
            return;
        };
        let id = &order.order_id;
        let before = Indexed::of(&order);
        if let Some((at, _)) = before.timer {
            self.timers.remove(&(at, id.clone()));
        }
        if let Some(at) = before.finished_at {
            self.finished.remove(&(at, id.clone()));
        }
        if let Some(set) = self.open_by_fridge.get_mut(&order.fridge_id) {
            set.remove(id);
            if set.is_empty() {
                self.open_by_fridge.remove(&order.fridge_id);
            }
        }
        if let Some(key) = &order.idempotency_key {
            let entry = (order.customer.clone(), key.clone());
            if self.idempotency.get(&entry).is_some_and(|(o, _)| o == id) {
                self.idempotency.remove(&entry);
            }
        }
        if let Some(ids) = self.by_customer.get_mut(&order.customer) {
            // Archived orders are the oldest, near the front: found fast,
            // and removed in O(log n) (`retain` rebuilds the vector).
            if let Some(at) = ids.iter().position(|o| o == id) {
                ids.remove(at);
            }
            if ids.is_empty() {
                self.by_customer.remove(&order.customer);
            }
        }
    }

    /// Records a new order (made by whichever channel) and its key.
    pub(crate) fn add(&mut self, mut order: Order, idempotency: Option<&(String, u64)>) {
        order.idempotency_key = idempotency.map(|(key, _)| key.clone());
        if let Some((key, fingerprint)) = idempotency {
            self.idempotency.insert(
                (order.customer.clone(), key.clone()),
                (order.order_id.clone(), *fingerprint),
            );
        }
        self.by_customer
            .entry(order.customer.clone())
            .or_default()
            .push_back(order.order_id.clone());
        self.reindex(&order.order_id, &order.fridge_id, None, Indexed::of(&order));
        self.orders.insert(order.order_id.clone(), Arc::new(order));
    }

    /// Changes an order; its timer and stock indexes follow. Returns whether
    /// the order exists.
    /// The order may now be collected: see [`Order::await_pickup`].
    pub(crate) fn await_pickup(
        &mut self,
        order_id: &str,
        status: OrderStatus,
        pickup_code: &str,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> bool {
        self.update(order_id, |order| {
            order.await_pickup(status, pickup_code, deadline, at)
        })
    }

    pub(crate) fn update(&mut self, order_id: &str, f: impl FnOnce(&mut Order)) -> bool {
        // Changed in place: an order is large (lines, history, strings) and
        // cloning it twice per change was a good part of every event's
        // cost. Only the facts the indexes key on are kept from before.
        let Some(order) = self.orders.get_mut(order_id) else {
            return false;
        };
        // Cloned once when a published snapshot still shares it.
        let order = Arc::make_mut(order);
        let before = Indexed::of(order);
        f(order);
        let after = Indexed::of(order);
        let (order_id, fridge_id) = (order.order_id.clone(), order.fridge_id.clone());
        self.reindex(&order_id, &fridge_id, Some(before), after);
        true
    }

    fn reindex(
        &mut self,
        id: &OrderId,
        fridge_id: &FridgeId,
        before: Option<Indexed>,
        after: Indexed,
    ) {
        let old_finish = before.and_then(|b| b.finished_at);
        if old_finish != after.finished_at {
            if let Some(at) = old_finish {
                self.finished.remove(&(at, id.clone()));
            }
            if let Some(at) = after.finished_at {
                self.finished.insert((at, id.clone()));
            }
        }
        let old_timer = before.and_then(|b| b.timer);
        if old_timer != after.timer {
            if let Some((at, _)) = old_timer {
                self.timers.remove(&(at, id.clone()));
            }
            if let Some((at, kind)) = after.timer {
                self.timers.insert((at, id.clone()), kind);
            }
        }
        let held = before.is_some_and(|b| b.holds_stock);
        if held == after.holds_stock {
            return;
        }
        // In place: cloning the set out and back shared its nodes with the
        // map's copy, so every insert copied a path of order ids.
        let set = self.open_by_fridge.entry(fridge_id.clone()).or_default();
        if after.holds_stock {
            set.insert(id.clone());
        } else {
            set.remove(id);
        }
        if set.is_empty() {
            self.open_by_fridge.remove(fridge_id);
        }
    }
}

/// What the order book's indexes key on, taken before and after a change.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    timer: Option<(DateTime<Utc>, OrderTimer)>,
    holds_stock: bool,
    /// When a final order reached its status (its last history entry).
    finished_at: Option<DateTime<Utc>>,
}

impl Indexed {
    fn of(order: &Order) -> Indexed {
        Indexed {
            timer: order.timer,
            holds_stock: order.holds_stock(),
            finished_at: order
                .history
                .last()
                .map(|c| c.at)
                .filter(|_| order.status.is_final()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hot window holds one `Arc<Order>` per order (~300k at 43k
    /// orders a day). mimalloc rounds a block up to its size class (…,
    /// 256, 320, 384, …): a few bytes more here cost 64 per order. Box
    /// what few orders have (`preorder`, `withdrawn`) before growing it.
    #[test]
    fn order_fits_its_size_class() {
        let arc_counts_bytes = 2 * std::mem::size_of::<usize>();
        assert!(
            std::mem::size_of::<Order>() + arc_counts_bytes <= 320,
            "Order is {} bytes",
            std::mem::size_of::<Order>()
        );
    }
}
