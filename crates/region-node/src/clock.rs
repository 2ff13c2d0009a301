//! Time as an input. The server reads "now" only here, so the domain stays
//! pure and tests can move time. A node started with the explicit
//! `--dev-clock` flag lets an admin advance its clock over HTTP (for demos and
//! black-box tests); production nodes use the system clock, unshiftable.
//!
//! One clock serves the whole node: the writer's `now`, timers and the
//! schedule tick, token expiry (`auth::Verifier`) and the time part of new
//! ids, so on an advanced dev clock all of them move together.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ulid::Ulid;

#[derive(Clone, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    adjustable: bool,
}

impl Clock {
    pub fn system() -> Self {
        Clock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            adjustable: false,
        }
    }

    /// A system clock that [`Clock::advance`] may move forward.
    pub fn adjustable() -> Self {
        Clock {
            adjustable: true,
            ..Clock::system()
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
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
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
