//! The timer adapter: turns due order timers into commands.
//!
//! Timers are derived from the log (`DistrictState::timers`), so they are as
//! durable as the decisions that set them. This task only looks at the latest
//! snapshot every tick and submits `FireTimer` for what is due; the decider
//! ignores a timer that is no longer current, so firing is at-least-once
//! here and exactly-once in effect. A timer that fell due while the node was
//! down fires on the first tick after start-up.
//!
//! Every [`FRIDGE_CHECK_TICKS`] ticks it also looks for fridges silent
//! longer than allowed (`CheckSilence`), for units past their best-before
//! (`ExpireUnits`) and for campaign hours the clock has turned since the
//! last look (`TurnHours`: a happy hour opened, a campaign's time frame
//! ended), and for orders whose pickup deadline is within the reminder
//! lead (`RemindPickups`: one `PickupReminded` per order, recorded once),
//! submitting only when there is something.
//!
//! On shutdown the loop finishes the round it is in (its commands are
//! answered by the still-running writer) and returns.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::{District, WriteError};
use district::{fridges, Command, FridgeCommand, FridgePolicy, OrderCommand, PromotionCommand};

/// How often due timers are looked for; the precision of grace windows and
/// timeouts.
pub const TIMER_TICK_MS: u64 = 100;
/// Most timers fired in one tick, so a backlog after downtime is worked off
/// in bounded batches.
pub const MAX_TIMERS_PER_TICK: usize = 2048;
/// Ticks between two looks for silent fridges and expired units (1 s).
pub const FRIDGE_CHECK_TICKS: u64 = 10;

pub async fn run(
    district: District,
    clock: Clock,
    fridge_policy: FridgePolicy,
    utc_offset_minutes: i32,
    shutdown: Shutdown,
) {
    run_with(
        district,
        clock,
        fridge_policy,
        utc_offset_minutes,
        None,
        shutdown,
    )
    .await
}

/// [`run`], also reminding of pickups `reminder_lead` before their
/// deadline when given.
pub async fn run_with(
    district: District,
    clock: Clock,
    fridge_policy: FridgePolicy,
    utc_offset_minutes: i32,
    reminder_lead: Option<chrono::Duration>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(TIMER_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    let local = |now: chrono::DateTime<chrono::Utc>| {
        (now + chrono::Duration::minutes(i64::from(utc_offset_minutes))).naive_utc()
    };
    // Turns before start-up are not told: apps that reconnect fetch the
    // catalog anyway.
    let mut hours_checked = local(clock.now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.triggered() => return,
        }
        ticks += 1;
        let now = clock.now();
        let state = district.state();
        if ticks.is_multiple_of(FRIDGE_CHECK_TICKS) {
            check_fridges(&district, &state, now, &fridge_policy).await;
            turn_hours(&district, &state, local(now), &mut hours_checked).await;
            if let Some(lead) = reminder_lead {
                remind_pickups(&district, &state, now, lead).await;
            }
        }
        let due: Vec<_> = state
            .orders()
            .due_timers(now)
            .take(MAX_TIMERS_PER_TICK)
            .map(|(order_id, timer)| (order_id.clone(), timer))
            .collect();
        if due.is_empty() {
            continue;
        }
        let fired = due.into_iter().map(|(order_id, timer)| {
            let district = district.clone();
            async move {
                // No one waits on a timer: a burst of them (a tick fires up
                // to thousands) must not hold up customers' commands.
                let r = district
                    .submit_background(Command::Order(OrderCommand::FireTimer {
                        order_id: order_id.clone(),
                        timer,
                    }))
                    .await;
                (order_id, timer, r)
            }
        });
        for (order_id, timer, result) in futures::future::join_all(fired).await {
            match result {
                Ok(_) => tracing::debug!(%order_id, ?timer, "timer fired"),
                Err(WriteError::Unavailable(e)) => {
                    tracing::error!(error = %e, "timers: writer stopped");
                    return;
                }
                Err(WriteError::ShuttingDown) => return,
                Err(e) => tracing::warn!(%order_id, ?timer, error = %e, "timer refused"),
            }
        }
    }
}

/// Marks silent fridges offline and withholds expired units, submitting
/// only what is due; the expiries of many meals go to the writer together
/// (one group commit), not one fsync after another.
async fn check_fridges(
    district: &District,
    state: &district::DistrictState,
    now: chrono::DateTime<chrono::Utc>,
    policy: &FridgePolicy,
) {
    if !fridges::silent_fridges(state, now, policy).is_empty() {
        if let Err(e) = district
            .submit(Command::Fridge(FridgeCommand::CheckSilence))
            .await
        {
            tracing::warn!(error = %e, "silence check refused");
        }
    }
    let expiries = state
        .stock()
        .expiry_due(now)
        .into_iter()
        .map(|(fridge_id, meal_id)| {
            district.submit(Command::Fridge(FridgeCommand::ExpireUnits {
                fridge_id,
                meal_id,
            }))
        });
    for result in futures::future::join_all(expiries).await {
        if let Err(e) = result {
            tracing::warn!(error = %e, "expiry refused");
        }
    }
}

/// Records the first campaign-hours turn after `checked` (district-local)
/// once it has passed, then looks on from `local_now`: several turns since
/// the last look (a node clock moved by days) mean one record and one
/// `catalog_updated`, which is all an app needs to fetch prices again.
async fn turn_hours(
    district: &District,
    state: &district::DistrictState,
    local_now: NaiveDateTime,
    checked: &mut NaiveDateTime,
) {
    let due = district::promotions::next_turn(state, *checked).filter(|at| *at <= local_now);
    if let Some(at) = due {
        let turned = district
            .submit(Command::Promotion(PromotionCommand::TurnHours { at }))
            .await;
        if let Err(e) = turned {
            tracing::warn!(%at, error = %e, "campaign hours not recorded; retrying");
            return;
        }
        tracing::info!(%at, "campaign hours turned");
    }
    *checked = local_now;
}

/// Records the pickup reminders due at `now` (the decider takes the same
/// orders, and records each once).
async fn remind_pickups(
    district: &District,
    state: &district::DistrictState,
    now: chrono::DateTime<chrono::Utc>,
    lead: chrono::Duration,
) {
    if district::notifications::reminders_due(state, now, lead)
        .next()
        .is_none()
    {
        return;
    }
    let cmd = district::NotificationCommand::RemindPickups { lead };
    match district.submit(Command::Notification(cmd)).await {
        Ok(_) => tracing::info!("pickup reminders recorded"),
        Err(e) => tracing::warn!(error = %e, "pickup reminders not recorded; retrying"),
    }
}
