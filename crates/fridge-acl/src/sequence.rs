//! Which of a fridge's report numbers have been seen: the part of the cursor
//! that turns "late, twice, out of order" into "once".
//!
//! Firmware numbers every report from 1 and never reuses a number (it keeps
//! the counter in flash across reboots). Instead of remembering every number
//! seen, the state keeps the highest one and the *gaps* below it: a healthy
//! fridge has none, a flaky link has a few, so the state stays small.

use serde::{Deserialize, Serialize};

/// Most gap ranges remembered per fridge. A link that loses more than this
/// many separate stretches of reports is broken; the oldest gaps are given
/// up on, and reports that fill them later are refused as stale.
pub const MAX_TRACKED_GAPS: usize = 256;

/// An inclusive range of report numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

impl SeqRange {
    fn contains(&self, seq: u64) -> bool {
        self.first <= seq && seq <= self.last
    }
}

/// How a report number relates to what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than anything seen.
    New,
    /// Fills (part of) a gap: it was sent before reports already applied.
    Late,
    /// Seen before.
    Duplicate,
    /// Falls in a gap that was given up on; too old to place.
    TooOld,
}

/// Report numbers seen for one fridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    highest: u64,
    /// Sorted, disjoint, never adjacent.
    missing: Vec<SeqRange>,
    /// Hull of the gaps given up on. A number inside it that is not missing
    /// may have been seen or lost; either way it is not applied.
    forgotten: Option<SeqRange>,
}

impl SequenceState {
    /// The highest report number seen (0 before the first report).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Report numbers below [`Self::highest`] not received yet, oldest first.
    pub fn missing(&self) -> &[SeqRange] {
        &self.missing
    }

    /// Records `seq` as seen and says how it arrived.
    pub fn admit(&mut self, seq: u64) -> Arrival {
        if seq > self.highest {
            if seq > self.highest.saturating_add(1) {
                self.missing.push(SeqRange {
                    first: self.highest + 1,
                    last: seq - 1,
                });
                self.forget_oldest_gaps();
            }
            self.highest = seq;
            return Arrival::New;
        }
        // Ranges are sorted by `first`: the candidate is the last range that
        // starts at or before `seq`.
        let idx = self.missing.partition_point(|r| r.first <= seq);
        if idx > 0 && self.missing[idx - 1].contains(seq) {
            let r = self.missing[idx - 1];
            match (r.first == seq, r.last == seq) {
                (true, true) => {
                    self.missing.remove(idx - 1);
                }
                (true, false) => self.missing[idx - 1].first = seq + 1,
                (false, true) => self.missing[idx - 1].last = seq - 1,
                (false, false) => {
                    self.missing[idx - 1].last = seq - 1;
                    self.missing.insert(
                        idx,
                        SeqRange {
                            first: seq + 1,
                            last: r.last,
                        },
                    );
                    self.forget_oldest_gaps();
                }
            }
            return Arrival::Late;
        }
        if self.forgotten.is_some_and(|f| f.contains(seq)) {
            Arrival::TooOld
        } else {
            Arrival::Duplicate
        }
    }

    fn forget_oldest_gaps(&mut self) {
        while self.missing.len() > MAX_TRACKED_GAPS {
            let gone = self.missing.remove(0);
            self.forgotten = Some(match self.forgotten {
                Some(f) => SeqRange {
                    first: f.first.min(gone.first),
                    last: f.last.max(gone.last),
                },
                None => gone,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_has_no_gaps() {
        let mut s = SequenceState::default();
        for seq in 1..=5 {
            assert_eq!(s.admit(seq), Arrival::New);
        }
        assert_eq!(s.highest(), 5);
        assert!(s.missing().is_empty());
        assert_eq!(s.admit(3), Arrival::Duplicate);
        assert_eq!(s.admit(5), Arrival::Duplicate);
    }

    #[test]
    fn gaps_are_noted_and_filled() {
        let mut s = SequenceState::default();
        assert_eq!(s.admit(1), Arrival::New);
        assert_eq!(s.admit(10), Arrival::New);
        assert_eq!(s.missing(), &[SeqRange { first: 2, last: 9 }]);
        assert_eq!(s.admit(5), Arrival::Late);
        assert_eq!(
            s.missing(),
            &[
                SeqRange { first: 2, last: 4 },
                SeqRange { first: 6, last: 9 }
            ]
        );
        assert_eq!(s.admit(5), Arrival::Duplicate);
        assert_eq!(s.admit(2), Arrival::Late);
        assert_eq!(s.admit(4), Arrival::Late);
        assert_eq!(s.admit(9), Arrival::Late);
        assert_eq!(
            s.missing(),
            &[
                SeqRange { first: 3, last: 3 },
                SeqRange { first: 6, last: 8 }
            ]
        );
        for seq in [3, 6, 7, 8] {
            assert_eq!(s.admit(seq), Arrival::Late);
        }
        assert!(s.missing().is_empty());
    }

    #[test]
    fn a_huge_jump_is_one_gap() {
        let mut s = SequenceState::default();
        s.admit(1);
        s.admit(u64::MAX);
        assert_eq!(
            s.missing(),
            &[SeqRange {
                first: 2,
                last: u64::MAX - 1
            }]
        );
        assert_eq!(s.admit(u64::MAX), Arrival::Duplicate);
    }

    #[test]
    fn oldest_gaps_are_forgotten_past_the_limit() {
        let mut s = SequenceState::default();
        // Every even number lost: one gap per odd number after the first.
        for seq in (1..=2 * (MAX_TRACKED_GAPS as u64 + 3)).step_by(2) {
            s.admit(seq);
        }
        assert_eq!(s.missing().len(), MAX_TRACKED_GAPS);
        assert_eq!(s.admit(2), Arrival::TooOld);
        assert_eq!(s.admit(3), Arrival::TooOld, "inside the forgotten hull");
        let last_missing = s.missing()[MAX_TRACKED_GAPS - 1].first;
        assert_eq!(s.admit(last_missing), Arrival::Late);
    }
}
