//! Where and to what a promotion applies: area, target and the conditions
//! of the happy-hour and shelf-life rules.
//!
//! Campaigns and coupons name meals the same way ([`PromoTarget`]), so one
//! function decides for both: a meal a campaign's page lists must also be a
//! meal its coupon twin accepts.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Utc};
use protocol::promotions::{CouponSpec, PromoArea, PromoRule, PromoTarget};
use protocol::{FridgeId, KitchenId, MealId};

/// A meal as the rules see it: its id, its kitchen and its tags.
pub type MealRef<'a> = (&'a MealId, &'a KitchenId, &'a [String]);

/// Whether a fridge lies in `area`: an empty area is the whole district;
/// otherwise the fridge is listed or its geohash starts with a listed cell.
pub fn area_matches(area: &PromoArea, fridge_id: &FridgeId, fridge_cell: &str) -> bool {
    area.is_everywhere()
        || area.fridges.contains(fridge_id)
        || area
            .cells
            .iter()
            .any(|cell| fridge_cell.starts_with(cell.as_str()))
}

/// Whether a meal is in `target`: an empty target is every meal; otherwise
/// the meal is listed, its kitchen is listed, or one of its tags is listed
/// (tags compare exactly, as the catalog stores them).
pub fn target_matches(target: &PromoTarget, meal: MealRef<'_>) -> bool {
    let (meal_id, kitchen_id, tags) = meal;
    target.is_everything()
        || target.meals.contains(meal_id)
        || target.kitchens.contains(kitchen_id)
        || target.tags.iter().any(|t| tags.contains(t))
}

/// Whether a coupon accepts a meal (its target, as for campaigns).
pub fn coupon_applies_to(spec: &CouponSpec, meal: MealRef<'_>) -> bool {
    target_matches(&spec.target, meal)
}

/// The part of a rule's condition that holds for the whole basket at one
/// moment: the happy hour's window. Other rules always hold here.
pub(crate) fn holds_now(rule: &PromoRule, local: NaiveDateTime) -> bool {
    match rule {
        PromoRule::HappyHour {
            weekdays,
            from,
            until,
            ..
        } => in_window(weekdays, *from, *until, local),
        _ => true,
    }
}

/// The part of a rule's condition that depends on the unit: a shelf-life
/// markdown needs a known best-before that is still ahead and within the
/// window. Other rules always hold here.
pub(crate) fn holds_for_unit(
    rule: &PromoRule,
    best_before: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match rule {
        PromoRule::ShelfLife { within_hours, .. } => best_before.is_some_and(|bb| {
            // A unit past its best-before is not sold; were it offered, it
            // gets no markdown rather than one the rule never meant.
            bb > now && bb - now <= Duration::hours(i64::from(*within_hours))
        }),
        _ => true,
    }
}

/// Whether `local` is inside a happy-hour window. The window belongs to the
/// day it starts on: past midnight, a window spanning midnight checks the
/// previous day against `weekdays`. `from == until` (refused by validation)
/// is an empty window, never a whole day.
pub(crate) fn in_window(
    weekdays: &[u8],
    from: NaiveTime,
    until: NaiveTime,
    local: NaiveDateTime,
) -> bool {
    let t = local.time();
    let started_on = if from < until {
        (from <= t && t < until).then_some(local.date())
    } else if from > until && t >= from {
        Some(local.date())
    } else if from > until && t < until {
        local.date().pred_opt()
    } else {
        None
    };
    started_on.is_some_and(|day| {
        let iso = day.weekday().number_from_monday();
        weekdays.is_empty() || weekdays.iter().any(|w| u32::from(*w) == iso)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn a_window_includes_its_start_and_excludes_its_end() {
        // 2026-12-04 is a Friday (ISO 5).
        let w = |t| in_window(&[5], hm(15, 0), hm(17, 0), at(t));
        assert!(w("2026-12-04T15:00"));
        assert!(w("2026-12-04T16:59"));
        assert!(!w("2026-12-04T17:00"));
        assert!(!w("2026-12-04T14:59"));
        assert!(!w("2026-12-05T16:00"), "Saturday is not listed");
    }

    #[test]
    fn a_window_spanning_midnight_belongs_to_the_day_it_started() {
        let fri = |t| in_window(&[5], hm(22, 0), hm(2, 0), at(t));
        assert!(fri("2026-12-04T22:00"), "Friday evening");
        assert!(fri("2026-12-05T01:00"), "Saturday 01:00 is Friday's window");
        assert!(!fri("2026-12-05T02:00"));
        assert!(
            !fri("2026-12-04T01:00"),
            "Friday 01:00 is Thursday's window"
        );
        assert!(!fri("2026-12-05T22:00"), "Saturday evening");
    }

    #[test]
    fn an_empty_window_never_applies() {
        assert!(!in_window(&[], hm(9, 0), hm(9, 0), at("2026-12-04T09:00")));
        assert!(!in_window(&[], hm(9, 0), hm(9, 0), at("2026-12-04T15:00")));
    }

    #[test]
    fn no_weekdays_means_every_day() {
        for d in 1..=7 {
            let t = at(&format!("2026-12-{:02}T12:00", d));
            assert!(in_window(&[], hm(11, 0), hm(13, 0), t));
        }
    }
}
