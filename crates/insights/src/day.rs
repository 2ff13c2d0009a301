//! What one district-local day keeps: bounded aggregates only (counters,
//! histograms, per-id rows), never the orders themselves.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{FridgeId, KitchenId, MealId};
use serde::Serialize;

use crate::histogram::Histogram;

/// Distinct failed-payment ids kept per day (beyond it `orders` stops
/// growing while `attempts` keeps counting).
pub const MAX_FAILED_IDS_PER_DAY: usize = 10_000;

/// What happened to an order, counted in the day and hour it was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Placed,
    Purchased,
    PickedUp,
    Cancelled,
    Refused,
    TimedOut,
    Refunded,
    Unclaimed,
}

/// Orders by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub placed: u64,
    pub purchased: u64,
    pub picked_up: u64,
    pub cancelled: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub refunded: u64,
    pub unclaimed: u64,
}

impl Counters {
    pub fn bump(&mut self, outcome: Outcome) {
        let n = match outcome {
            Outcome::Placed => &mut self.placed,
            Outcome::Purchased => &mut self.purchased,
            Outcome::PickedUp => &mut self.picked_up,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Refused => &mut self.refused,
            Outcome::TimedOut => &mut self.timed_out,
            Outcome::Refunded => &mut self.refunded,
            Outcome::Unclaimed => &mut self.unclaimed,
        };
        *n += 1;
    }

    pub fn add(&mut self, o: &Counters) {
        self.placed += o.placed;
        self.purchased += o.purchased;
        self.picked_up += o.picked_up;
        self.cancelled += o.cancelled;
        self.refused += o.refused;
        self.timed_out += o.timed_out;
        self.refunded += o.refunded;
        self.unclaimed += o.unclaimed;
    }

    pub fn is_empty(&self) -> bool {
        *self == Counters::default()
    }
}

/// Bought units and orders of a meal, a fridge or a cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Popularity {
    pub units: u64,
    pub orders: u64,
}

impl Popularity {
    pub fn add(&mut self, o: &Popularity) {
        self.units += o.units;
        self.orders += o.orders;
    }
}

/// A kitchen's units in one fridge (docs/insights.md defines each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Waste {
    pub produced: u64,
    pub placed: u64,
    pub sold: u64,
    pub picked_up: u64,
    pub unclaimed: u64,
    pub expired: u64,
    pub shrinkage_units: u64,
    pub shrinkage_cents: i64,
    /// expired + shrinkage_units.
    pub waste_units: u64,
    /// What the waste units cost at their meal's list price.
    pub waste_cents: i64,
}

impl Waste {
    pub fn add(&mut self, o: &Waste) {
        self.produced += o.produced;
        self.placed += o.placed;
        self.sold += o.sold;
        self.picked_up += o.picked_up;
        self.unclaimed += o.unclaimed;
        self.expired += o.expired;
        self.shrinkage_units += o.shrinkage_units;
        self.shrinkage_cents += o.shrinkage_cents;
        self.waste_units += o.waste_units;
        self.waste_cents += o.waste_cents;
    }
}

/// A fridge's temperature story in a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Temperature {
    pub excursions: u64,
    pub quarantines: u64,
    pub quarantined_secs: u64,
}

impl Temperature {
    pub fn add(&mut self, o: &Temperature) {
        self.excursions += o.excursions;
        self.quarantines += o.quarantines;
        self.quarantined_secs += o.quarantined_secs;
    }
}

/// One district-local day.
#[derive(Debug, Clone, Default)]
pub struct Day {
    pub volumes: Counters,
    pub hours: [Counters; 24],
    pub confirm_to_purchased_ms: Histogram,
    pub purchased_to_picked_up_secs: Histogram,
    pub failed_attempts: u64,
    /// Orders (and plans, `plan-{id}`) with a declined payment.
    pub failed_orders: BTreeSet<String>,
    pub meals: BTreeMap<(KitchenId, MealId), Popularity>,
    pub fridges: BTreeMap<FridgeId, Popularity>,
    /// A kitchen's orders per fridge (its slice of `fridges`).
    pub kitchen_fridges: BTreeMap<(KitchenId, FridgeId), Popularity>,
    pub waste: BTreeMap<(KitchenId, FridgeId), Waste>,
    pub temperature: BTreeMap<FridgeId, Temperature>,
}

impl Day {
    pub fn count(&mut self, hour: u8, outcome: Outcome) {
        self.volumes.bump(outcome);
        if let Some(h) = self.hours.get_mut(usize::from(hour)) {
            h.bump(outcome);
        }
    }

    pub fn failed_payment(&mut self, id: String) {
        self.failed_attempts += 1;
        if self.failed_orders.len() < MAX_FAILED_IDS_PER_DAY {
            self.failed_orders.insert(id);
        }
    }

    pub fn waste_mut(&mut self, kitchen: &KitchenId, fridge: &FridgeId) -> &mut Waste {
        self.waste
            .entry((kitchen.clone(), fridge.clone()))
            .or_default()
    }

    pub fn temperature_mut(&mut self, fridge: &FridgeId) -> &mut Temperature {
        self.temperature.entry(fridge.clone()).or_default()
    }
}
