//! Best-before of the units on the shelf, so expired units leave the
//! available count by themselves.
//!
//! Units arrive in lots: whenever a fridge's count of a meal rises (a scan,
//! a refill, a manual correction), the new units get a best-before of
//! arrival + the meal's shelf life. When the count falls (a pickup, a scan,
//! a withdrawal), the oldest units go first — stock rotation, which is how
//! kitchens load fridges. The timer task asks `Stock::expiry_due` for pairs
//! whose lots have aged past their best-before and submits `ExpireUnits`;
//! the event it yields (`MealUnitsExpired`) sets the count withheld from
//! sale. A fridge that reads item tags reports expired units itself (the
//! ACL's `ExpiredOnShelf`), which re-labels the lots to match: the fridge's
//! eyes beat the node's arithmetic.
//!
//! This module is the lot arithmetic and the `ExpireUnits` decision; the
//! lots themselves live in [`crate::stock::Stock`] next to the levels they
//! explain. Pure: times come from event envelopes and the `now` passed in.

use chrono::{DateTime, Duration, Utc};
use imbl::{OrdMap, Vector};
use protocol::{Event, FridgeId, MealId};

use super::{Context, DistrictState, DomainError};

/// Units of one meal that arrived together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    pub units: u32,
    pub best_before: DateTime<Utc>,
}

/// Lots per fridge and meal, oldest first.
pub type Lots = OrdMap<(FridgeId, MealId), Vector<Lot>>;

/// Units among `lots` past their best-before at `at`.
pub fn expired_at(lots: &Vector<Lot>, at: DateTime<Utc>) -> u32 {
    lots.iter()
        .filter(|l| l.best_before <= at)
        .map(|l| l.units)
        .sum()
}

/// `ExpireUnits`: withhold what has expired by now (nothing if nothing new).
pub fn decide_expire(
    state: &DistrictState,
    fridge_id: FridgeId,
    meal_id: MealId,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let units = state.stock().expired_by(&fridge_id, &meal_id, ctx.now);
    if units <= state.stock_level(&fridge_id, &meal_id).expired {
        return Ok(vec![]);
    }
    Ok(vec![Event::MealUnitsExpired {
        fridge_id,
        meal_id,
        units,
    }])
}

/// The lots after the shelf went from `was` to `now_on_hand` units at `at`:
/// a rise is a new lot, a fall takes the oldest units first, and the lots
/// never hold more than the shelf.
pub(crate) fn follow(
    mut lots: Vector<Lot>,
    was: u32,
    now_on_hand: u32,
    at: DateTime<Utc>,
    shelf_life: Duration,
) -> Vector<Lot> {
    if now_on_hand > was {
        lots.push_back(Lot {
            units: now_on_hand - was,
            best_before: at + shelf_life,
        });
    } else {
        consume_oldest(&mut lots, was - now_on_hand);
    }
    let held: u32 = lots.iter().map(|l| l.units).sum();
    if held > now_on_hand {
        consume_oldest(&mut lots, held - now_on_hand);
    }
    lots
}

fn consume_oldest(lots: &mut Vector<Lot>, mut units: u32) {
    while units > 0 {
        let Some(mut front) = lots.pop_front() else {
            return;
        };
        if front.units > units {
            front.units -= units;
            lots.push_front(front);
            return;
        }
        units -= front.units;
    }
}

/// A fridge counted `units` expired: the oldest `units` are expired as of
/// `at`, the rest not yet.
pub(crate) fn relabel(lots: Vector<Lot>, units: u32, at: DateTime<Utc>) -> Vector<Lot> {
    let not_yet = at + Duration::milliseconds(1);
    let mut left = units;
    let mut relabelled = Vector::new();
    for mut lot in lots {
        if left >= lot.units {
            left -= lot.units;
            lot.best_before = lot.best_before.min(at);
            relabelled.push_back(lot);
        } else if left > 0 {
            relabelled.push_back(Lot {
                units: left,
                best_before: lot.best_before.min(at),
            });
            relabelled.push_back(Lot {
                units: lot.units - left,
                best_before: lot.best_before.max(not_yet),
            });
            left = 0;
        } else {
            lot.best_before = lot.best_before.max(not_yet);
            relabelled.push_back(lot);
        }
    }
    relabelled
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn the_oldest_units_go_first() {
        let mut lots: Vector<Lot> = vec![
            Lot {
                units: 2,
                best_before: t(10),
            },
            Lot {
                units: 3,
                best_before: t(20),
            },
        ]
        .into();
        consume_oldest(&mut lots, 3);
        assert_eq!(lots.len(), 1);
        assert_eq!(
            lots[0],
            Lot {
                units: 2,
                best_before: t(20)
            }
        );
        assert_eq!(expired_at(&lots, t(19)), 0);
        assert_eq!(expired_at(&lots, t(20)), 2);
    }
}
