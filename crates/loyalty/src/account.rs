//! The account record and its operations (the rules are in the crate docs).

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::lots::{self, Lot, Origin, Piece};
use crate::{
    Balance, Entry, EntryKind, LoyaltyError, LoyaltyOp, OrderKey, Referral, HOLD_TTL_SECS,
    MAX_APPLIED_OPS, MAX_HISTORY, MAX_HOLDS, MAX_LOTS, MAX_REFERRALS, MAX_SPENT_PIECES,
};

/// Points reserved for an order that is being confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    points: i64,
    at: DateTime<Utc>,
}

impl Hold {
    /// Counts until `at + HOLD_TTL_SECS` (exclusive).
    fn live(&self, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(self.at) < TimeDelta::seconds(HOLD_TTL_SECS)
    }
}

/// One customer's bonus points: the KV record (see the crate docs).
///
/// Field order is the postcard layout of the stored record: changing it,
/// or adding a field, needs a migration of the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Unexpired points (as of the last change), oldest expiry first.
    lots: Vec<Lot>,
    /// Points reserved by orders being confirmed.
    holds: BTreeMap<OrderKey, Hold>,
    /// What each committed order took, by expiry, for `ReturnSpent`;
    /// oldest first, at most `MAX_APPLIED_OPS`.
    spent: VecDeque<(OrderKey, Vec<Piece>)>,
    /// What each order earned and has not expired, for `ReverseEarn`;
    /// oldest first, at most `MAX_APPLIED_OPS`.
    earned: VecDeque<(OrderKey, i64)>,
    /// Newest last, at most `MAX_HISTORY`.
    history: VecDeque<Entry>,
    /// Op ids applied, newest last, at most `MAX_APPLIED_OPS`.
    applied: VecDeque<String>,
    /// Who referred this customer (their first purchase with a share code).
    referred_by: Option<Referral>,
    /// Purchases made with this customer's share code, newest last, at
    /// most `MAX_REFERRALS`.
    referrals: VecDeque<Referral>,
    /// Payment methods (hashes) whose purchases earned this owner a
    /// referral reward, at most `MAX_REFERRALS`.
    rewarded_methods: VecDeque<u64>,
}

impl Account {
    /// The balance as of `now`: lots expired by `now` and holds older than
    /// [`HOLD_TTL_SECS`] no longer count, pruned or not.
    pub fn balance(&self, now: DateTime<Utc>) -> Balance {
        let live = || self.lots.iter().filter(move |l| l.expires_at > now);
        let points = live().fold(0i64, |sum, l| sum.saturating_add(l.points));
        let held = self.live_held(now, None);
        let next_expiry = live().map(|l| l.expires_at).min();
        let expiring_points = live()
            .filter(|l| Some(l.expires_at) == next_expiry)
            .fold(0i64, |sum, l| sum.saturating_add(l.points));
        Balance {
            points,
            held,
            available: points.saturating_sub(held).max(0),
            next_expiry,
            expiring_points,
        }
    }

    /// The points a live hold reserves for `order` at `now`, if there is one.
    pub fn held_for(&self, order: &str, now: DateTime<Utc>) -> Option<i64> {
        self.holds
            .get(order)
            .filter(|h| h.live(now))
            .map(|h| h.points)
    }

    /// Reserves `points` for `order` before the order is confirmed.
    ///
    /// Idempotent: a live hold for the same order with the same points is
    /// `Ok` and left as it is (its age too). A different amount replaces
    /// it, checked against what is available without the old hold; if that
    /// is refused the old hold stays. Prunes expired lots and stale holds
    /// first.
    ///
    /// # Errors
    /// [`LoyaltyError::NotPositive`] if `points <= 0`;
    /// [`LoyaltyError::TooManyHolds`] if this would be hold number
    /// [`MAX_HOLDS`] + 1; [`LoyaltyError::Insufficient`] if `points` is
    /// more than is available.
    pub fn reserve(
        &mut self,
        order: &str,
        points: i64,
        now: DateTime<Utc>,
    ) -> Result<(), LoyaltyError> {
        if points <= 0 {
            return Err(LoyaltyError::NotPositive);
        }
        self.prune(now);
        let existing = self.holds.get(order).map(|h| h.points);
        if existing == Some(points) {
            return Ok(());
        }
        if existing.is_none() && self.holds.len() >= MAX_HOLDS {
            return Err(LoyaltyError::TooManyHolds);
        }
        let available = self.available_without(order, now);
        if points > available {
            return Err(LoyaltyError::Insufficient {
                available,
                wanted: points,
            });
        }
        self.holds
            .insert(order.to_owned(), Hold { points, at: now });
        Ok(())
    }

    /// Drops `order`'s hold without an op id: the node's own undo when the
    /// confirm failed after reserving. Returns whether there was one (live
    /// or stale).
    pub fn release_hold(&mut self, order: &str) -> bool {
        self.holds.remove(order).is_some()
    }

    /// Applies a district's operation once. Returns `false`, changing
    /// nothing, if `op_id` is among the last [`MAX_APPLIED_OPS`] applied.
    ///
    /// Total: an op is a fact from a district's log, so it never fails; it
    /// clamps instead (see the crate docs, "Operations"). Prunes expired
    /// lots and stale holds first.
    pub fn apply(&mut self, op_id: &str, op: &LoyaltyOp, now: DateTime<Utc>) -> bool {
        if self.applied.iter().any(|id| id == op_id) {
            return false;
        }
        self.prune(now);
        match op {
            LoyaltyOp::Earn {
                order,
                points,
                expires_at,
            } => self.earn(order, *points, *expires_at, now),
            LoyaltyOp::Commit { order, points } => self.commit(order, *points, now),
            LoyaltyOp::Release { order } => {
                self.holds.remove(order);
            }
            LoyaltyOp::ReturnSpent { order } => self.return_spent(order, now),
            LoyaltyOp::ReverseEarn { order } => self.reverse_earn(order, now),
            LoyaltyOp::Referred { order, owner } => {
                if self.referred_by.is_none() {
                    self.referred_by = Some(Referral {
                        customer: owner.clone(),
                        order: order.clone(),
                        at: now,
                    });
                }
            }
            LoyaltyOp::ReferralReward {
                order,
                customer,
                method,
                points,
                expires_at,
            } => self.reward(order, customer, *method, *points, *expires_at, now),
        }
        // An earn or a return may bring lots that have already expired.
        self.prune_lots(now);
        lots::merge_closest(
            &mut self.lots,
            MAX_LOTS,
            |l| l.expires_at,
            |later, earlier| later.points = later.points.saturating_add(earlier.points),
        );
        push_bounded(&mut self.applied, op_id.to_owned(), MAX_APPLIED_OPS);
        true
    }

    /// Who referred this customer, if anyone did.
    pub fn referred_by(&self) -> Option<&Referral> {
        self.referred_by.as_ref()
    }

    /// Purchases made with this customer's share code, oldest first.
    pub fn referrals(&self) -> impl Iterator<Item = &Referral> {
        self.referrals.iter()
    }

    /// Whether a purchase paid with `method` already earned this owner a
    /// referral reward.
    pub fn rewarded_method(&self, method: u64) -> bool {
        self.rewarded_methods.contains(&method)
    }

    fn reward(
        &mut self,
        order: &OrderKey,
        customer: &str,
        method: u64,
        points: i64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let referral = Referral {
            customer: customer.to_owned(),
            order: order.clone(),
            at: now,
        };
        push_bounded(&mut self.referrals, referral, MAX_REFERRALS);
        if self.rewarded_methods.contains(&method) || points <= 0 || expires_at <= now {
            return;
        }
        push_bounded(&mut self.rewarded_methods, method, MAX_REFERRALS);
        // Kept as the order's earn, so a refund of the purchase takes the
        // reward back (ReverseEarn) as it does the buyer's own points.
        self.add_earned(order, points, expires_at);
        self.record(now, EntryKind::Referral, order, points);
    }

    /// What happened, oldest first (the last [`MAX_HISTORY`] entries).
    pub fn history(&self) -> impl Iterator<Item = &Entry> {
        self.history.iter()
    }

    /// `(points left, expires_at)` per expiry, oldest first (lots of the
    /// same expiry add up): unexpired as of the last change, so filter
    /// with `now` to show them.
    pub fn lots(&self) -> impl Iterator<Item = (i64, DateTime<Utc>)> + '_ {
        self.lots
            .chunk_by(|a, b| a.expires_at == b.expires_at)
            .filter_map(|same| {
                let points = same
                    .iter()
                    .fold(0i64, |sum, l| sum.saturating_add(l.points));
                same.first().map(|l| (points, l.expires_at))
            })
    }

    fn earn(
        &mut self,
        order: &OrderKey,
        points: i64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if points <= 0 {
            return;
        }
        self.add_earned(order, points, expires_at);
        self.record(now, EntryKind::Earned, order, points);
    }

    /// A lot of `points` earned by `order`, remembered for ReverseEarn.
    fn add_earned(&mut self, order: &OrderKey, points: i64, expires_at: DateTime<Utc>) {
        lots::insert(
            &mut self.lots,
            Lot {
                order: order.clone(),
                origin: Origin::Earned,
                points,
                expires_at,
            },
        );
        match self.earned.iter_mut().find(|(o, _)| o == order) {
            Some((_, sum)) => *sum = sum.saturating_add(points),
            None => push_bounded(&mut self.earned, (order.clone(), points), MAX_APPLIED_OPS),
        }
    }

    /// Spends `min(points, the hold)` (no more than the account has), or
    /// with no live hold what is available; drops the hold either way.
    fn commit(&mut self, order: &OrderKey, points: i64, now: DateTime<Utc>) {
        let cap = match self.holds.remove(order) {
            Some(hold) => hold.points.min(self.live_points()),
            None => self.available_without(order, now),
        };
        let pieces = lots::take(&mut self.lots, points.min(cap), |_| true);
        let taken = lots::total(&pieces);
        if taken == 0 {
            return;
        }
        match self.spent.iter_mut().find(|(o, _)| o == order) {
            Some((_, record)) => {
                for piece in pieces {
                    lots::add_piece(record, piece);
                }
                bound_pieces(record);
            }
            None => {
                let mut record = pieces;
                bound_pieces(&mut record);
                push_bounded(&mut self.spent, (order.clone(), record), MAX_APPLIED_OPS);
            }
        }
        self.record(now, EntryKind::Spent, order, -taken);
    }

    /// Puts an order's spend back as lots with the expiries it was taken
    /// from (the caller then prunes those already expired, as `Expired`).
    fn return_spent(&mut self, order: &OrderKey, now: DateTime<Utc>) {
        let Some(i) = self.spent.iter().position(|(o, _)| o == order) else {
            return;
        };
        let Some((_, pieces)) = self.spent.remove(i) else {
            return;
        };
        for &(expires_at, points) in &pieces {
            let lot = Lot {
                order: order.clone(),
                origin: Origin::Returned,
                points,
                expires_at,
            };
            lots::insert(&mut self.lots, lot);
        }
        self.record(now, EntryKind::Returned, order, lots::total(&pieces));
    }

    /// Takes back what `order` earned and has not expired: from its own
    /// lot first, then the soonest-expiring others, never below zero.
    fn reverse_earn(&mut self, order: &OrderKey, now: DateTime<Utc>) {
        let Some(i) = self.earned.iter().position(|(o, _)| o == order) else {
            return;
        };
        let Some((_, want)) = self.earned.remove(i) else {
            return;
        };
        let own = lots::take(&mut self.lots, want, |l| {
            l.origin == Origin::Earned && l.order == *order
        });
        let own = lots::total(&own);
        let rest = lots::take(&mut self.lots, want.saturating_sub(own), |_| true);
        let taken = own.saturating_add(lots::total(&rest));
        if taken > 0 {
            self.record(now, EntryKind::Reversed, order, -taken);
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        self.prune_lots(now);
        self.holds.retain(|_, h| h.live(now));
    }

    /// Drops the lots expired by `now`, each with an `Expired` entry at its
    /// expiry; what an earned lot loses no longer counts for `ReverseEarn`.
    fn prune_lots(&mut self, now: DateTime<Utc>) {
        let (expired, live): (Vec<Lot>, Vec<Lot>) = std::mem::take(&mut self.lots)
            .into_iter()
            .partition(|l| l.expires_at <= now);
        self.lots = live;
        for lot in expired {
            if lot.origin == Origin::Earned {
                self.forget_earned(&lot.order, lot.points);
            }
            self.record(lot.expires_at, EntryKind::Expired, &lot.order, -lot.points);
        }
    }

    fn forget_earned(&mut self, order: &OrderKey, points: i64) {
        let Some(i) = self.earned.iter().position(|(o, _)| o == order) else {
            return;
        };
        if let Some((_, sum)) = self.earned.get_mut(i) {
            *sum = sum.saturating_sub(points);
            if *sum <= 0 {
                self.earned.remove(i);
            }
        }
    }

    /// All points in lots (callers have pruned: all are live).
    fn live_points(&self) -> i64 {
        self.lots
            .iter()
            .fold(0i64, |sum, l| sum.saturating_add(l.points))
    }

    /// Live holds' points at `now`, without `except`'s.
    fn live_held(&self, now: DateTime<Utc>, except: Option<&str>) -> i64 {
        self.holds
            .iter()
            .filter(|(o, h)| h.live(now) && Some(o.as_str()) != except)
            .fold(0i64, |sum, (_, h)| sum.saturating_add(h.points))
    }

    /// Points available to `order`: live points less other orders' holds.
    fn available_without(&self, order: &str, now: DateTime<Utc>) -> i64 {
        self.live_points()
            .saturating_sub(self.live_held(now, Some(order)))
            .max(0)
    }

    fn record(&mut self, at: DateTime<Utc>, kind: EntryKind, order: &OrderKey, points: i64) {
        let entry = Entry {
            at,
            kind,
            order: order.clone(),
            points,
        };
        push_bounded(&mut self.history, entry, MAX_HISTORY);
    }
}

/// Keeps a spend's record to [`MAX_SPENT_PIECES`] expiries.
fn bound_pieces(pieces: &mut Vec<Piece>) {
    lots::merge_closest(
        pieces,
        MAX_SPENT_PIECES,
        |(at, _)| *at,
        |later, (_, n)| later.1 = later.1.saturating_add(n),
    );
}

/// Appends `item`, dropping the oldest beyond `max`.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    queue.push_back(item);
    while queue.len() > max {
        queue.pop_front();
    }
}
