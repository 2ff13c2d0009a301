//! Start-up from a big log: how long a node takes to recover its state, by
//! full replay and from a snapshot plus the tail behind it.
//!
//! ```text
//! cargo bench -p region-node --bench startup -- [--events N] [--runs R] [--tail T]
//! ```
//! The log is generated once per size under `target/bench-logs/<N>` by the
//! real decider on the demo district: a realistic mix of restocks, POS
//! orders paid and picked up, app orders cancelled in their grace window,
//! and paid orders nobody collected (unclaimed at their pickup deadline).
//! Each run opens the log as a node does (`EventLog::open` + `recover`),
//! with the page cache dropped first when this process may (root), so the
//! figures include reading from disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use district::{CatalogCommand, Command, Context, DistrictState, OrderCommand, OrderTimer};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderItem, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::{DistrictId, EventEnvelope};
use region_node::capacity::disk::dir_bytes;
use region_node::snapshot::{recover, SnapshotStore};
use region_node::store::EventLog;

/// Events per appended batch while generating (one fsync each).
const GENERATE_BATCH_EVENTS: usize = 20_000;
/// Orders between two restocks of a fridge.
const RESTOCK_EVERY_ORDERS: u64 = 40;

struct Args {
    events: u64,
    runs: usize,
    /// Events after the snapshot, replayed on top of it.
    tail: u64,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        runs: 3,
        tail: 50_000,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), value) {
            ("--events", Some(v)) => a.events = v,
            ("--runs", Some(v)) => a.runs = v as usize,
            ("--tail", Some(v)) => a.tail = v,
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-logs");
    let dir = root.join(args.events.to_string());
    let log_dir = dir.join("log");
    let complete = dir.join("complete");
    if !complete.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        generate(&log_dir, args.events);
        std::fs::write(&complete, args.events.to_string()).unwrap();
    }
    // The number of events the log really holds (written by the generator).
    let events: u64 = std::fs::read_to_string(&complete)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(args.events);
    let args = Args { events, ..args };
    let snapshots = SnapshotStore::new(&dir, 1);
    prepare_snapshot(&log_dir, &snapshots, args.events.saturating_sub(args.tail));
    println!(
        "log: {} events in {} ({} MB on disk)",
        args.events,
        log_dir.display(),
        dir_bytes(&log_dir) / 1_000_000
    );
    stages(&log_dir, args.events);
    println!("run | full replay s | events/s | snapshot+tail s | snapshot MB");
    for run in 1..=args.runs {
        let full = timed(&log_dir, None);
        let fast = timed(&log_dir, Some(&snapshots));
        println!(
            "{run} | {:.2} | {:.0} | {:.2} | {}",
            full.as_secs_f64(),
            args.events as f64 / full.as_secs_f64(),
            fast.as_secs_f64(),
            dir_bytes(snapshots.dir()) / 1_000_000
        );
    }
}

/// Where a full replay's time goes: reading sled, decoding records, and
/// evolving the state (warm cache, one run each).
fn stages(log_dir: &Path, events: u64) {
    let log = EventLog::open(log_dir).unwrap();
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
    let state = recover(&log, None).unwrap().state;
    let full_took = started.elapsed();
    assert_eq!(state.last_seq(), events);
    println!(
        "stages (warm): read {:.0} ev/s | read+decode {:.0} ev/s | read+decode+evolve {:.0} ev/s",
        rate(read_took),
        rate(decode_took),
        rate(full_took)
    );
}

/// Opens the log as a node does and recovers the state; the whole time.
fn timed(log_dir: &Path, snapshots: Option<&SnapshotStore>) -> Duration {
    drop_page_cache();
    let started = Instant::now();
    let log = EventLog::open(log_dir).unwrap();
    let state = recover(&log, snapshots).unwrap().state;
    let took = started.elapsed();
    assert!(state.last_seq() > 0);
    if snapshots.is_none() {
        println!(
            "  resident with the state and the log open: {} MB",
            rss_mb()
        );
    }
    took
}

/// The process's resident memory now, from /proc (0 where unreadable).
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn drop_page_cache() {
    // Needs root; without it the runs after the first read from memory.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", b"3");
}

fn prepare_snapshot(log_dir: &Path, snapshots: &SnapshotStore, at_seq: u64) {
    let log = EventLog::open(log_dir).unwrap();
    if snapshots.load_newest(&log).map(|l| l.state.last_seq()) == Some(at_seq) {
        return;
    }
    let mut state = DistrictState::default();
    for env in log.replay().take(at_seq as usize) {
        district::evolve(&mut state, &env.unwrap());
    }
    let started = Instant::now();
    snapshots.write(&state, &log).unwrap();
    println!(
        "snapshot at seq {at_seq} written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// The district as the generator drives it: the state, the time, and the
/// events not yet appended.
struct Generator {
    state: DistrictState,
    ctx: Context,
    pending: Vec<EventEnvelope>,
    /// Commands the decider refused, by error (the mix stays realistic only
    /// while these are rare).
    refused: std::collections::BTreeMap<String, u64>,
    /// Paid orders nobody collects, in order of their pickup deadline.
    uncollected: std::collections::VecDeque<(chrono::DateTime<Utc>, OrderId)>,
}

fn generate(log_dir: &Path, events: u64) {
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = EventLog::open(log_dir).unwrap();
    let mut g = Generator {
        state: DistrictState::default(),
        ctx: Context {
            district_id: DistrictId::from_static("detroit-downtown"),
            area: district::demo::area(),
            now: Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        },
        pending: Vec::new(),
        uncollected: Default::default(),
        refused: Default::default(),
    };
    let demo = district::demo::detroit().unwrap();
    let fridges: Vec<_> = demo.fridges.iter().map(|f| f.fridge_id.clone()).collect();
    let meals: Vec<_> = demo.meals.iter().map(|m| m.meal_id.clone()).collect();
    for cmd in district::demo::commands(demo) {
        g.run(cmd);
    }
    let mut n = 0u64;
    while g.state.last_seq() < events {
        let fridge = &fridges[(n as usize) % fridges.len()];
        if n % RESTOCK_EVERY_ORDERS < fridges.len() as u64 {
            g.restock(fridge, &meals);
        }
        let meal = &meals[(n as usize / fridges.len()) % meals.len()];
        g.order(n, fridge, meal);
        n += 1;
        // The last order's events stay pending: the log ends at `events`.
        if g.pending.len() >= GENERATE_BATCH_EVENTS && g.state.last_seq() < events {
            rt.block_on(g.flush(&log));
        }
    }
    g.pending
        .truncate(g.pending.len() - (g.state.last_seq() - events) as usize);
    rt.block_on(g.flush(&log));
    println!(
        "generated {events} events ({n} orders) in {:.1} s; refused commands: {:?}; resident {} MB",
        started.elapsed().as_secs_f64(),
        g.refused,
        rss_mb()
    );
}

impl Generator {
    fn run(&mut self, cmd: Command) {
        let events = match district::decide(&self.state, cmd, &self.ctx) {
            Ok(events) => events,
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap_or("?")
                    .to_string();
                *self.refused.entry(kind).or_default() += 1;
                return;
            }
        };
        for event in events {
            let env = EventEnvelope {
                event_id: region_node::clock::ulid_at(self.ctx.now),
                seq: self.state.last_seq() + 1,
                stream_id: event.stream_id(),
                stream_version: self.state.stream_version(&event.stream_id()) + 1,
                district_id: self.ctx.district_id.clone(),
                recorded_at: self.ctx.now,
                valid_from: self.ctx.now,
                correlation_id: None,
                causation_id: None,
                schema_version: protocol::codec::LOG_SCHEMA_VERSION,
                event,
            };
            district::evolve(&mut self.state, &env);
            self.pending.push(env);
        }
    }

    async fn flush(&mut self, log: &EventLog) {
        log.append_batch(&self.pending).await.unwrap();
        self.pending.clear();
    }

    fn restock(&mut self, fridge: &protocol::FridgeId, meals: &[protocol::MealId]) {
        let counts = meals
            .iter()
            .map(|m| StockCount {
                meal_id: m.clone(),
                units: 12,
            })
            .collect();
        self.run(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge.clone(),
            spec: StockSpec { counts },
        }));
    }

    /// One order's life. Most are POS sales picked up at once; one in ten
    /// is an app order cancelled in its grace window; one in twenty is paid
    /// and never collected.
    fn order(&mut self, n: u64, fridge: &protocol::FridgeId, meal: &protocol::MealId) {
        self.ctx.now += chrono::Duration::seconds(2);
        let order_id = OrderId::parse(format!("o-{n:012}")).unwrap();
        let app = n % 10 == 3;
        self.run(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: format!("c-{}", n % 5_000),
            channel: if app { Channel::App } else { Channel::Pos },
            request: PlaceOrder {
                fridge_id: fridge.clone(),
                items: vec![OrderItem {
                    meal_id: meal.clone(),
                    qty: 1 + (n % 2) as u32,
                }],
                coupon: None,
                share_code: None,
                points: None,
                payment_method: "tok_visa".into(),
                pickup_date: None,
            },
            idempotency: None,
            referral: None,
        }));
        if app {
            return self.run(Command::Order(OrderCommand::Cancel {
                order_id,
                customer: None,
            }));
        }
        self.run(Command::RecordPayment {
            result: PaymentResult {
                kind: PaymentKind::Charge,
                order_id: order_id.clone(),
                district_id: self.ctx.district_id.clone(),
                outcome: PaymentOutcome::Approved {
                    reference: format!("ch_{n}"),
                },
            },
            pickup_code: "482913".into(),
        });
        if n % 20 == 7 {
            let due = self.ctx.now + self.ctx.policy.pickup_window;
            self.uncollected.push_back((due, order_id));
        } else {
            self.run(Command::Order(OrderCommand::Pickup {
                order_id,
                pickup_code: "482913".into(),
            }));
        }
        while let Some((due, _)) = self.uncollected.front() {
            if *due > self.ctx.now {
                break;
            }
            let Some((_, order_id)) = self.uncollected.pop_front() else {
                break;
            };
            self.run(Command::Order(OrderCommand::FireTimer {
                order_id,
                timer: OrderTimer::PickupDeadline,
            }));
        }
    }
}
