//! Stock per fridge and meal (`on_hand`, `reserved`, `quarantined`,
//! `expired`), with the lots that give its units a best-before
//! ([`crate::expiry`]).
//!
//! The one place a stock level is written: every change goes through a
//! method here that keeps the level and its lots in step, so a level is
//! never half-updated and lots always follow `on_hand`.

use chrono::{DateTime, Duration, Utc};
use imbl::{OrdMap, Vector};
use protocol::catalog::StockLevel;
use protocol::events::StockSource;
use protocol::{Event, FridgeId, MealId, OrderId};

use crate::expiry::{self, Lot, Lots};
use crate::{DistrictState, Recorded};

/// Levels per fridge, then per meal.
pub type Levels = OrdMap<FridgeId, OrdMap<MealId, StockLevel>>;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stock {
    levels: Levels,
    /// Units on the shelf by arrival, for their best-before.
    lots: Lots,
}

impl Stock {
    pub fn level(&self, fridge_id: &str, meal_id: &str) -> StockLevel {
        self.levels
            .get(fridge_id)
            .and_then(|m| m.get(meal_id))
            .copied()
            .unwrap_or_default()
    }

    /// One fridge's levels by meal.
    pub fn fridge(&self, fridge_id: &str) -> Option<&OrdMap<MealId, StockLevel>> {
        self.levels.get(fridge_id)
    }

    /// Every level; persistent, so `ptr_eq` tells two snapshots apart cheaply.
    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    pub fn lots(&self, fridge_id: &FridgeId, meal_id: &MealId) -> Option<&Vector<Lot>> {
        self.lots.get(&(fridge_id.clone(), meal_id.clone()))
    }

    /// Units of a meal in a fridge whose best-before has passed at `now`.
    pub fn expired_by(&self, fridge_id: &FridgeId, meal_id: &MealId, now: DateTime<Utc>) -> u32 {
        self.lots(fridge_id, meal_id)
            .map(|lots| expiry::expired_at(lots, now))
            .unwrap_or(0)
    }

    /// Best-before of the next `units` units a sale would take, oldest
    /// first: stock rotation hands out the oldest units, and the units
    /// already reserved for other orders come off the oldest general lots
    /// first. Lots set aside for one order and units past their best-before
    /// are passed by. Shorter than `units` when the lots do not say (a
    /// level set before lots were kept).
    pub fn next_for_sale(
        &self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        units: u32,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let Some(lots) = self.lots(fridge_id, meal_id) else {
            return vec![];
        };
        let set_aside: u32 = lots
            .iter()
            .filter(|l| l.for_order.is_some())
            .map(|l| l.units)
            .sum();
        let mut skip = self
            .level(fridge_id, meal_id)
            .reserved
            .saturating_sub(set_aside);
        let mut out = Vec::with_capacity(units.min(64) as usize);
        for lot in lots
            .iter()
            .filter(|l| l.for_order.is_none() && l.best_before > now)
        {
            let skipped = skip.min(lot.units);
            skip -= skipped;
            let take = (lot.units - skipped).min(units - out.len() as u32);
            out.extend(std::iter::repeat_n(lot.best_before, take as usize));
            if out.len() as u32 == units {
                break;
            }
        }
        out
    }

    /// Pairs whose lots say more units are expired at `now` than are withheld.
    pub fn expiry_due(&self, now: DateTime<Utc>) -> Vec<(FridgeId, MealId)> {
        self.lots
            .iter()
            .filter(|((fridge, meal), lots)| {
                expiry::expired_at(lots, now) > self.level(fridge, meal).expired
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The shelf now holds `on_hand` units (a count, a correction, a unit
    /// placed by a kitchen). Units that vanished take expired ones with them
    /// (the next tagged scan says exactly which).
    pub(crate) fn count(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        on_hand: u32,
        at: DateTime<Utc>,
        shelf_life: Duration,
    ) {
        let was = self.level(fridge_id, meal_id).on_hand;
        self.adjust(fridge_id, meal_id, |level| {
            level.on_hand = on_hand;
            level.expired = level.expired.min(on_hand);
        });
        self.follow_lots(fridge_id, meal_id, was, at, shelf_life);
    }

    pub(crate) fn reserve(&mut self, fridge_id: &FridgeId, meal_id: &MealId, qty: u32) {
        self.adjust(fridge_id, meal_id, |l| {
            l.reserved = l.reserved.saturating_add(qty)
        });
    }

    /// A waitlist hold takes one unit off sale for its customer.
    pub(crate) fn hold(&mut self, fridge_id: &FridgeId, meal_id: &MealId) {
        self.adjust(fridge_id, meal_id, |l| l.held = l.held.saturating_add(1));
    }

    /// A waitlist hold ends (used by an order, lapsed, given back).
    pub(crate) fn unhold(&mut self, fridge_id: &FridgeId, meal_id: &MealId) {
        self.adjust(fridge_id, meal_id, |l| l.held = l.held.saturating_sub(1));
    }

    /// The order's reservation ends without a pickup: its units, including
    /// any set aside for it, are on general sale again.
    pub(crate) fn release(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        order_id: &OrderId,
        qty: u32,
    ) {
        self.adjust(fridge_id, meal_id, |l| {
            l.reserved = l.reserved.saturating_sub(qty)
        });
        let key = (fridge_id.clone(), meal_id.clone());
        if let Some(lots) = self.lots.get(&key).cloned() {
            self.set_lots(key, expiry::release_for_order(lots, order_id));
        }
    }

    /// A kitchen put one unit in the fridge for `order_id`: on hand and
    /// reserved rise together, and the unit is a lot of its own, set aside
    /// for the order.
    pub(crate) fn place_for_order(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        order_id: &OrderId,
        at: DateTime<Utc>,
        shelf_life: Duration,
    ) {
        self.adjust(fridge_id, meal_id, |l| {
            l.on_hand = l.on_hand.saturating_add(1);
            l.reserved = l.reserved.saturating_add(1);
        });
        let key = (fridge_id.clone(), meal_id.clone());
        let mut lots = self.lots.get(&key).cloned().unwrap_or_default();
        lots.push_back(Lot {
            units: 1,
            best_before: at + shelf_life,
            for_order: Some(order_id.clone()),
        });
        self.set_lots(key, lots);
        self.refresh_expired(fridge_id, meal_id, at);
    }

    /// `qty` units reserved for `order_id` left the fridge with their
    /// customer: first the units set aside for that order (the ones its
    /// kitchen placed), then the oldest on the shelf.
    pub(crate) fn hand_out(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        order_id: &OrderId,
        qty: u32,
        at: DateTime<Utc>,
        shelf_life: Duration,
    ) {
        let key = (fridge_id.clone(), meal_id.clone());
        let mut lots = self.lots.get(&key).cloned().unwrap_or_default();
        let own = expiry::take_for_order(&mut lots, order_id, qty);
        self.set_lots(key, lots);
        let was = self.level(fridge_id, meal_id).on_hand.saturating_sub(own);
        self.adjust(fridge_id, meal_id, |l| {
            l.on_hand = l.on_hand.saturating_sub(qty);
            l.reserved = l.reserved.saturating_sub(qty);
        });
        self.follow_lots(fridge_id, meal_id, was, at, shelf_life);
        self.refresh_expired(fridge_id, meal_id, at);
    }

    /// The withheld count is what the lots say has expired at `at`.
    fn refresh_expired(&mut self, fridge_id: &FridgeId, meal_id: &MealId, at: DateTime<Utc>) {
        let expired = self
            .lots(fridge_id, meal_id)
            .map(|lots| expiry::expired_at(lots, at))
            .unwrap_or(0);
        if self.level(fridge_id, meal_id).expired != expired {
            self.adjust(fridge_id, meal_id, |level| level.expired = expired);
        }
    }

    /// `units` of the meal are past their best-before as of `at` (the
    /// node's lots said so, or the fridge read their tags).
    pub(crate) fn expire(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        units: u32,
        at: DateTime<Utc>,
    ) {
        self.adjust(fridge_id, meal_id, |level| level.expired = units);
        let key = (fridge_id.clone(), meal_id.clone());
        if let Some(lots) = self.lots.get(&key).cloned() {
            self.set_lots(key, expiry::relabel(lots, units, at));
        }
    }

    /// Withholds everything on the fridge's shelves (quarantine). A lift
    /// does not release it: see [`Stock::withhold_after_count`].
    pub(crate) fn withhold_fridge(&mut self, fridge_id: &FridgeId) {
        if let Some(per_meal) = self.levels.get(fridge_id) {
            let updated = per_meal
                .iter()
                .map(|(meal, level)| {
                    let mut level = *level;
                    level.quarantined = level.on_hand;
                    (meal.clone(), level)
                })
                .collect();
            self.levels.insert(fridge_id.clone(), updated);
        }
    }

    /// What stays withheld after a count of the meal: everything on the
    /// shelf while the fridge is quarantined; after a lift, the units that
    /// were exposed (never more than are on hand) until the fridge scans
    /// again, since staff clear the exposed units before that scan.
    pub(crate) fn withhold_after_count(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        fridge_quarantined: bool,
        scanned: bool,
    ) {
        self.adjust(fridge_id, meal_id, |level| {
            level.quarantined = if fridge_quarantined {
                level.on_hand
            } else if scanned {
                0
            } else {
                level.quarantined.min(level.on_hand)
            };
        });
    }

    fn adjust(&mut self, fridge_id: &FridgeId, meal_id: &MealId, f: impl FnOnce(&mut StockLevel)) {
        let mut per_meal = self.levels.get(fridge_id).cloned().unwrap_or_default();
        let mut level = per_meal.get(meal_id).copied().unwrap_or_default();
        f(&mut level);
        per_meal.insert(meal_id.clone(), level);
        self.levels.insert(fridge_id.clone(), per_meal);
    }

    /// Lots follow an `on_hand` that was `was` before; the withheld count
    /// is what the lots say has expired at `at`.
    fn follow_lots(
        &mut self,
        fridge_id: &FridgeId,
        meal_id: &MealId,
        was: u32,
        at: DateTime<Utc>,
        shelf_life: Duration,
    ) {
        let on_hand = self.level(fridge_id, meal_id).on_hand;
        if on_hand == was {
            return;
        }
        let key = (fridge_id.clone(), meal_id.clone());
        let lots = self.lots.get(&key).cloned().unwrap_or_default();
        let lots = expiry::follow(lots, was, on_hand, at, shelf_life);
        self.set_lots(key, lots);
        self.refresh_expired(fridge_id, meal_id, at);
    }

    fn set_lots(&mut self, key: (FridgeId, MealId), lots: Vector<Lot>) {
        if lots.is_empty() {
            self.lots.remove(&key);
        } else {
            self.lots.insert(key, lots);
        }
    }
}

/// Applies stock events; returns whether what the catalog shows changed.
pub(crate) fn evolve(state: &mut DistrictState, event: &Event, rec: Recorded) -> bool {
    match event {
        Event::MealStockUpdated {
            fridge_id,
            meal_id,
            on_hand,
            source,
        } => {
            let shelf_life = state.catalog.shelf_life(meal_id);
            state
                .stock
                .count(fridge_id, meal_id, *on_hand, rec.at, shelf_life);
            // Reads the fridge's status (catalog) to keep exposed units
            // withheld across a quarantine and its lift.
            let quarantined = state
                .catalog
                .fridge_is(fridge_id, protocol::catalog::FridgeStatus::Quarantined);
            state.stock.withhold_after_count(
                fridge_id,
                meal_id,
                quarantined,
                *source == StockSource::Scan,
            );
            true
        }
        Event::MealStockReserved {
            fridge_id,
            meal_id,
            qty,
            ..
        } => {
            state.stock.reserve(fridge_id, meal_id, *qty);
            true
        }
        Event::MealStockReleased {
            order_id,
            fridge_id,
            meal_id,
            qty,
        } => {
            state.stock.release(fridge_id, meal_id, order_id, *qty);
            true
        }
        Event::MealUnitPlacedForOrder {
            order_id,
            fridge_id,
            meal_id,
        } => {
            let shelf_life = state.catalog.shelf_life(meal_id);
            state
                .stock
                .place_for_order(fridge_id, meal_id, order_id, rec.at, shelf_life);
            true
        }
        Event::MealUnitsExpired {
            fridge_id,
            meal_id,
            units,
        } => {
            state.stock.expire(fridge_id, meal_id, *units, rec.at);
            true
        }
        // A movement explains a count; the count that follows it sets the level.
        Event::StockMovementRecorded { .. } => false,
        _ => false,
    }
}
