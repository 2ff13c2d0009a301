//! The schedule tick: every [`SCHEDULE_TICK_MS`] it asks the pure scheduler,
//! against the latest snapshot, whether any plan charge or scheduled order is
//! due at the node clock's "now", and if so submits one
//! `ScheduleCommand::Tick` (through [`crate::tick::every`]). Order and charge
//! ids are deterministic, so a tick that runs twice, or again after a
//! restart mid-run, makes nothing twice.

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::District;
use district::schedule::StateCatalog;
use district::{Command, ScheduleCommand};

/// How often the schedule is looked at, in milliseconds. Materialisation
/// works in days; this only bounds how soon a paid week or a reopened day
/// becomes orders.
pub const SCHEDULE_TICK_MS: u64 = 500;

pub async fn run(district: District, clock: Clock, policy: scheduler::Policy, shutdown: Shutdown) {
    let due = move |state: &district::DistrictState, now| {
        let events = scheduler::tick(state.schedule(), &StateCatalog(state), now, &policy);
        (!events.is_empty()).then_some(Command::Schedule(ScheduleCommand::Tick { policy }))
    };
    crate::tick::every("schedule", SCHEDULE_TICK_MS, district, clock, due, shutdown).await
}
