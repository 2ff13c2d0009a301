//! Sealing: records a snapshot covers leave sled for immutable segment
//! files, and every read of the log (replay, export pages, event ids,
//! counts) still sees each record exactly once, in order — also after a
//! crash between writing a segment and trimming sled, and while a reader
//! pages through the log as it is sealed. A damaged or missing segment is
//! refused, never skipped.

use std::path::Path;

use district::{Command, OrderCommand};
use protocol::orders::OrderId;
use region_node::clock::Clock;
use region_node::lifecycle::Lifecycle;
use region_node::snapshot::recover;
use region_node::store::sealed::{self, SEALED_DIR};
use region_node::store::{EventLog, StoreError};

mod support;

/// Records per segment in these tests: several segments from a short log.
const SEGMENT: u64 = 7;

/// A writer on `dir/log` with the demo district seeded; a new sled tree
/// every SEGMENT records, at batch boundaries.
async fn seeded(dir: &Path) -> (Lifecycle, region_node::writer::District) {
    let log = support::open_log(&dir.join("log")).with_segment_records(SEGMENT);
    let writer = Lifecycle::new();
    let district = support::writer_until(log, Clock::system(), writer.shutdown());
    region_node::demo::seed_if_empty(&district, "detroit-downtown")
        .await
        .unwrap();
    (writer, district)
}

/// The demo district and `orders` POS orders, each cancelled, in
/// `dir/log`, closed.
async fn history(dir: &Path, orders: usize) {
    let (writer, district) = seeded(dir).await;
    for n in 0..orders {
        let (id, customer) = (format!("o-seal-{n}"), format!("c-{n}"));
        support::place_at_till(
            &district,
            &id,
            &customer,
            (
                protocol::FridgeId::from_static("f-campus-martius"),
                protocol::MealId::from_static("m-greek-salad"),
            ),
        )
        .await;
        // Cancelled at once: the stock comes back for the next one.
        let cancelled = district
            .submit(Command::Order(OrderCommand::Cancel {
                order_id: OrderId::parse(format!("o-seal-{n}")).unwrap(),
                customer: None,
            }))
            .await;
        assert!(cancelled.is_ok(), "cancel {n}: {cancelled:?}");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    writer.stop(deadline).await.unwrap();
}

/// The demo district and one POS order for each unit on its shelves,
/// submitted all at once so the writer's batches hold many commands and
/// the log's sled keys hold groups of records, in `dir/log`, closed.
async fn burst(dir: &Path) {
    let (writer, district) = seeded(dir).await;
    // One (fridge, meal) per unit on the shelves.
    let units: Vec<_> = district
        .state()
        .stock()
        .levels()
        .iter()
        .flat_map(|(fridge, meals)| {
            meals.iter().flat_map(move |(meal, level)| {
                std::iter::repeat_n((fridge.clone(), meal.clone()), level.on_hand as usize)
            })
        })
        .collect();
    let placing: Vec<_> = units
        .into_iter()
        .enumerate()
        .map(|(n, shelf)| {
            let district = district.clone();
            tokio::spawn(async move {
                let (id, customer) = (format!("o-burst-{n}"), format!("c-{n}"));
                support::place_at_till(&district, &id, &customer, shelf).await;
            })
        })
        .collect();
    for placed in placing {
        placed.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    writer.stop(deadline).await.unwrap();
}

fn open(dir: &Path) -> EventLog {
    support::open_log(&dir.join("log")).with_segment_records(SEGMENT)
}

/// Every record as an export reads it, in pages of `page`.
fn exported(log: &EventLog, page: usize) -> Vec<(u64, Vec<u8>)> {
    let reader = log.reader();
    let mut out: Vec<(u64, Vec<u8>)> = vec![];
    loop {
        let after = out.last().map_or(0, |(seq, _)| *seq);
        let got = reader.records(after, u64::MAX, page).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got.into_iter().map(|(seq, v)| (seq, v.to_vec())));
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    support::files_in(&dir.join("log").join(SEALED_DIR))
}

#[tokio::test]
async fn sealed_records_are_read_as_before_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), 12).await;
    let log = open(dir.path());
    let before = exported(&log, 1000);
    let last = before.len() as u64;
    assert!(last > 3 * SEGMENT, "a log of {last} records");
    let ids: Vec<u128> = (1..=last).map(|s| log.event_id_at(s).unwrap()).collect();
    let state = recover(&log, None).unwrap().state;

    let covered = last - 3;
    let moved = log.seal_behind(covered).unwrap();

    let upto = log.sealed_upto();
    assert_eq!(moved, upto);
    assert!(upto > 0 && upto <= covered, "sealed {upto} of {covered}");
    assert!(segment_files(dir.path()).len() >= 3);
    assert_eq!(exported(&log, 1000), before);
    assert_eq!(exported(&log, 3), before, "pages across the boundary");
    assert_eq!(log.len() as u64, last);
    let ids_after: Vec<u128> = (1..=last).map(|s| log.event_id_at(s).unwrap()).collect();
    assert_eq!(ids_after, ids);
    assert_eq!(recover(&log, None).unwrap().state, state);

    // Sealing again with nothing new moves nothing, nor does a log set
    // never to seal; reopening reads the same.
    assert_eq!(log.seal_behind(covered).unwrap(), 0);
    for records in [0, u64::MAX] {
        let other = log.clone().with_segment_records(records);
        assert_eq!(other.seal_behind(last).unwrap(), 0, "segments of {records}");
    }
    assert_eq!(log.sealed_upto(), upto);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.sealed_upto(), upto);
    assert_eq!(exported(&log, 5), before);
    assert_eq!(recover(&log, None).unwrap().state, state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_in_groups_are_read_one_by_one_before_and_after_sealing() {
    let dir = tempfile::tempdir().unwrap();
    burst(dir.path()).await;
    let log = open(dir.path());
    let before = exported(&log, 1000);
    let last = before.len() as u64;
    let seqs: Vec<u64> = before.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "dense from 1");
    for (seq, bytes) in &before {
        let env = protocol::codec::decode_log_record(bytes).unwrap();
        assert_eq!(env.seq, *seq);
        assert_eq!(log.event_id_at(*seq).unwrap(), u128::from(env.event_id));
    }
    let state = recover(&log, None).unwrap().state;
    assert!(state.orders().len() > 20, "{} orders", state.orders().len());

    // Segments of 7 records start and end inside groups.
    log.seal_behind(last - 1).unwrap();
    assert!(log.sealed_upto() > 2 * SEGMENT);
    for page in [1, 4, 1000] {
        assert_eq!(exported(&log, page), before, "pages of {page}");
    }
    assert_eq!(log.len() as u64, last);
    assert_eq!(recover(&log, None).unwrap().state, state);
}

#[tokio::test]
async fn a_crash_after_a_segment_is_written_leaves_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), 4).await;
    let log = open(dir.path());
    let before = exported(&log, 1000);
    // The segment is durable under its name, but the process dies before
    // its records leave sled.
    let first: Vec<_> = log
        .reader()
        .records(0, SEGMENT, 1000)
        .unwrap()
        .into_iter()
        .map(Ok::<_, StoreError>)
        .collect();
    let sealed_dir = dir.path().join("log").join(SEALED_DIR);
    sealed::write(&sealed_dir, 1, first.into_iter())
        .unwrap()
        .unwrap();
    std::fs::write(sealed_dir.join("segment-9.tmp"), b"half a segment").unwrap();
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.sealed_upto(), SEGMENT);
    assert_eq!(exported(&log, 1000), before);
    assert_eq!(log.len(), before.len(), "each record counted once");
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the temporary file is gone"
    );
}

#[tokio::test]
async fn a_damaged_or_missing_segment_is_refused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), 12).await;
    let log = open(dir.path());
    let last = log.len() as u64;
    log.seal_behind(last).unwrap();
    drop(log);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);

    // One flipped bit in a record.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&files[1], &bytes).unwrap();
    let log = open(dir.path());
    let error = log.replay().find_map(|r| r.err()).expect("an error");
    assert!(error.to_string().contains("checksum"), "{error}");
    assert!(log.reader().records(0, u64::MAX, 1000).is_err());
    drop(log);

    // A segment gone from the middle.
    std::fs::remove_file(&files[1]).unwrap();
    let refused = support::try_open_log(&dir.path().join("log"))
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("expected seq"), "{refused}");
}

#[tokio::test]
async fn a_reader_paging_through_the_log_while_it_is_sealed_sees_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path(), 40).await;
    let log = open(dir.path()).with_segment_records(1);
    let before = exported(&log, 1000);
    let last = before.len() as u64;
    let sealer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for covered in 1..=last {
                log.seal_behind(covered).unwrap();
            }
        })
    };
    let mut rounds = 0;
    while !sealer.is_finished() || rounds == 0 {
        assert_eq!(exported(&log, 2), before);
        rounds += 1;
    }
    sealer.join().unwrap();
    // All but the tree still taking appends (a few batches).
    assert!(
        last - log.sealed_upto() < 2 * SEGMENT,
        "sealed {} of {last}",
        log.sealed_upto()
    );
    assert_eq!(exported(&log, 2), before);
}
