//! Wrong pickup codes per order: a bounded number of tries through
//! `POST /v1/orders/{id}/pickup`, then the order is locked for this route
//! (423 `pickup_locked`; the fridge's own door session stays the way to
//! collect it). And per caller: a token that got [`MAX_WRONG_CODES_PER_CALLER`]
//! codes wrong within [`CALLER_WINDOW_SECS`] (by the node's clock) may not
//! try any order until the oldest of them leaves the window, so five
//! guesses on each of many orders do not add up.
//!
//! Kept in memory, not in the log: a code is six digits, so the few tries a
//! restart gives back (restarts are not the caller's to trigger) change the
//! odds of guessing by nothing that matters, and a lockout decides nothing
//! about the order itself. Every try is counted before it is submitted, so
//! concurrent guesses cannot overtake the limit; a try that did not judge
//! the code (the order was not awaiting pickup, the node was stopping) is
//! given back.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Wrong codes allowed per order before the route locks it.
pub const MAX_PICKUP_ATTEMPTS: u32 = 5;
/// Wrong codes one caller may enter, over all orders, within the window.
pub const MAX_WRONG_CODES_PER_CALLER: usize = 20;
/// The per-caller window, in seconds (an hour: a till with clumsy staff
/// recovers by itself; a script gets 20 guesses an hour).
pub const CALLER_WINDOW_SECS: i64 = 3600;

#[derive(Debug, Default)]
pub struct PickupAttempts {
    /// Order id → (tries counted: wrong ones plus those in flight, wrong ones).
    tries: Mutex<HashMap<String, (u32, u32)>>,
    /// Caller (role:sub) → when its recent wrong codes were entered.
    by_caller: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

/// What [`PickupAttempts::try_once`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Try {
    Allowed,
    Locked,
}

impl PickupAttempts {
    /// Whether `caller` may try a code at `now`: `Err(seconds to wait)`
    /// while it has too many wrong codes in the window.
    pub fn caller_may_try(&self, caller: &str, now: DateTime<Utc>) -> Result<(), i64> {
        let Ok(mut map) = self.by_caller.lock() else {
            return Err(CALLER_WINDOW_SECS);
        };
        let Some(times) = map.get_mut(caller) else {
            return Ok(());
        };
        let window = Duration::seconds(CALLER_WINDOW_SECS);
        while times.front().is_some_and(|t| *t + window <= now) {
            times.pop_front();
        }
        match times.front() {
            None => {
                map.remove(caller);
                Ok(())
            }
            Some(oldest) if times.len() >= MAX_WRONG_CODES_PER_CALLER => {
                Err((*oldest + window - now).num_seconds().max(1))
            }
            Some(_) => Ok(()),
        }
    }

    /// Counts a wrong code against `caller` at `now`.
    pub fn caller_wrong(&self, caller: &str, now: DateTime<Utc>) {
        if let Ok(mut map) = self.by_caller.lock() {
            let times = map.entry(caller.to_string()).or_default();
            times.push_back(now);
            // Only the newest matter for the limit.
            while times.len() > MAX_WRONG_CODES_PER_CALLER {
                times.pop_front();
            }
        }
    }

    /// Counts one try for `order_id`, or says the order is locked.
    pub fn try_once(&self, order_id: &str) -> Try {
        let Ok(mut tries) = self.tries.lock() else {
            return Try::Locked;
        };
        let (n, _) = tries.entry(order_id.to_string()).or_insert((0, 0));
        if *n >= MAX_PICKUP_ATTEMPTS {
            return Try::Locked;
        }
        *n += 1;
        Try::Allowed
    }

    /// The try did not judge the code (or the code was right): it does
    /// not count.
    pub fn give_back(&self, order_id: &str) {
        if let Ok(mut tries) = self.tries.lock() {
            if let Some((n, _)) = tries.get_mut(order_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    tries.remove(order_id);
                }
            }
        }
    }

    /// Records a wrong code; true when it was the last one allowed (the
    /// order is locked from now on: once per order).
    pub fn wrong(&self, order_id: &str) -> bool {
        let Ok(mut tries) = self.tries.lock() else {
            return false;
        };
        let (_, wrong) = tries.entry(order_id.to_string()).or_insert((0, 0));
        *wrong += 1;
        *wrong == MAX_PICKUP_ATTEMPTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_tries_then_locked_and_a_given_back_try_does_not_count() {
        let a = PickupAttempts::default();
        a.try_once("o");
        a.give_back("o");
        for i in 1..=MAX_PICKUP_ATTEMPTS {
            assert_eq!(a.try_once("o"), Try::Allowed);
            assert_eq!(a.wrong("o"), i == MAX_PICKUP_ATTEMPTS);
        }
        assert_eq!(a.try_once("o"), Try::Locked);
        assert_eq!(a.try_once("other"), Try::Allowed);
    }

    #[test]
    fn a_caller_with_too_many_wrong_codes_waits_until_the_oldest_leaves_the_window() {
        let a = PickupAttempts::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..MAX_WRONG_CODES_PER_CALLER {
            assert_eq!(a.caller_may_try("pos:till", t0), Ok(()));
            a.caller_wrong("pos:till", t0 + Duration::seconds(i as i64));
        }
        let later = t0 + Duration::seconds(100);
        assert_eq!(
            a.caller_may_try("pos:till", later),
            Err(CALLER_WINDOW_SECS - 100)
        );
        assert_eq!(a.caller_may_try("pos:other", later), Ok(()));
        let after = t0 + Duration::seconds(CALLER_WINDOW_SECS);
        assert_eq!(
            a.caller_may_try("pos:till", after),
            Ok(()),
            "one left the window"
        );
    }
}
