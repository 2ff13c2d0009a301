//! A weekly plan over time: its terms (fridge, meal per weekday, paused) as
//! versions effective from a date, its end, its cancellation, and the change
//! cutoff that decides the earliest date a change can take effect.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use protocol::money::Currency;
use protocol::schedule::{PlanDay, PlanId, PlanTerms};
use protocol::{FridgeId, MealId};

use crate::calendar::Calendar;
use crate::{local_date, Policy};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub plan_id: PlanId,
    pub customer: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// Terms and the date each takes effect, oldest first; the first one is
    /// effective from `start_date`.
    pub versions: Vec<(NaiveDate, PlanTerms)>,
    pub currency: Currency,
    pub payment_method: String,
    /// Nothing is delivered from this date on.
    pub cancelled_from: Option<NaiveDate>,
    /// The plan as first created (start, end, terms, payment method), to
    /// tell a retried create from a different one under the same key.
    pub created: (NaiveDate, NaiveDate, PlanTerms, String),
}

impl Plan {
    /// The terms in force on `date` (the first terms before the start).
    pub fn terms_on(&self, date: NaiveDate) -> Option<&PlanTerms> {
        self.versions
            .iter()
            .rev()
            .find(|(from, _)| *from <= date)
            .or_else(|| self.versions.first())
            .map(|(_, t)| t)
    }

    /// The terms in force from now on (the latest version).
    pub fn current_terms(&self) -> Option<&PlanTerms> {
        self.versions.last().map(|(_, t)| t)
    }

    /// The last day the plan may deliver, if any.
    pub fn last_day(&self) -> Option<NaiveDate> {
        match self.cancelled_from {
            Some(c) if c <= self.start_date => None,
            Some(c) => c.pred_opt().map(|p| p.min(self.end_date)),
            None => Some(self.end_date),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled_from.is_some()
    }

    /// `(fridge, meal)` the plan delivers on `date`, ignoring the calendar.
    pub fn meal_on(&self, date: NaiveDate) -> Option<(&FridgeId, &MealId)> {
        let last = self.last_day()?;
        if date < self.start_date || date > last {
            return None;
        }
        let terms = self.terms_on(date)?;
        if terms.paused {
            return None;
        }
        let weekday = u8::try_from(date.weekday().number_from_monday()).ok()?;
        terms
            .days
            .iter()
            .find(|d| d.weekday == weekday)
            .map(|d| (&terms.fridge_id, &d.meal_id))
    }

    /// Puts new terms (and end date) in force from `from`, dropping versions
    /// that would only have started on or after it.
    pub fn apply_change(&mut self, from: NaiveDate, terms: PlanTerms, end_date: NaiveDate) {
        let from = from.max(self.start_date);
        self.versions.retain(|(f, _)| *f < from);
        self.versions.push((from, terms));
        self.end_date = end_date;
    }

    pub fn apply_cancel(&mut self, from: NaiveDate) {
        self.cancelled_from = Some(self.cancelled_from.map_or(from, |c| c.min(from)));
    }
}

/// Sorts plan days by weekday (the canonical order stored in terms).
pub fn canonical_days(mut days: Vec<PlanDay>) -> Vec<PlanDay> {
    days.sort_by_key(|d| d.weekday);
    days
}

/// The earliest date a change made at `now` can take effect: the next
/// business day after today, or after tomorrow once today's local cutoff
/// hour has passed. Days before it are already being cooked for.
pub fn earliest_effective(now: DateTime<Utc>, calendar: &Calendar, policy: &Policy) -> NaiveDate {
    let local = now + Duration::minutes(i64::from(policy.utc_offset_minutes));
    let today = local_date(now, policy);
    let base = if local.hour() >= policy.cutoff_hour {
        today.succ_opt().unwrap_or(today)
    } else {
        today
    };
    calendar.next_working_day_after(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, day).unwrap()
    }

    #[test]
    fn cutoff_moves_the_effective_date_by_a_business_day() {
        let cal = Calendar::default();
        let p = Policy::default();
        // Tuesday 1 Dec, before and after 18:00.
        let before = Utc.with_ymd_and_hms(2026, 12, 1, 17, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap();
        assert_eq!(earliest_effective(before, &cal, &p), d(2));
        assert_eq!(earliest_effective(after, &cal, &p), d(3));
        // Friday after the cutoff: Saturday is the base, Monday the answer.
        let fri = Utc.with_ymd_and_hms(2026, 12, 4, 20, 0, 0).unwrap();
        assert_eq!(earliest_effective(fri, &cal, &p), d(7));
        // A local offset (UTC-5): 22:00 UTC is 17:00 local, before the cutoff.
        let local = Policy {
            utc_offset_minutes: -300,
            ..p
        };
        let late_utc = Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 0).unwrap();
        assert_eq!(earliest_effective(late_utc, &cal, &local), d(2));
    }
}
