//! The loop behind the clock-driven decisions that are not order timers
//! (the schedule, the waitlist): every period it asks a pure question of
//! the latest snapshot at the node clock's "now" and, only when there is
//! something to do, submits the one command that does it; the writer
//! decides it again against the current state, so a tick that comes twice
//! or after a restart changes nothing twice. It stops at the shutdown
//! signal, after the tick in progress.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::{District, WriteError};
use district::{Command, DistrictState};

/// Runs `due` every `period_ms` and submits the command it returns.
/// `what` names the loop in logs.
pub async fn every(
    what: &'static str,
    period_ms: u64,
    district: District,
    clock: Clock,
    due: impl Fn(&DistrictState, DateTime<Utc>) -> Option<Command>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(period_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.triggered() => return,
        }
        let now = clock.now();
        let Some(command) = due(&district.state(), now) else {
            continue;
        };
        match district.submit(command).await {
            Ok(c) => tracing::info!(tick = what, events = c.events.len(), %now, "tick recorded"),
            Err(WriteError::Unavailable(e)) => {
                tracing::error!(tick = what, error = %e, "writer stopped");
                return;
            }
            Err(WriteError::ShuttingDown) => return,
            Err(e) => tracing::warn!(tick = what, error = %e, "tick refused"),
        }
    }
}
