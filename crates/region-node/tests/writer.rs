//! The writer and the log, in process: group commit, replay, concurrency.

use std::sync::Arc;

use protocol::catalog::{FridgeSpec, StockCount, StockSpec};
use region_node::clock::Clock;
use region_node::domain::{CatalogCommand, Command, DistrictState};
use region_node::store::EventLog;
use region_node::writer::{District, Expected, WriteError};

mod support;

use support::meal_spec as meal;

fn start(dir: &std::path::Path) -> District {
    support::writer(EventLog::open(dir).unwrap(), Clock::system())
}

fn define(id: &str, price: i64) -> Command {
    Command::Catalog(CatalogCommand::DefineMeal {
        meal_id: id.into(),
        spec: meal(price),
    })
}

#[tokio::test]
async fn concurrent_commands_share_batches_and_keep_a_dense_log() {
    let dir = tempfile::tempdir().unwrap();
    let district = start(dir.path());
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let d = district.clone();
            tokio::spawn(async move { d.submit(define(&format!("m-{i}"), 100 + i)).await })
        })
        .collect();
    let mut seqs = vec![];
    for t in tasks {
        let committed = t.await.unwrap().unwrap();
        assert_eq!(committed.events.len(), 1);
        seqs.push(committed.events[0].seq);
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=500).collect::<Vec<u64>>(),
        "every event got its own dense seq"
    );
    assert_eq!(district.state().meals.len(), 500);
}

/// The in-process half of the durability proof (the black-box half, with
/// strace, is `tests/tests/durability.rs`): the log's own sync counter has
/// moved on before a command is answered, and concurrent commands share syncs.
#[tokio::test]
async fn every_appending_batch_is_synced_before_its_commands_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let syncs = log.sync_stats().clone();
    let district = support::writer(log, Clock::system());
    for i in 0..20 {
        let before = syncs.commits();
        district
            .submit(define(&format!("m-{i}"), 100))
            .await
            .unwrap();
        assert!(
            syncs.commits() > before,
            "command {i} answered before a sync"
        );
    }
    // A refusal appends nothing, so it needs no sync.
    let before = syncs.commits();
    assert!(district.submit(define("m-bad", -1)).await.is_err());
    assert_eq!(syncs.commits(), before);

    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let d = district.clone();
            tokio::spawn(async move { d.submit(define(&format!("m-{i}"), 200)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let shared = syncs.commits() - before;
    assert!(
        (1..500).contains(&shared),
        "500 concurrent commands took {shared} syncs: one per batch, not per command"
    );
}

#[tokio::test]
async fn replay_rebuilds_exactly_the_published_state() {
    let dir = tempfile::tempdir().unwrap();
    let before: Arc<DistrictState> = {
        let district = start(dir.path());
        district.submit(define("m-a", 100)).await.unwrap();
        district
            .submit(Command::Catalog(CatalogCommand::RegisterFridge {
                fridge_id: "f-1".into(),
                spec: FridgeSpec {
                    name: "F".into(),
                    address: String::new(),
                    lat: 42.3316,
                    lon: -83.0466,
                    vendor: "frostline-json".into(),
                    secret: Some("0123456789abcdef".into()),
                },
            }))
            .await
            .unwrap();
        district
            .submit(Command::Catalog(CatalogCommand::SetStock {
                fridge_id: "f-1".into(),
                spec: StockSpec {
                    counts: vec![StockCount {
                        meal_id: "m-a".into(),
                        units: 7,
                    }],
                },
            }))
            .await
            .unwrap();
        district.state()
    };
    // Let the first writer's sled handle go before reopening.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let again = start(dir.path()).state();
    assert_eq!(again.last_seq, before.last_seq);
    assert_eq!(again.catalog_version, before.catalog_version);
    assert_eq!(again.meals, before.meals);
    assert_eq!(again.fridges, before.fridges);
    assert_eq!(again.stock, before.stock);
    assert_eq!(again.fridge_secrets, before.fridge_secrets);
    assert_eq!(again.stock_level("f-1", "m-a").on_hand, 7);
}

#[tokio::test]
async fn refused_commands_append_nothing_and_do_not_poison_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let district = start(dir.path());
    let good = district.submit(define("m-ok", 100));
    let bad = district.submit(define("m-bad", -1));
    let (good, bad) = tokio::join!(good, bad);
    assert!(good.is_ok());
    assert!(matches!(bad, Err(WriteError::Domain(_))));
    assert_eq!(district.state().last_seq, 1);
}

#[tokio::test]
async fn optimistic_version_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let district = start(dir.path());
    district.submit(define("m-a", 100)).await.unwrap();
    let stale = Expected {
        stream: "meal-m-a".into(),
        version: 0,
    };
    let r = district
        .submit_with(define("m-a", 200), Some(stale), None)
        .await;
    assert!(matches!(
        r,
        Err(WriteError::Domain(
            region_node::domain::DomainError::VersionConflict { actual: 1, .. }
        ))
    ));
    let current = Expected {
        stream: "meal-m-a".into(),
        version: 1,
    };
    let ok = district
        .submit_with(define("m-a", 200), Some(current), None)
        .await
        .unwrap();
    assert_eq!(ok.events[0].stream_version, 2);
}
