//! Start-up from a snapshot: the newest usable snapshot plus the log after
//! it gives exactly the state a full replay gives, and anything doubtful
//! about a snapshot makes start-up fall back to an older one or to the log.

use std::path::Path;

use district::DistrictState;
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::snapshot::{recover, SnapshotStore};
use region_node::writer::District;

mod support;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";

async fn place(district: &District, n: usize) {
    let (id, customer) = (format!("o-snap-{n}"), format!("c-{n}"));
    let shelf = (
        protocol::FridgeId::from_static(FRIDGE),
        protocol::MealId::from_static(MEAL),
    );
    support::place_at_till(district, &id, &customer, shelf).await;
}

/// The demo district and `orders` orders, with a snapshot taken before
/// each order numbered in `snap_before`; the writer is stopped and the log
/// closed when it returns.
async fn history(dir: &Path, keep: usize, snap_before: &[usize], orders: usize) -> SnapshotStore {
    let store = SnapshotStore::new(dir, keep);
    let log = support::open_log(&dir.join("log"));
    let writer = Lifecycle::new();
    let district = support::writer_until(log.clone(), Clock::system(), writer.shutdown());
    region_node::demo::seed_if_empty(&district, "detroit-downtown")
        .await
        .unwrap();
    for n in 0..=orders {
        if snap_before.contains(&n) {
            store.write(&district.state(), &log).unwrap();
        }
        if n < orders {
            place(&district, n).await;
        }
    }
    drop(log);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    writer.stop(deadline).await.unwrap();
    store
}

fn full_replay(dir: &Path) -> DistrictState {
    recover(&support::open_log(&dir.join("log")), None)
        .unwrap()
        .state
}

fn from_snapshot(dir: &Path, store: &SnapshotStore) -> DistrictState {
    recover(&support::open_log(&dir.join("log")), Some(store))
        .unwrap()
        .state
}

fn snapshot_files(store: &SnapshotStore) -> Vec<std::path::PathBuf> {
    support::files_in(store.dir())
}

#[tokio::test]
async fn a_snapshot_plus_the_tail_is_the_state_a_full_replay_gives() {
    let dir = tempfile::tempdir().unwrap();
    let store = history(dir.path(), 5, &[3], 8).await;
    let full = full_replay(dir.path());
    assert_eq!(full.orders().len(), 8);
    let fast = from_snapshot(dir.path(), &store);
    assert_eq!(fast, full);
}

#[tokio::test]
async fn a_corrupt_newest_snapshot_falls_back_to_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = history(dir.path(), 5, &[2, 5], 8).await;
    let files = snapshot_files(&store);
    assert_eq!(files.len(), 2);
    let newest = files.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(newest, bytes).unwrap();
    assert_eq!(from_snapshot(dir.path(), &store), full_replay(dir.path()));
}

#[tokio::test]
async fn truncated_or_foreign_snapshots_mean_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = history(dir.path(), 5, &[4], 6).await;
    let only = snapshot_files(&store).pop().unwrap();
    let bytes = std::fs::read(&only).unwrap();
    std::fs::write(&only, &bytes[..bytes.len() - 10]).unwrap();
    assert_eq!(from_snapshot(dir.path(), &store), full_replay(dir.path()));

    // A snapshot of another district's log (same seq, other events) is not
    // this log's: it is skipped, not trusted.
    let other = tempfile::tempdir().unwrap();
    let other_store = history(other.path(), 5, &[4], 6).await;
    let theirs = snapshot_files(&other_store).pop().unwrap();
    std::fs::write(&only, std::fs::read(theirs).unwrap()).unwrap();
    assert_eq!(from_snapshot(dir.path(), &store), full_replay(dir.path()));
}

#[tokio::test]
async fn only_the_newest_snapshots_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = history(dir.path(), 2, &[1, 2, 3, 4], 4).await;
    let kept: Vec<String> = snapshot_files(&store)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let last = full_replay(dir.path()).last_seq();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[1], format!("state-{last:020}.snap"));
}
