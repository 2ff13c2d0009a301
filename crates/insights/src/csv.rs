//! CSV, one section of a report at a time: a report's sections are tables
//! of different shapes, so `?section=` picks one (docs/insights.md lists
//! them). Every cell is an id, a date or a number, none of which holds a
//! comma, a quote or a line break, so no cell needs quoting.

use std::fmt::Write;
use std::str::FromStr;

use crate::day::{Counters, Popularity, Temperature, Waste};
use crate::report::{KitchenReport, PopularityReport, Report, WasteReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Volumes,
    Hours,
    Meals,
    Fridges,
    Cells,
    HourOfWeek,
    WasteKitchens,
    WasteFridges,
    Temperature,
}

/// Every section name, for the error message.
pub const SECTIONS: &str =
    "volumes, hours, meals, fridges, cells, hour_of_week, waste_kitchens, waste_fridges, temperature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    #[error("unknown section {0:?}; one of: {SECTIONS}")]
    Unknown(String),
    #[error("section {0:?} is not part of a kitchen's insights; one of: meals, fridges, cells, waste_kitchens, waste_fridges")]
    NotForKitchens(String),
}

impl FromStr for Section {
    type Err = SectionError;

    fn from_str(s: &str) -> Result<Section, SectionError> {
        Ok(match s {
            "volumes" => Section::Volumes,
            "hours" => Section::Hours,
            "meals" => Section::Meals,
            "fridges" => Section::Fridges,
            "cells" => Section::Cells,
            "hour_of_week" => Section::HourOfWeek,
            "waste_kitchens" => Section::WasteKitchens,
            "waste_fridges" => Section::WasteFridges,
            "temperature" => Section::Temperature,
            other => return Err(SectionError::Unknown(other.to_string())),
        })
    }
}

const COUNTERS: &str = "placed,purchased,picked_up,cancelled,refused,timed_out,refunded,unclaimed";
const WASTE: &str = "produced,placed,sold,picked_up,unclaimed,expired,shrinkage_units,shrinkage_cents,waste_units,waste_cents";

fn counters(c: &Counters) -> String {
    format!(
        "{},{},{},{},{},{},{},{}",
        c.placed,
        c.purchased,
        c.picked_up,
        c.cancelled,
        c.refused,
        c.timed_out,
        c.refunded,
        c.unclaimed
    )
}

fn waste(w: &Waste) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        w.produced,
        w.placed,
        w.sold,
        w.picked_up,
        w.unclaimed,
        w.expired,
        w.shrinkage_units,
        w.shrinkage_cents,
        w.waste_units,
        w.waste_cents
    )
}

fn pop(p: &Popularity) -> String {
    format!("{},{}", p.units, p.orders)
}

fn temp(t: &Temperature) -> String {
    format!("{},{},{}", t.excursions, t.quarantines, t.quarantined_secs)
}

/// A header line then one line per row.
fn table<T>(header: &str, rows: &[T], line: impl Fn(&T) -> String) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(header);
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

fn popularity_csv(p: &PopularityReport, section: Section) -> Option<String> {
    Some(match section {
        Section::Meals => table("meal_id,kitchen_id,units,orders", &p.meals, |r| {
            format!("{},{},{}", r.meal_id, r.kitchen_id, pop(&r.popularity))
        }),
        Section::Fridges => table("fridge_id,units,orders", &p.fridges, |r| {
            format!("{},{}", r.fridge_id, pop(&r.popularity))
        }),
        Section::Cells => table("cell,units,orders", &p.cells, |r| {
            format!("{},{}", r.cell, pop(&r.popularity))
        }),
        _ => return None,
    })
}

fn waste_csv(w: &WasteReport, section: Section) -> Option<String> {
    Some(match section {
        Section::WasteKitchens => table(&format!("kitchen_id,{WASTE}"), &w.kitchens, |r| {
            format!("{},{}", r.kitchen_id, waste(&r.waste))
        }),
        Section::WasteFridges => table(&format!("fridge_id,kitchen_id,{WASTE}"), &w.fridges, |r| {
            format!("{},{},{}", r.fridge_id, r.kitchen_id, waste(&r.waste))
        }),
        _ => return None,
    })
}

impl Report {
    pub fn to_csv(&self, section: Section) -> String {
        if let Some(csv) = popularity_csv(&self.popularity, section) {
            return csv;
        }
        if let Some(csv) = waste_csv(&self.waste, section) {
            return csv;
        }
        match section {
            Section::Hours => table(&format!("date,hour,{COUNTERS}"), &self.volumes.hours, |r| {
                format!("{},{},{}", r.date, r.hour, counters(&r.counters))
            }),
            Section::HourOfWeek => {
                table("weekday,hour,orders", &self.popularity.hour_of_week, |r| {
                    format!("{},{},{}", r.weekday, r.hour, r.orders)
                })
            }
            Section::Temperature => table(
                "fridge_id,excursions,quarantines,quarantined_secs",
                &self.temperature.fridges,
                |r| format!("{},{}", r.fridge_id, temp(&r.temperature)),
            ),
            _ => table(&format!("date,{COUNTERS}"), &self.volumes.days, |r| {
                format!("{},{}", r.date, counters(&r.counters))
            }),
        }
    }
}

impl KitchenReport {
    /// Only the popularity and waste sections exist for a kitchen.
    pub fn to_csv(&self, section: Section, name: &str) -> Result<String, SectionError> {
        popularity_csv(&self.popularity, section)
            .or_else(|| waste_csv(&self.waste, section))
            .ok_or_else(|| SectionError::NotForKitchens(name.to_string()))
    }
}
