//! The schedule tick: every [`SCHEDULE_TICK_MS`] it asks the pure scheduler,
//! against the latest snapshot, whether any plan charge or scheduled order is
//! due at the node clock's "now", and if so submits one
//! `ScheduleCommand::Tick`, which the writer decides again against the
//! current state. Order and charge ids are deterministic, so a tick that runs
//! twice, or again after a restart mid-run, makes nothing twice.
//! It stops at the shutdown signal, after the tick in progress.

use std::time::Duration;

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::{District, WriteError};
use district::schedule::StateCatalog;
use district::{Command, ScheduleCommand};

/// How often the schedule is looked at, in milliseconds. Materialisation
/// works in days; this only bounds how soon a paid week or a reopened day
/// becomes orders.
pub const SCHEDULE_TICK_MS: u64 = 500;

pub async fn run(
    district: District,
    clock: Clock,
    policy: scheduler::Policy,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(SCHEDULE_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.triggered() => return,
        }
        let now = clock.now();
        let state = district.state();
        if scheduler::tick(state.schedule(), &StateCatalog(&state), now, &policy).is_empty() {
            continue;
        }
        match district
            .submit(Command::Schedule(ScheduleCommand::Tick { policy }))
            .await
        {
            Ok(c) => {
                tracing::info!(events = c.events.len(), %now, "schedule: charges and orders made")
            }
            Err(WriteError::Unavailable(e)) => {
                tracing::error!(error = %e, "schedule: writer stopped");
                return;
            }
            Err(WriteError::ShuttingDown) => return,
            Err(e) => tracing::warn!(error = %e, "schedule: tick refused"),
        }
    }
}
