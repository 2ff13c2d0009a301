//! Back-in-stock waitlists: customers wait for a meal at a fridge (or at
//! the fridges near a point); when units become available they are offered
//! short holds in order of arrival.
//!
//! The rules, all decided from the state and `now` (the node's timer
//! submits [`WaitlistCommand::Tick`] when [`due`] says so, like the other
//! clock-driven decisions):
//! - *Offers*: for every unit available at an online fridge an entry waits
//!   at, the first waiting entry (by arrival) gets one hold there,
//!   `HoldOffered` (nearest fridge of the entry first). A held unit is off
//!   sale for everyone else (`StockLevel::held`), so a unit is never held
//!   for two customers, nor held and sold.
//! - *Use*: the holder's order for that meal at that fridge counts the held
//!   unit as available to it and records `HoldUsed` before its
//!   `MealStockReserved` (held −1, reserved +1 in one batch).
//! - *Lapse*: a hold not used by its `until` lapses (`HoldLapsed`): the unit
//!   is on sale again and, in the same tick, offered to the next in line.
//!   A lapsed entry is done: its customer had their chance.
//! - *Expiry*: an entry waits at most `entry_ttl` (`Expired`); leaving
//!   gives a hold back (`Left`).
//!
//! Stock rises (a refill scan, a kitchen placement, a released
//! reservation, a lapsed hold) are seen by the next tick, at most a tick
//! after the batch that made them: nothing here is on the order path but
//! the hold's use.

use chrono::{DateTime, Duration, Utc};
use imbl::{OrdMap, Vector};
use protocol::catalog::FridgeStatus;
use protocol::geo::GeoPoint;
use protocol::orders::OrderId;
use protocol::waitlist::{
    HoldView, JoinWaitlist, WaitlistEntryView, WaitlistEvent, WaitlistStatus, MAX_WAITLIST_FRIDGES,
};
use protocol::{Event, FridgeId, MealId, WaitlistId};

use crate::{Context, DistrictState, DomainError, Recorded};

/// Default time a hold keeps its unit, in seconds.
pub const HOLD_DEFAULT_SECS: u32 = 5 * 60;
/// Default time an entry waits, in seconds.
pub const ENTRY_TTL_DEFAULT_SECS: u32 = 24 * 3600;
/// Most entries a customer may have waiting or holding at once.
pub const MAX_OPEN_ENTRIES_PER_CUSTOMER: usize = 10;
/// Finished entries kept per customer (for `GET /v1/waitlist`).
pub const MAX_FINISHED_ENTRIES_PER_CUSTOMER: usize = 20;

/// The waitlist's rules from the node's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitlistPolicy {
    pub hold: Duration,
    pub entry_ttl: Duration,
}

impl Default for WaitlistPolicy {
    fn default() -> Self {
        WaitlistPolicy {
            hold: Duration::seconds(HOLD_DEFAULT_SECS.into()),
            entry_ttl: Duration::seconds(ENTRY_TTL_DEFAULT_SECS.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitlistCommand {
    Join {
        entry_id: WaitlistId,
        customer: String,
        request: JoinWaitlist,
        policy: WaitlistPolicy,
    },
    /// `customer` is `None` when an admin acts.
    Leave {
        entry_id: WaitlistId,
        customer: Option<String>,
    },
    /// Lapses, expiries and offers due at `Context::now`.
    Tick { policy: WaitlistPolicy },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub fridge_id: FridgeId,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub entry_id: WaitlistId,
    pub customer: String,
    pub meal_id: MealId,
    pub fridges: Vec<FridgeId>,
    pub joined_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: WaitlistStatus,
    pub hold: Option<Hold>,
    pub order_id: Option<OrderId>,
}

impl Entry {
    fn is_open(&self) -> bool {
        matches!(self.status, WaitlistStatus::Waiting | WaitlistStatus::Held)
    }
}

/// Entries, the line per meal and each customer's entries.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Waitlist {
    entries: OrdMap<WaitlistId, Entry>,
    /// Waiting entries per meal, first in line first.
    lines: OrdMap<MealId, Vector<WaitlistId>>,
    /// Entries holding a unit.
    holding: OrdMap<WaitlistId, ()>,
    by_customer: OrdMap<String, Vector<WaitlistId>>,
}

impl Waitlist {
    pub fn entry(&self, entry_id: &str) -> Option<&Entry> {
        self.entries.get(entry_id)
    }

    /// Whether anyone waits or holds (the common case is no one: then the
    /// order path and the timer skip the waitlist at once).
    pub fn is_idle(&self) -> bool {
        self.lines.is_empty() && self.holding.is_empty()
    }

    /// The customer's entries, newest first.
    pub fn of_customer<'a>(&'a self, customer: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.by_customer
            .get(customer)
            .into_iter()
            .flat_map(|ids| ids.iter().rev())
            .filter_map(|id| self.entries.get(id))
    }

    /// The entries holding a unit of `meal_id` at `fridge_id` for `customer`.
    pub fn holds_of<'a>(
        &'a self,
        customer: &'a str,
        fridge_id: &'a str,
        meal_id: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.of_customer(customer).filter(move |e| {
            e.status == WaitlistStatus::Held
                && e.meal_id.as_str() == meal_id
                && e.hold
                    .as_ref()
                    .is_some_and(|h| h.fridge_id.as_str() == fridge_id)
        })
    }

    /// Every entry holding a unit.
    pub fn holding(&self) -> impl Iterator<Item = &Entry> {
        self.holding.keys().filter_map(|id| self.entries.get(id))
    }

    /// The 1-based place in its meal's line of a waiting entry.
    pub fn position(&self, entry: &Entry) -> Option<u32> {
        let line = self.lines.get(&entry.meal_id)?;
        let index = line.iter().position(|id| *id == entry.entry_id)?;
        u32::try_from(index + 1).ok()
    }

    pub fn view(&self, entry: &Entry) -> WaitlistEntryView {
        WaitlistEntryView {
            entry_id: entry.entry_id.clone(),
            meal_id: entry.meal_id.clone(),
            fridges: entry.fridges.clone(),
            status: entry.status,
            position: self.position(entry),
            joined_at: entry.joined_at,
            expires_at: entry.expires_at,
            hold: entry.hold.as_ref().map(|h| HoldView {
                fridge_id: h.fridge_id.clone(),
                until: h.until,
            }),
            order_id: entry.order_id.clone(),
        }
    }

    fn remove_from_line(&mut self, meal_id: &MealId, entry_id: &WaitlistId) {
        if let Some(line) = self.lines.get_mut(meal_id) {
            line.retain(|id| id != entry_id);
            if line.is_empty() {
                self.lines.remove(meal_id);
            }
        }
    }

    /// Keeps a customer's finished entries bounded, oldest dropped first.
    fn prune(&mut self, customer: &str) {
        let Some(ids) = self.by_customer.get(customer).cloned() else {
            return;
        };
        let finished: Vec<WaitlistId> = ids
            .iter()
            .filter(|id| self.entries.get(*id).is_some_and(|e| !e.is_open()))
            .cloned()
            .collect();
        let excess = finished
            .len()
            .saturating_sub(MAX_FINISHED_ENTRIES_PER_CUSTOMER);
        for id in finished.into_iter().take(excess) {
            self.entries.remove(&id);
            if let Some(ids) = self.by_customer.get_mut(customer) {
                ids.retain(|x| *x != id);
            }
        }
    }
}

pub fn decide(
    state: &DistrictState,
    cmd: WaitlistCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let events = match cmd {
        WaitlistCommand::Join {
            entry_id,
            customer,
            request,
            policy,
        } => join(state, entry_id, customer, request, policy, ctx)?,
        WaitlistCommand::Leave { entry_id, customer } => leave(state, entry_id, customer)?,
        WaitlistCommand::Tick { policy } => tick(state, ctx.now, policy),
    };
    Ok(events.into_iter().map(Event::Waitlist).collect())
}

fn join(
    state: &DistrictState,
    entry_id: WaitlistId,
    customer: String,
    request: JoinWaitlist,
    policy: WaitlistPolicy,
    ctx: &Context,
) -> Result<Vec<WaitlistEvent>, DomainError> {
    request
        .validate()
        .map_err(|e| DomainError::Invalid(e.to_string()))?;
    let meal_id = request.meal_id.clone();
    if state.catalog.meal(&meal_id).is_none() {
        return Err(DomainError::UnknownMeal(meal_id));
    }
    let fridges = fridges_of(state, &request)?;
    let available: Vec<(FridgeId, u32)> = fridges
        .iter()
        .map(|f| (f.clone(), free_at(state, f, &meal_id)))
        .filter(|(_, units)| *units > 0)
        .collect();
    if !available.is_empty() {
        return Err(DomainError::MealAvailable { meal_id, available });
    }
    let wl = &state.waitlist;
    let open: Vec<&Entry> = wl.of_customer(&customer).filter(|e| e.is_open()).collect();
    if let Some(same) = open
        .iter()
        .find(|e| e.meal_id == meal_id && e.fridges == fridges)
    {
        return Err(DomainError::Invalid(format!(
            "you are already waiting for {meal_id} there (entry {})",
            same.entry_id
        )));
    }
    if open.len() >= MAX_OPEN_ENTRIES_PER_CUSTOMER {
        return Err(DomainError::Invalid(format!(
            "at most {MAX_OPEN_ENTRIES_PER_CUSTOMER} waitlist entries may be open at once; leave one first"
        )));
    }
    Ok(vec![WaitlistEvent::Joined {
        entry_id,
        customer,
        meal_id,
        fridges,
        expires_at: ctx.now + policy.entry_ttl,
    }])
}

/// The fridges an entry waits at: the one named, or the nearest within the
/// area (at most [`MAX_WAITLIST_FRIDGES`]).
fn fridges_of(state: &DistrictState, request: &JoinWaitlist) -> Result<Vec<FridgeId>, DomainError> {
    if let Some(fridge_id) = &request.fridge_id {
        return match state.catalog.fridge(fridge_id) {
            Some(_) => Ok(vec![fridge_id.clone()]),
            None => Err(DomainError::UnknownFridge(fridge_id.clone())),
        };
    }
    let Some(near) = request.near else {
        return Err(DomainError::Invalid("fridge_id or near is required".into()));
    };
    let point =
        GeoPoint::new(near.lat, near.lon).map_err(|e| DomainError::Invalid(e.to_string()))?;
    let mut within: Vec<(f64, FridgeId)> = state
        .catalog
        .fridges()
        .values()
        .map(|f| (f.position.distance_m(&point), f.fridge_id.clone()))
        .filter(|(d, _)| *d <= f64::from(near.radius_m))
        .collect();
    within.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    within.truncate(MAX_WAITLIST_FRIDGES);
    if within.is_empty() {
        return Err(DomainError::Invalid(format!(
            "no fridge of this district is within {} m of that point",
            near.radius_m
        )));
    }
    Ok(within.into_iter().map(|(_, f)| f).collect())
}

/// Units of `meal_id` a new customer could take at `fridge_id` now (none at
/// a fridge that is not online).
fn free_at(state: &DistrictState, fridge_id: &FridgeId, meal_id: &MealId) -> u32 {
    if !state.catalog.fridge_is(fridge_id, FridgeStatus::Online) {
        return 0;
    }
    state.stock.level(fridge_id, meal_id).available()
}

fn leave(
    state: &DistrictState,
    entry_id: WaitlistId,
    customer: Option<String>,
) -> Result<Vec<WaitlistEvent>, DomainError> {
    let entry = state
        .waitlist
        .entry(&entry_id)
        .filter(|e| customer.as_deref().is_none_or(|c| c == e.customer))
        .ok_or_else(|| DomainError::UnknownWaitlistEntry(entry_id.clone()))?;
    if !entry.is_open() {
        return Err(DomainError::WaitlistEntryClosed {
            status: entry.status,
        });
    }
    Ok(vec![WaitlistEvent::Left { entry_id }])
}

/// Whether a tick at `now` would record anything: a hold or an entry ran
/// out, or a unit is free where someone waits.
pub fn due(state: &DistrictState, now: DateTime<Utc>) -> bool {
    let wl = &state.waitlist;
    if wl.is_idle() {
        return false;
    }
    wl.holding()
        .any(|e| e.hold.as_ref().is_some_and(|h| h.until <= now))
        || wl.lines.iter().any(|(meal_id, line)| {
            line.iter().filter_map(|id| wl.entries.get(id)).any(|e| {
                e.expires_at <= now || e.fridges.iter().any(|f| free_at(state, f, meal_id) > 0)
            })
        })
}

/// Lapses, then expiries, then offers for every free unit, first in line
/// first; the free units count the ones the lapses give back.
fn tick(state: &DistrictState, now: DateTime<Utc>, policy: WaitlistPolicy) -> Vec<WaitlistEvent> {
    let wl = &state.waitlist;
    let mut events = vec![];
    // Units given back or taken in this tick, per (fridge, meal).
    let mut delta: std::collections::BTreeMap<(FridgeId, MealId), i64> = Default::default();
    for e in wl.holding() {
        if let Some(h) = e.hold.as_ref().filter(|h| h.until <= now) {
            *delta
                .entry((h.fridge_id.clone(), e.meal_id.clone()))
                .or_default() += 1;
            events.push(WaitlistEvent::HoldLapsed {
                entry_id: e.entry_id.clone(),
            });
        }
    }
    for (meal_id, line) in wl.lines.iter() {
        for e in line.iter().filter_map(|id| wl.entries.get(id)) {
            if e.expires_at <= now {
                events.push(WaitlistEvent::Expired {
                    entry_id: e.entry_id.clone(),
                });
                continue;
            }
            let offer = e.fridges.iter().find(|f| {
                let given = delta
                    .get(&((*f).clone(), meal_id.clone()))
                    .copied()
                    .unwrap_or(0);
                i64::from(free_at(state, f, meal_id)) + given > 0
            });
            if let Some(fridge_id) = offer {
                *delta
                    .entry((fridge_id.clone(), meal_id.clone()))
                    .or_default() -= 1;
                events.push(WaitlistEvent::HoldOffered {
                    entry_id: e.entry_id.clone(),
                    fridge_id: fridge_id.clone(),
                    meal_id: meal_id.clone(),
                    until: now + policy.hold,
                });
            }
        }
    }
    events
}

/// The holds an order by `customer` may use: for each line, up to its qty
/// of the customer's holds there. Returns the extra units per line (the
/// ones held for the customer) and the `HoldUsed` events to record.
pub(crate) fn holds_for_order(
    state: &DistrictState,
    customer: &str,
    request: &protocol::orders::PlaceOrder,
    order_id: &OrderId,
) -> (Vec<u32>, Vec<Event>) {
    let wl = &state.waitlist;
    let items = &request.items;
    if wl.holding.is_empty() {
        return (vec![0; items.len()], vec![]);
    }
    let mut extra = Vec::with_capacity(items.len());
    let mut events = vec![];
    for item in items {
        let mine: Vec<&Entry> = wl
            .holds_of(customer, &request.fridge_id, &item.meal_id)
            .take(item.qty as usize)
            .collect();
        extra.push(u32::try_from(mine.len()).unwrap_or(0));
        events.extend(mine.into_iter().map(|e| {
            Event::Waitlist(WaitlistEvent::HoldUsed {
                entry_id: e.entry_id.clone(),
                order_id: order_id.clone(),
            })
        }));
    }
    (extra, events)
}

/// Applies waitlist events; a hold's start and end move the stock's
/// `held` too (this handler's second area, named here). Returns whether
/// what the catalog shows changed.
pub(crate) fn evolve(state: &mut DistrictState, e: &WaitlistEvent, rec: Recorded) -> bool {
    let wl = &mut state.waitlist;
    match e {
        WaitlistEvent::Joined {
            entry_id,
            customer,
            meal_id,
            fridges,
            expires_at,
        } => {
            let entry = Entry {
                entry_id: entry_id.clone(),
                customer: customer.clone(),
                meal_id: meal_id.clone(),
                fridges: fridges.clone(),
                joined_at: rec.at,
                expires_at: *expires_at,
                status: WaitlistStatus::Waiting,
                hold: None,
                order_id: None,
            };
            wl.entries.insert(entry_id.clone(), entry);
            wl.lines
                .entry(meal_id.clone())
                .or_default()
                .push_back(entry_id.clone());
            wl.by_customer
                .entry(customer.clone())
                .or_default()
                .push_back(entry_id.clone());
            wl.prune(customer);
            false
        }
        WaitlistEvent::HoldOffered {
            entry_id,
            fridge_id,
            meal_id,
            until,
        } => {
            let Some(entry) = wl.entries.get_mut(entry_id) else {
                return false;
            };
            entry.status = WaitlistStatus::Held;
            entry.hold = Some(Hold {
                fridge_id: fridge_id.clone(),
                until: *until,
            });
            wl.holding.insert(entry_id.clone(), ());
            wl.remove_from_line(meal_id, entry_id);
            state.stock.hold(fridge_id, meal_id);
            true
        }
        WaitlistEvent::HoldUsed { entry_id, order_id } => {
            let order_id = Some(order_id.clone());
            finish(state, entry_id, WaitlistStatus::Ordered, order_id)
        }
        WaitlistEvent::HoldLapsed { entry_id } => {
            finish(state, entry_id, WaitlistStatus::Lapsed, None)
        }
        WaitlistEvent::Left { entry_id } => finish(state, entry_id, WaitlistStatus::Left, None),
        WaitlistEvent::Expired { entry_id } => {
            finish(state, entry_id, WaitlistStatus::Expired, None)
        }
    }
}

/// The entry ends: out of its line, and its hold's unit (if any) no longer
/// held. Returns whether a unit was given back (the catalog changed).
fn finish(
    state: &mut DistrictState,
    entry_id: &WaitlistId,
    status: WaitlistStatus,
    order_id: Option<OrderId>,
) -> bool {
    let wl = &mut state.waitlist;
    let Some(entry) = wl.entries.get_mut(entry_id) else {
        return false;
    };
    if !entry.is_open() {
        return false;
    }
    entry.status = status;
    entry.order_id = order_id;
    let meal_id = entry.meal_id.clone();
    let held = entry
        .hold
        .clone()
        .filter(|_| wl.holding.contains_key(entry_id));
    wl.holding.remove(entry_id);
    wl.remove_from_line(&meal_id, entry_id);
    match held {
        Some(h) => {
            state.stock.unhold(&h.fridge_id, &meal_id);
            true
        }
        None => false,
    }
}
