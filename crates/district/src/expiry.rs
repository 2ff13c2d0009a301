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
use protocol::{Event, FridgeId, MealId, OrderId};

use super::{Context, DistrictState, DomainError};

/// Units of one meal that arrived together.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lot {
    pub units: u32,
    pub best_before: DateTime<Utc>,
    /// Set aside for this order (a kitchen placed it for a plan day): only
    /// that order's pickup takes it, and stock rotation passes it by.
    pub for_order: Option<OrderId>,
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
            for_order: None,
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

/// Takes `units` from the shelf, oldest first among the units on general
/// sale; units set aside for an order go only when nothing else is left
/// (the shelf holds fewer units than it should).
fn consume_oldest(lots: &mut Vector<Lot>, units: u32) {
    let left = take_where(lots, units, |l| l.for_order.is_none());
    take_where(lots, left, |_| true);
}

/// Takes up to `units` from the lots `pick` selects, oldest first; returns
/// how many it could not take.
fn take_where(lots: &mut Vector<Lot>, mut units: u32, pick: impl Fn(&Lot) -> bool) -> u32 {
    let mut kept = Vector::new();
    for mut lot in std::mem::take(lots) {
        if units > 0 && pick(&lot) {
            let taken = lot.units.min(units);
            units -= taken;
            lot.units -= taken;
        }
        if lot.units > 0 {
            kept.push_back(lot);
        }
    }
    *lots = kept;
    units
}

/// Takes up to `units` set aside for `order_id` (the units its kitchen
/// placed); returns how many it took.
pub(crate) fn take_for_order(lots: &mut Vector<Lot>, order_id: &OrderId, units: u32) -> u32 {
    units - take_where(lots, units, |l| l.for_order.as_ref() == Some(order_id))
}

/// The units set aside for `order_id` go back on general sale, keeping
/// their best-before.
pub(crate) fn release_for_order(lots: Vector<Lot>, order_id: &OrderId) -> Vector<Lot> {
    lots.into_iter()
        .map(|mut l| {
            if l.for_order.as_ref() == Some(order_id) {
                l.for_order = None;
            }
            l
        })
        .collect()
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
                for_order: lot.for_order.clone(),
            });
            relabelled.push_back(Lot {
                units: lot.units - left,
                best_before: lot.best_before.max(not_yet),
                for_order: lot.for_order,
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
                for_order: None,
            },
            Lot {
                units: 3,
                best_before: t(20),
                for_order: None,
            },
        ]
        .into();
        consume_oldest(&mut lots, 3);
        assert_eq!(lots.len(), 1);
        assert_eq!(
            lots[0],
            Lot {
                units: 2,
                best_before: t(20),
                for_order: None,
            }
        );
        assert_eq!(expired_at(&lots, t(19)), 0);
        assert_eq!(expired_at(&lots, t(20)), 2);
    }

    #[test]
    fn a_unit_set_aside_for_an_order_is_the_one_its_pickup_takes() {
        let order = OrderId::from_static("sub-p-2026-12-02");
        let lot = |units, h, for_order: Option<&OrderId>| Lot {
            units,
            best_before: t(h),
            for_order: for_order.cloned(),
        };
        // Three expired units, then the kitchen's fresh one for the order.
        let lots: Vector<Lot> = vec![lot(3, 10, None), lot(1, 100, Some(&order))].into();
        let mut picked = lots.clone();
        assert_eq!(take_for_order(&mut picked, &order, 1), 1);
        assert_eq!(picked, Vector::unit(lot(3, 10, None)));
        // Rotation passes the set-aside unit by while others are left.
        let mut rotated = lots.clone();
        consume_oldest(&mut rotated, 1);
        assert_eq!(
            rotated,
            Vector::from(vec![lot(2, 10, None), lot(1, 100, Some(&order))])
        );
        // Released (unclaimed): on general sale with its own best-before.
        let released = release_for_order(lots, &order);
        assert_eq!(expired_at(&released, t(50)), 3);
        assert_eq!(released[1], lot(1, 100, None));
    }
}
