//! Translation: a parsed, authenticated batch plus the fridge's cursor and a
//! read-only view of the node's state in; the new cursor, facts in the
//! domain's language and the answer for the fridge out.
//!
//! This module owns the meaning of reports — what a door session with a
//! pickup code is, when warm becomes an excursion, when a count becomes a
//! shortage. It does not own the domain's reaction: the node maps each
//! [`FridgeFact`] to events (and decides, say, to quarantine on an
//! excursion). Nothing here reads a clock; `now` is an argument.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use protocol::orders::OrderId;
use protocol::MealId;
use serde::{Deserialize, Serialize};

use crate::report::{Batch, DoorActor, DoorSession, ReportBody, Scan};
use crate::sequence::{Arrival, SeqRange, SequenceState};
use crate::stock::StockModel;

/// Safe limit for chilled food, in milli-degrees Celsius (5 °C).
pub const TEMP_LIMIT_DEFAULT_MILLI_C: i32 = 5_000;
/// How long a fridge may stay above the limit before its meals are unsafe,
/// in seconds (15 min: a restock with the door open must not trip it).
pub const TEMP_ALLOWED_DEFAULT_SECS: i64 = 15 * 60;
/// How long a fridge may stay silent before it is reported offline, in
/// seconds. Firmware sends at least an empty batch every minute.
pub const SILENCE_ALLOWED_DEFAULT_SECS: i64 = 10 * 60;
/// Most gap ranges listed in a batch answer; the rest are still tracked.
pub const MAX_GAPS_IN_ANSWER: usize = 32;

/// Everything the ACL remembers about one fridge between batches. The node
/// persists it with the events of the batch that produced it, atomically,
/// so a crash never applies a batch's facts without its cursor or back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FridgeCursor {
    pub sequence: SequenceState,
    pub stock: StockModel,
    pub temperature: TemperatureState,
    /// When the node last accepted a batch from this fridge (node clock).
    pub last_seen: Option<DateTime<Utc>>,
}

/// The temperature story so far, carried across batches because an
/// excursion is usually longer than one upload interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemperatureState {
    /// Number of the newest temperature sample applied.
    pub last_seq: u64,
    pub excursion: Option<Excursion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excursion {
    /// First sample above the limit (node clock).
    pub since: DateTime<Utc>,
    pub max_milli_c: i32,
    /// Whether [`FridgeFact::TemperatureExcursion`] was emitted for it.
    pub alerted: bool,
}

/// Temperature rule for one fridge (its meals may need a colder limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemperaturePolicy {
    pub limit_milli_c: i32,
    pub allowed: Duration,
}

impl Default for TemperaturePolicy {
    fn default() -> Self {
        TemperaturePolicy {
            limit_milli_c: TEMP_LIMIT_DEFAULT_MILLI_C,
            allowed: Duration::seconds(TEMP_ALLOWED_DEFAULT_SECS),
        }
    }
}

/// Units of one meal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MealUnits {
    pub meal_id: MealId,
    pub units: u32,
}

/// An order that holds stock in this fridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrder {
    pub order_id: OrderId,
    /// Set once purchased; held and paying orders have none yet.
    pub pickup_code: Option<String>,
    pub items: Vec<MealUnits>,
}

/// What the node knows about the fridge, read-only, as of before the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FridgeView {
    /// Units on hand per meal (the node's stock projection).
    pub on_hand: BTreeMap<MealId, u32>,
    /// Units reserved per meal by open orders.
    pub reserved: BTreeMap<MealId, u32>,
    /// Every order holding stock here, in the order shortages should be
    /// served: the first orders get the units that are there.
    pub open_orders: Vec<OpenOrder>,
    pub temperature: TemperaturePolicy,
    /// Whether the catalog shows the fridge offline.
    pub offline: bool,
}

/// Why a stock level was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockCause {
    Scan,
    DoorSession,
}

/// Why units left without a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShrinkageReason {
    /// The door opened without a code or badge.
    NoCredentials,
    /// A pickup code that matches no open purchased order (expired,
    /// already used, or guessed).
    UnknownCode { code: String },
    /// The customer took more than the order holds.
    BeyondOrder { order_id: OrderId },
}

/// A fact about a fridge, in the domain's language. The node maps each to
/// events, in order: for one report, the business fact (pickup, refill…)
/// comes before the `StockCounted` it caused, so the absolute count lands
/// last and overrides whatever the node's own bookkeeping did to `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FridgeFact {
    /// The catalog showed the fridge offline and it has spoken again.
    FridgeOnline { at: DateTime<Utc> },
    /// Absolute units of a meal in the fridge → `MealStockUpdated`
    /// (`source: Scan`). Only emitted when it differs from the node's count.
    StockCounted {
        meal_id: MealId,
        on_hand: u32,
        at: DateTime<Utc>,
        cause: StockCause,
    },
    /// A tagged scan saw units past their best-before; they are still in
    /// `on_hand` and should not be sold.
    ExpiredOnShelf {
        meal_id: MealId,
        units: u32,
        at: DateTime<Utc>,
    },
    /// The fridge holds fewer units than open orders reserve. `orders` are
    /// the ones the units on hand do not cover (in [`FridgeView::open_orders`]
    /// order): flag them and tell their customers before they walk there.
    ShortageDetected {
        meal_id: MealId,
        on_hand: u32,
        committed: u32,
        orders: Vec<OrderId>,
        at: DateTime<Utc>,
    },
    /// A customer opened the door with the order's pickup code and took its
    /// meals → `OrderPickedUp`. `missing` lists ordered units left behind.
    PickedUp {
        order_id: OrderId,
        pickup_code: String,
        items: Vec<MealUnits>,
        missing: Vec<MealUnits>,
        at: DateTime<Utc>,
    },
    /// The pickup code opened the door but none of the order's meals were
    /// taken (often a shortage seen at the shelf). The order stays open.
    PickupNothingTaken {
        order_id: OrderId,
        pickup_code: String,
        at: DateTime<Utc>,
    },
    /// Units put into the fridge. `by` is staff for a refill; anything else
    /// is an unexpected addition (a customer putting a meal back).
    Refilled {
        meal_id: MealId,
        units: u32,
        by: DoorActor,
        at: DateTime<Utc>,
    },
    /// Staff took units out (expired, damaged, moved to another fridge).
    Withdrawn {
        meal_id: MealId,
        units: u32,
        badge: String,
        at: DateTime<Utc>,
    },
    /// Units left the fridge unpaid.
    Shrinkage {
        meal_id: MealId,
        units: u32,
        reason: ShrinkageReason,
        at: DateTime<Utc>,
    },
    /// Above the limit for longer than allowed: the meals are not safe →
    /// quarantine them, alert the kitchen.
    TemperatureExcursion {
        since: DateTime<Utc>,
        confirmed_at: DateTime<Utc>,
        max_milli_c: i32,
        limit_milli_c: i32,
    },
    /// Back at or below the limit after an excursion. Informational: it
    /// does not make the quarantined meals safe again.
    TemperatureRecovered {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        max_milli_c: i32,
    },
    /// Nothing heard for longer than allowed (see [`check_silence`]).
    FridgeOffline {
        last_seen: DateTime<Utc>,
        silent_for_secs: i64,
    },
}

/// The `202` answer to the fridge, and what the node logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// Reports that took effect.
    pub applied: u32,
    /// Reports seen before (resends, replays).
    pub duplicate: u32,
    /// Reports superseded by newer ones (an older scan or temperature
    /// sample), or too late to place.
    pub stale: u32,
    /// Highest report number received so far.
    pub highest_seq: u64,
    /// Report numbers still missing below it, oldest first (at most
    /// [`MAX_GAPS_IN_ANSWER`]): firmware that still has them resends them.
    pub missing: Vec<SeqRange>,
    /// The fridge clock minus the node clock at upload, in seconds.
    pub clock_offset_secs: i64,
}

/// The result of translating one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// Persist with the events derived from `facts`, in one write.
    pub cursor: FridgeCursor,
    pub facts: Vec<FridgeFact>,
    pub outcome: BatchOutcome,
}

/// Reports a fridge silent for longer than `allowed`. `None` if it was
/// never heard from (the node decides what an unheard fridge means).
pub fn check_silence(
    last_seen: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    allowed: Duration,
) -> Option<FridgeFact> {
    let last_seen = last_seen?;
    let silent = now - last_seen;
    (silent > allowed).then(|| FridgeFact::FridgeOffline {
        last_seen,
        silent_for_secs: silent.num_seconds(),
    })
}

/// Translates an authenticated batch (see [`crate::receive`] for the whole
/// pipeline). Pure: the same inputs give the same outputs.
pub fn translate(
    cursor: &FridgeCursor,
    view: &FridgeView,
    batch: &Batch,
    now: DateTime<Utc>,
) -> Translation {
    let mut t = Translator {
        cursor: cursor.clone(),
        view,
        now,
        // Fridge time + offset = node time. Measured per batch because the
        // drift changes; the upload's own latency is noise next to it.
        offset: now - batch.sent_at,
        on_hand: view.on_hand.clone(),
        reserved: view.reserved.clone(),
        picked: BTreeSet::new(),
        recounted: BTreeSet::new(),
        facts: Vec::new(),
        applied: 0,
        duplicate: 0,
        stale: 0,
    };
    if view.offline {
        t.facts.push(FridgeFact::FridgeOnline { at: now });
    }
    // Sequence order inside the batch: firmware may flush its queues in any
    // order, and within one batch that must not matter either.
    let mut reports: Vec<_> = batch.reports.iter().collect();
    reports.sort_by_key(|r| r.seq);
    for report in reports {
        // `checked_`: a hand-built batch with an absurd time must not panic.
        let at = report
            .at
            .checked_add_signed(t.offset)
            .unwrap_or(now)
            .min(now);
        match t.cursor.sequence.admit(report.seq) {
            Arrival::Duplicate => t.duplicate += 1,
            Arrival::TooOld => t.stale += 1,
            Arrival::New | Arrival::Late => {
                let took_effect = match &report.body {
                    ReportBody::Scan(scan) => t.scan(report.seq, scan, at),
                    ReportBody::Door(door) => t.door(report.seq, door, at),
                    ReportBody::Temperature { milli_c } => t.temperature(report.seq, *milli_c, at),
                };
                if took_effect {
                    t.applied += 1;
                } else {
                    t.stale += 1;
                }
            }
        }
    }
    t.shortages();
    t.cursor.last_seen = Some(now);
    let outcome = BatchOutcome {
        applied: t.applied,
        duplicate: t.duplicate,
        stale: t.stale,
        highest_seq: t.cursor.sequence.highest(),
        missing: t
            .cursor
            .sequence
            .missing()
            .iter()
            .take(MAX_GAPS_IN_ANSWER)
            .copied()
            .collect(),
        clock_offset_secs: -t.offset.num_seconds(),
    };
    Translation {
        cursor: t.cursor,
        facts: t.facts,
        outcome,
    }
}

struct Translator<'a> {
    cursor: FridgeCursor,
    view: &'a FridgeView,
    now: DateTime<Utc>,
    offset: Duration,
    /// The node's counts as they will be after the facts emitted so far:
    /// `StockCounted` is only emitted where the fridge disagrees with them.
    on_hand: BTreeMap<MealId, u32>,
    reserved: BTreeMap<MealId, u32>,
    /// Orders picked up earlier in this batch (the view still lists them).
    picked: BTreeSet<OrderId>,
    /// Meals whose count changed in this batch: the shortage candidates.
    recounted: BTreeSet<MealId>,
    facts: Vec<FridgeFact>,
    applied: u32,
    duplicate: u32,
    stale: u32,
}

impl<'a> Translator<'a> {
    fn node_on_hand(&self, meal: &str) -> u32 {
        self.on_hand.get(meal).copied().unwrap_or(0)
    }

    fn scan(&mut self, seq: u64, scan: &Scan, at: DateTime<Utc>) -> bool {
        // A full inventory speaks for every meal anyone thought was here.
        let mut meals: BTreeSet<MealId> = self.cursor.stock.meals().cloned().collect();
        meals.extend(self.on_hand.keys().cloned());
        meals.extend(scan.counts.keys().cloned());
        if !self.cursor.stock.apply_scan(seq, &scan.counts) {
            return false;
        }
        self.sync(&meals, at, StockCause::Scan);
        for (meal_id, units) in &scan.expired {
            self.facts.push(FridgeFact::ExpiredOnShelf {
                meal_id: meal_id.clone(),
                units: *units,
                at,
            });
        }
        true
    }

    fn door(&mut self, seq: u64, door: &DoorSession, at: DateTime<Utc>) -> bool {
        let mut touched: BTreeSet<MealId> = door
            .taken
            .keys()
            .chain(door.added.keys())
            .cloned()
            .collect();
        let mut unpaid: Vec<(MealId, u32, ShrinkageReason)> = Vec::new();
        let mut pickup: Option<&OpenOrder> = None;

        match &door.who {
            DoorActor::PickupCode(code) => match self.find_order(code) {
                Some(order) => {
                    touched.extend(order.items.iter().map(|i| i.meal_id.clone()));
                    pickup = Some(order);
                }
                None => unpaid.extend(door.taken.iter().map(|(m, n)| {
                    let reason = ShrinkageReason::UnknownCode { code: code.clone() };
                    (m.clone(), *n, reason)
                })),
            },
            DoorActor::Staff(badge) => {
                for (meal_id, units) in &door.taken {
                    self.facts.push(FridgeFact::Withdrawn {
                        meal_id: meal_id.clone(),
                        units: *units,
                        badge: badge.clone(),
                        at,
                    });
                }
            }
            DoorActor::Unknown => unpaid.extend(
                door.taken
                    .iter()
                    .map(|(m, n)| (m.clone(), *n, ShrinkageReason::NoCredentials)),
            ),
        }

        // Adopt the node's counts before the pickup below changes them: they
        // are what the fridge's movements start from.
        for meal in &touched {
            let node = self.node_on_hand(meal);
            self.cursor.stock.adopt(meal, node);
        }

        if let Some(order) = pickup {
            unpaid.extend(self.pick_up(order, door, at));
        }
        for (meal_id, units, reason) in unpaid {
            self.facts.push(FridgeFact::Shrinkage {
                meal_id,
                units,
                reason,
                at,
            });
        }
        for (meal_id, units) in &door.added {
            self.facts.push(FridgeFact::Refilled {
                meal_id: meal_id.clone(),
                units: *units,
                by: door.who.clone(),
                at,
            });
        }

        let mut moved: BTreeMap<MealId, i64> = BTreeMap::new();
        for (meal, units) in &door.added {
            *moved.entry(meal.clone()).or_default() += i64::from(*units);
        }
        for (meal, units) in &door.taken {
            *moved.entry(meal.clone()).or_default() -= i64::from(*units);
        }
        // A session numbered before the newest scan is already counted by
        // it; its business meaning (pickup, shrinkage) still stands.
        self.cursor.stock.apply_door(seq, moved);
        self.sync(&touched, at, StockCause::DoorSession);
        true
    }

    fn find_order(&self, code: &str) -> Option<&'a OpenOrder> {
        let view = self.view;
        view.open_orders
            .iter()
            .find(|o| o.pickup_code.as_deref() == Some(code) && !self.picked.contains(&o.order_id))
    }

    /// Emits the pickup and returns the units taken beyond the order.
    fn pick_up(
        &mut self,
        order: &OpenOrder,
        door: &DoorSession,
        at: DateTime<Utc>,
    ) -> Vec<(MealId, u32, ShrinkageReason)> {
        let mut ordered: BTreeMap<&MealId, u32> = BTreeMap::new();
        for item in &order.items {
            *ordered.entry(&item.meal_id).or_default() += item.units;
        }
        let mut items = Vec::new();
        let mut missing = Vec::new();
        for (meal, want) in &ordered {
            let got = door.taken.get(*meal).copied().unwrap_or(0).min(*want);
            if got > 0 {
                items.push(MealUnits {
                    meal_id: (*meal).clone(),
                    units: got,
                });
            }
            if got < *want {
                missing.push(MealUnits {
                    meal_id: (*meal).clone(),
                    units: want - got,
                });
            }
        }
        let extra = door
            .taken
            .iter()
            .filter_map(|(meal, took)| {
                let want = ordered.get(meal).copied().unwrap_or(0);
                (*took > want).then(|| {
                    let reason = ShrinkageReason::BeyondOrder {
                        order_id: order.order_id.clone(),
                    };
                    (meal.clone(), took - want, reason)
                })
            })
            .collect();
        let code = order.pickup_code.clone().unwrap_or_default();
        if items.is_empty() {
            self.facts.push(FridgeFact::PickupNothingTaken {
                order_id: order.order_id.clone(),
                pickup_code: code,
                at,
            });
            return extra;
        }
        self.facts.push(FridgeFact::PickedUp {
            order_id: order.order_id.clone(),
            pickup_code: code,
            items,
            missing,
            at,
        });
        self.picked.insert(order.order_id.clone());
        // Mirror what the node does on `OrderPickedUp`: the order's units
        // leave `on_hand` and `reserved`.
        for (meal, want) in ordered {
            if let Some(n) = self.on_hand.get_mut(meal) {
                *n = n.saturating_sub(want);
            }
            if let Some(n) = self.reserved.get_mut(meal) {
                *n = n.saturating_sub(want);
            }
        }
        extra
    }

    /// Emits `StockCounted` wherever the fridge now disagrees with the node.
    fn sync(&mut self, meals: &BTreeSet<MealId>, at: DateTime<Utc>, cause: StockCause) {
        for meal in meals {
            let fridge = self.cursor.stock.on_hand(meal);
            if fridge != self.node_on_hand(meal) {
                self.on_hand.insert(meal.clone(), fridge);
                self.recounted.insert(meal.clone());
                self.facts.push(FridgeFact::StockCounted {
                    meal_id: meal.clone(),
                    on_hand: fridge,
                    at,
                    cause,
                });
            }
        }
    }

    fn temperature(&mut self, seq: u64, milli_c: i32, at: DateTime<Utc>) -> bool {
        let state = &mut self.cursor.temperature;
        if seq < state.last_seq {
            return false;
        }
        state.last_seq = seq;
        let policy = self.view.temperature;
        if milli_c > policy.limit_milli_c {
            let ex = state.excursion.get_or_insert(Excursion {
                since: at,
                max_milli_c: milli_c,
                alerted: false,
            });
            ex.max_milli_c = ex.max_milli_c.max(milli_c);
            if !ex.alerted && at - ex.since >= policy.allowed {
                ex.alerted = true;
                self.facts.push(FridgeFact::TemperatureExcursion {
                    since: ex.since,
                    confirmed_at: at,
                    max_milli_c: ex.max_milli_c,
                    limit_milli_c: policy.limit_milli_c,
                });
            }
        } else if let Some(ex) = state.excursion.take() {
            // A short spike (door open during a refill) ends quietly.
            if ex.alerted {
                self.facts.push(FridgeFact::TemperatureRecovered {
                    since: ex.since,
                    until: at,
                    max_milli_c: ex.max_milli_c,
                });
            }
        }
        true
    }

    /// Checks each recounted meal against its reservations once, at the end
    /// of the batch, so a take-then-refill inside one upload is not a
    /// shortage.
    fn shortages(&mut self) {
        let recounted = std::mem::take(&mut self.recounted);
        for meal in recounted {
            let on_hand = self.node_on_hand(&meal);
            let committed = self.reserved.get(&meal).copied().unwrap_or(0);
            if on_hand >= committed {
                continue;
            }
            let mut left = on_hand;
            let mut orders = Vec::new();
            for order in &self.view.open_orders {
                if self.picked.contains(&order.order_id) {
                    continue;
                }
                let want: u32 = order
                    .items
                    .iter()
                    .filter(|i| i.meal_id == meal)
                    .map(|i| i.units)
                    .sum();
                if want == 0 {
                    continue;
                }
                // An order the units cannot cover leaves them to the next
                // one: better one whole order than two half ones.
                if left >= want {
                    left -= want;
                } else {
                    orders.push(order.order_id.clone());
                }
            }
            self.facts.push(FridgeFact::ShortageDetected {
                meal_id: meal,
                on_hand,
                committed,
                orders,
                at: self.now,
            });
        }
    }
}
