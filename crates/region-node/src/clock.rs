//! Time as an input. The server reads "now" only here, so the domain stays
//! pure and tests can move time. A node started with the explicit
//! `--dev-clock` flag lets an admin advance its clock over HTTP (for demos and
//! black-box tests); production nodes use the system clock, unshiftable.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

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
