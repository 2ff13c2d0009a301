//! Reports over a range of district-local days: the shapes the API answers
//! (JSON through serde, CSV one section at a time).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use protocol::{FridgeId, KitchenId, MealId};
use serde::Serialize;

use crate::day::{Counters, Day, Popularity, Temperature, Waste};
use crate::histogram::{Histogram, Percentiles};
use crate::projection::Aggregates;

/// Longest range a report covers, in days (a quarter and a bit).
pub const MAX_RANGE_DAYS: i64 = 93;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("from {from} is after to {to}")]
    Backwards { from: NaiveDate, to: NaiveDate },
    #[error("the range is {days} days; at most {MAX_RANGE_DAYS}")]
    TooLong { days: i64 },
}

/// Inclusive district-local dates, at most [`MAX_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    from: NaiveDate,
    to: NaiveDate,
}

impl Range {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Range, RangeError> {
        if from > to {
            return Err(RangeError::Backwards { from, to });
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_RANGE_DAYS {
            return Err(RangeError::TooLong { days });
        }
        Ok(Range { from, to })
    }

    pub fn from(&self) -> NaiveDate {
        self.from
    }

    pub fn to(&self) -> NaiveDate {
        self.to
    }

    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
    }
}

/// `UTC+01:00` for an offset of 60 minutes.
pub fn time_zone(utc_offset_minutes: i32) -> String {
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let m = utc_offset_minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

#[derive(Debug, Clone, Serialize)]
pub struct DayRow {
    pub date: NaiveDate,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourRow {
    pub date: NaiveDate,
    pub hour: u8,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct Volumes {
    pub days: Vec<DayRow>,
    pub hours: Vec<HourRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Processing {
    pub confirm_to_purchased_ms: Percentiles,
    pub purchased_to_picked_up_secs: Percentiles,
}

/// Fractions (0..=1) of the orders placed in the range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub fulfilment: f64,
    pub cancellation: f64,
    pub refusal: f64,
    pub timeout: f64,
}

impl Rates {
    pub fn of(c: &Counters) -> Rates {
        let share = |n: u64| {
            if c.placed == 0 {
                0.0
            } else {
                n as f64 / c.placed as f64
            }
        };
        Rates {
            fulfilment: share(c.picked_up),
            cancellation: share(c.cancelled),
            refusal: share(c.refused),
            timeout: share(c.timed_out),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedPayments {
    pub attempts: u64,
    pub orders: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MealRow {
    pub meal_id: MealId,
    pub kitchen_id: KitchenId,
    #[serde(flatten)]
    pub popularity: Popularity,
}

#[derive(Debug, Clone, Serialize)]
pub struct FridgeRow {
    pub fridge_id: FridgeId,
    #[serde(flatten)]
    pub popularity: Popularity,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellRow {
    pub cell: String,
    #[serde(flatten)]
    pub popularity: Popularity,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourOfWeekRow {
    /// ISO weekday, 1 = Monday.
    pub weekday: u8,
    pub hour: u8,
    pub orders: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PopularityReport {
    pub meals: Vec<MealRow>,
    pub fridges: Vec<FridgeRow>,
    pub cells: Vec<CellRow>,
    pub hour_of_week: Vec<HourOfWeekRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KitchenWasteRow {
    pub kitchen_id: KitchenId,
    #[serde(flatten)]
    pub waste: Waste,
}

#[derive(Debug, Clone, Serialize)]
pub struct FridgeWasteRow {
    pub fridge_id: FridgeId,
    pub kitchen_id: KitchenId,
    #[serde(flatten)]
    pub waste: Waste,
}

#[derive(Debug, Clone, Serialize)]
pub struct WasteReport {
    pub kitchens: Vec<KitchenWasteRow>,
    pub fridges: Vec<FridgeWasteRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemperatureRow {
    pub fridge_id: FridgeId,
    #[serde(flatten)]
    pub temperature: Temperature,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemperatureReport {
    pub fridges: Vec<TemperatureRow>,
}

/// `GET /v1/admin/insights`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub district: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub time_zone: String,
    /// The last log seq folded in (the report is complete up to it).
    pub applied_seq: u64,
    pub volumes: Volumes,
    pub processing: Processing,
    pub rates: Rates,
    pub failed_payments: FailedPayments,
    pub popularity: PopularityReport,
    pub waste: WasteReport,
    pub temperature: TemperatureReport,
}

/// `GET /v1/kitchens/{kitchen_id}/insights`: one kitchen's waste and
/// popularity.
#[derive(Debug, Clone, Serialize)]
pub struct KitchenReport {
    pub district: String,
    pub kitchen_id: KitchenId,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub time_zone: String,
    pub applied_seq: u64,
    pub popularity: PopularityReport,
    pub waste: WasteReport,
}

/// Sums of a range's days, per key.
#[derive(Default)]
struct Totals {
    volumes: Counters,
    confirm: Histogram,
    pickup: Histogram,
    attempts: u64,
    failed: std::collections::BTreeSet<String>,
    meals: BTreeMap<(KitchenId, MealId), Popularity>,
    fridges: BTreeMap<FridgeId, Popularity>,
    kitchen_fridges: BTreeMap<(KitchenId, FridgeId), Popularity>,
    waste: BTreeMap<(KitchenId, FridgeId), Waste>,
    temperature: BTreeMap<FridgeId, Temperature>,
    hour_of_week: BTreeMap<(u8, u8), u64>,
}

impl Totals {
    fn add(&mut self, date: NaiveDate, d: &Day) {
        self.volumes.add(&d.volumes);
        self.confirm.merge(&d.confirm_to_purchased_ms);
        self.pickup.merge(&d.purchased_to_picked_up_secs);
        self.attempts += d.failed_attempts;
        self.failed.extend(d.failed_orders.iter().cloned());
        sum_into(&mut self.meals, &d.meals, Popularity::add);
        sum_into(&mut self.fridges, &d.fridges, Popularity::add);
        sum_into(
            &mut self.kitchen_fridges,
            &d.kitchen_fridges,
            Popularity::add,
        );
        sum_into(&mut self.waste, &d.waste, Waste::add);
        sum_into(&mut self.temperature, &d.temperature, Temperature::add);
        let weekday = date.weekday().number_from_monday() as u8;
        for (hour, c) in d.hours.iter().enumerate() {
            if c.purchased > 0 {
                *self.hour_of_week.entry((weekday, hour as u8)).or_default() += c.purchased;
            }
        }
    }
}

fn sum_into<K: Ord + Clone, V: Default>(
    into: &mut BTreeMap<K, V>,
    from: &BTreeMap<K, V>,
    add: fn(&mut V, &V),
) {
    for (k, v) in from {
        add(into.entry(k.clone()).or_default(), v);
    }
}

impl Aggregates {
    fn totals(&self, range: Range) -> Totals {
        let mut t = Totals::default();
        for (date, day) in self.days.range(range.from..=range.to) {
            t.add(*date, day);
        }
        t
    }

    fn volumes(&self, range: Range) -> Volumes {
        let mut days = vec![];
        let mut hours = vec![];
        for date in range.dates() {
            let day = self.day_of(date);
            let counters = day.map(|d| d.volumes).unwrap_or_default();
            days.push(DayRow { date, counters });
            for hour in 0..24u8 {
                let counters = day.map(|d| d.hours[usize::from(hour)]).unwrap_or_default();
                hours.push(HourRow {
                    date,
                    hour,
                    counters,
                });
            }
        }
        Volumes { days, hours }
    }

    /// Cells group fridges by the first [`crate::CELL_PRECISION_CHARS`] of
    /// their geohash (an order is in one fridge, so in one cell).
    fn cells<'a>(
        &self,
        fridges: impl Iterator<Item = (&'a FridgeId, &'a Popularity)>,
    ) -> Vec<CellRow> {
        let mut cells: BTreeMap<String, Popularity> = BTreeMap::new();
        for (f, p) in fridges {
            let cell = self.fridge_cell.get(f).cloned().unwrap_or_default();
            cells.entry(cell).or_default().add(p);
        }
        cells
            .into_iter()
            .map(|(cell, popularity)| CellRow { cell, popularity })
            .collect()
    }

    fn waste(t: &Totals, kitchen: Option<&KitchenId>) -> WasteReport {
        let mut kitchens: BTreeMap<KitchenId, Waste> = BTreeMap::new();
        let mut fridges = vec![];
        for ((k, f), w) in &t.waste {
            if kitchen.is_some_and(|only| only != k) {
                continue;
            }
            kitchens.entry(k.clone()).or_default().add(w);
            fridges.push(FridgeWasteRow {
                fridge_id: f.clone(),
                kitchen_id: k.clone(),
                waste: *w,
            });
        }
        let kitchens = kitchens
            .into_iter()
            .map(|(kitchen_id, waste)| KitchenWasteRow { kitchen_id, waste })
            .collect();
        WasteReport { kitchens, fridges }
    }

    fn meal_rows(t: &Totals, kitchen: Option<&KitchenId>) -> Vec<MealRow> {
        t.meals
            .iter()
            .filter(|((k, _), _)| kitchen.is_none() || kitchen == Some(k))
            .map(|((k, m), p)| MealRow {
                meal_id: m.clone(),
                kitchen_id: k.clone(),
                popularity: *p,
            })
            .collect()
    }

    /// The whole district's report over `range`.
    pub fn report(&self, district: &str, range: Range) -> Report {
        let t = self.totals(range);
        let fridges = t
            .fridges
            .iter()
            .map(|(f, p)| FridgeRow {
                fridge_id: f.clone(),
                popularity: *p,
            })
            .collect();
        let popularity = PopularityReport {
            meals: Self::meal_rows(&t, None),
            fridges,
            cells: self.cells(t.fridges.iter()),
            hour_of_week: t
                .hour_of_week
                .iter()
                .map(|((weekday, hour), orders)| HourOfWeekRow {
                    weekday: *weekday,
                    hour: *hour,
                    orders: *orders,
                })
                .collect(),
        };
        Report {
            district: district.to_string(),
            from: range.from,
            to: range.to,
            time_zone: time_zone(self.utc_offset_minutes),
            applied_seq: self.applied_seq,
            volumes: self.volumes(range),
            processing: Processing {
                confirm_to_purchased_ms: t.confirm.percentiles(),
                purchased_to_picked_up_secs: t.pickup.percentiles(),
            },
            rates: Rates::of(&t.volumes),
            failed_payments: FailedPayments {
                attempts: t.attempts,
                orders: t.failed.len() as u64,
            },
            popularity,
            waste: Self::waste(&t, None),
            temperature: TemperatureReport {
                fridges: t
                    .temperature
                    .iter()
                    .map(|(f, temperature)| TemperatureRow {
                        fridge_id: f.clone(),
                        temperature: *temperature,
                    })
                    .collect(),
            },
        }
    }

    /// One kitchen's slice over `range`: its meals, the fridges and cells
    /// its meals sold in, and its waste rows.
    pub fn kitchen_report(
        &self,
        district: &str,
        kitchen: &KitchenId,
        range: Range,
    ) -> KitchenReport {
        let t = self.totals(range);
        let own: BTreeMap<&FridgeId, &Popularity> = t
            .kitchen_fridges
            .iter()
            .filter(|((k, _), _)| k == kitchen)
            .map(|((_, f), p)| (f, p))
            .collect();
        let popularity = PopularityReport {
            meals: Self::meal_rows(&t, Some(kitchen)),
            fridges: own
                .iter()
                .map(|(f, p)| FridgeRow {
                    fridge_id: (*f).clone(),
                    popularity: **p,
                })
                .collect(),
            cells: self.cells(own.iter().map(|(f, p)| (*f, *p))),
            hour_of_week: vec![],
        };
        KitchenReport {
            district: district.to_string(),
            kitchen_id: kitchen.clone(),
            from: range.from,
            to: range.to,
            time_zone: time_zone(self.utc_offset_minutes),
            applied_seq: self.applied_seq,
            popularity,
            waste: Self::waste(&t, Some(kitchen)),
        }
    }
}
