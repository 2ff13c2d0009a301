//! The kitchen prep report: for one kitchen and date, how many units of each
//! meal go to each fridge, as a JSON-ready struct and as CSV.
//!
//! Subscription units are exact (the scheduled orders that stand). Next to
//! them, `forecast_one_off_units` estimates the one-off (app and POS) demand
//! for the same meal and fridge: the mean of what sold on the same weekday in
//! the previous [`FORECAST_WEEKS`] weeks, rounded up. Lunch demand at an
//! office fridge follows the week (Mondays are not Fridays), and a short
//! same-weekday mean is the usual naive seasonal forecast: cheap, explainable
//! to a cook, and it adapts within a month. With no history it says 0.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use protocol::{FridgeId, KitchenId, MealId};
use serde::{Deserialize, Serialize};

use crate::state::{ScheduleState, Stage};
use crate::Catalog;

/// Weeks of same-weekday history the one-off forecast averages.
pub const FORECAST_WEEKS: i64 = 4;

/// One sold one-off order line, by the district's local date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub date: NaiveDate,
    pub fridge_id: FridgeId,
    pub meal_id: MealId,
    pub units: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepRow {
    pub meal_id: MealId,
    pub meal_name: String,
    pub fridge_id: FridgeId,
    pub subscription_units: u32,
    pub forecast_one_off_units: u32,
    /// Paid orders ahead for this day: firm, like plan days.
    pub preorder_units: u32,
}

/// `GET /v1/kitchens/{kitchen_id}/prep?date=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepReport {
    pub kitchen_id: KitchenId,
    pub date: NaiveDate,
    /// Sorted by meal, then fridge.
    pub rows: Vec<PrepRow>,
    pub total_subscription_units: u32,
    pub total_forecast_one_off_units: u32,
    pub total_preorder_units: u32,
}

/// Mean units per same weekday over the previous [`FORECAST_WEEKS`] weeks,
/// rounded up, per `(meal, fridge)`.
pub fn forecast(sales: &[Sale], date: NaiveDate) -> BTreeMap<(MealId, FridgeId), u32> {
    // Checked: a date at the calendar's edge has no weeks before it.
    let days: Vec<NaiveDate> = (1..=FORECAST_WEEKS)
        .filter_map(|w| date.checked_sub_signed(Duration::weeks(w)))
        .collect();
    let mut sums: BTreeMap<(MealId, FridgeId), u64> = BTreeMap::new();
    for s in sales.iter().filter(|s| days.contains(&s.date)) {
        *sums
            .entry((s.meal_id.clone(), s.fridge_id.clone()))
            .or_insert(0) += u64::from(s.units);
    }
    let weeks = FORECAST_WEEKS as u64;
    sums.into_iter()
        .map(|(k, sum)| (k, u32::try_from(sum.div_ceil(weeks)).unwrap_or(u32::MAX)))
        .collect()
}

/// The report for `kitchen_id` on `date`: `catalog` tells which orders
/// were withdrawn (they are not cooked); `meal_name` resolves names;
/// `kitchen_meals` are the kitchen's meal ids (to keep forecast rows to the
/// kitchen's own meals); `sales` is one-off history (any range).
pub fn prep_report(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    kitchen_id: &KitchenId,
    date: NaiveDate,
    meal_name: &dyn Fn(&MealId) -> String,
    kitchen_meals: &[MealId],
    sales: &[Sale],
) -> PrepReport {
    let mut rows: BTreeMap<(MealId, FridgeId), PrepRow> = BTreeMap::new();
    fn row<'a>(
        rows: &'a mut BTreeMap<(MealId, FridgeId), PrepRow>,
        meal_name: &dyn Fn(&MealId) -> String,
        meal_id: &MealId,
        fridge_id: &FridgeId,
    ) -> &'a mut PrepRow {
        rows.entry((meal_id.clone(), fridge_id.clone()))
            .or_insert_with(|| PrepRow {
                meal_id: meal_id.clone(),
                meal_name: meal_name(meal_id),
                fridge_id: fridge_id.clone(),
                subscription_units: 0,
                forecast_one_off_units: 0,
                preorder_units: 0,
            })
    }
    for o in state.orders.values() {
        if o.kitchen_id == *kitchen_id && o.date == date && o.stage(catalog) != Stage::Withdrawn {
            let r = row(&mut rows, meal_name, &o.meal_id, &o.fridge_id);
            match o.plan_id {
                Some(_) => r.subscription_units += 1,
                None => r.preorder_units += 1,
            }
        }
    }
    for ((meal_id, fridge_id), units) in forecast(sales, date) {
        if units > 0 && kitchen_meals.contains(&meal_id) {
            row(&mut rows, meal_name, &meal_id, &fridge_id).forecast_one_off_units = units;
        }
    }
    let rows: Vec<PrepRow> = rows.into_values().collect();
    PrepReport {
        kitchen_id: kitchen_id.clone(),
        date,
        total_subscription_units: rows.iter().map(|r| r.subscription_units).sum(),
        total_forecast_one_off_units: rows.iter().map(|r| r.forecast_one_off_units).sum(),
        total_preorder_units: rows.iter().map(|r| r.preorder_units).sum(),
        rows,
    }
}

/// CSV header of [`to_csv`].
/// (`preorder_units` was appended last, so readers by position still work.)
pub const CSV_HEADER: &str =
    "date,kitchen_id,meal_id,meal_name,fridge_id,subscription_units,forecast_one_off_units,preorder_units";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// RFC 4180 CSV, one line per row, CRLF line ends.
pub fn to_csv(report: &PrepReport) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for r in &report.rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\r\n",
            report.date,
            csv_field(&report.kitchen_id),
            csv_field(&r.meal_id),
            csv_field(&r.meal_name),
            csv_field(&r.fridge_id),
            r.subscription_units,
            r.forecast_one_off_units,
            r.preorder_units
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_is_the_rounded_up_same_weekday_mean() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(); // Monday
        let sale = |days_before: i64, units| Sale {
            date: date - Duration::days(days_before),
            fridge_id: FridgeId::from_static("f"),
            meal_id: MealId::from_static("m"),
            units,
        };
        // Three Mondays with 2, 3, 2 units; a Tuesday and a Monday 5 weeks back ignored.
        let sales = vec![
            sale(7, 2),
            sale(14, 3),
            sale(28, 2),
            sale(6, 9),
            sale(35, 9),
        ];
        let f = forecast(&sales, date);
        assert_eq!(
            f[&(MealId::from_static("m"), FridgeId::from_static("f"))],
            2,
            "7 / 4 rounded up"
        );
    }

    #[test]
    fn dates_at_the_calendar_edge_do_not_panic() {
        assert!(forecast(&[], NaiveDate::MIN).is_empty());
        assert!(forecast(&[], NaiveDate::MAX).is_empty());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let report = PrepReport {
            kitchen_id: KitchenId::from_static("k"),
            date: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            rows: vec![PrepRow {
                meal_id: MealId::from_static("m"),
                meal_name: "Rice, \"spicy\"".into(),
                fridge_id: FridgeId::from_static("f"),
                subscription_units: 3,
                forecast_one_off_units: 1,
                preorder_units: 2,
            }],
            total_subscription_units: 3,
            total_forecast_one_off_units: 1,
            total_preorder_units: 2,
        };
        assert_eq!(
            to_csv(&report),
            format!("{CSV_HEADER}\r\n2026-12-07,k,m,\"Rice, \"\"spicy\"\"\",f,3,1,2\r\n")
        );
    }
}
