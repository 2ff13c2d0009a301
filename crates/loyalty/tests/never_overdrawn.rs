//! Never overdrawn, over arbitrary histories of one account: two districts
//! reserve (also racing on copies of the same record, as compare-and-set
//! makes them), commit, release, undo, earn (some already expired), return
//! and reverse, while the clock moves by seconds, around the hold TTL, or
//! by hours past lots' expiries. After every step:
//!
//! - `points`, `held` and `available` are >= 0 and
//!   `available = max(points - held, 0)`;
//! - the ledger this test keeps adds up:
//!   `points = earned + returned - expired - reversed - spent`, so what
//!   was spent never exceeds `earned + returned - expired - reversed`.
//!   Earned comes from the ops; expired is the balance's drop while only
//!   the clock moved (the record untouched), plus what an earn or a return
//!   brought already expired; spent, returned and reversed are each op's
//!   effect on `points` at its own `now`, each checked against what the
//!   test knows: a commit spends at most its live hold (without one, at
//!   most what was available), a return gives back at most what the order
//!   spent, a reversal takes at most what the order earned;
//! - after a reserve that made or changed a hold, `held <= points` (the
//!   second of two reserves that together exceed the balance is refused;
//!   a repeat of a hold is `Ok` without a new check, by design);
//! - re-applying any op id, now or after any later step, returns `false`
//!   and leaves the record equal.
//!
//! Pure: the clock is a value, so a failure shrinks to a replayable
//! history.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use loyalty::{Account, LoyaltyError, LoyaltyOp, MAX_HISTORY};
use proptest::prelude::*;

const DISTRICTS: [&str; 2] = ["north", "south"];
const ORDERS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Order {
    district: usize,
    n: usize,
}

impl Order {
    fn key(self) -> String {
        format!("{}/o-{}", DISTRICTS[self.district], self.n)
    }
}

#[derive(Debug, Clone)]
enum Step {
    Reserve(Order, i64),
    /// Both districts read the record and reserve on their copy; the first
    /// to write wins, the other's compare-and-set fails and it decides
    /// again on the winner's record.
    Race(Order, i64, Order, i64),
    Commit(Order, i64),
    Release(Order),
    /// The node's own undo (`release_hold`, no op id).
    Undo(Order),
    /// Points, and minutes from now to the expiry (may be past).
    Earn(Order, i64, i64),
    ReturnSpent(Order),
    ReverseEarn(Order),
    Advance(i64),
    /// Re-apply the op id of an earlier op (picked modulo their number).
    Replay(usize),
}

fn order() -> impl Strategy<Value = Order> {
    (0..DISTRICTS.len(), 0..ORDERS).prop_map(|(district, n)| Order { district, n })
}

fn step() -> impl Strategy<Value = Step> {
    let secs = prop_oneof![0..120i64, 600..1_200i64, 3_600..(2 * 86_400i64)];
    prop_oneof![
        4 => (order(), -2..80i64).prop_map(|(o, p)| Step::Reserve(o, p)),
        2 => (order(), 1..80i64, order(), 1..80i64)
            .prop_map(|(a, p, b, q)| Step::Race(
                Order { district: 0, ..a }, p, Order { district: 1, ..b }, q
            )),
        4 => (order(), -5..100i64).prop_map(|(o, p)| Step::Commit(o, p)),
        1 => order().prop_map(Step::Release),
        1 => order().prop_map(Step::Undo),
        4 => (order(), -5..120i64, -60..(3 * 24 * 60i64))
            .prop_map(|(o, p, m)| Step::Earn(o, p, m)),
        2 => order().prop_map(Step::ReturnSpent),
        2 => order().prop_map(Step::ReverseEarn),
        3 => secs.prop_map(Step::Advance),
        1 => any::<usize>().prop_map(Step::Replay),
    ]
}

/// What went in and out of the account, as this test sees it.
#[derive(Debug, Default)]
struct Ledger {
    earned: i64,
    returned: i64,
    expired: i64,
    reversed: i64,
    spent: i64,
}

struct Run {
    account: Account,
    now: DateTime<Utc>,
    ledger: Ledger,
    /// Spent by each order and not returned yet.
    spent_by: BTreeMap<String, i64>,
    /// Earned by each order and not reversed yet.
    earned_by: BTreeMap<String, i64>,
    applied: Vec<(String, LoyaltyOp)>,
}

impl Run {
    fn new() -> Self {
        let start = NaiveDateTime::parse_from_str("2026-12-04T12:00", "%Y-%m-%dT%H:%M")
            .map(|t| t.and_utc())
            .unwrap_or_default();
        Run {
            account: Account::default(),
            now: start,
            ledger: Ledger::default(),
            spent_by: BTreeMap::new(),
            earned_by: BTreeMap::new(),
            applied: Vec::new(),
        }
    }

    fn points(&self) -> i64 {
        self.account.balance(self.now).points
    }

    /// Applies `op` under a new id, checks that re-applying it changes
    /// nothing, and returns its effect on `points`.
    fn apply(&mut self, op: LoyaltyOp) -> Result<i64, TestCaseError> {
        let before = self.points();
        let id = format!("op-{}", self.applied.len());
        prop_assert!(self.account.apply(&id, &op, self.now), "{id} is new");
        let once = self.account.clone();
        prop_assert!(!self.account.apply(&id, &op, self.now));
        prop_assert_eq!(
            &self.account,
            &once,
            "re-applying {} changed the record",
            id
        );
        self.applied.push((id, op));
        Ok(self.points() - before)
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Reserve(o, points) => self.reserve(o, points),
            Step::Race(a, p, b, q) => self.race(a, p, b, q),
            Step::Commit(o, points) => self.commit(o, points),
            Step::Release(o) => {
                let moved = self.apply(LoyaltyOp::Release { order: o.key() })?;
                prop_assert_eq!(moved, 0);
                prop_assert_eq!(self.account.held_for(&o.key(), self.now), None);
                Ok(())
            }
            Step::Undo(o) => {
                let before = self.points();
                self.account.release_hold(&o.key());
                prop_assert_eq!(self.points(), before);
                prop_assert_eq!(self.account.held_for(&o.key(), self.now), None);
                Ok(())
            }
            Step::Earn(o, points, minutes) => self.earn(o, points, minutes),
            Step::ReturnSpent(o) => self.return_spent(o),
            Step::ReverseEarn(o) => self.reverse_earn(o),
            Step::Advance(secs) => {
                let before = self.points();
                self.now += Duration::seconds(secs);
                let dropped = before - self.points();
                prop_assert!(dropped >= 0, "the clock alone gave {} points", -dropped);
                self.ledger.expired += dropped;
                Ok(())
            }
            Step::Replay(pick) => self.replay(pick),
        }
    }

    fn reserve(&mut self, o: Order, points: i64) -> Result<(), TestCaseError> {
        let before = self.points();
        let repeat = self.account.held_for(&o.key(), self.now) == Some(points);
        let result = self.account.reserve(&o.key(), points, self.now);
        prop_assert_eq!(self.points(), before, "a reserve moved points");
        let b = self.account.balance(self.now);
        match result {
            Ok(()) => {
                prop_assert_eq!(self.account.held_for(&o.key(), self.now), Some(points));
                // A repeat keeps the hold it was granted, even if points
                // have gone since (the commit clamps); a new or changed
                // hold is checked against the balance.
                if !repeat {
                    prop_assert!(b.held <= b.points, "held {} of {}", b.held, b.points);
                }
            }
            Err(LoyaltyError::NotPositive) => prop_assert!(points <= 0),
            Err(LoyaltyError::Insufficient { available, wanted }) => {
                prop_assert_eq!(wanted, points);
                prop_assert!(available < wanted);
            }
            Err(LoyaltyError::TooManyHolds) => prop_assert!(false, "only 6 orders here"),
        }
        Ok(())
    }

    fn race(&mut self, a: Order, p: i64, b: Order, q: i64) -> Result<(), TestCaseError> {
        let mut north = self.account.clone();
        let mut south = self.account.clone();
        let north_ok = north.reserve(&a.key(), p, self.now).is_ok();
        let south_ok = south.reserve(&b.key(), q, self.now).is_ok();
        let written = if north_ok {
            let repeat = self.account.held_for(&a.key(), self.now) == Some(p);
            self.account = north;
            if south_ok {
                // The south's write loses: it decides again (and checks).
                self.reserve(b, q)?;
            }
            !repeat
        } else if south_ok {
            let repeat = self.account.held_for(&b.key(), self.now) == Some(q);
            self.account = south;
            !repeat
        } else {
            false
        };
        let bal = self.account.balance(self.now);
        if written {
            prop_assert!(bal.held <= bal.points, "a race overdrew: {:?}", bal);
        }
        Ok(())
    }

    fn commit(&mut self, o: Order, points: i64) -> Result<(), TestCaseError> {
        let hold = self.account.held_for(&o.key(), self.now);
        let available = self.account.balance(self.now).available;
        let spent = -self.apply(LoyaltyOp::Commit {
            order: o.key(),
            points,
        })?;
        prop_assert!(spent >= 0, "a commit gave {} points", -spent);
        prop_assert!(
            spent <= points.max(0),
            "spent {} of {} asked",
            spent,
            points
        );
        match hold {
            Some(h) => prop_assert!(spent <= h, "spent {} with a hold of {}", spent, h),
            None => prop_assert!(spent <= available, "spent {} of {}", spent, available),
        }
        prop_assert_eq!(self.account.held_for(&o.key(), self.now), None);
        self.ledger.spent += spent;
        *self.spent_by.entry(o.key()).or_default() += spent;
        Ok(())
    }

    fn earn(&mut self, o: Order, points: i64, minutes: i64) -> Result<(), TestCaseError> {
        let expires_at = self.now + Duration::minutes(minutes);
        let moved = self.apply(LoyaltyOp::Earn {
            order: o.key(),
            points,
            expires_at,
        })?;
        let earned = points.max(0);
        let live = if expires_at > self.now { earned } else { 0 };
        prop_assert_eq!(moved, live);
        self.ledger.earned += earned;
        self.ledger.expired += earned - live;
        *self.earned_by.entry(o.key()).or_default() += earned;
        Ok(())
    }

    fn return_spent(&mut self, o: Order) -> Result<(), TestCaseError> {
        let spent = self.spent_by.remove(&o.key()).unwrap_or(0);
        let back = self.apply(LoyaltyOp::ReturnSpent { order: o.key() })?;
        prop_assert!(
            (0..=spent).contains(&back),
            "{} back of {} spent",
            back,
            spent
        );
        self.ledger.returned += spent;
        self.ledger.expired += spent - back;
        Ok(())
    }

    fn reverse_earn(&mut self, o: Order) -> Result<(), TestCaseError> {
        let earned = self.earned_by.remove(&o.key()).unwrap_or(0);
        let taken = -self.apply(LoyaltyOp::ReverseEarn { order: o.key() })?;
        prop_assert!(
            (0..=earned).contains(&taken),
            "took {} of {}",
            taken,
            earned
        );
        self.ledger.reversed += taken;
        Ok(())
    }

    fn replay(&mut self, pick: usize) -> Result<(), TestCaseError> {
        if self.applied.is_empty() {
            return Ok(());
        }
        let (id, op) = &self.applied[pick % self.applied.len()];
        let before = self.account.clone();
        prop_assert!(
            !self.account.apply(id, op, self.now),
            "{} applied twice",
            id
        );
        prop_assert_eq!(&self.account, &before);
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let b = self.account.balance(self.now);
        prop_assert!(b.points >= 0 && b.held >= 0 && b.available >= 0, "{:?}", b);
        prop_assert_eq!(b.available, (b.points - b.held).max(0));
        let l = &self.ledger;
        let left = l.earned + l.returned - l.expired - l.reversed;
        prop_assert!(l.spent <= left, "spent {} of {}: {:?}", l.spent, left, l);
        prop_assert_eq!(b.points, left - l.spent, "{:?}", l);
        prop_assert!(self.account.history().count() <= MAX_HISTORY);
        let lots: Vec<_> = self.account.lots().collect();
        prop_assert!(lots.iter().all(|(p, _)| *p > 0));
        prop_assert!(lots.windows(2).all(|w| w[0].1 < w[1].1));
        Ok(())
    }
}

proptest! {
    // 2,000 histories in every `cargo test`; `PROPTEST_CASES` overrides.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn an_account_is_never_overdrawn(steps in prop::collection::vec(step(), 1..60)) {
        let mut run = Run::new();
        for step in &steps {
            run.step(step)?;
            run.check()?;
        }
    }
}
