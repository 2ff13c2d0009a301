//! The bonus-point account as a pure decider: one customer's points, earned
//! in lots that expire, reserved by holds while an order is confirmed,
//! spent, returned and reversed, each district operation applied once.
//!
//! # Why a record and pure functions
//!
//! Points are one global balance per customer, while each district owns
//! its orders. The balance is an [`Account`], stored as one record per
//! customer in a NATS JetStream KV bucket (encoded with postcard). A
//! district node reads the record, calls [`Account::reserve`] or
//! [`Account::apply`] with its own `now`, and writes the record back with
//! compare-and-set on the revision it read. When two districts change the
//! same account at once, one write fails and that node decides again
//! against the winner's record, so a balance is never spent twice, and
//! there is no loyalty service in between to run and lose.
//!
//! That is why this crate has no IO, no clock read and no randomness: the
//! same record, operation and `now` always give the same record, so a
//! retry after a lost compare-and-set is safe. It is also why everything
//! the rules need is in the record (the holds, which lots each spend
//! took from, what each order earned, the op ids applied) and why each
//! part is bounded (see "Bounds"): the whole value is rewritten by every
//! change.
//!
//! # The balance ([`Account::balance`])
//!
//! - `points`: points in lots not yet expired (a lot counts while
//!   `now < expires_at`);
//! - `held`: points reserved by live holds (a hold counts while
//!   `now - at < HOLD_TTL_SECS`);
//! - `available = max(points - held, 0)`: what a new hold may reserve;
//! - `next_expiry` and `expiring_points`: the soonest expiry among the
//!   live lots and how many points expire then.
//!
//! The balance is computed as of the `now` asked for: a lot stops counting
//! at its `expires_at` even if no change has pruned it yet.
//!
//! # Reserving ([`Account::reserve`], [`Account::release_hold`])
//!
//! Before an order that spends points is confirmed, its node reserves them
//! for the order's [`OrderKey`]. This is a question ("may this order spend
//! this?"), so it may refuse: [`LoyaltyError::NotPositive`] for
//! `points <= 0`, [`LoyaltyError::TooManyHolds`] beyond [`MAX_HOLDS`]
//! holds, [`LoyaltyError::Insufficient`] when `points` is more than is
//! available. Reserving again for the same order is idempotent with the
//! same points: the hold is left as it is and the balance is not checked
//! again (the hold was granted; a node retrying after a write it could not
//! confirm gets the same answer; if points have gone since, by expiry or a
//! reversal, Commit clamps). With different points it replaces the hold,
//! checked against what is available without the old hold (a refused
//! replacement leaves the old hold).
//!
//! A hold expires [`HOLD_TTL_SECS`] after it was made: a node that crashed
//! between reserve and confirm leaves one behind, and orders settle within
//! about 90 s, so after 15 minutes it no longer counts and the next change
//! prunes it. `release_hold` is the node's own undo when its confirm
//! failed after reserving; it needs no op id (the hold is its own).
//!
//! # Operations ([`Account::apply`], [`LoyaltyOp`])
//!
//! Everything else is a district's operation, a fact from its log,
//! applied at most once per op id. `apply` is total: it never fails and
//! clamps instead, because a fact cannot be refused and the district must
//! be able to settle its outbox. Before each operation expired lots and
//! stale holds are pruned; an op id seen before changes nothing (not even
//! pruning).
//!
//! - **Earn** adds a lot of `points` expiring at `expires_at` (nothing for
//!   `points <= 0`) and counts them as earned by the order. A lot that has
//!   already expired is recorded and expires at once.
//! - **Commit** spends `min(points, the hold's points)` and drops the hold.
//!   If the hold is gone (pruned after [`HOLD_TTL_SECS`], or never made)
//!   the order was still bought, so it spends `min(points, available)`;
//!   either way never more than the account has. Points are taken from the
//!   lots that expire first, and the record remembers which expiries the
//!   order took how much from. Committing less than was reserved releases
//!   the rest.
//! - **Release** drops the order's hold.
//! - **ReturnSpent** puts an order's committed spend back as lots with the
//!   expiries they were taken from. Points whose expiry has passed in the
//!   meantime come back expired: the `Returned` entry shows all of them,
//!   followed by an `Expired` entry for each expiry already past, so the
//!   balance grows only by what is still valid.
//! - **ReverseEarn** takes back what the order earned and has not expired
//!   (points that expired unused are not taken again from other lots):
//!   from the order's own lot while it is there, then from the lots that
//!   expire first (the customer may have spent the earned points already),
//!   never below zero. The `Reversed` entry shows what was taken. A
//!   referral reward counts as earned by the purchase that paid it, so on
//!   the share code's owner's account ReverseEarn of that order takes the
//!   reward back (the payment method stays rewarded: a refunded purchase
//!   does not open the code to the same card again).
//!
//! An operation on an order the account does not know (Release without a
//! hold, ReturnSpent without a spend, ReverseEarn without an earn, or a
//! second ReturnSpent or ReverseEarn of the same order) changes nothing but
//! still remembers the op id. Commit is the exception by design: without a
//! hold it spends what is available (above).
//!
//! # History
//!
//! Every change of points is an [`Entry`] (signed: `+` in, `-` out), newest
//! last; no entry is written when nothing moved, except `Returned`, which
//! is written even when every returned point had expired. Until the history
//! is trimmed, the entries' points add up to the balance as of the last
//! change (a lot that expires later is subtracted when it is pruned). An `Expired`
//! entry's `at` is the lot's `expires_at` (when the points stopped
//! counting), the other entries' `at` is the `now` of the change.
//!
//! # Bounds and what they cost
//!
//! - [`MAX_HISTORY`] entries: older ones are dropped (the history is a
//!   view for the customer, not the ledger).
//! - [`MAX_APPLIED_OPS`] op ids: the oldest is forgotten, so an op
//!   retried after that many newer ones on the same account would apply
//!   twice (districts retry within seconds).
//! - [`MAX_APPLIED_OPS`] spend records and as many earn records, oldest
//!   dropped first: a ReturnSpent or ReverseEarn for an order that many
//!   spending (or earning) orders ago is a no-op, so the customer does not
//!   get those points back, or keeps them.
//! - [`MAX_SPENT_PIECES`] expiries per spend record and [`MAX_LOTS`] lots:
//!   beyond them the two closest expiries are merged, the earlier into the
//!   later, in the customer's favour (the merged points live at most that
//!   gap longer; a merged lot belongs to the later lot's order for
//!   ReverseEarn).
//! - [`MAX_HOLDS`] holds: reserve refuses more.
//!
//! With op ids and order keys of about 40 bytes, a record filled to every
//! bound is about 430 KiB (tested to stay under 512 KiB, within NATS's
//! default 1 MiB payload); a typical one is a few KiB.
//!
//! # Encoding
//!
//! The record is postcard (not self-describing): no internally tagged
//! enums, `flatten` or `skip_serializing_if`, and its fields are in a fixed
//! order. Adding or reordering a field needs a migration of the bucket.
//! Amounts saturate instead of overflowing.

mod account;
pub mod coupon;
mod lots;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use account::Account;

/// A hold older than this no longer counts and is pruned: a node that
/// crashed between reserve and confirm leaves one; orders settle within
/// about 90 s.
pub const HOLD_TTL_SECS: i64 = 15 * 60;
/// History entries kept, newest last.
pub const MAX_HISTORY: usize = 100;
/// Op ids remembered for idempotency (oldest dropped); also the number of
/// spend and earn records kept for ReturnSpent and ReverseEarn.
pub const MAX_APPLIED_OPS: usize = 1024;
/// Holds at once: reserve refuses beyond ([`LoyaltyError::TooManyHolds`]).
pub const MAX_HOLDS: usize = 64;
/// Lots kept: beyond, the two closest expiries merge into the later.
pub const MAX_LOTS: usize = 256;
/// Expiries remembered per spend for ReturnSpent: beyond, the two closest
/// merge into the later.
pub const MAX_SPENT_PIECES: usize = 8;

/// Which order an operation is about, across districts:
/// `{district}/{order}` (order ids are unique within a district).
pub type OrderKey = String;

/// A change to one customer's account, decided by a district from its log.
/// Each is applied at most once per `op_id` ([`Account::apply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoyaltyOp {
    /// Points earned by a purchase (or a referral reward), spendable until
    /// `expires_at`.
    Earn {
        order: OrderKey,
        points: i64,
        expires_at: DateTime<Utc>,
    },
    /// The order was bought: spend `points` (at most what its hold
    /// reserved) and drop the hold.
    Commit { order: OrderKey, points: i64 },
    /// The order was not bought: drop its hold.
    Release { order: OrderKey },
    /// The order was refunded after its spend was committed: the points
    /// come back, with the expiry of the lots they were taken from.
    ReturnSpent { order: OrderKey },
    /// The order was refunded: the points it earned are taken back (what
    /// is left of them; the balance never goes below zero).
    ReverseEarn { order: OrderKey },
    /// On the buyer's account: the order was bought with `owner`'s share
    /// code (kept only for the first such order: a customer is referred
    /// once).
    Referred { order: OrderKey, owner: String },
    /// On the share code's owner's account: `customer` bought with the
    /// code. Earns `points` unless a purchase paid with the same payment
    /// method (`method`: a hash of it) already earned this owner a reward,
    /// so one card cannot farm a code through made-up accounts. The reward
    /// counts as earned by `order` (ReverseEarn takes it back).
    ReferralReward {
        order: OrderKey,
        customer: String,
        method: u64,
        points: i64,
        expires_at: DateTime<Utc>,
    },
}

/// Most referrals remembered per owner (newest kept), and most payment
/// methods remembered as rewarded.
pub const MAX_REFERRALS: usize = 256;

/// One purchase made with a share code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// The other side: the buyer on the owner's account, the owner on the
    /// buyer's.
    pub customer: String,
    pub order: OrderKey,
    pub at: DateTime<Utc>,
}

/// One change of points, as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When: the change's `now`, or for `Expired` the lot's expiry.
    pub at: DateTime<Utc>,
    pub kind: EntryKind,
    pub order: OrderKey,
    /// Signed: `+` in, `-` out.
    pub points: i64,
}

/// What an [`Entry`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Earned,
    Spent,
    Returned,
    Reversed,
    Expired,
    /// A reward for a purchase made with the customer's share code.
    Referral,
}

/// An account's balance at one moment ([`Account::balance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Points in unexpired lots (earned or returned, not spent).
    pub points: i64,
    /// Points reserved by live holds.
    pub held: i64,
    /// `max(points - held, 0)`: what a new hold may reserve.
    pub available: i64,
    /// The soonest expiry of a live lot.
    pub next_expiry: Option<DateTime<Utc>>,
    /// Points expiring at `next_expiry` (0 without one).
    pub expiring_points: i64,
}

/// Why a reserve was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoyaltyError {
    #[error("not enough points: {available} available, {wanted} wanted")]
    Insufficient { available: i64, wanted: i64 },
    #[error("too many orders hold points at once (at most {MAX_HOLDS})")]
    TooManyHolds,
    #[error("points to reserve must be positive")]
    NotPositive,
}

/// Characters of a share code: Crockford's base 32 (no I, L, O, U), so a
/// code read aloud or typed from a receipt is hard to get wrong.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a share code: 10 characters, 50 bits.
pub const SHARE_CODE_LEN: usize = 10;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A customer's share code: the same on every purchase and in every
/// district, derived from the customer's id (FNV-1a, 50 bits). The ledger
/// registers it on the customer's first purchase; a collision (another
/// customer holding it already) leaves the later customer without one.
pub fn share_code(customer: &str) -> String {
    let hash = fnv1a(customer.as_bytes());
    (0..SHARE_CODE_LEN)
        .map(|i| char::from(CODE_ALPHABET[((hash >> (i * 5)) & 31) as usize]))
        .collect()
}

/// A share code as typed: upper-cased, `None` if it cannot be one.
pub fn parse_share_code(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    (code.len() == SHARE_CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// A payment method as the referral rules remember it: a hash, never the
/// token itself.
pub fn method_hash(payment_method: &str) -> u64 {
    fnv1a(payment_method.as_bytes())
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn a_share_code_is_stable_typable_and_parses_back() {
        let code = share_code("alice");
        assert_eq!(code, share_code("alice"));
        assert_ne!(code, share_code("bob"));
        assert_eq!(code.len(), SHARE_CODE_LEN);
        assert_eq!(
            parse_share_code(&code.to_ascii_lowercase()),
            Some(code.clone())
        );
        assert_eq!(
            parse_share_code("I0L0U0O0I0"),
            None,
            "not Crockford characters"
        );
        assert_eq!(parse_share_code("SHORT"), None);
    }
}
