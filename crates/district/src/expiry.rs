//! Best-before of the units on the shelf, so expired units leave the
//! available count by themselves.
//!
//! Units arrive in lots: whenever a fridge's count of a meal rises (a scan,
//! a refill, a manual correction), the new units get a best-before of
//! arrival + the meal's shelf life. When the count falls (a pickup, a scan,
//! a withdrawal), the oldest units go first — stock rotation, which is how
//! kitchens load fridges. The timer task asks [`due`] for pairs whose lots
//! have aged past their best-before and submits `ExpireUnits`; the event it
//! yields (`MealUnitsExpired`) sets the count withheld from sale. A fridge
//! that reads item tags reports expired units itself (the ACL's
//! `ExpiredOnShelf`), which re-labels the lots to match: the fridge's eyes
//! beat the node's arithmetic.
//!
//! Pure: times come from event envelopes and the `now` passed in.

use chrono::{DateTime, Duration, Utc};
use imbl::{OrdMap, Vector};
use protocol::catalog::StockLevel;
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

/// Pairs whose lots say more units are expired at `now` than are withheld.
pub fn due(state: &DistrictState, now: DateTime<Utc>) -> Vec<(FridgeId, MealId)> {
    state
        .lots
        .iter()
        .filter(|((fridge, meal), lots)| {
            expired_at(lots, now) > state.stock_level(fridge, meal).expired
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// `ExpireUnits`: withhold what has expired by now (nothing if nothing new).
pub fn decide_expire(
    state: &DistrictState,
    fridge_id: FridgeId,
    meal_id: MealId,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let key = (fridge_id, meal_id);
    let units = state
        .lots
        .get(&key)
        .map(|lots| expired_at(lots, ctx.now))
        .unwrap_or(0);
    let (fridge_id, meal_id) = key;
    if units <= state.stock_level(&fridge_id, &meal_id).expired {
        return Ok(vec![]);
    }
    Ok(vec![Event::MealUnitsExpired {
        fridge_id,
        meal_id,
        units,
    }])
}

/// Follows on-hand changes made by an event into the lots. `before` is the
/// stock as it was before the event (an O(1) clone), `at` the event's time.
/// Returns whether a withheld count changed.
pub fn track(
    state: &mut DistrictState,
    before: &OrdMap<FridgeId, OrdMap<MealId, StockLevel>>,
    event: &Event,
    at: DateTime<Utc>,
) -> bool {
    if let Event::MealUnitsExpired {
        fridge_id,
        meal_id,
        units,
    } = event
    {
        relabel(state, fridge_id, meal_id, *units, at);
        return false;
    }
    if before.ptr_eq(&state.stock) {
        return false;
    }
    let mut changed = false;
    let mut changes: Vec<(FridgeId, MealId, u32, u32)> = Vec::new();
    for (fridge_id, meals) in state.stock.iter() {
        let old = before.get(fridge_id);
        if old.is_some_and(|o| o.ptr_eq(meals)) {
            continue;
        }
        for (meal_id, level) in meals.iter() {
            let was = old
                .and_then(|o| o.get(meal_id))
                .map(|l| l.on_hand)
                .unwrap_or(0);
            if was != level.on_hand {
                changes.push((fridge_id.clone(), meal_id.clone(), was, level.on_hand));
            }
        }
    }
    for (fridge_id, meal_id, was, now_on_hand) in changes {
        let shelf_life = state
            .meals
            .get(&meal_id)
            .map(|m| Duration::hours(i64::from(m.spec.shelf_life_hours)))
            .unwrap_or_else(Duration::zero);
        let key = (fridge_id.clone(), meal_id.clone());
        let mut lots = state.lots.get(&key).cloned().unwrap_or_default();
        if now_on_hand > was {
            lots.push_back(Lot {
                units: now_on_hand - was,
                best_before: at + shelf_life,
            });
        } else {
            consume_oldest(&mut lots, was - now_on_hand);
        }
        // Whatever the lots say, they never hold more than the shelf.
        let held: u32 = lots.iter().map(|l| l.units).sum();
        if held > now_on_hand {
            consume_oldest(&mut lots, held - now_on_hand);
        }
        let expired = expired_at(&lots, at);
        set_lots(state, key, lots);
        changed |= adjust_expired(state, &fridge_id, &meal_id, expired);
    }
    changed
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
fn relabel(
    state: &mut DistrictState,
    fridge_id: &str,
    meal_id: &str,
    units: u32,
    at: DateTime<Utc>,
) {
    let key = (fridge_id.to_string(), meal_id.to_string());
    let Some(lots) = state.lots.get(&key).cloned() else {
        return;
    };
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
                best_before: lot.best_before.max(at + Duration::milliseconds(1)),
            });
            left = 0;
        } else {
            lot.best_before = lot.best_before.max(at + Duration::milliseconds(1));
            relabelled.push_back(lot);
        }
    }
    set_lots(state, key, relabelled);
}

fn set_lots(state: &mut DistrictState, key: (FridgeId, MealId), lots: Vector<Lot>) {
    if lots.is_empty() {
        state.lots.remove(&key);
    } else {
        state.lots.insert(key, lots);
    }
}

/// Sets the withheld count of a level `track` found in the stock; returns
/// whether it changed.
fn adjust_expired(state: &mut DistrictState, fridge_id: &str, meal_id: &str, expired: u32) -> bool {
    if state.stock_level(fridge_id, meal_id).expired == expired {
        return false;
    }
    state.adjust_stock(fridge_id, meal_id, |level| level.expired = expired);
    true
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
