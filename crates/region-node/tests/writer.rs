//! The writer and the log, in process: group commit, replay, concurrency.

use protocol::{FridgeId, MealId};
use std::sync::Arc;

use district::{CatalogCommand, Command, DistrictState};
use protocol::catalog::{FridgeSpec, StockCount, StockSpec};
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::store::EventLog;
use region_node::writer::{District, Expected, WriteError, MAX_BACKGROUND_PER_BATCH};

mod support;

use support::meal_spec as meal;

fn start(dir: &std::path::Path) -> District {
    support::writer(EventLog::open(dir).unwrap(), Clock::system())
}

/// A writer that `lifecycle` stops.
fn start_until(dir: &std::path::Path, lifecycle: &Lifecycle) -> District {
    support::writer_until(
        EventLog::open(dir).unwrap(),
        Clock::system(),
        lifecycle.shutdown(),
    )
}

fn in_secs(secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(secs)
}

fn define(id: &str, price: i64) -> Command {
    Command::Catalog(CatalogCommand::DefineMeal {
        meal_id: MealId::parse(id).expect("a meal id"),
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
    assert_eq!(district.state().catalog().meals().len(), 500);
}

/// The background lane (payment results, timers) cannot hold up a
/// customer: a command submitted after a burst of 1,000 background ones
/// is decided in the first batch, and each batch takes at most
/// `MAX_BACKGROUND_PER_BATCH` of the burst, which still all commit.
#[tokio::test]
async fn a_customer_is_not_kept_waiting_behind_a_burst_of_background_work() {
    const BURST: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let district = start(dir.path());
    let burst = (0..BURST).map(|i| district.submit_background(define(&format!("b-{i}"), 100)));
    // One poll queues every command of both before the writer runs (this
    // runtime has one thread, and it is here; `unconstrained` so tokio's
    // cooperative budget does not yield after the first 128 sends).
    let (burst, customer) = tokio::task::unconstrained(async {
        tokio::join!(
            futures::future::join_all(burst),
            district.submit(define("customer", 100)),
        )
    })
    .await;

    let batch_of = |c: &region_node::writer::Committed| c.seq;
    let customer = customer.expect("the customer's command commits");
    let burst: Vec<_> = burst
        .into_iter()
        .map(|c| c.expect("the burst commits"))
        .collect();
    let first_batch = burst.iter().map(batch_of).min().unwrap();
    assert!(
        batch_of(&customer) <= first_batch,
        "queued after the burst, decided with its first batch"
    );
    let mut per_batch = std::collections::BTreeMap::new();
    for committed in &burst {
        *per_batch.entry(batch_of(committed)).or_insert(0usize) += 1;
    }
    assert!(per_batch.values().all(|n| *n <= MAX_BACKGROUND_PER_BATCH));
    assert_eq!(per_batch.len(), BURST.div_ceil(MAX_BACKGROUND_PER_BATCH));
    assert_eq!(district.state().catalog().meals().len(), BURST + 1);
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
    let writer = Lifecycle::new();
    let before: Arc<DistrictState> = {
        let district = start_until(dir.path(), &writer);
        district.submit(define("m-a", 100)).await.unwrap();
        district
            .submit(Command::Catalog(CatalogCommand::RegisterFridge {
                fridge_id: FridgeId::from_static("f-1"),
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
                fridge_id: FridgeId::from_static("f-1"),
                spec: StockSpec {
                    counts: vec![StockCount {
                        meal_id: MealId::from_static("m-a"),
                        units: 7,
                    }],
                },
            }))
            .await
            .unwrap();
        district.state()
    };
    // Returns once the writer has closed the log.
    writer.stop(in_secs(10)).await.unwrap();
    let again = start(dir.path()).state();
    assert_eq!(again.last_seq(), before.last_seq());
    assert_eq!(again.catalog_version(), before.catalog_version());
    assert_eq!(again.catalog().meals(), before.catalog().meals());
    assert_eq!(again.catalog().fridges(), before.catalog().fridges());
    assert_eq!(again.stock().levels(), before.stock().levels());
    assert_eq!(again.links().secret("f-1"), before.links().secret("f-1"));
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
    assert_eq!(district.state().last_seq(), 1);
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
        Err(WriteError::Domain(district::DomainError::VersionConflict {
            actual: 1,
            ..
        }))
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

#[tokio::test]
async fn a_stop_mid_burst_answers_every_waiter_and_keeps_exactly_the_acknowledged() {
    const COMMANDS: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let writer = Lifecycle::new();
    let district = start_until(dir.path(), &writer);
    let mut feed = district.subscribe_feed();
    let submits: Vec<_> = (0..COMMANDS)
        .map(|i| {
            let d = district.clone();
            tokio::spawn(async move { d.submit(define(&format!("m-{i}"), 100)).await })
        })
        .collect();
    // A batch is durable; the rest are queued or being committed (how many
    // of each depends on fsync timing): stop now.
    feed.recv().await.unwrap();
    writer.stop(in_secs(10)).await.expect("the writer stops");

    let mut acknowledged = std::collections::BTreeSet::new();
    let mut refused = 0;
    for submit in submits {
        match submit.await.unwrap() {
            Ok(committed) => {
                acknowledged.insert(committed.events[0].stream_id.clone());
            }
            Err(WriteError::ShuttingDown) => refused += 1,
            Err(e) => panic!("neither committed nor refused for shutdown: {e}"),
        }
    }
    assert!(!acknowledged.is_empty());
    assert_eq!(acknowledged.len() + refused, COMMANDS);
    // A batch taken but abandoned, or refused after its append, would show
    // here as a difference.
    let again = start(dir.path()).state();
    let replayed: std::collections::BTreeSet<String> = again
        .catalog()
        .meals()
        .keys()
        .map(|m| format!("meal-{m}"))
        .collect();
    assert_eq!(replayed, acknowledged);
}

#[tokio::test]
async fn a_stopping_writer_takes_nothing_new_and_refuses_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Lifecycle::new();
    let district = start_until(dir.path(), &writer);
    district.submit(define("m-before", 100)).await.unwrap();
    // Both lanes: the background one is refused alike.
    let queued: Vec<_> = (0..100)
        .map(|i| {
            let d = district.clone();
            tokio::spawn(async move {
                let define = define(&format!("m-{i}"), 100);
                if i % 2 == 0 {
                    d.submit(define).await
                } else {
                    d.submit_background(define).await
                }
            })
        })
        .collect();
    // Signalled before the writer could take the queued commands (this
    // runtime has one thread, and it is here).
    writer.trigger();
    writer.stop(in_secs(10)).await.expect("the writer stops");
    for submit in queued {
        assert!(matches!(
            submit.await.unwrap(),
            Err(WriteError::ShuttingDown)
        ));
    }
    assert!(!district.is_writable());
    assert!(matches!(
        district.submit(define("m-late", 100)).await,
        Err(WriteError::ShuttingDown)
    ));
    let again = start(dir.path()).state();
    assert_eq!(
        again.catalog().meals().keys().collect::<Vec<_>>(),
        vec!["m-before"]
    );
}
