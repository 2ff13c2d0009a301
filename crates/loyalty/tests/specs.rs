//! The account's rules (crate docs) as given/when/then specs with exact
//! points. "Now" is Friday 2026-12-04 12:00 UTC unless a spec says
//! otherwise; lots expire in January, February or March 2027.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use loyalty::{
    Account, Balance, Entry, EntryKind, LoyaltyError, LoyaltyOp, HOLD_TTL_SECS, MAX_APPLIED_OPS,
    MAX_HISTORY, MAX_HOLDS, MAX_LOTS, MAX_SPENT_PIECES,
};

// ---- fixtures ------------------------------------------------------------

fn at(text: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .unwrap()
        .and_utc()
}

fn now() -> DateTime<Utc> {
    at("2026-12-04T12:00")
}

fn jan() -> DateTime<Utc> {
    at("2027-01-31T00:00")
}

fn feb() -> DateTime<Utc> {
    at("2027-02-28T00:00")
}

fn mar() -> DateTime<Utc> {
    at("2027-03-31T00:00")
}

fn earn(order: &str, points: i64, expires_at: DateTime<Utc>) -> LoyaltyOp {
    LoyaltyOp::Earn {
        order: order.into(),
        points,
        expires_at,
    }
}

fn commit(order: &str, points: i64) -> LoyaltyOp {
    LoyaltyOp::Commit {
        order: order.into(),
        points,
    }
}

fn release(order: &str) -> LoyaltyOp {
    LoyaltyOp::Release {
        order: order.into(),
    }
}

fn return_spent(order: &str) -> LoyaltyOp {
    LoyaltyOp::ReturnSpent {
        order: order.into(),
    }
}

fn reverse_earn(order: &str) -> LoyaltyOp {
    LoyaltyOp::ReverseEarn {
        order: order.into(),
    }
}

/// Applies `op` under a new op id (asserting it was new).
fn apply(account: &mut Account, op: LoyaltyOp, now: DateTime<Utc>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let id = format!("op-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    assert!(account.apply(&id, &op, now), "op id {id} was new");
}

/// An account holding `points` earned by `north/earn-1`, expiring in
/// February.
fn account_with(points: i64) -> Account {
    let mut a = Account::default();
    apply(&mut a, earn("north/earn-1", points, feb()), now());
    a
}

fn kinds_and_points(a: &Account) -> Vec<(EntryKind, i64)> {
    a.history().map(|e| (e.kind, e.points)).collect()
}

fn balance(points: i64, held: i64) -> (i64, i64, i64) {
    (points, held, (points - held).max(0))
}

fn pha(b: Balance) -> (i64, i64, i64) {
    (b.points, b.held, b.available)
}

// ---- earning and spending --------------------------------------------------

#[test]
fn earned_points_can_be_reserved_and_spent() {
    // Given 100 points earned
    let mut a = account_with(100);
    // When an order reserves 40 and the district commits 40
    a.reserve("south/o-1", 40, now()).unwrap();
    assert_eq!(pha(a.balance(now())), balance(100, 40));
    apply(&mut a, commit("south/o-1", 40), now());
    // Then 60 are left, nothing is held, and the history says why
    assert_eq!(pha(a.balance(now())), balance(60, 0));
    assert_eq!(
        kinds_and_points(&a),
        vec![(EntryKind::Earned, 100), (EntryKind::Spent, -40)]
    );
    let spent = a.history().last().unwrap();
    assert_eq!(spent.order, "south/o-1");
    assert_eq!(spent.at, now());
}

#[test]
fn reserving_more_than_is_available_is_refused_and_changes_nothing() {
    // Given 50 points
    let mut a = account_with(50);
    let before = a.clone();
    // When an order asks for 80
    let refused = a.reserve("south/o-1", 80, now());
    // Then it is refused with what there is
    assert_eq!(
        refused,
        Err(LoyaltyError::Insufficient {
            available: 50,
            wanted: 80
        })
    );
    assert_eq!(a, before);
}

#[test]
fn reserving_nothing_or_less_is_refused() {
    let mut a = account_with(50);
    assert_eq!(
        a.reserve("south/o-1", 0, now()),
        Err(LoyaltyError::NotPositive)
    );
    assert_eq!(
        a.reserve("south/o-1", -5, now()),
        Err(LoyaltyError::NotPositive)
    );
    assert_eq!(a.balance(now()).held, 0);
}

#[test]
fn reserving_the_same_points_again_is_idempotent_and_keeps_the_holds_age() {
    // Given a hold of 30 made at now
    let mut a = account_with(100);
    a.reserve("south/o-1", 30, now()).unwrap();
    // When the node retries the same reserve five minutes later
    let later = now() + Duration::minutes(5);
    a.reserve("south/o-1", 30, later).unwrap();
    // Then one hold of 30 counts, still aged from the first reserve
    assert_eq!(pha(a.balance(later)), balance(100, 30));
    let ttl_after_first = now() + Duration::seconds(HOLD_TTL_SECS);
    assert_eq!(a.held_for("south/o-1", ttl_after_first), None);
}

#[test]
fn reserving_a_different_amount_replaces_the_hold() {
    // Given a hold of 30 out of 100
    let mut a = account_with(100);
    a.reserve("south/o-1", 30, now()).unwrap();
    // When the order asks for 100 instead (checked without its old hold)
    a.reserve("south/o-1", 100, now()).unwrap();
    // Then 100 are held, not 130
    assert_eq!(pha(a.balance(now())), balance(100, 100));
    assert_eq!(a.held_for("south/o-1", now()), Some(100));
    // When it asks for more than the account has, the last hold stays
    assert_eq!(
        a.reserve("south/o-1", 120, now()),
        Err(LoyaltyError::Insufficient {
            available: 100,
            wanted: 120
        })
    );
    assert_eq!(a.held_for("south/o-1", now()), Some(100));
}

#[test]
fn two_reserves_that_together_exceed_the_balance_the_second_is_refused() {
    // Given 100 points and a hold of 70 by the northern district
    let mut a = account_with(100);
    a.reserve("north/o-1", 70, now()).unwrap();
    // When the southern district asks for 50
    let refused = a.reserve("south/o-9", 50, now());
    // Then it is refused: only 30 are available
    assert_eq!(
        refused,
        Err(LoyaltyError::Insufficient {
            available: 30,
            wanted: 50
        })
    );
    // and 30 can still be reserved
    a.reserve("south/o-9", 30, now()).unwrap();
    assert_eq!(pha(a.balance(now())), balance(100, 100));
}

#[test]
fn the_loser_of_a_compare_and_set_decides_again_and_is_refused() {
    // Given both districts read the same record of 100 points
    let stored = account_with(100);
    let mut north = stored.clone();
    let mut south = stored.clone();
    // When both reserve 70 on their copy and the north writes first
    north.reserve("north/o-1", 70, now()).unwrap();
    south.reserve("south/o-9", 70, now()).unwrap();
    let stored = north;
    // Then the south's write fails (the revision moved); deciding again
    // against the north's record, its reserve is refused
    let mut south = stored.clone();
    assert_eq!(
        south.reserve("south/o-9", 70, now()),
        Err(LoyaltyError::Insufficient {
            available: 30,
            wanted: 70
        })
    );
    assert_eq!(pha(stored.balance(now())), balance(100, 70));
}

#[test]
fn committing_less_than_was_reserved_releases_the_rest() {
    // Given a hold of 50 out of 100
    let mut a = account_with(100);
    a.reserve("south/o-1", 50, now()).unwrap();
    // When the order is bought with 20 points
    apply(&mut a, commit("south/o-1", 20), now());
    // Then 20 are spent and the other 30 are available again
    assert_eq!(pha(a.balance(now())), balance(80, 0));
}

#[test]
fn committing_more_than_was_reserved_spends_only_the_hold() {
    let mut a = account_with(100);
    a.reserve("south/o-1", 20, now()).unwrap();
    apply(&mut a, commit("south/o-1", 50), now());
    assert_eq!(pha(a.balance(now())), balance(80, 0));
    assert_eq!(a.history().last().unwrap().points, -20);
}

#[test]
fn a_release_drops_the_hold() {
    // Given two holds
    let mut a = account_with(100);
    a.reserve("south/o-1", 50, now()).unwrap();
    a.reserve("south/o-2", 20, now()).unwrap();
    // When the district releases one (not bought) and the node undoes the
    // other (its confirm failed)
    apply(&mut a, release("south/o-1"), now());
    assert!(a.release_hold("south/o-2"));
    // Then nothing is held, nothing was spent, and undoing again finds none
    assert_eq!(pha(a.balance(now())), balance(100, 0));
    assert!(!a.release_hold("south/o-2"));
    assert_eq!(kinds_and_points(&a), vec![(EntryKind::Earned, 100)]);
}

#[test]
fn a_stale_hold_no_longer_counts_and_is_pruned() {
    // Given a hold of 60 out of 100 left by a node that crashed
    let mut a = account_with(100);
    a.reserve("south/o-1", 60, now()).unwrap();
    let stale = now() + Duration::seconds(HOLD_TTL_SECS);
    // Then it counts until HOLD_TTL_SECS have passed, and not from then on
    let just_before = stale - Duration::seconds(1);
    assert_eq!(pha(a.balance(just_before)), balance(100, 60));
    assert_eq!(pha(a.balance(stale)), balance(100, 0));
    // When another order reserves everything then
    a.reserve("north/o-2", 100, stale).unwrap();
    // Then the stale hold is gone for good
    assert!(!a.release_hold("south/o-1"));
    assert_eq!(a.held_for("north/o-2", stale), Some(100));
}

#[test]
fn a_commit_whose_hold_was_pruned_spends_what_is_available_never_below_zero() {
    // Given 100 points, a stale hold of 60 and a live hold of 70 by
    // another order
    let mut a = account_with(100);
    a.reserve("south/o-1", 60, now()).unwrap();
    let stale = now() + Duration::seconds(HOLD_TTL_SECS);
    a.reserve("north/o-2", 70, stale).unwrap();
    // When the stale hold's order is committed after all
    apply(&mut a, commit("south/o-1", 60), stale);
    // Then it spends what the live hold leaves: 30
    assert_eq!(pha(a.balance(stale)), balance(70, 70));
    assert_eq!(a.history().last().unwrap().points, -30);
    // And a commit with no hold and nothing available spends nothing
    apply(&mut a, commit("south/o-3", 10), stale);
    assert_eq!(pha(a.balance(stale)), balance(70, 70));
    assert_eq!(a.history().last().unwrap().kind, EntryKind::Spent);
    assert_eq!(a.history().count(), 2);
}

// ---- expiry ----------------------------------------------------------------

#[test]
fn a_lot_stops_counting_at_its_expiry_and_the_history_shows_it_expired() {
    // Given 40 points expiring in January and 60 in February
    let mut a = Account::default();
    apply(&mut a, earn("north/o-1", 40, jan()), now());
    apply(&mut a, earn("north/o-2", 60, feb()), now());
    // Then until January 40 of them are next to expire
    let b = a.balance(jan() - Duration::seconds(1));
    assert_eq!(
        (b.points, b.next_expiry, b.expiring_points),
        (100, Some(jan()), 40)
    );
    // and from its expiry on, the January lot no longer counts
    let b = a.balance(jan());
    assert_eq!(
        (b.points, b.next_expiry, b.expiring_points),
        (60, Some(feb()), 60)
    );
    assert_eq!(a.balance(feb()).next_expiry, None);
    assert_eq!(a.balance(feb()).expiring_points, 0);
    // When the account next changes (in February)
    let later = jan() + Duration::days(3);
    a.reserve("south/o-3", 10, later).unwrap();
    // Then the lot is gone, with an Expired entry dated at its expiry
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(60, feb())]);
    let expired = a.history().last().unwrap();
    assert_eq!(
        expired,
        &Entry {
            at: jan(),
            kind: EntryKind::Expired,
            order: "north/o-1".into(),
            points: -40
        }
    );
}

#[test]
fn an_earn_that_has_already_expired_is_recorded_and_expires_at_once() {
    let mut a = Account::default();
    let yesterday = now() - Duration::days(1);
    apply(&mut a, earn("north/o-1", 40, yesterday), now());
    assert_eq!(a.balance(now()).points, 0);
    assert_eq!(a.lots().count(), 0);
    assert_eq!(
        kinds_and_points(&a),
        vec![(EntryKind::Earned, 40), (EntryKind::Expired, -40)]
    );
}

#[test]
fn an_earn_of_nothing_is_ignored() {
    let mut a = Account::default();
    apply(&mut a, earn("north/o-1", 0, feb()), now());
    apply(&mut a, earn("north/o-2", -10, feb()), now());
    assert_eq!(a.balance(now()).points, 0);
    assert_eq!(a.history().count(), 0);
    // and there is nothing to reverse
    apply(&mut a, reverse_earn("north/o-2"), now());
    assert_eq!(a.history().count(), 0);
}

// ---- FIFO, returns and reversals --------------------------------------------

/// 50 points expiring in March (earned first) and 50 in January.
fn two_lots() -> Account {
    let mut a = Account::default();
    apply(&mut a, earn("north/late", 50, mar()), now());
    apply(&mut a, earn("north/soon", 50, jan()), now());
    a
}

#[test]
fn a_spend_takes_the_points_that_expire_first() {
    // Given a lot expiring in March and one in January
    let mut a = two_lots();
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(50, jan()), (50, mar())]);
    // When 70 are spent
    a.reserve("south/o-1", 70, now()).unwrap();
    apply(&mut a, commit("south/o-1", 70), now());
    // Then the January lot is used up and 20 came from March's
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(30, mar())]);
}

#[test]
fn a_returned_spend_comes_back_with_the_same_expiries() {
    // Given 70 spent from a January and a March lot
    let mut a = two_lots();
    a.reserve("south/o-1", 70, now()).unwrap();
    apply(&mut a, commit("south/o-1", 70), now());
    // When the order is refunded
    apply(&mut a, return_spent("south/o-1"), now());
    // Then 50 expire in January and 50 in March again
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(50, jan()), (50, mar())]);
    assert_eq!(a.balance(now()).points, 100);
    assert_eq!(a.history().last().unwrap().kind, EntryKind::Returned);
    assert_eq!(a.history().last().unwrap().points, 70);
    // and a second refund of the same order (another op id) changes nothing
    let before = a.clone();
    assert!(a.apply("refund-again", &return_spent("south/o-1"), now()));
    assert_eq!(a.balance(now()), before.balance(now()));
    assert_eq!(a.history().count(), before.history().count());
}

#[test]
fn returned_points_whose_expiry_has_passed_come_back_expired() {
    // Given 70 spent from a January and a March lot
    let mut a = two_lots();
    a.reserve("south/o-1", 70, now()).unwrap();
    apply(&mut a, commit("south/o-1", 70), now());
    // When the order is refunded in February
    let february = jan() + Duration::days(7);
    apply(&mut a, return_spent("south/o-1"), february);
    // Then only the 20 from March count again
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(50, mar())]);
    assert_eq!(a.balance(february).points, 50);
    let tail: Vec<Entry> = a.history().skip(3).cloned().collect();
    assert_eq!(
        tail,
        vec![
            Entry {
                at: february,
                kind: EntryKind::Returned,
                order: "south/o-1".into(),
                points: 70
            },
            Entry {
                at: jan(),
                kind: EntryKind::Expired,
                order: "south/o-1".into(),
                points: -50
            },
        ]
    );
}

#[test]
fn a_reversed_earn_takes_from_its_own_lot_first_then_the_soonest_others() {
    // Given 100 earned by north/a (January) and 200 by north/b (February),
    // and 60 spent (from a's lot, which expires first)
    let mut a = Account::default();
    apply(&mut a, earn("north/a", 100, jan()), now());
    apply(&mut a, earn("north/b", 200, feb()), now());
    a.reserve("south/o-1", 60, now()).unwrap();
    apply(&mut a, commit("south/o-1", 60), now());
    // When north/a is refunded and its earn reversed
    apply(&mut a, reverse_earn("north/a"), now());
    // Then its 40 left go, and the 60 it had spent come from b's lot
    assert_eq!(a.lots().collect::<Vec<_>>(), vec![(140, feb())]);
    assert_eq!(a.history().last().unwrap().points, -100);
    assert_eq!(a.history().last().unwrap().kind, EntryKind::Reversed);
}

#[test]
fn a_reversed_earn_never_takes_the_balance_below_zero() {
    // Given 100 earned by north/a, 20 by north/b, and 90 spent
    let mut a = Account::default();
    apply(&mut a, earn("north/a", 100, jan()), now());
    apply(&mut a, earn("north/b", 20, feb()), now());
    a.reserve("south/o-1", 90, now()).unwrap();
    apply(&mut a, commit("south/o-1", 90), now());
    // When north/a's earn is reversed
    apply(&mut a, reverse_earn("north/a"), now());
    // Then it takes the 30 there are, not 100
    assert_eq!(pha(a.balance(now())), balance(0, 0));
    assert_eq!(a.history().last().unwrap().points, -30);
    // and reversing it again (another op id) takes nothing more
    apply(&mut a, earn("north/c", 10, feb()), now());
    apply(&mut a, reverse_earn("north/a"), now());
    assert_eq!(a.balance(now()).points, 10);
}

#[test]
fn a_reversed_earn_does_not_take_back_points_that_expired_unused() {
    // Given 40 earned by north/a that expired in January, and 100 earned by
    // north/b until March
    let mut a = Account::default();
    apply(&mut a, earn("north/a", 40, jan()), now());
    apply(&mut a, earn("north/b", 100, mar()), now());
    // When north/a is refunded in February
    let february = jan() + Duration::days(7);
    apply(&mut a, reverse_earn("north/a"), february);
    // Then b's points are untouched: a's were never used
    assert_eq!(a.balance(february).points, 100);
    assert_eq!(a.history().last().unwrap().kind, EntryKind::Expired);
}

// ---- applying once ---------------------------------------------------------

#[test]
fn an_op_id_is_applied_once() {
    // Given an earn applied under op id "earn-1"
    let mut a = Account::default();
    assert!(a.apply("earn-1", &earn("north/o-1", 100, feb()), now()));
    let once = a.clone();
    // When the same op id arrives again, even later and with another body
    let later = feb() + Duration::days(1);
    // Then nothing changes, not even the pruning of the now expired lot
    assert!(!a.apply("earn-1", &earn("north/o-1", 100, feb()), now()));
    assert!(!a.apply("earn-1", &commit("north/o-1", 50), later));
    assert_eq!(a, once);
}

#[test]
fn ops_on_orders_the_account_does_not_know_change_nothing_but_are_remembered() {
    let mut a = account_with(100);
    a.reserve("south/o-1", 30, now()).unwrap();
    let before = a.clone();
    for (id, op) in [
        ("release-x", release("south/unknown")),
        ("return-x", return_spent("south/unknown")),
        ("reverse-x", reverse_earn("south/unknown")),
    ] {
        assert!(a.apply(id, &op, now()));
        assert_eq!(a.balance(now()), before.balance(now()));
        assert_eq!(a.history().count(), before.history().count());
        assert!(!a.apply(id, &op, now()), "{id} is remembered");
    }
}

// ---- bounds ------------------------------------------------------------------

#[test]
fn the_history_keeps_the_newest_entries_only() {
    let mut a = Account::default();
    for i in 0..(MAX_HISTORY as i64 + 50) {
        apply(&mut a, earn(&format!("north/o-{i}"), 1, feb()), now());
        assert!(a.history().count() <= MAX_HISTORY);
    }
    assert_eq!(a.history().count(), MAX_HISTORY);
    assert_eq!(a.history().next().unwrap().order, "north/o-50");
    assert_eq!(a.history().last().unwrap().order, "north/o-149");
}

#[test]
fn the_oldest_op_id_is_forgotten_beyond_the_window() {
    // Given MAX_APPLIED_OPS + 1 ops applied
    let mut a = Account::default();
    for i in 0..=MAX_APPLIED_OPS {
        assert!(a.apply(&format!("op-{i}"), &release("north/none"), now()));
    }
    // Then the first is forgotten and the second still remembered
    assert!(!a.apply("op-1", &release("north/none"), now()));
    assert!(a.apply("op-0", &release("north/none"), now()));
}

#[test]
fn reserve_refuses_a_hold_beyond_max_holds_but_replaces_existing_ones() {
    let mut a = account_with(1_000);
    for i in 0..MAX_HOLDS {
        a.reserve(&format!("south/o-{i}"), 1, now()).unwrap();
    }
    assert_eq!(
        a.reserve("south/one-more", 1, now()),
        Err(LoyaltyError::TooManyHolds)
    );
    a.reserve("south/o-0", 5, now()).unwrap();
    assert_eq!(a.balance(now()).held, MAX_HOLDS as i64 + 4);
    // once the holds are stale there is room again
    let stale = now() + Duration::seconds(HOLD_TTL_SECS);
    a.reserve("south/one-more", 1, stale).unwrap();
}

#[test]
fn lots_beyond_max_lots_merge_into_the_later_expiry_keeping_every_point() {
    // Given an earn a day for MAX_LOTS + 20 days, each expiring a year later
    let mut a = Account::default();
    let days = MAX_LOTS as i64 + 20;
    for d in 0..days {
        let expires = feb() + Duration::days(d);
        apply(&mut a, earn(&format!("north/o-{d}"), 10, expires), now());
    }
    // Then at most MAX_LOTS lots are kept, every point is still there, and
    // no point expires earlier than it was earned to
    let lots: Vec<(i64, DateTime<Utc>)> = a.lots().collect();
    assert_eq!(lots.len(), MAX_LOTS);
    assert_eq!(a.balance(now()).points, 10 * days);
    assert_eq!(a.balance(feb()).points, 10 * days, "the first day's points");
    assert!(lots.windows(2).all(|w| w[0].1 <= w[1].1));
}

#[test]
fn a_refund_beyond_the_spend_window_is_a_no_op() {
    // Given MAX_APPLIED_OPS + 1 orders that each spent a point
    let mut a = account_with(10_000);
    for i in 0..=MAX_APPLIED_OPS {
        let order = format!("south/o-{i}");
        a.reserve(&order, 1, now()).unwrap();
        apply(&mut a, commit(&order, 1), now());
    }
    let points = a.balance(now()).points;
    // When the first and the last are refunded
    apply(&mut a, return_spent("south/o-0"), now());
    assert_eq!(a.balance(now()).points, points, "forgotten: nothing back");
    apply(
        &mut a,
        return_spent(&format!("south/o-{MAX_APPLIED_OPS}")),
        now(),
    );
    assert_eq!(a.balance(now()).points, points + 1);
}

// ---- the record ----------------------------------------------------------------

/// An account that has been through every kind of change.
fn busy_account() -> Account {
    let mut a = two_lots();
    let t = now() + Duration::milliseconds(1_234);
    a.reserve("south/o-1", 70, t).unwrap();
    apply(&mut a, commit("south/o-1", 60), t);
    a.reserve("south/o-2", 10, t).unwrap();
    apply(&mut a, earn("north/o-3", 25, feb()), t);
    apply(&mut a, reverse_earn("north/late"), t);
    apply(&mut a, return_spent("south/o-1"), jan() + Duration::days(1));
    a
}

#[test]
fn an_account_round_trips_through_postcard() {
    let a = busy_account();
    let bytes = postcard::to_allocvec(&a).unwrap();
    let back: Account = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(postcard::from_bytes::<Account>(&[]).ok(), None);
    let empty = postcard::to_allocvec(&Account::default()).unwrap();
    assert_eq!(
        postcard::from_bytes::<Account>(&empty).unwrap(),
        Account::default()
    );
}

#[test]
fn the_history_adds_up_to_the_balance() {
    let a = busy_account();
    let sum: i64 = a.history().map(|e| e.points).sum();
    assert_eq!(sum, a.balance(jan() + Duration::days(1)).points);
}

#[test]
fn a_record_filled_to_every_bound_stays_under_512_kib() {
    // Op ids and order keys of about 40 bytes, sub-second timestamps.
    let mut a = Account::default();
    let t = now() + Duration::nanoseconds(123_456_789);
    let key = |i: usize, j: usize| format!("detroit-central/01JF8Z3Q4M9V7K2X5N{i:06}{j:02}");
    let expiry = |i: usize, j: usize| {
        feb() + Duration::minutes((i * 10 + j) as i64) + Duration::nanoseconds(987_654_321)
    };
    // Each order spends from more expiries than a spend record keeps.
    for i in 0..MAX_APPLIED_OPS {
        for j in 0..=MAX_SPENT_PIECES {
            let op = earn(&key(i, j), 100, expiry(i, j));
            a.apply(&format!("earn-{}", key(i, j)), &op, t);
        }
        let order = key(i, 99);
        let points = 100 * (MAX_SPENT_PIECES as i64 + 1);
        a.reserve(&order, points, t).unwrap();
        a.apply(&format!("commit-{order}"), &commit(&order, points), t);
    }
    // Then as many lots as are kept, and every hold.
    for i in 0..=MAX_LOTS {
        let op = earn(&key(i, 98), 10, expiry(i, 98));
        a.apply(&format!("earn-{}", key(i, 98)), &op, t);
    }
    for i in 0..MAX_HOLDS {
        a.reserve(&key(i, 97), 1, t).unwrap();
    }
    assert_eq!(a.lots().count(), MAX_LOTS);
    let bytes = postcard::to_allocvec(&a).unwrap();
    println!("a record filled to every bound: {} bytes", bytes.len());
    assert!(bytes.len() < 512 * 1024, "{} bytes", bytes.len());
}

// ---- referrals -------------------------------------------------------------

fn reward(order: &str, customer: &str, method: u64, points: i64) -> LoyaltyOp {
    LoyaltyOp::ReferralReward {
        order: order.into(),
        customer: customer.into(),
        method,
        points,
        expires_at: jan(),
    }
}

#[test]
fn a_referral_reward_earns_once_per_payment_method() {
    // Given an owner whose code bob bought with card 7
    let mut owner = Account::default();
    owner.apply("r1", &reward("d/o1", "bob", 7, 50), now());
    // When carol pays with the same card 7, and dan with card 8
    owner.apply("r2", &reward("d/o2", "carol", 7, 50), now());
    owner.apply("r3", &reward("d/o3", "dan", 8, 50), now());
    // Then all three are referrals, but card 7 earned only once
    let who: Vec<&str> = owner.referrals().map(|r| r.customer.as_str()).collect();
    assert_eq!(who, ["bob", "carol", "dan"]);
    assert_eq!(owner.balance(now()).points, 100);
    assert!(owner.rewarded_method(7) && owner.rewarded_method(8));
    let kinds: Vec<EntryKind> = owner.history().map(|e| e.kind).collect();
    assert_eq!(kinds, [EntryKind::Referral, EntryKind::Referral]);
}

#[test]
fn a_refunded_purchase_takes_its_referral_reward_back_and_the_card_stays_rewarded() {
    // Given an owner rewarded 50 for bob's purchase d/o1 (card 7), who also
    // earned 20 of their own
    let mut owner = Account::default();
    owner.apply("e1", &earn("d/o9", 20, feb()), now());
    owner.apply("r1", &reward("d/o1", "bob", 7, 50), now());
    assert_eq!(owner.balance(now()).points, 70);
    // When bob's purchase is refunded
    owner.apply("x1", &reverse_earn("d/o1"), now());
    // Then the reward is gone, the owner's own points stay, and card 7
    // cannot earn the owner a second reward through another account
    assert_eq!(owner.balance(now()).points, 20);
    let last = owner.history().last().map(|e| (e.kind, e.points));
    assert_eq!(last, Some((EntryKind::Reversed, -50)));
    owner.apply("r2", &reward("d/o2", "carol", 7, 50), now());
    assert_eq!(owner.balance(now()).points, 20);
}

#[test]
fn a_customer_is_referred_once_by_the_first_code_used() {
    let mut bob = Account::default();
    let referred = |order: &str, owner: &str| LoyaltyOp::Referred {
        order: order.into(),
        owner: owner.into(),
    };
    bob.apply("x1", &referred("d/o1", "ann"), now());
    bob.apply("x2", &referred("d/o2", "eve"), now());
    assert_eq!(bob.referred_by().map(|r| r.customer.as_str()), Some("ann"));
    assert_eq!(
        bob.balance(now()).points,
        0,
        "being referred earns nothing by itself"
    );
}
