//! Time as an input. The server reads "now" only here, so the domain stays
//! pure and tests can move time. A node started with the explicit
//! `--dev-clock` flag lets an admin advance its clock over HTTP (for demos and
//! black-box tests); production nodes use the system clock, unshiftable.
//!
//! One clock serves the whole node: the writer's `now`, timers and the
//! schedule tick, token expiry (`auth::Verifier`) and the time part of new
//! ids, so on an advanced dev clock all of them move together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ulid::Ulid;

#[derive(Clone, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    adjustable: bool,
    /// Where an adjustable clock keeps its offset, so a restart resumes at
    /// the time it had reached (the log's facts never lie in its future).
    saved_to: Option<Arc<PathBuf>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            adjustable: false,
            saved_to: None,
        }
    }

    /// A system clock that [`Clock::advance`] may move forward.
    pub fn adjustable() -> Self {
        Clock {
            adjustable: true,
            ..Clock::system()
        }
    }

    /// An adjustable clock whose offset is kept in the file `path`: it
    /// starts from the offset saved there (none: the system's time), and
    /// every advance saves the new one.
    pub fn adjustable_saved(path: PathBuf) -> Self {
        let offset = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "dev clock: unreadable offset, starting from the system's time");
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dev clock: offset not read, starting from the system's time");
                0
            }
        };
        Clock {
            offset_ms: Arc::new(AtomicI64::new(offset.max(0))),
            adjustable: true,
            saved_to: Some(Arc::new(path)),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// A new id whose time part is this clock's now, so ids sort with the
    /// node's time (an order made after a clock advance sorts after it).
    pub fn ulid(&self) -> Ulid {
        ulid_at(self.now())
    }

    pub fn is_adjustable(&self) -> bool {
        self.adjustable
    }

    /// Moves time forward; refused on a system clock and for negative steps
    /// (time never runs backwards for the domain).
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>, &'static str> {
        if !self.adjustable {
            return Err("this node runs on the system clock; start it with --dev-clock");
        }
        if by < Duration::zero() {
            return Err("the clock only moves forward");
        }
        let step = by.num_milliseconds();
        let offset = self.offset_ms.fetch_add(step, Ordering::Relaxed) + step;
        if let Some(path) = &self.saved_to {
            if let Err(e) = std::fs::write(path.as_path(), offset.to_string()) {
                tracing::warn!(path = %path.display(), error = %e, "dev clock: offset not saved; a restart starts from an earlier time");
            }
        }
        Ok(self.now())
    }
}

/// A new id with `at` as its time part and 80 random bits (ulid's own
/// generator needs its `std` feature, which would link `rand` into the pure
/// crates; see the workspace manifest).
pub fn ulid_at(at: DateTime<Utc>) -> Ulid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    Ulid::from_parts(ms, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_clocks_time() {
        let clock = Clock::adjustable();
        let before = clock.ulid();
        let now = clock.advance(Duration::days(2)).unwrap();
        let after = clock.ulid();
        assert!(after > before);
        let id_ms = i64::try_from(after.timestamp_ms()).unwrap();
        assert!(
            (id_ms - now.timestamp_millis()).abs() < 60_000,
            "id time {id_ms} vs clock {now}"
        );
    }
}
