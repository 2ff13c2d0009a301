//! The fridge's own view of its stock: the newest inventory scan plus the
//! door sessions numbered after it.
//!
//! Applying reports in sequence order means: a scan replaces everything, a
//! door session adds and removes units. Reports arrive in any order, so this
//! model keeps the pieces that make the result order-independent — the
//! newest scan's counts and the door deltas numbered after it — and sums
//! them only when asked, clamping once at the end so a removal that arrives
//! before the refill it followed cannot be lost to a clamp at zero.

use std::collections::BTreeMap;

use protocol::MealId;
use serde::{Deserialize, Serialize};

/// Most door sessions remembered since the newest scan. A fridge that never
/// scans would otherwise grow its cursor forever; past this, the oldest are
/// folded into the counts and scans numbered before them become stale.
pub const MAX_DOOR_SESSIONS_SINCE_SCAN: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockModel {
    /// Number of the newest applied scan; 0 before the first.
    scan_seq: u64,
    /// Scans numbered at or below this are stale even if newer than
    /// `scan_seq`: door sessions after them were folded into `base`.
    scan_floor: u64,
    /// Units per meal at the newest scan (plus folded sessions). Before the
    /// first scan, a meal's base is adopted from the node on first touch.
    base: BTreeMap<MealId, i64>,
    /// Door sessions numbered after `scan_seq`: seq → meal → units in − out.
    doors: BTreeMap<u64, BTreeMap<MealId, i64>>,
}

impl StockModel {
    /// Number of the newest applied scan (0 before the first).
    pub fn scan_seq(&self) -> u64 {
        self.scan_seq
    }

    /// Units of `meal` the fridge holds, as far as its reports tell.
    pub fn on_hand(&self, meal: &str) -> u32 {
        let base = self.base.get(meal).copied().unwrap_or(0);
        let moved: i64 = self.doors.values().filter_map(|d| d.get(meal)).sum();
        u32::try_from((base + moved).max(0)).unwrap_or(u32::MAX)
    }

    /// Every meal the model has an opinion on.
    pub fn meals(&self) -> impl Iterator<Item = &MealId> {
        self.base
            .keys()
            .chain(self.doors.values().flat_map(|d| d.keys()))
    }

    /// Before the first scan the fridge has only reported movements, so the
    /// node's count is the best starting point for a meal; after a scan, a
    /// meal the scan did not list has 0 units and nothing is adopted.
    pub fn adopt(&mut self, meal: &MealId, node_on_hand: u32) {
        if self.scan_seq == 0 && !self.base.contains_key(meal) {
            let moved: i64 = self.doors.values().filter_map(|d| d.get(meal)).sum();
            self.base
                .insert(meal.clone(), i64::from(node_on_hand) - moved);
        }
    }

    /// Applies a full inventory scan; false if a newer one is already in.
    pub fn apply_scan(&mut self, seq: u64, counts: &BTreeMap<MealId, u32>) -> bool {
        if seq <= self.scan_seq || seq <= self.scan_floor {
            return false;
        }
        self.scan_seq = seq;
        self.base = counts
            .iter()
            .map(|(m, n)| (m.clone(), i64::from(*n)))
            .collect();
        // Sessions before the scan are already in its counts.
        self.doors = self.doors.split_off(&seq);
        true
    }

    /// Applies a door session's movements; false if a newer scan already
    /// counted them.
    pub fn apply_door(&mut self, seq: u64, moved: BTreeMap<MealId, i64>) -> bool {
        if seq < self.scan_seq {
            return false;
        }
        self.doors.insert(seq, moved);
        while self.doors.len() > MAX_DOOR_SESSIONS_SINCE_SCAN {
            let Some((oldest, moved)) = self.doors.pop_first() else {
                break;
            };
            for (meal, units) in moved {
                *self.base.entry(meal).or_default() += units;
            }
            self.scan_floor = self.scan_floor.max(oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&'static str, u32)]) -> BTreeMap<MealId, u32> {
        pairs
            .iter()
            .map(|(m, n)| (MealId::from_static(m), *n))
            .collect()
    }

    fn moved(pairs: &[(&'static str, i64)]) -> BTreeMap<MealId, i64> {
        pairs
            .iter()
            .map(|(m, n)| (MealId::from_static(m), *n))
            .collect()
    }

    #[test]
    fn late_scan_is_replayed_under_newer_doors() {
        let mut s = StockModel::default();
        s.adopt(&MealId::from_static("m-a"), 3);
        assert!(s.apply_door(8, moved(&[("m-a", -1)])));
        assert_eq!(s.on_hand("m-a"), 2);
        // Scan 7 counted 10 units before door session 8 took one.
        assert!(s.apply_scan(7, &counts(&[("m-a", 10)])));
        assert_eq!(s.on_hand("m-a"), 9);
        // Door session 5 is already inside scan 7.
        assert!(!s.apply_door(5, moved(&[("m-a", -4)])));
        assert_eq!(s.on_hand("m-a"), 9);
        assert!(!s.apply_scan(6, &counts(&[("m-a", 1)])), "stale scan");
        assert_eq!(s.on_hand("m-a"), 9);
    }

    #[test]
    fn clamps_once_at_the_end() {
        let mut s = StockModel::default();
        s.apply_scan(1, &counts(&[("m-a", 1)]));
        // Received in reverse: the take (3) came after the refill (2).
        s.apply_door(3, moved(&[("m-a", -3)]));
        assert_eq!(s.on_hand("m-a"), 0);
        s.apply_door(2, moved(&[("m-a", 2)]));
        assert_eq!(s.on_hand("m-a"), 0);
        s.apply_door(4, moved(&[("m-a", 5)]));
        assert_eq!(s.on_hand("m-a"), 5);
    }

    #[test]
    fn unlisted_meals_are_empty_after_a_scan() {
        let mut s = StockModel::default();
        s.adopt(&MealId::from_static("m-a"), 4);
        s.apply_scan(2, &counts(&[("m-b", 1)]));
        assert_eq!(s.on_hand("m-a"), 0);
        s.adopt(&MealId::from_static("m-a"), 4);
        assert_eq!(s.on_hand("m-a"), 0, "no adoption after a scan");
    }

    #[test]
    fn folding_keeps_totals_and_makes_old_scans_stale() {
        let mut s = StockModel::default();
        s.apply_scan(1, &counts(&[("m-a", 5)]));
        for seq in 0..(MAX_DOOR_SESSIONS_SINCE_SCAN as u64 + 10) {
            s.apply_door(100 + seq, moved(&[("m-a", 1)]));
        }
        assert_eq!(
            s.on_hand("m-a"),
            5 + MAX_DOOR_SESSIONS_SINCE_SCAN as u32 + 10
        );
        assert!(
            !s.apply_scan(50, &counts(&[])),
            "numbered before folded doors"
        );
        assert!(s.apply_scan(100_000, &counts(&[("m-a", 2)])));
        assert_eq!(s.on_hand("m-a"), 2);
    }
}
