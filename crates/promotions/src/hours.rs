//! When campaign prices change by the clock alone: a campaign's time frame
//! starting or ending, a happy hour opening or closing. Nothing is written
//! at those moments, so the district asks [`next_turn`] when the next one
//! is due and records it once it has passed (the push hub then tells apps
//! to fetch the catalog again).
//!
//! Shelf-life markdowns also change prices by the clock, unit by unit as
//! best-before dates come near; they are not turns here (a stock message
//! carries the unit's price when its shelf next changes).

use chrono::{Duration, NaiveDateTime};
use protocol::promotions::{CampaignSpec, PromoRule};

use crate::matching::holds_now;

/// How far ahead [`next_turn`] looks: a happy hour repeats weekly, so a
/// week and a day covers every window.
pub const TURN_HORIZON_DAYS: i64 = 8;

/// Whether the campaign's clock conditions hold at district-local `local`:
/// within `[starts, ends)` and, for a happy hour, inside its window.
/// Budgets and an admin's end are not the clock's (their events push).
pub fn in_hours(spec: &CampaignSpec, local: NaiveDateTime) -> bool {
    spec.starts <= local && local < spec.ends && holds_now(&spec.rule, local)
}

/// The first instant after `after` (within [`TURN_HORIZON_DAYS`]) at which
/// [`in_hours`] changes for one of `campaigns`; `None` if none does.
pub fn next_turn<'a>(
    campaigns: impl IntoIterator<Item = &'a CampaignSpec>,
    after: NaiveDateTime,
) -> Option<NaiveDateTime> {
    let horizon = after + Duration::days(TURN_HORIZON_DAYS);
    campaigns
        .into_iter()
        .flat_map(|spec| {
            candidates(spec, after, horizon)
                .into_iter()
                .filter(move |at| *at > after && *at <= horizon && turns_at(spec, *at))
        })
        .min()
}

/// Whether [`in_hours`] differs at `at` from just before it.
pub fn turns_at(spec: &CampaignSpec, at: NaiveDateTime) -> bool {
    let before = at - Duration::milliseconds(1);
    in_hours(spec, before) != in_hours(spec, at)
}

/// Every instant at which the campaign's clock conditions may change
/// between `after` and `horizon`: its start and end, and its happy-hour
/// window's edges on each day (from the day before, for a window that
/// spans midnight).
fn candidates(
    spec: &CampaignSpec,
    after: NaiveDateTime,
    horizon: NaiveDateTime,
) -> Vec<NaiveDateTime> {
    let mut out = vec![spec.starts, spec.ends];
    if let PromoRule::HappyHour { from, until, .. } = &spec.rule {
        let mut day = after.date().pred_opt().unwrap_or(after.date());
        while day <= horizon.date() {
            out.push(day.and_time(*from));
            out.push(day.and_time(*until));
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use protocol::promotions::{Budget, PromoArea, PromoTarget, Stacking};

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn campaign(starts: &str, ends: &str, rule: PromoRule) -> CampaignSpec {
        CampaignSpec {
            name: "c".into(),
            starts: at(starts),
            ends: at(ends),
            area: PromoArea::default(),
            target: PromoTarget::default(),
            rule,
            priority: 0,
            stacking: Stacking::default(),
            budget: Budget::default(),
        }
    }

    fn happy_hour(weekdays: Vec<u8>, from: (u32, u32), until: (u32, u32)) -> PromoRule {
        PromoRule::HappyHour {
            weekdays,
            from: NaiveTime::from_hms_opt(from.0, from.1, 0).unwrap(),
            until: NaiveTime::from_hms_opt(until.0, until.1, 0).unwrap(),
            percent: 20,
        }
    }

    const OFF: PromoRule = PromoRule::PercentOff { percent: 10 };

    #[test]
    fn a_campaign_turns_at_its_start_and_at_its_end() {
        let c = campaign("2026-12-01T09:00", "2026-12-03T21:00", OFF);
        assert_eq!(
            next_turn([&c], at("2026-11-30T12:00")),
            Some(at("2026-12-01T09:00"))
        );
        assert_eq!(
            next_turn([&c], at("2026-12-01T09:00")),
            Some(at("2026-12-03T21:00"))
        );
        assert_eq!(next_turn([&c], at("2026-12-03T21:00")), None);
    }

    #[test]
    fn a_happy_hour_turns_at_its_window_edges_on_its_weekdays_only() {
        // Fridays (5) 17:00-19:00; 2026-12-04 is a Friday.
        let c = campaign(
            "2026-11-01T00:00",
            "2027-01-01T00:00",
            happy_hour(vec![5], (17, 0), (19, 0)),
        );
        assert_eq!(
            next_turn([&c], at("2026-11-30T18:00")),
            Some(at("2026-12-04T17:00"))
        );
        assert_eq!(
            next_turn([&c], at("2026-12-04T17:00")),
            Some(at("2026-12-04T19:00"))
        );
        assert_eq!(
            next_turn([&c], at("2026-12-04T19:00")),
            Some(at("2026-12-11T17:00"))
        );
    }

    #[test]
    fn a_window_over_midnight_closes_the_next_morning() {
        let c = campaign(
            "2026-11-01T00:00",
            "2027-01-01T00:00",
            happy_hour(vec![], (22, 0), (2, 0)),
        );
        assert_eq!(
            next_turn([&c], at("2026-12-04T21:00")),
            Some(at("2026-12-04T22:00"))
        );
        assert_eq!(
            next_turn([&c], at("2026-12-04T23:00")),
            Some(at("2026-12-05T02:00"))
        );
    }

    #[test]
    fn the_earliest_turn_of_several_campaigns_counts_and_a_window_inside_its_frame_only() {
        let late = campaign("2026-12-10T00:00", "2026-12-20T00:00", OFF);
        let evenings = campaign(
            "2026-12-05T18:30",
            "2027-01-01T00:00",
            happy_hour(vec![], (17, 0), (19, 0)),
        );
        // The frame opens inside the window: 18:30 is a turn, 17:00 is not.
        assert_eq!(
            next_turn([&late, &evenings], at("2026-12-05T12:00")),
            Some(at("2026-12-05T18:30"))
        );
        assert!(!turns_at(&evenings, at("2026-12-05T17:00")));
    }
}
