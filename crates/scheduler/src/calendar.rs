//! The working-day calendar: which dates are working for the district and
//! for each kitchen.
//!
//! Monday to Friday are working days and weekends are not, unless an admin
//! says otherwise for a date. A kitchen's own entry (a closure, or an extra
//! working day) wins over the district's for that kitchen; a district holiday
//! closes every kitchen that has no entry of its own for the date.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use protocol::KitchenId;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Calendar {
    /// District-wide entries: date → working.
    pub district: BTreeMap<NaiveDate, bool>,
    /// Per-kitchen entries: (kitchen, date) → working.
    pub kitchens: BTreeMap<(KitchenId, NaiveDate), bool>,
}

/// Whether a weekday works when the calendar says nothing about the date.
pub fn default_working(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

impl Calendar {
    pub fn set(&mut self, date: NaiveDate, kitchen: Option<&KitchenId>, working: bool) {
        match kitchen {
            None => {
                self.district.insert(date, working);
            }
            Some(k) => {
                self.kitchens.insert((k.clone(), date), working);
            }
        }
    }

    /// Whether the district works on `date`.
    pub fn district_working(&self, date: NaiveDate) -> bool {
        self.district
            .get(&date)
            .copied()
            .unwrap_or_else(|| default_working(date))
    }

    /// Whether `kitchen` works on `date` (`None`: the district).
    pub fn is_working(&self, date: NaiveDate, kitchen: Option<&KitchenId>) -> bool {
        if let Some(k) = kitchen {
            if let Some(w) = self.kitchens.get(&(k.clone(), date)) {
                return *w;
            }
        }
        self.district_working(date)
    }

    /// The first district working day strictly after `date` (within a year;
    /// a calendar with no working day in a year answers the day after).
    pub fn next_working_day_after(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date;
        for _ in 0..366 {
            match d.succ_opt() {
                Some(next) => d = next,
                None => return date,
            }
            if self.district_working(d) {
                return d;
            }
        }
        date.succ_opt().unwrap_or(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, day).unwrap()
    }

    #[test]
    fn weekends_rest_holidays_close_kitchen_entries_win() {
        let mut cal = Calendar::default();
        assert!(cal.is_working(d(4), None), "Friday");
        assert!(!cal.is_working(d(5), None), "Saturday");
        cal.set(d(25), None, false);
        assert!(
            !cal.is_working(d(25), Some(&KitchenId::from_static("k-1"))),
            "district holiday closes kitchens"
        );
        cal.set(d(25), Some(&KitchenId::from_static("k-1")), true);
        assert!(
            cal.is_working(d(25), Some(&KitchenId::from_static("k-1"))),
            "a kitchen may open anyway"
        );
        cal.set(d(9), Some(&KitchenId::from_static("k-2")), false);
        assert!(!cal.is_working(d(9), Some(&KitchenId::from_static("k-2"))));
        assert!(cal.is_working(d(9), Some(&KitchenId::from_static("k-1"))));
        assert!(cal.is_working(d(9), None));
        assert_eq!(cal.next_working_day_after(d(4)), d(7), "Friday → Monday");
        assert_eq!(
            cal.next_working_day_after(d(24)),
            d(28),
            "over Christmas and a weekend"
        );
    }
}
