//! Wrong pickup codes per order: a bounded number of tries through
//! `POST /v1/orders/{id}/pickup`, then the order is locked for this route
//! (423 `pickup_locked`; the fridge's own door session stays the way to
//! collect it).
//!
//! Kept in memory, not in the log: a code is six digits, so the few tries a
//! restart gives back (restarts are not the caller's to trigger) change the
//! odds of guessing by nothing that matters, and a lockout decides nothing
//! about the order itself. Every try is counted before it is submitted, so
//! concurrent guesses cannot overtake the limit; a try that did not judge
//! the code (the order was not awaiting pickup, the node was stopping) is
//! given back.

use std::collections::HashMap;
use std::sync::Mutex;

/// Wrong codes allowed per order before the route locks it.
pub const MAX_PICKUP_ATTEMPTS: u32 = 5;

#[derive(Debug, Default)]
pub struct PickupAttempts {
    /// Order id → (tries counted: wrong ones plus those in flight, wrong ones).
    tries: Mutex<HashMap<String, (u32, u32)>>,
}

/// What [`PickupAttempts::try_once`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Try {
    Allowed,
    Locked,
}

impl PickupAttempts {
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
}
