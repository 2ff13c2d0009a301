//! Points as lots: each earn (and each returned spend) is a lot with its
//! own expiry, kept oldest expiry first so a spend takes the points that
//! would expire first (the customer loses as little as possible to expiry).
//!
//! Lots are never empty: an operation that empties one drops it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::OrderKey;

/// Where a lot's points came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Origin {
    /// An `Earn` for `Lot::order`: a `ReverseEarn` of that order takes from
    /// it first.
    Earned,
    /// A `ReturnSpent` for `Lot::order`: the points of a refunded spend,
    /// back with the expiry they had.
    Returned,
}

/// Points spendable until `expires_at` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lot {
    pub(crate) order: OrderKey,
    pub(crate) origin: Origin,
    pub(crate) points: i64,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Points a spend took from lots of one expiry: `(expires_at, points)`.
pub(crate) type Piece = (DateTime<Utc>, i64);

/// Inserts `lot` after every lot expiring no later (equal expiries keep
/// arrival order).
pub(crate) fn insert(lots: &mut Vec<Lot>, lot: Lot) {
    let at = lots.partition_point(|l| l.expires_at <= lot.expires_at);
    lots.insert(at, lot);
}

/// Takes up to `want` points from the lots `pick` accepts, soonest expiry
/// first, and drops the lots it empties. Returns what it took, by expiry
/// (oldest first, one piece per expiry).
pub(crate) fn take(lots: &mut Vec<Lot>, want: i64, pick: impl Fn(&Lot) -> bool) -> Vec<Piece> {
    let mut left = want.max(0);
    let mut pieces = Vec::new();
    for lot in lots.iter_mut().filter(|l| pick(l)) {
        if left == 0 {
            break;
        }
        let n = lot.points.min(left);
        if n > 0 {
            lot.points -= n;
            left -= n;
            add_piece(&mut pieces, (lot.expires_at, n));
        }
    }
    lots.retain(|l| l.points > 0);
    pieces
}

/// Sum of the pieces' points (saturating).
pub(crate) fn total(pieces: &[Piece]) -> i64 {
    pieces.iter().fold(0, |sum, (_, n)| sum.saturating_add(*n))
}

/// Adds a piece to pieces sorted by expiry, into the piece of the same
/// expiry if there is one.
pub(crate) fn add_piece(pieces: &mut Vec<Piece>, (at, n): Piece) {
    match pieces.binary_search_by(|(e, _)| e.cmp(&at)) {
        Ok(i) => {
            if let Some((_, points)) = pieces.get_mut(i) {
                *points = points.saturating_add(n);
            }
        }
        Err(i) => pieces.insert(i, (at, n)),
    }
}

/// Merges neighbours until at most `max` items are left: each time the two
/// whose expiries are closest (the first such pair), the earlier into the
/// later, which keeps its expiry (and, for lots, its order and origin).
/// The cost is in the customer's favour: the merged points live at most
/// that gap longer.
pub(crate) fn merge_closest<T>(
    items: &mut Vec<T>,
    max: usize,
    expiry: impl Fn(&T) -> DateTime<Utc>,
    absorb: impl Fn(&mut T, T),
) {
    while items.len() > max.max(1) {
        let Some(i) = closest_pair(items.iter().map(&expiry)) else {
            return;
        };
        let earlier = items.remove(i);
        match items.get_mut(i) {
            Some(later) => absorb(later, earlier),
            None => return,
        }
    }
}

/// Index `i` of the first neighbours `i`, `i + 1` with the smallest gap
/// between their expiries; `None` below two items.
fn closest_pair(expiries: impl Iterator<Item = DateTime<Utc>>) -> Option<usize> {
    let mut best: Option<(usize, TimeDelta)> = None;
    let mut previous: Option<DateTime<Utc>> = None;
    for (i, at) in expiries.enumerate() {
        if let Some(p) = previous {
            let gap = at.signed_duration_since(p);
            let closer = match best {
                Some((_, g)) => gap < g,
                None => true,
            };
            if closer {
                best = Some((i - 1, gap));
            }
        }
        previous = Some(at);
    }
    best.map(|(i, _)| i)
}
