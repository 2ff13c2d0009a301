//! Fridges through the anti-corruption layer: telemetry batches, silence,
//! quarantine.
//!
//! The HTTP adapter authenticates and parses a batch with `fridge_acl`
//! (parallel, before the writer); this module translates it against the
//! current state — the fridge's cursor and a [`FridgeView`] built here — and
//! maps the ACL's facts to the district's events. The ACL says what a report
//! means; this module decides what the district does about it (quarantine on
//! an excursion, flag orders on a shortage, complete a pickup). Pure, like
//! the rest of `domain`.

use std::collections::BTreeSet;

use chrono::Duration;
use fridge_acl::{
    Batch, DoorActor, FridgeCursor, FridgeFact, FridgeView, MealUnits, OpenOrder, SecretUsed,
    ShrinkageReason, TemperaturePolicy,
};
use protocol::catalog::FridgeStatus;
use protocol::events::{StockMovement, StockSource};
use protocol::{Event, FridgeId};

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
        meal_id: String,
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
                .fridges
                .get(&fridge_id)
                .ok_or_else(|| DomainError::UnknownFridge(fridge_id.clone()))?;
            if fridge.status != FridgeStatus::Quarantined {
                return Err(DomainError::Invalid(format!(
                    "fridge {fridge_id} is not quarantined"
                )));
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
        .fridge_cursors
        .iter()
        .filter(|(id, _)| {
            state
                .fridges
                .get(*id)
                .is_some_and(|f| f.status == FridgeStatus::Online)
        })
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
        offline: state
            .fridges
            .get(fridge_id)
            .is_some_and(|f| f.status == FridgeStatus::Offline),
        ..FridgeView::default()
    };
    if let Some(per_meal) = state.stock.get(fridge_id) {
        for (meal_id, level) in per_meal.iter() {
            view.on_hand.insert(meal_id.clone(), level.on_hand);
            view.reserved.insert(meal_id.clone(), level.reserved);
        }
    }
    for order_id in state
        .open_orders_by_fridge
        .get(fridge_id)
        .into_iter()
        .flatten()
    {
        let Some(order) = state.orders.get(order_id) else {
            continue;
        };
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

fn telemetry(
    state: &DistrictState,
    fridge_id: FridgeId,
    batch: &Batch,
    secret_used: SecretUsed,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let fridge = state
        .fridges
        .get(&fridge_id)
        .ok_or_else(|| DomainError::UnknownFridge(fridge_id.clone()))?;
    let cursor: FridgeCursor = state
        .fridge_cursors
        .get(&fridge_id)
        .map(|c| (**c).clone())
        .unwrap_or_default();
    let view = fridge_view(state, &fridge_id, &ctx.fridges);
    let translation = fridge_acl::translate(&cursor, &view, batch, ctx.now);

    let mut events = Vec::new();
    // A pickup changes the stock the facts after it are about, so the order
    // decider sees the state with the events so far applied.
    let mut picked: BTreeSet<String> = BTreeSet::new();
    let mut quarantined = fridge.status == FridgeStatus::Quarantined;
    for fact in translation.facts {
        match fact {
            FridgeFact::FridgeOnline { .. } => {
                if fridge.status == FridgeStatus::Offline {
                    events.push(Event::FridgeStatusChanged {
                        fridge_id: fridge_id.clone(),
                        status: FridgeStatus::Online,
                        reason: "telemetry again".into(),
                    });
                }
            }
            FridgeFact::StockCounted {
                meal_id, on_hand, ..
            } => events.push(Event::MealStockUpdated {
                fridge_id: fridge_id.clone(),
                meal_id,
                on_hand: on_hand.min(protocol::catalog::MAX_UNITS_PER_MEAL),
                source: StockSource::Scan,
            }),
            FridgeFact::ExpiredOnShelf { meal_id, units, .. } => {
                events.push(Event::MealUnitsExpired {
                    fridge_id: fridge_id.clone(),
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
            } => {
                for order_id in orders {
                    let already = state
                        .orders
                        .get(&order_id)
                        .is_some_and(|o| o.shortage.contains(&meal_id));
                    if !already {
                        events.push(Event::OrderFlagged {
                            order_id,
                            meal_id: meal_id.clone(),
                            reason: format!(
                                "the fridge holds {on_hand} units of this meal for {committed} promised"
                            ),
                        });
                    }
                }
            }
            FridgeFact::PickedUp {
                order_id,
                pickup_code,
                ..
            } => {
                if !picked.insert(order_id.clone()) {
                    continue;
                }
                let pickup = OrderCommand::Pickup {
                    order_id: order_id.clone(),
                    pickup_code,
                };
                match super::orders::decide(state, pickup, ctx) {
                    Ok(more) => events.extend(more),
                    // The fridge saw a pickup the order book cannot take
                    // (already picked up by hand, say): the count that
                    // follows still sets the stock right.
                    Err(e) => note_unapplied_pickup(&mut events, &fridge_id, &order_id, &e),
                }
            }
            FridgeFact::PickupNothingTaken { .. } | FridgeFact::TemperatureRecovered { .. } => {}
            FridgeFact::Refilled {
                meal_id, units, by, ..
            } => {
                let (movement, detail) = match by {
                    DoorActor::Staff(badge) => (StockMovement::Refill, badge),
                    DoorActor::PickupCode(code) => (StockMovement::Returned, code),
                    DoorActor::Unknown => (StockMovement::Returned, String::new()),
                };
                events.push(Event::StockMovementRecorded {
                    fridge_id: fridge_id.clone(),
                    meal_id,
                    units: i64::from(units),
                    movement,
                    detail,
                });
            }
            FridgeFact::Withdrawn {
                meal_id,
                units,
                badge,
                ..
            } => events.push(Event::StockMovementRecorded {
                fridge_id: fridge_id.clone(),
                meal_id,
                units: -i64::from(units),
                movement: StockMovement::Withdrawal,
                detail: badge,
            }),
            FridgeFact::Shrinkage {
                meal_id,
                units,
                reason,
                ..
            } => events.push(Event::StockMovementRecorded {
                fridge_id: fridge_id.clone(),
                meal_id,
                units: -i64::from(units),
                movement: StockMovement::Shrinkage,
                detail: match reason {
                    ShrinkageReason::NoCredentials => "no credentials".into(),
                    ShrinkageReason::UnknownCode { code } => format!("unknown code {code}"),
                    ShrinkageReason::BeyondOrder { order_id } => {
                        format!("beyond order {order_id}")
                    }
                },
            }),
            FridgeFact::TemperatureExcursion {
                since,
                max_milli_c,
                limit_milli_c,
                ..
            } => {
                if !quarantined {
                    quarantined = true;
                    let kitchens: BTreeSet<String> = state
                        .stock
                        .get(&fridge_id)
                        .into_iter()
                        .flat_map(|m| m.iter())
                        .filter(|(_, level)| level.on_hand > 0)
                        .filter_map(|(meal_id, _)| state.meals.get(meal_id))
                        .map(|meal| meal.spec.kitchen_id.clone())
                        .collect();
                    events.push(Event::FridgeQuarantined {
                        fridge_id: fridge_id.clone(),
                        since,
                        max_milli_c,
                        limit_milli_c,
                        kitchens: kitchens.into_iter().collect(),
                    });
                    // Customers holding meals in it are told before they
                    // walk there (they can cancel; paid orders are refunded).
                    for order in &view.open_orders {
                        for item in &order.items {
                            events.push(Event::OrderFlagged {
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
            }
            FridgeFact::FridgeOffline { .. } => {}
        }
    }
    let forget_previous_secret = secret_used == SecretUsed::Current
        && state.fridge_previous_secrets.contains_key(&fridge_id);
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

/// A pickup the fridge saw but the order book refused is kept as a
/// movement record, so an operator can find it.
fn note_unapplied_pickup(
    events: &mut Vec<Event>,
    fridge_id: &str,
    order_id: &str,
    e: &DomainError,
) {
    events.push(Event::StockMovementRecorded {
        fridge_id: fridge_id.to_string(),
        meal_id: String::new(),
        units: 0,
        movement: StockMovement::Shrinkage,
        detail: format!("pickup of order {order_id} not applied: {e}"),
    });
}

/// Applies fridge events; returns whether what the catalog shows changed.
pub fn evolve(state: &mut DistrictState, event: &Event) -> bool {
    match event {
        Event::FridgeTelemetryReceived {
            fridge_id,
            cursor_json,
            forget_previous_secret,
            ..
        } => {
            // The cursor was written by this node's ACL; an unreadable one
            // (a future format) is replaced by a fresh cursor, which at worst
            // treats the next reports as new.
            let cursor: FridgeCursor = serde_json::from_str(cursor_json).unwrap_or_default();
            state
                .fridge_cursors
                .insert(fridge_id.clone(), std::sync::Arc::new(cursor));
            if *forget_previous_secret {
                state.fridge_previous_secrets.remove(fridge_id);
            }
            false
        }
        Event::FridgeStatusChanged {
            fridge_id, status, ..
        } => set_status(state, fridge_id, *status),
        Event::FridgeQuarantined { fridge_id, .. } => {
            set_status(state, fridge_id, FridgeStatus::Quarantined);
            update_levels(state, fridge_id, |level| level.quarantined = level.on_hand);
            true
        }
        Event::FridgeQuarantineLifted { fridge_id } => {
            set_status(state, fridge_id, FridgeStatus::Online);
            update_levels(state, fridge_id, |level| level.quarantined = 0);
            true
        }
        Event::MealUnitsExpired {
            fridge_id,
            meal_id,
            units,
        } => {
            state.adjust_stock(fridge_id, meal_id, |level| level.expired = *units);
            true
        }
        Event::OrderFlagged {
            order_id, meal_id, ..
        } => {
            if let Some(mut order) = state.orders.get(order_id).cloned() {
                if !order.shortage.contains(meal_id) {
                    order.shortage.push(meal_id.clone());
                }
                state.orders.insert(order_id.clone(), order);
            }
            false
        }
        _ => false,
    }
}

fn set_status(state: &mut DistrictState, fridge_id: &str, status: FridgeStatus) -> bool {
    let Some(mut fridge) = state.fridges.get(fridge_id).cloned() else {
        return false;
    };
    fridge.status = status;
    state.fridges.insert(fridge_id.to_string(), fridge);
    true
}

fn update_levels(
    state: &mut DistrictState,
    fridge_id: &str,
    f: impl Fn(&mut protocol::catalog::StockLevel),
) {
    if let Some(per_meal) = state.stock.get(fridge_id) {
        let updated = per_meal
            .iter()
            .map(|(meal, level)| {
                let mut level = *level;
                f(&mut level);
                (meal.clone(), level)
            })
            .collect();
        state.stock.insert(fridge_id.to_string(), updated);
    }
}
