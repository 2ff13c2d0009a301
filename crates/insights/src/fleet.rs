//! What a district tells the fleet: one local day's order counters, its
//! rates and its 24 hours. Nothing else leaves the node (no order, meal,
//! fridge or customer): a few hundred bytes per day.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::day::Counters;
use crate::projection::Aggregates;
use crate::report::Rates;

/// One district's day as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetDay {
    pub district: String,
    pub date: NaiveDate,
    pub published_at: DateTime<Utc>,
    pub time_zone: String,
    pub days: FleetCounters,
    pub hours: Vec<FleetHour>,
}

/// A day's counters and rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetCounters {
    pub placed: u64,
    pub purchased: u64,
    pub picked_up: u64,
    pub cancelled: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub refunded: u64,
    pub unclaimed: u64,
    pub fulfilment: f64,
    pub cancellation: f64,
    pub refusal: f64,
    pub timeout: f64,
}

impl FleetCounters {
    fn of(c: &Counters) -> FleetCounters {
        let r = Rates::of(c);
        FleetCounters {
            placed: c.placed,
            purchased: c.purchased,
            picked_up: c.picked_up,
            cancelled: c.cancelled,
            refused: c.refused,
            timed_out: c.timed_out,
            refunded: c.refunded,
            unclaimed: c.unclaimed,
            fulfilment: r.fulfilment,
            cancellation: r.cancellation,
            refusal: r.refusal,
            timeout: r.timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetHour {
    pub hour: u8,
    pub placed: u64,
    pub purchased: u64,
    pub picked_up: u64,
}

impl Aggregates {
    /// `date`'s aggregate for the fleet (zeros for a day without orders).
    pub fn fleet_day(&self, district: &str, date: NaiveDate, now: DateTime<Utc>) -> FleetDay {
        let day = self.day_of(date);
        let counters = day.map(|d| d.volumes).unwrap_or_default();
        let hours = (0..24u8)
            .map(|hour| {
                let c = day.map(|d| d.hours[usize::from(hour)]).unwrap_or_default();
                FleetHour {
                    hour,
                    placed: c.placed,
                    purchased: c.purchased,
                    picked_up: c.picked_up,
                }
            })
            .collect();
        FleetDay {
            district: district.to_string(),
            date,
            published_at: now,
            time_zone: crate::report::time_zone(self.utc_offset_minutes),
            days: FleetCounters::of(&counters),
            hours,
        }
    }
}
