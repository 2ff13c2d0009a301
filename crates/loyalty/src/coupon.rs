//! A coupon's fleet-wide uses: the KV record behind `fleet_max_uses`,
//! changed by compare-and-set like an account. A district reserves a use
//! before it places an order with the coupon (a hold, lapsing after
//! [`HOLD_TTL_SECS`]); the order's purchase commits it, a cancel in the
//! grace window or a refusal releases it. Uses + live holds never exceed
//! the limit, so two districts cannot both take the last use.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{OrderKey, HOLD_TTL_SECS, MAX_APPLIED_OPS, MAX_HOLDS};

/// The fleet's count of one coupon code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponUses {
    /// Uses committed by purchases.
    used: u32,
    /// Uses reserved for orders being confirmed, by order, since when.
    holds: BTreeMap<OrderKey, DateTime<Utc>>,
    /// Op ids applied, newest last, at most `MAX_APPLIED_OPS`.
    applied: VecDeque<String>,
}

/// What a district tells the coupon's record about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponOp {
    /// The order was bought: its use counts.
    Commit { order: OrderKey },
    /// The order was not bought: its hold goes.
    Release { order: OrderKey },
}

/// Why a use could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CouponLimit {
    #[error("this coupon has been used as often as it may be")]
    Reached,
}

impl CouponUses {
    pub fn used(&self) -> u32 {
        self.used
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let ttl = chrono::Duration::seconds(HOLD_TTL_SECS);
        self.holds.retain(|_, at| *at + ttl > now);
    }

    /// Reserves a use for `order` if uses and live holds stay within
    /// `max`. Idempotent for an order already holding one.
    pub fn reserve(
        &mut self,
        order: &str,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<(), CouponLimit> {
        self.prune(now);
        if self.holds.contains_key(order) {
            return Ok(());
        }
        let taken = u64::from(self.used) + self.holds.len() as u64;
        if taken >= u64::from(max) || self.holds.len() >= MAX_HOLDS {
            return Err(CouponLimit::Reached);
        }
        self.holds.insert(order.to_owned(), now);
        Ok(())
    }

    /// Drops `order`'s hold (the node's undo when the order was not placed).
    pub fn release_hold(&mut self, order: &str) -> bool {
        self.holds.remove(order).is_some()
    }

    /// Applies a district's operation once per `op_id`; `false` if seen.
    /// Total: a commit without a hold (lapsed) still counts the use.
    pub fn apply(&mut self, op_id: &str, op: &CouponOp, now: DateTime<Utc>) -> bool {
        if self.applied.iter().any(|id| id == op_id) {
            return false;
        }
        self.prune(now);
        match op {
            CouponOp::Commit { order } => {
                self.holds.remove(order);
                self.used = self.used.saturating_add(1);
            }
            CouponOp::Release { order } => {
                self.holds.remove(order);
            }
        }
        self.applied.push_back(op_id.to_owned());
        while self.applied.len() > MAX_APPLIED_OPS {
            self.applied.pop_front();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(1_800_000_000 + secs)
    }

    #[test]
    fn the_last_use_goes_to_one_order_only() {
        let mut uses = CouponUses::default();
        assert_eq!(uses.reserve("a/o1", 1, t(0)), Ok(()));
        assert_eq!(uses.reserve("b/o2", 1, t(1)), Err(CouponLimit::Reached));
        assert_eq!(uses.reserve("a/o1", 1, t(2)), Ok(()), "idempotent");
    }

    #[test]
    fn a_release_gives_the_use_back_and_a_commit_keeps_it() {
        let mut uses = CouponUses::default();
        uses.reserve("a/o1", 1, t(0)).unwrap();
        assert!(uses.apply(
            "release-a/o1",
            &CouponOp::Release {
                order: "a/o1".into()
            },
            t(1)
        ));
        assert_eq!(uses.reserve("b/o2", 1, t(2)), Ok(()));
        assert!(uses.apply(
            "commit-b/o2",
            &CouponOp::Commit {
                order: "b/o2".into()
            },
            t(3)
        ));
        assert!(!uses.apply(
            "commit-b/o2",
            &CouponOp::Commit {
                order: "b/o2".into()
            },
            t(4)
        ));
        assert_eq!(uses.used(), 1, "applied once");
        assert_eq!(uses.reserve("c/o3", 1, t(5)), Err(CouponLimit::Reached));
    }

    #[test]
    fn a_lapsed_hold_no_longer_counts() {
        let mut uses = CouponUses::default();
        uses.reserve("a/o1", 1, t(0)).unwrap();
        assert_eq!(uses.reserve("b/o2", 1, t(HOLD_TTL_SECS + 1)), Ok(()));
    }
}
