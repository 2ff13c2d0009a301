//! The waitlist tick: every [`WAITLIST_TICK_MS`] it asks the pure
//! waitlist, against the latest snapshot, whether a hold or an entry ran
//! out or a unit is free where someone waits (`district::waitlist::due`),
//! and if so submits one `WaitlistCommand::Tick` (through
//! [`crate::tick::every`]). A stock rise (a refill, a placement, a released
//! reservation) is therefore offered to the first in line at most one tick
//! after its batch, without any branch on the order path.

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::District;
use district::{Command, WaitlistCommand, WaitlistPolicy};

/// How often the waitlist is looked at, in milliseconds: how late an
/// offer may come after the unit arrived, and how late a hold lapses.
pub const WAITLIST_TICK_MS: u64 = 250;

pub async fn run(district: District, clock: Clock, policy: WaitlistPolicy, shutdown: Shutdown) {
    let due = move |state: &district::DistrictState, now| {
        district::waitlist::due(state, now)
            .then_some(Command::Waitlist(WaitlistCommand::Tick { policy }))
    };
    crate::tick::every("waitlist", WAITLIST_TICK_MS, district, clock, due, shutdown).await
}
