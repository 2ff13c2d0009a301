//! Bounded memory, flat cost (issue 15, part 5): a node's resident memory
//! and its confirm rate as the district's order history grows.
//!
//! ```text
//! cargo bench -p region-node --bench history -- [--orders N[,N…]] [--secs S] [--tasks T] [--spacing-secs G] [--retention-days D]
//! ```
//! Default: `--orders 0,1000000,10000000 --secs 10 --tasks 64 --spacing-secs 2 --retention-days 7`.
//! `--retention-days` is the measured node's `[orders] retention_days`
//! (the history is generated with the default, 7). With a shorter one a
//! first child archives the rest and snapshots the window, and the
//! measured node starts from that snapshot: a node that has run with that
//! retention restarts from its own window, not from 7 days' worth.
//!
//! For each N the history is generated once under
//! `target/bench-history/<N>-<G>` by the generator shared with the
//! `startup` bench (`common/generate.rs`: the real decider on the demo
//! district, as a writer would record it, the mix and the archive
//! decisions described there): N orders, one every G seconds of recorded
//! time, ending now, and a state snapshot at the end. The measurement then runs in a fresh process (so
//! the generator's memory is not counted): it starts a real writer on that
//! log (`District::start`: snapshot + tail, like `serve`), reports its
//! resident memory, then submits till orders from T tasks for S seconds —
//! each confirm (`Place`, one fsync'd group commit) followed by its cancel
//! so stock never runs out — and reports confirms per second with their
//! p50/p99 latency. This is the writer's cost, without HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::generate::{self, place, rss_mb, Spec, Until, DISTRICT};
use district::{CatalogCommand, Command, OrderCommand};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::OrderId;
use protocol::DistrictId;
use region_node::archive::RUNS_DIR;
use region_node::clock::Clock;
use region_node::lifecycle::Shutdown;
use region_node::metrics::Metrics;
use region_node::snapshot::SnapshotStore;
use region_node::store::sealed::SEALED_DIR;
use region_node::store::EventLog;
use region_node::writer::{District, WriterSetup};

mod common;

/// The node's allocator (`main.rs`), counting the bytes it has handed out
/// and not taken back. Resident memory also holds what the allocator keeps
/// after start-up's temporaries are freed (it moved by hundreds of MB from
/// run to run with glibc's malloc); live heap bytes are what the state and
/// the writer hold, the same every run.
#[global_allocator]
static GLOBAL: Counted = Counted;

struct Counted;

static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call goes to mimalloc unchanged; only a counter is added.
unsafe impl std::alloc::GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let grown = new_size as i64 - layout.size() as i64;
        LIVE_BYTES.fetch_add(grown, std::sync::atomic::Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Bytes of the files under `dir`, in MB.
fn dir_mb(dir: &Path) -> u64 {
    region_node::capacity::disk::dir_bytes(dir) / (1024 * 1024)
}

fn heap_mb() -> i64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed) / (1024 * 1024)
}

struct Args {
    orders: Vec<u64>,
    secs: u64,
    tasks: usize,
    spacing_secs: i64,
    retention_days: u32,
    /// Set in the child process: measure the history in this directory.
    measure: Option<PathBuf>,
    /// Set in the child process: archive to the retention, snapshot the
    /// window and stop, without measuring.
    settle: bool,
}

fn args() -> Args {
    let mut a = Args {
        orders: vec![0, 1_000_000, 10_000_000],
        secs: 10,
        tasks: 64,
        spacing_secs: 2,
        retention_days: district::orders::archive::RETENTION_DEFAULT_DAYS,
        measure: None,
        settle: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let number = value.parse::<u64>().ok();
        match (argv[i].as_str(), number) {
            ("--orders", _) => a.orders = value.split(',').filter_map(|n| n.parse().ok()).collect(),
            ("--secs", Some(v)) => a.secs = v,
            ("--tasks", Some(v)) => a.tasks = v as usize,
            ("--spacing-secs", Some(v)) => a.spacing_secs = v as i64,
            ("--retention-days", Some(v)) => a.retention_days = v as u32,
            ("--measure", _) => a.measure = Some(PathBuf::from(value)),
            ("--settle", Some(v)) => a.settle = v == 1,
            // `cargo bench` passes `--bench`; anything else is ignored too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn main() {
    let args = args();
    if let Some(dir) = &args.measure {
        return measure(dir, &args);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-history");
    println!(
        "history orders | in memory | resident MB | heap MB | of it log at open MB | log on disk MB (sled / sealed / archive runs) | confirms/s | p50 ms | p99 ms"
    );
    for &orders in &args.orders {
        let dir = root.join(format!("{orders}-{}", args.spacing_secs));
        let complete = dir.join("complete");
        // A history from before sealing (its whole log in sled) or before
        // archive runs (its archive index in sled) is not the log a node
        // writes now.
        let log = dir.join("log");
        let outdated =
            orders > 0 && !(log.join(SEALED_DIR).exists() && log.join(RUNS_DIR).exists());
        if outdated && complete.exists() {
            println!("  {orders}: generated before sealing or archive runs; generating it again");
        }
        if !complete.exists() || outdated {
            let _ = std::fs::remove_dir_all(&dir);
            generate(&dir, orders, args.spacing_secs);
            std::fs::write(&complete, orders.to_string()).unwrap();
        }
        refresh_snapshot(&dir);
        // The measurement writes (its confirms): it runs on a copy, so the
        // generated history stays as generated for the next run.
        let run = root.join("run");
        let _ = std::fs::remove_dir_all(&run);
        copy_history(&dir, &run);
        // The history holds the generator's 7 days. A node that has run
        // with a shorter retention restarts from a snapshot of its own
        // window: one child archives to it and snapshots, the next measures.
        let settle = args.retention_days < district::orders::archive::RETENTION_DEFAULT_DAYS;
        if settle {
            child(&run, &args, true);
        }
        child(&run, &args, false);
    }
}

fn child(run: &Path, args: &Args, settle: bool) {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args(["--measure", &run.display().to_string()])
        .args(["--secs", &args.secs.to_string()])
        .args(["--tasks", &args.tasks.to_string()])
        .args(["--retention-days", &args.retention_days.to_string()])
        .args(["--settle", if settle { "1" } else { "0" }])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the history's child (settle: {settle}) failed"
    );
}

/// Copies a history for a measurement: sled's files and the snapshots
/// byte for byte (the measurement writes to them), sealed segments and
/// archive runs as hard links (never written again, and most of a long
/// history's bytes; a merge in the copy deletes only its own links).
fn copy_history(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            copy_history(&src, &dst);
        } else if from.ends_with(SEALED_DIR) || from.ends_with(RUNS_DIR) {
            std::fs::hard_link(&src, &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A history generated by an older build keeps a snapshot this one cannot
/// read; the node would replay the whole log instead (a snapshot is only a
/// cache). The measurement is of a node started as `serve` starts it, from
/// a snapshot, so a fresh one is written first.
fn refresh_snapshot(dir: &Path) {
    let log = EventLog::open(&dir.join("log")).unwrap();
    let snapshots = SnapshotStore::new(dir, 1);
    if snapshots.load_newest(&log).is_some() {
        return;
    }
    let recovered = region_node::snapshot::recover(&log, None).unwrap();
    snapshots.write(&recovered.state, &log).unwrap();
    println!("  snapshot rewritten: the stored one was of another shape");
}

fn generate(dir: &Path, orders: u64, spacing_secs: i64) {
    let snapshots = SnapshotStore::new(dir, 1);
    let span = chrono::Duration::seconds(spacing_secs * orders as i64);
    let g = generate::generate(
        &dir.join("log"),
        &snapshots,
        &Spec {
            // The history ends now, so the node's retention (on the system
            // clock) sees it as the writer recorded it.
            start: Utc::now() - span - chrono::Duration::minutes(1),
            spacing_secs,
            until: Until::Orders(orders),
            snapshot_at: None,
        },
    );
    let log = EventLog::open(&dir.join("log")).unwrap();
    snapshots.write(&g.state, &log).unwrap();
    // The state as a running node builds it (insert by insert), where the
    // measurement below starts from a snapshot (decoded in key order, so
    // its maps' nodes are packed): with the log's cache and the
    // generator's own, an upper bound for the same window.
    println!(
        "  generated {orders} orders ({} events) in {:.1} s; refused commands: {:?}; heap at the end {} MB",
        g.state.last_seq(),
        g.took.as_secs_f64(),
        g.refused,
        heap_mb(),
    );
}

/// The child process: a writer on the history, its memory, its confirms.
fn measure(dir: &Path, args: &Args) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // sled's page table is loaded when the log opens, and the archive
        // runs' block indexes: their share.
        let before_open = heap_mb();
        let log = EventLog::open(&dir.join("log")).unwrap();
        let log_open = heap_mb() - before_open;
        let district = District::start(
            WriterSetup {
                district_id: DistrictId::from_static(DISTRICT),
                area: district::demo::area(),
                log: log.clone(),
                clock: Clock::system(),
                metrics: Arc::new(Metrics::default()),
                policy: district::orders::OrderPolicy {
                    retention: chrono::Duration::days(args.retention_days.into()),
                    ..Default::default()
                },
                fridge_policy: Default::default(),
                utc_offset_minutes: 0,
                schedule_policy: Default::default(),
                snapshots: Some(SnapshotStore::new(dir, 1)),
            },
            Shutdown::never(),
        )
        .unwrap();
        // What the node's archive tick does in its first seconds: archive
        // what passed the retention since the last decision.
        while !district
            .submit(Command::Order(OrderCommand::Archive))
            .await
            .unwrap()
            .events
            .is_empty()
        {}
        // A shorter retention than the generator's archives most of the
        // window here: let the archive's thread move it into runs first.
        let deadline = Instant::now() + Duration::from_secs(300);
        while district
            .archive()
            .is_some_and(|a| a.stats().in_sled >= region_node::archive::FLUSH_ENTRIES_DEFAULT)
        {
            assert!(Instant::now() < deadline, "the archive's thread did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if args.settle {
            let window = district.state();
            SnapshotStore::new(dir, 1).write(&window, &log).unwrap();
            return;
        }
        // A node started on a history archived with this retention would
        // have recovered only the window, and collected after that (as
        // `District::start` does): not kept this burst's freed pages.
        region_node::memory::return_freed_pages();
        let history = std::fs::read_to_string(dir.join("complete")).unwrap_or_default();
        let sealed_mb = dir_mb(&dir.join("log").join(SEALED_DIR));
        let runs_mb = dir_mb(&dir.join("log").join(RUNS_DIR));
        let sled_mb = dir_mb(&dir.join("log")) - sealed_mb - runs_mb;
        let in_memory = district.state().orders().len();
        let (resident, heap) = (rss_mb(), heap_mb());
        let (rate, p50, p99) = confirms(&district, args).await;
        println!(
            "{} | {in_memory} | {resident} | {heap} | {log_open} | {sled_mb} / {sealed_mb} / {runs_mb} | {rate:.0} | {p50:.1} | {p99:.1}",
            history.trim()
        );
    });
}

/// Confirms (and cancels) till orders from `args.tasks` tasks for
/// `args.secs` seconds: confirms per second, p50 and p99 in ms.
async fn confirms(district: &District, args: &Args) -> (f64, f64, f64) {
    let state = district.state();
    let fridge = state.catalog().fridges().keys().next().cloned().unwrap();
    let meal = state.catalog().meals().keys().next().cloned().unwrap();
    let counts = vec![StockCount {
        meal_id: meal.clone(),
        units: protocol::catalog::MAX_UNITS_PER_MEAL,
    }];
    district
        .submit(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge.clone(),
            spec: StockSpec { counts },
        }))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(args.secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.tasks)
        .map(|t| {
            let (district, fridge, meal) = (district.clone(), fridge.clone(), meal.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let order_id = OrderId::parse(Clock::system().ulid().to_string()).unwrap();
                    let sent = Instant::now();
                    let cmd = place(&order_id, &fridge, &meal, false, &format!("bench-{t}"));
                    if district.submit(cmd).await.is_err() {
                        continue;
                    }
                    latencies.push(sent.elapsed());
                    let cancel = OrderCommand::Cancel {
                        order_id,
                        customer: None,
                    };
                    let _ = district.submit(Command::Order(cancel)).await;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    all.sort();
    let ms = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (all.len() as f64 / took, ms(0.5), ms(0.99))
}
