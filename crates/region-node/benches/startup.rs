//! Start-up from a big log (issue 10): how long a node takes to recover its
//! state, by full replay and from its newest snapshot plus the tail behind
//! it, and how big the snapshot and the node's memory are afterwards.
//!
//! ```text
//! cargo bench -p region-node --bench startup -- [--events N] [--spacing-secs S] [--runs R] [--tail T] [--stages] [--no-full] [--snapshot-write]
//! ```
//! Default: `--events 1000000 --spacing-secs 4 --runs 3 --tail 100000`.
//!
//! The log is generated once per size and spacing under
//! `target/bench-logs/<N>-<S>s` by the shared generator
//! (`common/generate.rs`): the real decider on the demo district, one order
//! every S seconds of recorded time (about 6.7 events an order, so at 4 s
//! 10 M events span ~69 days), archive decisions with their index entries
//! as the writer writes them, so the hot state holds only the 7-day
//! retention window. While generating, a snapshot is written T events
//! before the end (at the next order boundary), as the node's snapshot task
//! would; T defaults to the task's `every_events`. (The task waits at least
//! one event per order in memory, `events_per_hot_order`, so a node's
//! longest tail is the larger of that and its orders: ~150k for these logs.)
//!
//! Each measurement runs in a fresh process (so resident memory is the
//! node's, not the generator's or an earlier run's), on the node's
//! allocator (mimalloc), after dropping the page cache when this process
//! may (root): `EventLog::open` + `snapshot::recover`, as `District::start`
//! does. A row per run: full
//! replay time and events/s, start-up from snapshot + tail (with the
//! snapshot's load apart), and resident memory after each. `--stages`
//! adds where a full replay's time goes (read, decode, evolve; warm
//! cache); `--no-full` skips the full replays (a minute or more at 10 M).
//! `--snapshot-write` measures instead what writing one snapshot costs
//! (time and bytes per order in memory, encoding apart), R times.
//! Figures: BENCHMARKS.md, "Start-up" (10 M events: generated in ~10 min,
//! start-up from the snapshot 1.8–2.8 s on the shared 2-core VM).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::generate::{self, rss_mb, Spec, Until};
use district::DistrictState;
use region_node::capacity::disk::dir_bytes;
use region_node::snapshot::{recover, SnapshotStore};
use region_node::store::EventLog;

mod common;

// The node's allocator (`main.rs`): with glibc's, malloc and free were
// ~20 % of a start-up's profile, a cost the node does not pay.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    events: u64,
    spacing_secs: i64,
    runs: usize,
    /// Events after the snapshot, replayed on top of it.
    tail: u64,
    stages: bool,
    full: bool,
    /// Measure what writing one snapshot costs instead of start-ups.
    snapshot_write: bool,
    /// Set in the child process: `full` or `snapshot`, on this directory.
    measure: Option<(String, PathBuf)>,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        spacing_secs: 4,
        runs: 3,
        tail: region_node::config::SNAPSHOT_EVERY_EVENTS_DEFAULT,
        stages: false,
        full: true,
        snapshot_write: false,
        measure: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let number = value.parse::<u64>().ok();
        match (argv[i].as_str(), number) {
            ("--events", Some(v)) => a.events = v,
            ("--spacing-secs", Some(v)) => a.spacing_secs = v as i64,
            ("--runs", Some(v)) => a.runs = v as usize,
            ("--tail", Some(v)) => a.tail = v,
            ("--stages", _) => {
                a.stages = true;
                i += 1;
                continue;
            }
            ("--no-full", _) => {
                a.full = false;
                i += 1;
                continue;
            }
            ("--snapshot-write", _) => {
                a.snapshot_write = true;
                i += 1;
                continue;
            }
            ("--measure", _) => {
                let dir = argv.get(i + 2).cloned().unwrap_or_default();
                a.measure = Some((value, PathBuf::from(dir)));
                i += 3;
                continue;
            }
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
    if let Some((what, dir)) = &args.measure {
        return measure(what, dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-logs");
    let dir = root.join(format!("{}-{}s", args.events, args.spacing_secs));
    let log_dir = dir.join("log");
    let snapshots = SnapshotStore::new(&dir, 1);
    if !generate::is_complete(&dir) {
        let g = generate::generate(
            &log_dir,
            &snapshots,
            &Spec {
                // A fixed start, so a log is the same whenever generated
                // (but for the random part of its ULIDs).
                start: Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
                spacing_secs: args.spacing_secs,
                until: Until::Events(args.events),
                snapshot_at: Some(args.events.saturating_sub(args.tail)),
            },
        );
        assert_eq!(g.state.last_seq(), args.events);
        println!(
            "generated {} events ({} orders, {:.0} days recorded) in {:.0} s; \
             {} orders in memory at the end; refused commands: {:?}; generator resident {} MB",
            args.events,
            g.orders,
            (g.orders as i64 * args.spacing_secs) as f64 / 86_400.0,
            g.took.as_secs_f64(),
            g.state.orders().len(),
            g.refused,
            rss_mb()
        );
        std::fs::write(dir.join("complete"), args.events.to_string()).unwrap();
    }
    let log = EventLog::open(&log_dir).unwrap();
    let at_seq = prepare_snapshot(&log, &snapshots, args.events.saturating_sub(args.tail));
    println!(
        "log: {} events, {} MB on disk (archive index included); snapshot at seq {at_seq} \
         ({} MB), tail {} events",
        log.len(),
        dir_bytes(&log_dir) / 1_000_000,
        dir_bytes(snapshots.dir()) / 1_000_000,
        args.events - at_seq
    );
    if args.stages {
        stages(&log, args.events);
    }
    if args.snapshot_write {
        return snapshot_write(&log, &snapshots, &dir, args.runs);
    }
    drop(log);
    println!(
        "run | full replay s | events/s | resident MB | snapshot+tail s | of which snapshot load s | resident MB | orders in memory"
    );
    for run in 1..=args.runs {
        let full = args.full.then(|| child("full", &dir));
        let fast = child("snapshot", &dir);
        let (full_s, rate, full_rss) = match full {
            Some(m) => (
                format!("{:.2}", m.took),
                format!("{:.0}", args.events as f64 / m.took),
                m.rss_mb.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{run} | {full_s} | {rate} | {full_rss} | {:.2} | {:.2} | {} | {}",
            fast.took, fast.snapshot_load, fast.rss_mb, fast.orders
        );
    }
}

/// What one measuring process saw.
struct Measured {
    took: f64,
    snapshot_load: f64,
    rss_mb: u64,
    orders: usize,
}

fn child(what: &str, dir: &Path) -> Measured {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--measure", what, &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "measuring {what} failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("measured "))
        .unwrap_or_else(|| panic!("no measurement in {text}"));
    let f: Vec<&str> = line.split(' ').collect();
    Measured {
        took: f[0].parse().unwrap(),
        snapshot_load: f[1].parse().unwrap(),
        rss_mb: f[2].parse().unwrap(),
        orders: f[3].parse().unwrap(),
    }
}

/// The child: opens the log as a node does and recovers the state.
fn measure(what: &str, dir: &Path) {
    let snapshots = SnapshotStore::new(dir, 1);
    let snapshots = (what == "snapshot").then_some(&snapshots);
    drop_page_cache();
    let started = Instant::now();
    let log = EventLog::open(&dir.join("log")).unwrap();
    let recovered = recover(&log, snapshots).unwrap();
    let took = started.elapsed();
    assert_eq!(recovered.from_seq > 0, snapshots.is_some());
    println!(
        "measured {:.3} {:.3} {} {}",
        took.as_secs_f64(),
        recovered.snapshot_load.as_secs_f64(),
        rss_mb(),
        recovered.state.orders().len()
    );
}

/// Where a full replay's time goes: reading sled, decoding records, and
/// evolving the state (warm cache, one run each).
fn stages(log: &EventLog, events: u64) {
    let rate = |took: Duration| events as f64 / took.as_secs_f64();
    let started = Instant::now();
    let read = log.raw_records().count();
    let read_took = started.elapsed();
    assert_eq!(read as u64, events);
    let started = Instant::now();
    let decoded = log.replay().filter(|e| e.is_ok()).count();
    let decode_took = started.elapsed();
    assert_eq!(decoded as u64, events);
    let started = Instant::now();
    let state = recover(log, None).unwrap().state;
    let full_took = started.elapsed();
    assert_eq!(state.last_seq(), events);
    println!(
        "stages (warm): read {:.0} ev/s | read+decode {:.0} ev/s | read+decode+evolve {:.0} ev/s",
        rate(read_took),
        rate(decode_took),
        rate(full_took)
    );
}

/// What one snapshot write costs per hot order (an order in memory, the
/// bulk of the state): the snapshot task's `SnapshotStore::write` of the
/// generated snapshot's state, `runs` times into a scratch directory
/// (warm: the state is in memory as in the node; wall and CPU time, the
/// difference mostly the wait for fsync), and the encoding alone
/// into a counting sink, to tell encoding from the file's I/O.
fn snapshot_write(log: &EventLog, snapshots: &SnapshotStore, dir: &Path, runs: usize) {
    let state = snapshots
        .load_newest(log)
        .expect("a snapshot to start from")
        .state;
    let orders = state.orders().len().max(1) as f64;
    let scratch = dir.join("write-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let store = SnapshotStore::new(&scratch, 1);
    println!(
        "snapshot write at seq {}, {orders} orders in memory",
        state.last_seq()
    );
    println!(
        "run | write ms | µs/order | of which CPU ms | CPU µs/order | bytes | bytes/order \
         | encode only ms | µs/order"
    );
    for run in 1..=runs {
        let (started, cpu_started) = (Instant::now(), thread_cpu_secs());
        let path = store.write(&state, log).unwrap();
        let write = started.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs() - cpu_started;
        let bytes = std::fs::metadata(&path).unwrap().len();
        let started = Instant::now();
        let encoded = postcard::experimental::serialized_size(&state).unwrap();
        let encode = started.elapsed().as_secs_f64();
        assert!(encoded as u64 <= bytes);
        println!(
            "{run} | {:.0} | {:.2} | {:.0} | {:.2} | {bytes} | {:.0} | {:.0} | {:.2}",
            write * 1e3,
            write * 1e6 / orders,
            cpu * 1e3,
            cpu * 1e6 / orders,
            bytes as f64 / orders,
            encode * 1e3,
            encode * 1e6 / orders
        );
    }
    // What was written must load (the loader checks header, length, crc).
    let reloaded = store
        .load_newest(log)
        .expect("the written snapshot loads")
        .state;
    assert_eq!(reloaded.orders().len(), state.orders().len());
    let _ = std::fs::remove_dir_all(&scratch);
}

/// CPU time of this thread, user and system: a write's wall time also
/// holds the wait for the disk (fsync), which costs the node no CPU.
fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn drop_page_cache() {
    // Needs root; without it the runs after the first read from memory.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", b"3");
}

/// The snapshot the runs start from: the generator's if its tail is the
/// one asked for (within an order's events), else one written after a
/// replay to `at_seq`. Returns its seq.
fn prepare_snapshot(log: &EventLog, snapshots: &SnapshotStore, at_seq: u64) -> u64 {
    if let Some(seq) = snapshots.load_newest(log).map(|l| l.state.last_seq()) {
        if seq.abs_diff(at_seq) < 100 {
            return seq;
        }
    }
    let mut state = DistrictState::default();
    for env in log.replay().take(at_seq as usize) {
        district::evolve(&mut state, &env.unwrap());
    }
    let started = Instant::now();
    snapshots.write(&state, log).unwrap();
    println!(
        "snapshot at seq {at_seq} written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    at_seq
}
