//! The fold: committed events in, day aggregates out.
//!
//! The projection learns what it needs from the log itself (meals' kitchen
//! and list price from `MealDefined`, fridges' cell from
//! `FridgeRegistered`), so replaying the log from seq 1 rebuilds it with
//! no district state. Its working memory (`Tracker`) is what is still
//! open: orders not yet finished, plan orders not yet picked up, each
//! shelf's count, open quarantines. The days are [`Aggregates`], which the
//! node publishes as a cheap clone (each day is an `Arc`, copied on write).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use protocol::events::StockMovement;
use protocol::orders::RefusalReason;
use protocol::schedule::ScheduleEvent;
use protocol::{Event, EventEnvelope, FridgeId, KitchenId, MealId, OrderId};

use crate::day::{Day, Outcome, Popularity};

/// District-local days kept; older days are dropped as new ones start.
pub const MAX_DAYS_KEPT: usize = 400;
/// Finished orders remembered for a late refund (oldest forgotten first).
pub const MAX_CLOSED_ORDERS: usize = 20_000;
/// Geohash characters of an area cell (6: about 1.2 km × 0.6 km).
pub const CELL_PRECISION_CHARS: usize = 6;

/// Where an order's outcomes are counted: the local day and hour it was
/// placed (so rates are fractions of the orders placed in a range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cohort {
    day: NaiveDate,
    hour: u8,
}

#[derive(Debug, Clone)]
struct OpenOrder {
    cohort: Cohort,
    fridge_id: FridgeId,
    lines: Vec<(MealId, u32)>,
    placed_at: DateTime<Utc>,
    purchased_at: Option<DateTime<Utc>>,
}

/// A plan day's or an order ahead's one unit, made by a kitchen.
#[derive(Debug, Clone)]
struct KitchenOrder {
    kitchen_id: KitchenId,
    fridge_id: FridgeId,
    meal_id: MealId,
}

#[derive(Debug, Clone)]
struct MealFacts {
    kitchen_id: KitchenId,
    price_cents: i64,
}

/// Units of a meal on a shelf as the district's stock would count them,
/// and how many of them are withheld as expired.
#[derive(Debug, Clone, Copy, Default)]
struct Shelf {
    on_hand: u32,
    expired: u32,
}

impl Shelf {
    /// Units left (a pickup, a lower count): the oldest go first, and the
    /// expired units are the oldest (the district's stock rotation).
    fn take(&mut self, units: u32) {
        self.on_hand = self.on_hand.saturating_sub(units);
        self.expired = self.expired.saturating_sub(units).min(self.on_hand);
    }
}

/// What is still open; never published.
#[derive(Debug, Clone, Default)]
struct Tracker {
    meals: BTreeMap<MealId, MealFacts>,
    open: BTreeMap<OrderId, OpenOrder>,
    closed: BTreeMap<OrderId, Cohort>,
    closed_order: VecDeque<OrderId>,
    kitchen_orders: BTreeMap<OrderId, KitchenOrder>,
    shelves: BTreeMap<(FridgeId, MealId), Shelf>,
    excursion_since: BTreeMap<FridgeId, DateTime<Utc>>,
    quarantined_since: BTreeMap<FridgeId, DateTime<Utc>>,
}

/// The published part: days, and the facts a report needs to filter and
/// group them (meal → kitchen, fridge → cell).
#[derive(Debug, Clone, Default)]
pub struct Aggregates {
    pub utc_offset_minutes: i32,
    /// The last log seq folded in.
    pub applied_seq: u64,
    pub(crate) days: BTreeMap<NaiveDate, Arc<Day>>,
    pub(crate) meal_kitchen: BTreeMap<MealId, KitchenId>,
    pub(crate) fridge_cell: BTreeMap<FridgeId, String>,
}

impl Aggregates {
    /// The day to count in: created when new, `None` when it is older than
    /// every kept day while the cap is reached (it was dropped).
    fn day(&mut self, date: NaiveDate) -> Option<&mut Day> {
        if !self.days.contains_key(&date) {
            if self.days.len() >= MAX_DAYS_KEPT {
                let oldest = *self.days.keys().next()?;
                if date < oldest {
                    return None;
                }
                self.days.remove(&oldest);
            }
            self.days.insert(date, Arc::default());
        }
        self.days.get_mut(&date).map(Arc::make_mut)
    }

    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        (t + chrono::Duration::minutes(i64::from(self.utc_offset_minutes))).naive_utc()
    }

    pub fn day_of(&self, date: NaiveDate) -> Option<&Day> {
        self.days.get(&date).map(|d| d.as_ref())
    }
}

/// The reporting projection of one district.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    track: Tracker,
    agg: Aggregates,
}

impl Projection {
    /// `utc_offset_minutes`: the district's wall clock (its local dates).
    pub fn new(utc_offset_minutes: i32) -> Self {
        Projection {
            track: Tracker::default(),
            agg: Aggregates {
                utc_offset_minutes,
                ..Aggregates::default()
            },
        }
    }

    pub fn applied_seq(&self) -> u64 {
        self.agg.applied_seq
    }

    /// The days so far (cheap to clone: each day is shared until written).
    pub fn aggregates(&self) -> &Aggregates {
        &self.agg
    }

    /// Folds one committed event in. An event at or before the last seq
    /// folded is ignored, so a batch seen twice (feed and log) counts once.
    pub fn apply(&mut self, env: &EventEnvelope) {
        if env.seq <= self.agg.applied_seq {
            return;
        }
        self.agg.applied_seq = env.seq;
        let at = env.recorded_at;
        match &env.event {
            Event::MealDefined { meal } => {
                let facts = MealFacts {
                    kitchen_id: meal.spec.kitchen_id.clone(),
                    price_cents: meal.spec.price,
                };
                self.agg
                    .meal_kitchen
                    .insert(meal.meal_id.clone(), facts.kitchen_id.clone());
                self.track.meals.insert(meal.meal_id.clone(), facts);
            }
            Event::FridgeRegistered { fridge, .. } => {
                let cell: String = fridge.geohash.chars().take(CELL_PRECISION_CHARS).collect();
                self.agg.fridge_cell.insert(fridge.fridge_id.clone(), cell);
            }
            Event::OrderPlaced {
                order_id,
                fridge_id,
                lines,
                ..
            } => self.placed(order_id, fridge_id, lines, at),
            Event::OrderPurchased { order_id, .. } => self.purchased(order_id, at),
            Event::OrderCancelled { order_id } => self.cancelled(order_id),
            Event::OrderPurchaseRefused { order_id, reason } => self.refused(order_id, *reason, at),
            Event::OrderRefunded { order_id, .. } => self.refunded(order_id),
            Event::OrderPickedUp { order_id } => self.picked_up(order_id, at),
            Event::OrderUnclaimed { order_id } => self.unclaimed(order_id, at),
            Event::MealStockUpdated {
                fridge_id,
                meal_id,
                on_hand,
                ..
            } => self.counted(fridge_id, meal_id, *on_hand, at),
            Event::MealUnitPlacedForOrder {
                fridge_id, meal_id, ..
            } => self.placed_for_order(fridge_id, meal_id, at),
            Event::MealUnitsExpired {
                fridge_id,
                meal_id,
                units,
            } => self.expired(fridge_id, meal_id, *units, at),
            Event::StockMovementRecorded {
                fridge_id,
                meal_id: Some(meal_id),
                units,
                movement: StockMovement::Shrinkage,
                ..
            } if *units < 0 => self.shrank(fridge_id, meal_id, units.unsigned_abs(), at),
            Event::FridgeQuarantined {
                fridge_id, since, ..
            } => self.quarantined(fridge_id, *since, at),
            Event::FridgeQuarantineLifted { fridge_id } => self.lifted(fridge_id, at),
            Event::TemperatureRecovered {
                fridge_id, since, ..
            } => self.excursion(fridge_id, *since),
            Event::Schedule(e) => self.schedule(e, at),
            _ => {}
        }
    }

    fn cohort(&self, at: DateTime<Utc>) -> Cohort {
        let local = self.agg.local(at);
        Cohort {
            day: local.date(),
            hour: local.hour() as u8,
        }
    }

    /// The day of an event (waste, temperature, failed payments).
    fn event_day(&mut self, at: DateTime<Utc>) -> Option<&mut Day> {
        let date = self.agg.local(at).date();
        self.agg.day(date)
    }

    fn count(&mut self, cohort: Cohort, outcome: Outcome) -> Option<&mut Day> {
        let day = self.agg.day(cohort.day)?;
        day.count(cohort.hour, outcome);
        Some(day)
    }

    fn placed(
        &mut self,
        order_id: &OrderId,
        fridge_id: &FridgeId,
        lines: &[protocol::orders::OrderLine],
        at: DateTime<Utc>,
    ) {
        let cohort = self.cohort(at);
        self.count(cohort, Outcome::Placed);
        let order = OpenOrder {
            cohort,
            fridge_id: fridge_id.clone(),
            lines: lines.iter().map(|l| (l.meal_id.clone(), l.qty)).collect(),
            placed_at: at,
            purchased_at: None,
        };
        self.track.open.insert(order_id.clone(), order);
    }

    fn purchased(&mut self, order_id: &OrderId, at: DateTime<Utc>) {
        let Some(order) = self.track.open.get_mut(order_id) else {
            return;
        };
        order.purchased_at = Some(at);
        let order = order.clone();
        let kitchens: Vec<(KitchenId, MealId, u32)> = order
            .lines
            .iter()
            .filter_map(|(m, q)| Some((self.track.meals.get(m)?.kitchen_id.clone(), m.clone(), *q)))
            .collect();
        let cell_units: u64 = order.lines.iter().map(|(_, q)| u64::from(*q)).sum();
        if let Some(day) = self.count(order.cohort, Outcome::Purchased) {
            let ms = (at - order.placed_at).num_milliseconds().max(0) as u64;
            day.confirm_to_purchased_ms.record(ms);
            let f = day.fridges.entry(order.fridge_id.clone()).or_default();
            f.add(&Popularity {
                units: cell_units,
                orders: 1,
            });
            let mut seen_kitchens = std::collections::BTreeMap::<KitchenId, u64>::new();
            for (k, m, q) in &kitchens {
                let p = day.meals.entry((k.clone(), m.clone())).or_default();
                p.add(&Popularity {
                    units: u64::from(*q),
                    orders: 1,
                });
                *seen_kitchens.entry(k.clone()).or_default() += u64::from(*q);
            }
            for (k, units) in seen_kitchens {
                let p = day
                    .kitchen_fridges
                    .entry((k, order.fridge_id.clone()))
                    .or_default();
                p.add(&Popularity { units, orders: 1 });
            }
        }
        if let Some(day) = self.event_day(at) {
            for (k, _, q) in &kitchens {
                day.waste_mut(k, &order.fridge_id).sold += u64::from(*q);
            }
        }
    }

    /// Forgets an open order, remembering its cohort for a late refund.
    fn close(&mut self, order_id: &OrderId) {
        if let Some(order) = self.track.open.remove(order_id) {
            self.track.closed.insert(order_id.clone(), order.cohort);
            self.track.closed_order.push_back(order_id.clone());
            while self.track.closed_order.len() > MAX_CLOSED_ORDERS {
                if let Some(old) = self.track.closed_order.pop_front() {
                    self.track.closed.remove(&old);
                }
            }
        }
    }

    fn cancelled(&mut self, order_id: &OrderId) {
        let Some(order) = self.track.open.get(order_id) else {
            return;
        };
        let (cohort, paid) = (order.cohort, order.purchased_at.is_some());
        self.count(cohort, Outcome::Cancelled);
        self.track.kitchen_orders.remove(order_id);
        if !paid {
            self.close(order_id);
        }
    }

    fn refused(&mut self, order_id: &OrderId, reason: RefusalReason, at: DateTime<Utc>) {
        let Some(cohort) = self.track.open.get(order_id).map(|o| o.cohort) else {
            return;
        };
        match reason {
            RefusalReason::Declined => {
                self.count(cohort, Outcome::Refused);
                if let Some(day) = self.event_day(at) {
                    day.failed_payment(order_id.to_string());
                }
            }
            RefusalReason::Timeout => {
                self.count(cohort, Outcome::TimedOut);
            }
        }
        self.close(order_id);
    }

    fn refunded(&mut self, order_id: &OrderId) {
        let cohort = match self.track.open.get(order_id) {
            Some(o) => Some(o.cohort),
            None => self.track.closed.get(order_id).copied(),
        };
        if let Some(cohort) = cohort {
            self.count(cohort, Outcome::Refunded);
        }
        self.close(order_id);
    }

    /// The units an order takes from its fridge: a kitchen's one unit, or
    /// the order's lines.
    fn units_of(&self, order_id: &OrderId) -> Vec<(KitchenId, FridgeId, MealId, u32)> {
        if let Some(k) = self.track.kitchen_orders.get(order_id) {
            return vec![(
                k.kitchen_id.clone(),
                k.fridge_id.clone(),
                k.meal_id.clone(),
                1,
            )];
        }
        let Some(o) = self.track.open.get(order_id) else {
            return vec![];
        };
        o.lines
            .iter()
            .filter_map(|(m, q)| {
                let k = self.track.meals.get(m)?.kitchen_id.clone();
                Some((k, o.fridge_id.clone(), m.clone(), *q))
            })
            .collect()
    }

    fn picked_up(&mut self, order_id: &OrderId, at: DateTime<Utc>) {
        let units = self.units_of(order_id);
        let own_lot = self.track.kitchen_orders.remove(order_id).is_some();
        for (k, f, m, q) in &units {
            let shelf = self
                .track
                .shelves
                .entry((f.clone(), m.clone()))
                .or_default();
            if own_lot {
                shelf.on_hand = shelf.on_hand.saturating_sub(*q);
            } else {
                shelf.take(*q);
            }
            if let Some(day) = self.event_day(at) {
                day.waste_mut(k, f).picked_up += u64::from(*q);
            }
        }
        if let Some(order) = self.track.open.get(order_id).cloned() {
            if let Some(day) = self.count(order.cohort, Outcome::PickedUp) {
                if let Some(paid) = order.purchased_at {
                    let secs = (at - paid).num_seconds().max(0) as u64;
                    day.purchased_to_picked_up_secs.record(secs);
                }
            }
            self.close(order_id);
        }
    }

    fn unclaimed(&mut self, order_id: &OrderId, at: DateTime<Utc>) {
        let units = self.units_of(order_id);
        self.track.kitchen_orders.remove(order_id);
        if let Some(day) = self.event_day(at) {
            for (k, f, _, q) in &units {
                day.waste_mut(k, f).unclaimed += u64::from(*q);
            }
        }
        if let Some(cohort) = self.track.open.get(order_id).map(|o| o.cohort) {
            self.count(cohort, Outcome::Unclaimed);
            self.close(order_id);
        }
    }

    fn kitchen_of(&self, meal_id: &MealId) -> Option<(KitchenId, i64)> {
        self.track
            .meals
            .get(meal_id)
            .map(|m| (m.kitchen_id.clone(), m.price_cents))
    }

    /// An absolute count: a rise is units placed, a fall takes the oldest.
    fn counted(&mut self, fridge_id: &FridgeId, meal_id: &MealId, on_hand: u32, at: DateTime<Utc>) {
        let shelf = self
            .track
            .shelves
            .entry((fridge_id.clone(), meal_id.clone()))
            .or_default();
        let before = shelf.on_hand;
        if on_hand < before {
            shelf.take(before - on_hand);
            return;
        }
        shelf.on_hand = on_hand;
        let Some((kitchen, _)) = self.kitchen_of(meal_id) else {
            return;
        };
        if on_hand > before {
            if let Some(day) = self.event_day(at) {
                day.waste_mut(&kitchen, fridge_id).placed += u64::from(on_hand - before);
            }
        }
    }

    fn placed_for_order(&mut self, fridge_id: &FridgeId, meal_id: &MealId, at: DateTime<Utc>) {
        let shelf = self
            .track
            .shelves
            .entry((fridge_id.clone(), meal_id.clone()))
            .or_default();
        shelf.on_hand += 1;
        if let Some((kitchen, _)) = self.kitchen_of(meal_id) {
            if let Some(day) = self.event_day(at) {
                day.waste_mut(&kitchen, fridge_id).placed += 1;
            }
        }
    }

    /// `units` is the shelf's expired count now: what is above the last
    /// count expired today.
    fn expired(&mut self, fridge_id: &FridgeId, meal_id: &MealId, units: u32, at: DateTime<Utc>) {
        let shelf = self
            .track
            .shelves
            .entry((fridge_id.clone(), meal_id.clone()))
            .or_default();
        let new = units.saturating_sub(shelf.expired);
        shelf.expired = units;
        let Some((kitchen, price)) = self.kitchen_of(meal_id) else {
            return;
        };
        if new > 0 {
            if let Some(day) = self.event_day(at) {
                let w = day.waste_mut(&kitchen, fridge_id);
                w.expired += u64::from(new);
                w.waste_units += u64::from(new);
                w.waste_cents += price * i64::from(new);
            }
        }
    }

    fn shrank(&mut self, fridge_id: &FridgeId, meal_id: &MealId, units: u64, at: DateTime<Utc>) {
        let Some((kitchen, price)) = self.kitchen_of(meal_id) else {
            return;
        };
        if let Some(day) = self.event_day(at) {
            let w = day.waste_mut(&kitchen, fridge_id);
            let cents = price.saturating_mul(i64::try_from(units).unwrap_or(i64::MAX));
            w.shrinkage_units += units;
            w.shrinkage_cents += cents;
            w.waste_units += units;
            w.waste_cents += cents;
        }
    }

    /// One excursion per distinct start time, counted on the day it began.
    fn excursion(&mut self, fridge_id: &FridgeId, since: DateTime<Utc>) {
        if self.track.excursion_since.get(fridge_id) == Some(&since) {
            return;
        }
        self.track.excursion_since.insert(fridge_id.clone(), since);
        if let Some(day) = self.event_day(since) {
            day.temperature_mut(fridge_id).excursions += 1;
        }
    }

    fn quarantined(&mut self, fridge_id: &FridgeId, since: DateTime<Utc>, at: DateTime<Utc>) {
        self.excursion(fridge_id, since);
        if let Some(day) = self.event_day(at) {
            day.temperature_mut(fridge_id).quarantines += 1;
        }
        self.track
            .quarantined_since
            .entry(fridge_id.clone())
            .or_insert(at);
    }

    /// Quarantine time is counted on the day of the lift.
    fn lifted(&mut self, fridge_id: &FridgeId, at: DateTime<Utc>) {
        let Some(since) = self.track.quarantined_since.remove(fridge_id) else {
            return;
        };
        let secs = (at - since).num_seconds().max(0) as u64;
        if let Some(day) = self.event_day(at) {
            day.temperature_mut(fridge_id).quarantined_secs += secs;
        }
    }

    fn schedule(&mut self, e: &ScheduleEvent, at: DateTime<Utc>) {
        match e {
            ScheduleEvent::OrderScheduled {
                order_id,
                fridge_id,
                kitchen_id,
                meal_id,
                ..
            }
            | ScheduleEvent::PreorderScheduled {
                order_id,
                fridge_id,
                kitchen_id,
                meal_id,
                ..
            } => {
                let k = KitchenOrder {
                    kitchen_id: kitchen_id.clone(),
                    fridge_id: fridge_id.clone(),
                    meal_id: meal_id.clone(),
                };
                self.track.kitchen_orders.insert(order_id.clone(), k);
            }
            ScheduleEvent::OrderPrepared { order_id } => {
                let Some(k) = self.track.kitchen_orders.get(order_id).cloned() else {
                    return;
                };
                if let Some(day) = self.event_day(at) {
                    day.waste_mut(&k.kitchen_id, &k.fridge_id).produced += 1;
                }
            }
            ScheduleEvent::OrderWithdrawn { order_id, .. }
            | ScheduleEvent::PreorderWithdrawn { order_id, .. } => {
                self.track.kitchen_orders.remove(order_id);
            }
            ScheduleEvent::ChargeSettled {
                plan_id,
                approved: false,
                ..
            } => {
                if let Some(day) = self.event_day(at) {
                    day.failed_payment(format!("plan-{plan_id}"));
                }
            }
            _ => {}
        }
    }
}
