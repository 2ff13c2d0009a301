//! The archive tick (issue 15): every [`ARCHIVE_TICK_MS`] it asks the
//! pure core, against the latest snapshot at the node clock's now, whether
//! a final order has passed the retention (`district::orders::archive::due`)
//! and if so submits one `OrderCommand::Archive` (through
//! [`crate::tick::every`]); the decider names at most
//! `MAX_ARCHIVED_PER_BATCH` orders, so a backlog (a first start after an
//! upgrade) drains one batch per tick without holding the writer.

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::writer::District;
use district::{Command, OrderCommand};

/// How often the archive is looked at, in milliseconds. Asking costs a
/// look at the oldest final order when nothing is due.
pub const ARCHIVE_TICK_MS: u64 = 1_000;

pub async fn run(
    district: District,
    clock: Clock,
    retention: chrono::Duration,
    shutdown: Shutdown,
) {
    let due = move |state: &district::DistrictState, now| {
        district::orders::archive::due(state, now, retention)
            .then_some(Command::Order(OrderCommand::Archive))
    };
    crate::tick::every("archive", ARCHIVE_TICK_MS, district, clock, due, shutdown).await
}
