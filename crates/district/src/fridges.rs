//! Fridges through the anti-corruption layer: telemetry batches, silence,
//! quarantine.
//!
//! The HTTP adapter authenticates and parses a batch with `fridge_acl`
//! (parallel, before the writer); this module translates it against the
//! current state — the fridge's cursor and a [`FridgeView`] built here — and
//! maps the ACL's facts to the district's events. The ACL says what a report
//! means; this module decides what the district does about it (quarantine on
//! an excursion, flag orders on a shortage, complete a pickup). Pure, like
//! the rest of the crate. The fridge's secrets and cursor live in
//! [`crate::links`]; its status in the catalog; its shelves in the stock.

use std::collections::BTreeSet;

use chrono::Duration;
use fridge_acl::{
    Batch, DoorActor, FridgeCursor, FridgeFact, FridgeView, MealUnits, OpenOrder, SecretUsed,
    ShrinkageReason, TemperaturePolicy,
};
use protocol::catalog::{Fridge, FridgeStatus};
use protocol::events::{StockMovement, StockSource};
use protocol::orders::OrderId;
use protocol::{Event, FridgeId, KitchenId, MealId};

use super::links::{Cursor, FridgeNotice};
use super::orders::OrderCommand;
use super::{Context, DistrictState, DomainError};

/// Fridges silent this long are shown offline, by default (10 min).
pub const SILENCE_ALLOWED_DEFAULT_SECS: i64 = fridge_acl::translate::SILENCE_ALLOWED_DEFAULT_SECS;

/// How the district treats its fridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FridgePolicy {
    pub temperature: TemperaturePolicy,
    pub silence_allowed: Duration,
}

impl Default for FridgePolicy {
    fn default() -> Self {
        FridgePolicy {
            temperature: TemperaturePolicy::default(),
            silence_allowed: Duration::seconds(SILENCE_ALLOWED_DEFAULT_SECS),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FridgeCommand {
    /// An authenticated, parsed batch for `fridge_id`.
    Telemetry {
        fridge_id: FridgeId,
        batch: Batch,
        secret_used: SecretUsed,
    },
    /// Marks fridges that have been silent too long offline.
    CheckSilence,
    /// An operator cleared a quarantined fridge.
    LiftQuarantine { fridge_id: FridgeId },
    /// Withhold the units of a meal whose best-before has passed.
    ExpireUnits {
        fridge_id: FridgeId,
        meal_id: MealId,
    },
}

pub fn decide(
    state: &DistrictState,
    cmd: FridgeCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    match cmd {
        FridgeCommand::Telemetry {
            fridge_id,
            batch,
            secret_used,
        } => telemetry(state, fridge_id, &batch, secret_used, ctx),
        FridgeCommand::CheckSilence => Ok(silent_fridges(state, ctx.now, &ctx.fridges)
            .into_iter()
            .map(|(fridge_id, silent_for)| Event::FridgeStatusChanged {
                fridge_id,
                status: FridgeStatus::Offline,
                reason: format!("no telemetry for {silent_for} s"),
            })
            .collect()),
        FridgeCommand::LiftQuarantine { fridge_id } => {
            let fridge = state
                .catalog
                .fridge(&fridge_id)
                .ok_or_else(|| DomainError::UnknownFridge(fridge_id.clone()))?;
            if fridge.status != FridgeStatus::Quarantined {
                return Err(DomainError::NotQuarantined(fridge_id));
            }
            // Food safety: a lift is taken only once the fridge's last
            // sample is back in range. While an excursion is open the ACL
            // has already alerted it and would not raise it again, so a
            // lift now would sell from a warm fridge. An unreadable cursor
            // says nothing about the temperature: refused as well.
            let out_of_range = match state.links.cursor(&fridge_id) {
                None => false,
                Some(Cursor::Known(c)) => c.temperature.excursion.is_some(),
                Some(Cursor::Unreadable { .. }) => true,
            };
            if out_of_range {
                return Err(DomainError::FridgeOutOfRange(fridge_id));
            }
            Ok(vec![Event::FridgeQuarantineLifted { fridge_id }])
        }
        FridgeCommand::ExpireUnits { fridge_id, meal_id } => {
            super::expiry::decide_expire(state, fridge_id, meal_id, ctx)
        }
    }
}

/// Online fridges heard from before but silent longer than allowed, with
/// how long (seconds). Also used by the timer to skip empty commands.
pub fn silent_fridges(
    state: &DistrictState,
    now: chrono::DateTime<chrono::Utc>,
    policy: &FridgePolicy,
) -> Vec<(FridgeId, i64)> {
    state
        .links
        .known_cursors()
        .filter(|(id, _)| state.catalog.fridge_is(id, FridgeStatus::Online))
        .filter_map(|(id, cursor)| {
            match fridge_acl::check_silence(cursor.last_seen, now, policy.silence_allowed) {
                Some(FridgeFact::FridgeOffline {
                    silent_for_secs, ..
                }) => Some((id.clone(), silent_for_secs)),
                _ => None,
            }
        })
        .collect()
}

/// What the ACL may know about the fridge: stock, the orders holding it
/// (oldest first), the temperature rule, whether it is shown offline.
pub fn fridge_view(state: &DistrictState, fridge_id: &str, policy: &FridgePolicy) -> FridgeView {
    let mut view = FridgeView {
        temperature: policy.temperature,
        offline: state.catalog.fridge_is(fridge_id, FridgeStatus::Offline),
        ..FridgeView::default()
    };
    for (meal_id, level) in state.stock.fridge(fridge_id).into_iter().flatten() {
        view.on_hand.insert(meal_id.clone(), level.on_hand);
        view.reserved.insert(meal_id.clone(), level.reserved);
    }
    for order in state.orders.open_at(fridge_id) {
        view.open_orders.push(OpenOrder {
            order_id: order.order_id.clone(),
            // A code exists once the order may be collected (purchased, or
            // a prepaid order placed in the fridge).
            pickup_code: order.pickup_code.clone(),
            items: order
                .lines
                .iter()
                .map(|l| MealUnits {
                    meal_id: l.meal_id.clone(),
                    units: l.qty,
                })
                .collect(),
        });
    }
    view
}

/// What the facts of one batch have decided so far.
struct Reaction<'a> {
    fridge: &'a Fridge,
    view: FridgeView,
    events: Vec<Event>,
    /// Orders already picked up in this batch (a fridge may repeat a fact).
    picked: BTreeSet<OrderId>,
    quarantined: bool,
}

fn telemetry(
    state: &DistrictState,
    fridge_id: FridgeId,
    batch: &Batch,
    secret_used: SecretUsed,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let fridge = state
        .catalog
        .fridge(&fridge_id)
        .ok_or_else(|| DomainError::UnknownFridge(fridge_id.clone()))?;
    let cursor: FridgeCursor = match state.links.cursor(&fridge_id) {
        None => FridgeCursor::default(),
        Some(Cursor::Known(c)) => (**c).clone(),
        Some(Cursor::Unreadable { reason }) => {
            return Err(DomainError::CursorUnreadable {
                fridge_id,
                reason: reason.clone(),
            })
        }
    };
    let view = fridge_view(state, &fridge_id, &ctx.fridges);
    let translation = fridge_acl::translate(&cursor, &view, batch, ctx.now);
    let mut reaction = Reaction {
        fridge,
        view,
        events: Vec::new(),
        picked: BTreeSet::new(),
        quarantined: fridge.status == FridgeStatus::Quarantined,
    };
    for fact in translation.facts {
        react(state, &mut reaction, fact, ctx);
    }
    // An excursion the ACL alerted before and that is still open, on a
    // fridge that is not quarantined (lifted while warm, before lifts
    // checked the temperature): quarantine again.
    if let Some(ex) = translation.cursor.temperature.excursion {
        if ex.alerted && !reaction.quarantined {
            reaction.quarantined = true;
            let limit = reaction.view.temperature.limit_milli_c;
            quarantine(state, &mut reaction, ex.since, ex.max_milli_c, limit);
        }
    }
    // A scan after a lift releases the units that were exposed. The ACL
    // reports a count only where it differs from the node's, so a meal the
    // scan counted unchanged is released here, at the fridge's own count.
    if !reaction.quarantined && translation.cursor.stock.scan_seq() > cursor.stock.scan_seq() {
        let counted: BTreeSet<MealId> = reaction
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MealStockUpdated { meal_id, .. } => Some(meal_id.clone()),
                _ => None,
            })
            .collect();
        for (meal_id, level) in state.stock.fridge(&fridge_id).into_iter().flatten() {
            if level.quarantined > 0 && !counted.contains(meal_id) {
                reaction.events.push(Event::MealStockUpdated {
                    fridge_id: fridge_id.clone(),
                    meal_id: meal_id.clone(),
                    on_hand: translation.cursor.stock.on_hand(meal_id),
                    source: StockSource::Scan,
                });
            }
        }
    }
    let forget_previous_secret =
        secret_used == SecretUsed::Current && state.links.previous_secret(&fridge_id).is_some();
    let mut events = reaction.events;
    events.push(Event::FridgeTelemetryReceived {
        fridge_id,
        cursor_json: serde_json::to_string(&translation.cursor)
            .map_err(|e| DomainError::Invalid(format!("cursor: {e}")))?,
        outcome_json: serde_json::to_string(&translation.outcome)
            .map_err(|e| DomainError::Invalid(format!("outcome: {e}")))?,
        forget_previous_secret,
    });
    Ok(events)
}

/// One fact of the batch, by family.
fn react(state: &DistrictState, r: &mut Reaction, fact: FridgeFact, ctx: &Context) {
    let fridge_id = r.fridge.fridge_id.clone();
    match fact {
        FridgeFact::FridgeOnline { .. } => {
            if r.fridge.status == FridgeStatus::Offline {
                r.events.push(Event::FridgeStatusChanged {
                    fridge_id,
                    status: FridgeStatus::Online,
                    reason: "telemetry again".into(),
                });
            }
        }
        FridgeFact::StockCounted {
            meal_id, on_hand, ..
        } => r.events.push(Event::MealStockUpdated {
            fridge_id,
            meal_id,
            on_hand: on_hand.min(protocol::catalog::MAX_UNITS_PER_MEAL),
            source: StockSource::Scan,
        }),
        FridgeFact::ExpiredOnShelf { meal_id, units, .. } => {
            r.events.push(Event::MealUnitsExpired {
                fridge_id,
                meal_id,
                units,
            })
        }
        FridgeFact::ShortageDetected {
            meal_id,
            on_hand,
            committed,
            orders,
            ..
        } => flag_shortage(state, r, meal_id, on_hand, committed, orders),
        FridgeFact::PickedUp {
            order_id,
            pickup_code,
            ..
        } => pick_up(state, r, order_id, pickup_code, ctx),
        FridgeFact::PickupNothingTaken { order_id, at, .. } => {
            r.events.push(Event::PickupNothingTaken {
                fridge_id,
                order_id,
                at,
            })
        }
        FridgeFact::TemperatureRecovered {
            since,
            until,
            max_milli_c,
        } => r.events.push(Event::TemperatureRecovered {
            fridge_id,
            since,
            until,
            max_milli_c,
        }),
        FridgeFact::FridgeOffline { .. } => {}
        fact @ (FridgeFact::Refilled { .. }
        | FridgeFact::Withdrawn { .. }
        | FridgeFact::Shrinkage { .. }) => r.events.extend(movement(fridge_id, fact)),
        FridgeFact::TemperatureExcursion {
            since,
            max_milli_c,
            limit_milli_c,
            ..
        } => {
            if !r.quarantined {
                r.quarantined = true;
                quarantine(state, r, since, max_milli_c, limit_milli_c);
            }
        }
    }
}

/// A door session moved units other than by a pickup: the record that
/// explains the count that follows.
fn movement(fridge_id: FridgeId, fact: FridgeFact) -> Option<Event> {
    let (meal_id, units, movement, detail) = match fact {
        FridgeFact::Refilled {
            meal_id, units, by, ..
        } => {
            let (movement, detail) = match by {
                DoorActor::Staff(badge) => (StockMovement::Refill, badge),
                DoorActor::PickupCode(code) => (StockMovement::Returned, code),
                DoorActor::Unknown => (StockMovement::Returned, String::new()),
            };
            (meal_id, i64::from(units), movement, detail)
        }
        FridgeFact::Withdrawn {
            meal_id,
            units,
            badge,
            ..
        } => (meal_id, -i64::from(units), StockMovement::Withdrawal, badge),
        FridgeFact::Shrinkage {
            meal_id,
            units,
            reason,
            ..
        } => {
            let detail = match reason {
                ShrinkageReason::NoCredentials => "no credentials".into(),
                ShrinkageReason::UnknownCode { code } => format!("unknown code {code}"),
                ShrinkageReason::BeyondOrder { order_id } => format!("beyond order {order_id}"),
            };
            (meal_id, -i64::from(units), StockMovement::Shrinkage, detail)
        }
        _ => return None,
    };
    Some(Event::StockMovementRecorded {
        fridge_id,
        meal_id: Some(meal_id),
        units,
        movement,
        detail,
    })
}

/// Tells the customers of `orders` (once per order and meal) that the
/// fridge holds fewer units than promised.
fn flag_shortage(
    state: &DistrictState,
    r: &mut Reaction,
    meal_id: MealId,
    on_hand: u32,
    committed: u32,
    orders: Vec<OrderId>,
) {
    for order_id in orders {
        let already = state
            .orders
            .get(&order_id)
            .is_some_and(|o| o.shortage.contains(&meal_id));
        if !already {
            r.events.push(Event::OrderFlagged {
                order_id,
                meal_id: meal_id.clone(),
                reason: format!(
                    "the fridge holds {on_hand} units of this meal for {committed} promised"
                ),
            });
        }
    }
}

/// A door session opened with an order's code took its meals. The order
/// decider judges it against the state before this batch: the ACL has
/// already matched the code to an open order in its view, and an order is
/// picked up at most once per batch (`picked`).
fn pick_up(
    state: &DistrictState,
    r: &mut Reaction,
    order_id: OrderId,
    pickup_code: String,
    ctx: &Context,
) {
    if !r.picked.insert(order_id.clone()) {
        return;
    }
    let pickup = OrderCommand::Pickup {
        order_id: order_id.clone(),
        pickup_code,
    };
    match super::orders::decide(state, pickup, ctx) {
        Ok(more) => r.events.extend(more),
        // The fridge saw a pickup the order book cannot take (already
        // picked up by hand, say): the count that follows still sets the
        // stock right, and the refusal is recorded for an operator.
        Err(e) => r.events.push(Event::DoorPickupRefused {
            fridge_id: r.fridge.fridge_id.clone(),
            order_id,
            reason: e.to_string(),
        }),
    }
}

/// Too warm for too long: withhold the fridge, name the kitchens whose
/// meals are in it, and tell customers holding meals there before they
/// walk over (they can cancel; paid orders are refunded).
fn quarantine(
    state: &DistrictState,
    r: &mut Reaction,
    since: chrono::DateTime<chrono::Utc>,
    max_milli_c: i32,
    limit_milli_c: i32,
) {
    let fridge_id = &r.fridge.fridge_id;
    let kitchens: BTreeSet<KitchenId> = state
        .stock
        .fridge(fridge_id)
        .into_iter()
        .flat_map(|m| m.iter())
        .filter(|(_, level)| level.on_hand > 0)
        .filter_map(|(meal_id, _)| state.catalog.meal(meal_id))
        .map(|meal| meal.spec.kitchen_id.clone())
        .collect();
    r.events.push(Event::FridgeQuarantined {
        fridge_id: fridge_id.clone(),
        since,
        max_milli_c,
        limit_milli_c,
        kitchens: kitchens.into_iter().collect(),
    });
    for order in &r.view.open_orders {
        for item in &order.items {
            r.events.push(Event::OrderFlagged {
                order_id: order.order_id.clone(),
                meal_id: item.meal_id.clone(),
                reason: format!(
                    "fridge quarantined: above {:.1} °C for too long",
                    f64::from(limit_milli_c) / 1000.0
                ),
            });
        }
    }
}

/// Applies fridge events; returns whether what the catalog shows changed.
pub(crate) fn evolve(state: &mut DistrictState, event: &Event) -> bool {
    match event {
        Event::FridgeTelemetryReceived {
            fridge_id,
            cursor_json,
            forget_previous_secret,
            ..
        } => {
            state
                .links
                .record_report(fridge_id, cursor_json, *forget_previous_secret);
            false
        }
        Event::DoorPickupRefused {
            fridge_id,
            order_id,
            reason,
        } => {
            let notice = FridgeNotice::DoorPickupRefused {
                order_id: order_id.clone(),
                reason: reason.clone(),
            };
            state.links.notice(fridge_id, notice);
            false
        }
        Event::PickupNothingTaken {
            fridge_id,
            order_id,
            at,
        } => {
            let notice = FridgeNotice::PickupNothingTaken {
                order_id: order_id.clone(),
                at: *at,
            };
            state.links.notice(fridge_id, notice);
            false
        }
        Event::TemperatureRecovered {
            fridge_id,
            since,
            until,
            max_milli_c,
        } => {
            let notice = FridgeNotice::TemperatureRecovered {
                since: *since,
                until: *until,
                max_milli_c: *max_milli_c,
            };
            state.links.notice(fridge_id, notice);
            false
        }
        Event::FridgeStatusChanged {
            fridge_id, status, ..
        } => state.catalog.set_fridge_status(fridge_id, *status),
        Event::FridgeQuarantined { fridge_id, .. } => {
            state
                .catalog
                .set_fridge_status(fridge_id, FridgeStatus::Quarantined);
            state.stock.withhold_fridge(fridge_id);
            true
        }
        // The units that sat in the warm fridge stay withheld: each meal is
        // released by the first count after the lift (`stock::evolve`).
        Event::FridgeQuarantineLifted { fridge_id } => state
            .catalog
            .set_fridge_status(fridge_id, FridgeStatus::Online),
        _ => false,
    }
}
