//! Billing periods: a plan is prepaid one ISO week (Monday to Sunday) at a
//! time, with one charge per plan and week whose id is derived from both, so
//! asking twice can never charge twice.

use chrono::{Datelike, Duration, NaiveDate};

/// The Monday of `date`'s ISO week.
pub fn period_start(date: NaiveDate) -> NaiveDate {
    date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// The Sunday ending the period that starts on `start`.
pub fn period_end(start: NaiveDate) -> NaiveDate {
    start + Duration::days(6)
}

/// How much of the subscriber's credit a charge of `gross` uses: positive
/// credit pays up to `gross`; a negative balance (days made again after they
/// were credited) is collected with the next non-empty charge.
pub fn credit_to_apply(credit: i64, gross: i64) -> i64 {
    if gross <= 0 {
        0
    } else if credit >= 0 {
        credit.min(gross)
    } else {
        credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChargeId, PlanId};

    #[test]
    fn periods_are_iso_weeks() {
        let wed = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let mon = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(period_start(wed), mon);
        assert_eq!(period_start(mon), mon);
        assert_eq!(
            period_end(mon),
            NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
        );
        assert_eq!(
            ChargeId::for_period(&PlanId::from_static("p1"), mon),
            "plan-p1-2026-11-30"
        );
        assert_eq!(credit_to_apply(500, 300), 300);
        assert_eq!(credit_to_apply(200, 300), 200);
        assert_eq!(credit_to_apply(-100, 300), -100);
        assert_eq!(credit_to_apply(-100, 0), 0);
    }
}
