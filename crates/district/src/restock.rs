//! Restocking: par levels per fridge and meal, the demand history that
//! suggests them, and the kitchen's pick list (`docs/restocking.md`).
//!
//! **Par levels** are set by admins (`RestockCommand::SetParLevel`,
//! recorded as `Event::Restock`): how many units of a meal the fridge should
//! hold *for general sale* once the kitchen's delivery is in.
//!
//! **Demand history.** [`follow`] reads each committed event after its own
//! handler (like `loyalty::follow`) and tallies, per fridge, meal and
//! quarter hour ([`TALLY_BUCKET_SECS`], UTC), the shelf's one-off units
//! *sold* (picked up), *unclaimed* (paid, never picked up) and *expired*.
//! Plan orders and orders ahead are made to order, so they are no shelf
//! demand and are not counted. Quarter hours let the read side sum the
//! district-local days of any real UTC offset (all are multiples of 15
//! minutes) without the state knowing the offset. Buckets older than
//! [`HISTORY_RETENTION_DAYS`] before the newest tallied event are dropped,
//! so the tally holds at most that many days of buckets per fridge and meal,
//! and only buckets in which something happened.
//!
//! **Suggestion** ([`suggested_par`]): over the last `days` complete
//! district-local days, `mean = (sold + unclaimed) / days`;
//! `par = ceil(mean + sqrt(mean))` (the square root is one standard
//! deviation of Poisson demand: a cushion for the busier days), but only
//! `ceil(mean)` when units expired in the window (the shelf already held
//! more than sold: waste says drop the cushion), capped at `MAX_PAR_UNITS`.
//!
//! **Pick list** ([`pick_list`]) for a kitchen and date: the prep report's
//! rows (plans, orders ahead, forecast) plus, per fridge and meal of the
//! kitchen with a par level, `restock = max(0, par − available − arriving
//! for sale)`. Units arriving for plans and orders ahead are set aside for
//! their orders and never go on general sale, so no unit the node knows of
//! arrives *for sale*: `restock = max(0, par − available)`. Where no par is
//! set, the forecast plays the par's part: `max(0, forecast − available)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use imbl::OrdMap;
use protocol::restock::{RestockEvent, MAX_PAR_UNITS};
use protocol::{Event, FridgeId, KitchenId, MealId};
use scheduler::prep::PrepReport;
use scheduler::state::Stage;
use serde::{Deserialize, Serialize};

use crate::schedule::StateCatalog;
use crate::{Context, DistrictState, DomainError, Recorded};

/// Widest window a suggestion looks at, in days.
pub const MAX_WINDOW_DAYS: u32 = 28;
/// Narrowest window a suggestion looks at, in days.
pub const MIN_WINDOW_DAYS: u32 = 7;
/// Width of one tally bucket, in seconds (a quarter hour).
pub const TALLY_BUCKET_SECS: i64 = 15 * 60;
/// How long tallies are kept, in days: the widest window, today, and a day
/// for the district's offset from UTC.
pub const HISTORY_RETENTION_DAYS: i64 = MAX_WINDOW_DAYS as i64 + 2;

/// What happened to a shelf's units of one meal in some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// One-off units picked up by their buyers.
    pub sold: u32,
    /// Units past their best-before, taken off sale.
    pub expired: u32,
    /// One-off units paid for and not picked up by the deadline.
    pub unclaimed: u32,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.sold = self.sold.saturating_add(other.sold);
        self.expired = self.expired.saturating_add(other.expired);
        self.unclaimed = self.unclaimed.saturating_add(other.unclaimed);
    }
}

/// One quarter hour's tallies by (fridge, meal), sorted; shared with the
/// published states until the writer changes it.
type Bucket = Arc<Tallies>;
type Tallies = Vec<((FridgeId, MealId), Tally)>;

/// Par levels and the demand history behind suggestions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Restock {
    /// Units per (fridge, meal); a cleared level is absent.
    par: OrdMap<(FridgeId, MealId), u32>,
    /// Quarter hour since the epoch → its tallies; time first so the oldest
    /// are pruned from the front. One map entry per quarter hour holding a
    /// sorted `Vec`, not one per (quarter hour, fridge, meal): a B-tree
    /// entry cost ~250 bytes of node per tally, 142 MB once a busy
    /// district's 30 days were full (BENCHMARKS.md, "Bounded memory").
    /// Serialized as the flat map it was ([`flat_history`]).
    #[serde(with = "flat_history")]
    history: OrdMap<i64, Bucket>,
}

/// The history as a snapshot stores it: one map from (quarter hour,
/// fridge, meal) to tally, in that order (the form of the earlier
/// `OrdMap<(i64, FridgeId, MealId), Tally>`, so snapshots keep their
/// version).
mod flat_history {
    use super::*;
    use serde::ser::SerializeMap;

    pub fn serialize<S: serde::Serializer>(
        history: &OrdMap<i64, Bucket>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let len = history.values().map(|b| b.len()).sum();
        let mut map = s.serialize_map(Some(len))?;
        for (at, bucket) in history.iter() {
            for ((fridge_id, meal_id), tally) in bucket.iter() {
                map.serialize_entry(&(at, fridge_id, meal_id), tally)?;
            }
        }
        map.end()
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<OrdMap<i64, Bucket>, D::Error> {
        let flat = BTreeMap::<(i64, FridgeId, MealId), Tally>::deserialize(d)?;
        let mut history: OrdMap<i64, Bucket> = OrdMap::new();
        let mut current: Option<(i64, Tallies)> = None;
        for ((at, fridge_id, meal_id), tally) in flat {
            if current.as_ref().is_some_and(|(b, _)| *b != at) {
                if let Some((b, tallies)) = current.take() {
                    history.insert(b, Arc::new(tallies));
                }
            }
            let (_, tallies) = current.get_or_insert_with(|| (at, Vec::new()));
            tallies.push(((fridge_id, meal_id), tally));
        }
        if let Some((b, tallies)) = current {
            history.insert(b, Arc::new(tallies));
        }
        Ok(history)
    }
}

impl Restock {
    /// The par level of a meal in a fridge; 0 when none is set.
    pub fn par(&self, fridge_id: &FridgeId, meal_id: &MealId) -> u32 {
        self.par
            .get(&(fridge_id.clone(), meal_id.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Every set par level, by fridge then meal.
    pub fn levels(&self) -> impl Iterator<Item = (&FridgeId, &MealId, u32)> {
        self.par.iter().map(|((f, m), units)| (f, m, *units))
    }

    /// How many tallies (quarter hour, fridge, meal) are kept (for tests
    /// of the bound).
    pub fn history_len(&self) -> usize {
        self.history.values().map(|b| b.len()).sum()
    }

    /// Sum of the tallies per (fridge, meal) of the buckets starting in
    /// `[from, to)`.
    pub fn tallied_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BTreeMap<(FridgeId, MealId), Tally> {
        let mut out: BTreeMap<(FridgeId, MealId), Tally> = BTreeMap::new();
        // A bucket belongs to the window its start falls in.
        let (first, end) = (first_bucket_from(from), first_bucket_from(to));
        if first >= end {
            return out;
        }
        for (_, bucket) in self.history.range(first..end) {
            for ((f, m), t) in bucket.iter() {
                out.entry((f.clone(), m.clone())).or_default().add(*t);
            }
        }
        out
    }
}

/// The quarter hour `at` falls in, counted from the epoch.
fn bucket_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(TALLY_BUCKET_SECS)
}

/// The first quarter hour starting at or after `at`.
fn first_bucket_from(at: DateTime<Utc>) -> i64 {
    (at.timestamp() + TALLY_BUCKET_SECS - 1).div_euclid(TALLY_BUCKET_SECS)
}

/// The par the history suggests (see the module docs for the rule).
pub fn suggested_par(tally: Tally, days: u32) -> u32 {
    let demand = u64::from(tally.sold) + u64::from(tally.unclaimed);
    if demand == 0 || days == 0 {
        return 0;
    }
    let mean = demand as f64 / f64::from(days);
    let cushion = if tally.expired == 0 { mean.sqrt() } else { 0.0 };
    let par = (mean + cushion).ceil();
    if par >= f64::from(MAX_PAR_UNITS) {
        MAX_PAR_UNITS
    } else {
        par as u32
    }
}

/// One suggested par level and the history behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    pub fridge_id: FridgeId,
    pub meal_id: MealId,
    pub units: u32,
    pub sold: u32,
    pub expired: u32,
    pub unclaimed: u32,
}

/// The district-local midnight starting `date`, in UTC.
fn local_midnight(date: NaiveDate, utc_offset_minutes: i32) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
        - Duration::minutes(i64::from(utc_offset_minutes))
}

/// Suggestions from the `days` complete district-local days before
/// `today` (district-local), for every fridge and meal of the catalog with
/// history in them.
pub fn suggestions(
    state: &DistrictState,
    today: NaiveDate,
    utc_offset_minutes: i32,
    days: u32,
) -> Result<Vec<Suggestion>, DomainError> {
    if !(MIN_WINDOW_DAYS..=MAX_WINDOW_DAYS).contains(&days) {
        return Err(DomainError::Invalid(format!(
            "days must be {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS}, got {days}"
        )));
    }
    let to = local_midnight(today, utc_offset_minutes);
    let from = to - Duration::days(i64::from(days));
    let catalog = state.catalog();
    Ok(state
        .restock
        .tallied_between(from, to)
        .into_iter()
        .filter(|((f, m), _)| catalog.fridge(f).is_some() && catalog.meal(m).is_some())
        .map(|((fridge_id, meal_id), t)| Suggestion {
            fridge_id,
            meal_id,
            units: suggested_par(t, days),
            sold: t.sold,
            expired: t.expired,
            unclaimed: t.unclaimed,
        })
        .collect())
}

/// Commands of the restocking part (admin).
#[derive(Debug, Clone, PartialEq)]
pub enum RestockCommand {
    /// Set a par level; 0 clears it.
    SetParLevel {
        fridge_id: FridgeId,
        meal_id: MealId,
        units: u32,
    },
    /// Set every [`suggestions`] of the window as the par level.
    ApplySuggestions { days: u32 },
}

pub fn decide(
    state: &DistrictState,
    cmd: RestockCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        RestockCommand::SetParLevel {
            fridge_id,
            meal_id,
            units,
        } => {
            if state.catalog.fridge(&fridge_id).is_none() {
                return Err(DomainError::UnknownFridge(fridge_id));
            }
            if state.catalog.meal(&meal_id).is_none() {
                return Err(DomainError::UnknownMeal(meal_id));
            }
            if units > MAX_PAR_UNITS {
                return Err(DomainError::Invalid(format!(
                    "units must be 0 to {MAX_PAR_UNITS} (0 clears the par level), got {units}"
                )));
            }
            Ok(set_par(state, fridge_id, meal_id, units)
                .into_iter()
                .collect())
        }
        RestockCommand::ApplySuggestions { days } => {
            let today = ctx.local_now().date();
            Ok(suggestions(state, today, ctx.utc_offset_minutes, days)?
                .into_iter()
                .filter_map(|s| set_par(state, s.fridge_id, s.meal_id, s.units))
                .collect())
        }
    }
}

/// The event that makes the par level `units`; none if it already is.
fn set_par(
    state: &DistrictState,
    fridge_id: FridgeId,
    meal_id: MealId,
    units: u32,
) -> Option<Event> {
    if state.restock.par(&fridge_id, &meal_id) == units {
        return None;
    }
    let e = if units == 0 {
        RestockEvent::ParLevelCleared { fridge_id, meal_id }
    } else {
        RestockEvent::ParLevelSet {
            fridge_id,
            meal_id,
            units,
        }
    };
    Some(Event::Restock(e))
}

/// The handler of the part's own events.
pub(crate) fn evolve(state: &mut DistrictState, event: &RestockEvent) -> bool {
    match event {
        RestockEvent::ParLevelSet {
            fridge_id,
            meal_id,
            units,
        } => {
            state
                .restock
                .par
                .insert((fridge_id.clone(), meal_id.clone()), *units);
        }
        RestockEvent::ParLevelCleared { fridge_id, meal_id } => {
            state
                .restock
                .par
                .remove(&(fridge_id.clone(), meal_id.clone()));
        }
    }
    false
}

/// Tallies what `event` means for the shelves' demand history (see the
/// module docs). Runs after the event's own handler, so the order is
/// already in its new state.
pub(crate) fn follow(state: &mut DistrictState, event: &Event, rec: Recorded) {
    let counted: Vec<(FridgeId, MealId, Tally)> = match event {
        Event::OrderPickedUp { order_id } | Event::OrderUnclaimed { order_id } => {
            let Some(order) = state.orders.get(order_id) else {
                return;
            };
            // Plan orders and orders ahead have a day: made to order.
            if order.delivery_date.is_some() || order.preorder.is_some() {
                return;
            }
            let picked_up = matches!(event, Event::OrderPickedUp { .. });
            order
                .lines
                .iter()
                .map(|l| {
                    let t = if picked_up {
                        Tally {
                            sold: l.qty,
                            ..Tally::default()
                        }
                    } else {
                        Tally {
                            unclaimed: l.qty,
                            ..Tally::default()
                        }
                    };
                    (order.fridge_id.clone(), l.meal_id.clone(), t)
                })
                .collect()
        }
        Event::MealUnitsExpired {
            fridge_id,
            meal_id,
            units,
        } => vec![(
            fridge_id.clone(),
            meal_id.clone(),
            Tally {
                expired: *units,
                ..Tally::default()
            },
        )],
        _ => return,
    };
    let history = &mut state.restock.history;
    let tallies = Arc::make_mut(history.entry(bucket_of(rec.at)).or_default());
    for (fridge_id, meal_id, t) in counted {
        let key = (fridge_id, meal_id);
        match tallies.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => tallies[i].1.add(t),
            Err(i) => tallies.insert(i, (key, t)),
        }
    }
    let oldest = bucket_of(rec.at - Duration::days(HISTORY_RETENTION_DAYS));
    while let Some(at) = history.get_min().map(|(b, _)| *b).filter(|b| *b < oldest) {
        history.remove(&at);
    }
}

/// What the kitchen cooks of one meal, by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookLine {
    pub meal_id: MealId,
    pub meal_name: String,
    pub units: u32,
    pub for_plans: u32,
    pub for_orders_ahead: u32,
    pub for_forecast: u32,
    pub for_restock: u32,
}

/// What goes to one fridge of one meal, by reason, and the shelf behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverLine {
    pub fridge_id: FridgeId,
    pub meal_id: MealId,
    pub units: u32,
    pub for_plans: u32,
    pub for_orders_ahead: u32,
    /// The forecast's units where no par is set: `max(0, forecast − available)`.
    pub for_forecast: u32,
    /// `max(0, par − available)` where a par is set.
    pub for_restock: u32,
    /// The par level; 0 when none is set.
    pub par: u32,
    /// Units for general sale on the shelf now.
    pub available: u32,
    /// Units of plan orders and orders ahead for this date not in the fridge
    /// yet (scheduled, prepared, dispatched): set aside for their orders.
    pub arriving: u32,
    /// The prep report's one-off forecast for the date.
    pub forecast: u32,
}

/// One list of what a kitchen cooks for a date and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickList {
    pub kitchen_id: KitchenId,
    pub date: NaiveDate,
    /// Per meal, sorted by meal.
    pub cook: Vec<CookLine>,
    /// Per fridge and meal, sorted by fridge then meal.
    pub deliver: Vec<DeliverLine>,
}

/// The pick list of `prep`'s kitchen and date: `prep` is that kitchen's
/// prep report (the node builds it the one way `GET …/prep` does).
pub fn pick_list(state: &DistrictState, prep: &PrepReport) -> PickList {
    let mut deliver: BTreeMap<(FridgeId, MealId), DeliverLine> = BTreeMap::new();
    let line = |fridge_id: &FridgeId, meal_id: &MealId| DeliverLine {
        fridge_id: fridge_id.clone(),
        meal_id: meal_id.clone(),
        units: 0,
        for_plans: 0,
        for_orders_ahead: 0,
        for_forecast: 0,
        for_restock: 0,
        par: state.restock.par(fridge_id, meal_id),
        available: state.stock.level(fridge_id, meal_id).available(),
        arriving: 0,
        forecast: 0,
    };
    for r in &prep.rows {
        let l = deliver
            .entry((r.fridge_id.clone(), r.meal_id.clone()))
            .or_insert_with(|| line(&r.fridge_id, &r.meal_id));
        l.for_plans = r.subscription_units;
        l.for_orders_ahead = r.preorder_units;
        l.forecast = r.forecast_one_off_units;
    }
    let kitchen_meal = |m: &MealId| {
        state
            .catalog
            .meal(m)
            .is_some_and(|m| m.spec.kitchen_id == prep.kitchen_id)
    };
    for (fridge_id, meal_id, _) in state.restock.levels() {
        if kitchen_meal(meal_id) && state.catalog.fridge(fridge_id).is_some() {
            deliver
                .entry((fridge_id.clone(), meal_id.clone()))
                .or_insert_with(|| line(fridge_id, meal_id));
        }
    }
    let catalog = StateCatalog(state);
    for o in state.schedule.orders.values() {
        let on_the_way = matches!(
            o.stage(&catalog),
            Stage::Scheduled | Stage::Prepared | Stage::Dispatched
        );
        if on_the_way && o.date == prep.date && o.kitchen_id == prep.kitchen_id {
            if let Some(l) = deliver.get_mut(&(o.fridge_id.clone(), o.meal_id.clone())) {
                l.arriving += 1;
            }
        }
    }
    for l in deliver.values_mut() {
        // Arriving units are set aside for their orders: none for sale.
        if l.par > 0 {
            l.for_restock = l.par.saturating_sub(l.available);
        } else {
            l.for_forecast = l.forecast.saturating_sub(l.available);
        }
        l.units = l.for_plans + l.for_orders_ahead + l.for_forecast + l.for_restock;
    }
    let deliver: Vec<DeliverLine> = deliver.into_values().collect();
    PickList {
        kitchen_id: prep.kitchen_id.clone(),
        date: prep.date,
        cook: cook_lines(state, &deliver),
        deliver,
    }
}

/// The deliver lines summed per meal.
fn cook_lines(state: &DistrictState, deliver: &[DeliverLine]) -> Vec<CookLine> {
    let mut cook: BTreeMap<MealId, CookLine> = BTreeMap::new();
    for l in deliver {
        let c = cook.entry(l.meal_id.clone()).or_insert_with(|| CookLine {
            meal_id: l.meal_id.clone(),
            meal_name: state
                .catalog
                .meal(&l.meal_id)
                .map_or_else(|| l.meal_id.to_string(), |m| m.spec.name.clone()),
            units: 0,
            for_plans: 0,
            for_orders_ahead: 0,
            for_forecast: 0,
            for_restock: 0,
        });
        c.units += l.units;
        c.for_plans += l.for_plans;
        c.for_orders_ahead += l.for_orders_ahead;
        c.for_forecast += l.for_forecast;
        c.for_restock += l.for_restock;
    }
    cook.into_values().collect()
}

/// CSV header of [`to_csv`].
pub const CSV_HEADER: &str = "date,kitchen_id,fridge_id,meal_id,units,for_plans,for_orders_ahead,for_forecast,for_restock,par,available,arriving";

/// RFC 4180 CSV, one row per deliver line, CRLF line ends (ids need no
/// quoting: they are letters, digits, `-` and `_`).
pub fn to_csv(list: &PickList) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for l in &list.deliver {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
            list.date,
            list.kitchen_id,
            l.fridge_id,
            l.meal_id,
            l.units,
            l.for_plans,
            l.for_orders_ahead,
            l.for_forecast,
            l.for_restock,
            l.par,
            l.available,
            l.arriving
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(sold: u32, expired: u32, unclaimed: u32) -> Tally {
        Tally {
            sold,
            expired,
            unclaimed,
        }
    }

    #[test]
    fn the_history_is_stored_as_the_flat_map_it_was_and_reads_back() {
        let (f1, f2) = (FridgeId::from_static("f-1"), FridgeId::from_static("f-2"));
        let (m1, m2) = (MealId::from_static("m-1"), MealId::from_static("m-2"));
        let flat = [
            ((7, f1.clone(), m2.clone()), tally(1, 0, 0)),
            ((7, f2.clone(), m1.clone()), tally(0, 2, 0)),
            ((7, f1.clone(), m1.clone()), tally(3, 0, 1)),
            ((9, f2.clone(), m2.clone()), tally(5, 0, 0)),
        ];
        let old: OrdMap<(i64, FridgeId, MealId), Tally> = flat.iter().cloned().collect();
        let mut restock = Restock::default();
        for ((at, f, m), t) in flat {
            let tallies = Arc::make_mut(restock.history.entry(at).or_default());
            let i = tallies.partition_point(|(k, _)| *k < (f.clone(), m.clone()));
            tallies.insert(i, ((f, m), t));
        }
        let old_bytes =
            postcard::to_allocvec(&(OrdMap::<(FridgeId, MealId), u32>::new(), old)).unwrap();
        let bytes = postcard::to_allocvec(&restock).unwrap();
        assert_eq!(bytes, old_bytes, "the snapshot form did not change");
        let read: Restock = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read, restock);
        assert_eq!(read.history_len(), 4);
        let from = DateTime::from_timestamp(7 * TALLY_BUCKET_SECS, 0).unwrap();
        let to = DateTime::from_timestamp(8 * TALLY_BUCKET_SECS, 0).unwrap();
        let summed = read.tallied_between(from, to);
        assert_eq!(summed.len(), 3, "bucket 7 only: {summed:?}");
        assert_eq!(summed[&(f1, m1)], tally(3, 0, 1));
    }

    #[test]
    fn the_suggestion_is_the_mean_plus_a_cushion_unless_units_expired() {
        // 14 picked up in 7 days: mean 2, cushion √2 → ceil(3.41) = 4.
        assert_eq!(suggested_par(tally(14, 0, 0), 7), 4);
        // Unclaimed units were paid for: demand too (mean 4, cushion 2).
        assert_eq!(suggested_par(tally(20, 0, 8), 7), 6);
        // Waste: no cushion, just the mean rounded up.
        assert_eq!(suggested_par(tally(14, 3, 0), 7), 2);
        assert_eq!(suggested_par(tally(15, 1, 0), 7), 3);
        // Nothing sold: no par, whatever expired.
        assert_eq!(suggested_par(tally(0, 9, 0), 7), 0);
        // Capped.
        assert_eq!(suggested_par(tally(u32::MAX, 0, 0), 7), MAX_PAR_UNITS);
    }

    #[test]
    fn buckets_are_quarter_hours_from_the_epoch() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        assert_eq!(bucket_of(at(0)), 0);
        assert_eq!(bucket_of(at(899)), 0);
        assert_eq!(bucket_of(at(900)), 1);
        assert_eq!(bucket_of(at(-1)), -1);
        assert_eq!(first_bucket_from(at(0)), 0);
        assert_eq!(first_bucket_from(at(1)), 1);
        assert_eq!(first_bucket_from(at(900)), 1);
    }
}
