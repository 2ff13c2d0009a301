//! Bounded memory, flat cost (issue 15, part 5): a node's resident memory
//! and its confirm rate as the district's order history grows.
//!
//! ```text
//! cargo bench -p region-node --bench history -- [--orders N[,N…]] [--secs S] [--tasks T] [--spacing-secs G]
//! ```
//! Default: `--orders 0,1000000,10000000 --secs 10 --tasks 64 --spacing-secs 2`.
//!
//! For each N the history is generated once under
//! `target/bench-history/<N>-<G>` by the real decider on the demo district,
//! as a writer would record it: N orders, one every G seconds of recorded
//! time, ending now (90 % till orders paid and picked up, 10 % app orders
//! cancelled in their grace window), with the archive decision taken
//! every 1,000 orders (`OrderCommand::Archive`, default retention of 7
//! days) and its index entries written with its batch, and a state
//! snapshot at the end. The measurement then runs in a fresh process (so
//! the generator's memory is not counted): it starts a real writer on that
//! log (`District::start`: snapshot + tail, like `serve`), reports its
//! resident memory, then submits till orders from T tasks for S seconds —
//! each confirm (`Place`, one fsync'd group commit) followed by its cancel
//! so stock never runs out — and reports confirms per second with their
//! p50/p99 latency. This is the writer's cost, without HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use district::{CatalogCommand, Command, Context, DistrictState, OrderCommand};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderItem, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::{DistrictId, EventEnvelope, FridgeId, MealId};
use region_node::clock::Clock;
use region_node::lifecycle::Shutdown;
use region_node::metrics::Metrics;
use region_node::snapshot::SnapshotStore;
use region_node::store::EventLog;
use region_node::writer::{District, WriterSetup};

/// Events per appended batch while generating (one fsync each).
const GENERATE_BATCH_EVENTS: usize = 20_000;
/// Orders between two archive decisions while generating.
const ARCHIVE_EVERY_ORDERS: u64 = 1_000;
/// Orders between two restocks of a fridge.
const RESTOCK_EVERY_ORDERS: u64 = 40;
const DISTRICT: &str = "detroit-downtown";

struct Args {
    orders: Vec<u64>,
    secs: u64,
    tasks: usize,
    spacing_secs: i64,
    /// Set in the child process: measure the history in this directory.
    measure: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        orders: vec![0, 1_000_000, 10_000_000],
        secs: 10,
        tasks: 64,
        spacing_secs: 2,
        measure: None,
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
            ("--measure", _) => a.measure = Some(PathBuf::from(value)),
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
    println!("history orders | in memory | resident MB | confirms/s | p50 ms | p99 ms");
    for &orders in &args.orders {
        let dir = root.join(format!("{orders}-{}", args.spacing_secs));
        let complete = dir.join("complete");
        if !complete.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            generate(&dir, orders, args.spacing_secs);
            std::fs::write(&complete, orders.to_string()).unwrap();
        }
        // The measurement writes (its confirms): it runs on a copy, so the
        // generated history stays as generated for the next run.
        let run = root.join("run");
        let _ = std::fs::remove_dir_all(&run);
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(&run)
            .status()
            .unwrap();
        assert!(copied.success(), "copying {} failed", dir.display());
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe)
            .args(["--measure", &run.display().to_string()])
            .args(["--secs", &args.secs.to_string()])
            .args(["--tasks", &args.tasks.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "measuring {orders} orders failed");
    }
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

fn context(now: DateTime<Utc>) -> Context {
    Context {
        district_id: DistrictId::from_static(DISTRICT),
        area: district::demo::area(),
        now,
        policy: Default::default(),
        fridges: Default::default(),
        utc_offset_minutes: 0,
        schedule: Default::default(),
    }
}

/// The district as the generator drives it, recording as the writer does.
struct Generator {
    state: DistrictState,
    ctx: Context,
    pending: Vec<EventEnvelope>,
    archived: Vec<region_node::archive::Entry>,
    /// Commands the decider refused, by error (rare, or the mix is off).
    refused: std::collections::BTreeMap<String, u64>,
}

fn generate(dir: &Path, orders: u64, spacing_secs: i64) {
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = EventLog::open(&dir.join("log")).unwrap();
    let span = chrono::Duration::seconds(spacing_secs * orders as i64);
    let mut g = Generator {
        state: DistrictState::default(),
        ctx: context(Utc::now() - span - chrono::Duration::minutes(1)),
        pending: Vec::new(),
        archived: Vec::new(),
        refused: Default::default(),
    };
    let demo = district::demo::detroit().unwrap();
    let fridges: Vec<_> = demo.fridges.iter().map(|f| f.fridge_id.clone()).collect();
    let meals: Vec<_> = demo.meals.iter().map(|m| m.meal_id.clone()).collect();
    for cmd in district::demo::commands(demo) {
        g.run(cmd);
    }
    for n in 0..orders {
        let fridge = &fridges[(n as usize) % fridges.len()];
        if n % RESTOCK_EVERY_ORDERS < fridges.len() as u64 {
            g.restock(fridge, &meals);
        }
        let meal = &meals[(n as usize / fridges.len()) % meals.len()];
        g.ctx.now += chrono::Duration::seconds(spacing_secs);
        g.order(n, fridge, meal);
        if n % ARCHIVE_EVERY_ORDERS == 0 {
            g.run(Command::Order(OrderCommand::Archive));
        }
        if g.pending.len() >= GENERATE_BATCH_EVENTS {
            rt.block_on(g.flush(&log));
        }
    }
    rt.block_on(g.flush(&log));
    SnapshotStore::new(dir, 1).write(&g.state, &log).unwrap();
    println!(
        "  generated {orders} orders ({} events) in {:.1} s; refused commands: {:?}",
        g.state.last_seq(),
        started.elapsed().as_secs_f64(),
        g.refused,
    );
}

impl Generator {
    fn run(&mut self, cmd: Command) {
        let events = match district::decide(&self.state, cmd, &self.ctx) {
            Ok(events) => events,
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or("?");
                *self.refused.entry(kind.to_string()).or_default() += 1;
                return;
            }
        };
        for event in events {
            if let protocol::Event::OrdersArchived { order_ids } = &event {
                let entries = region_node::archive::entries(&self.state, order_ids).unwrap();
                self.archived.extend(entries);
            }
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
        log.append_batch_archiving(&self.pending, &self.archived)
            .await
            .unwrap();
        self.pending.clear();
        self.archived.clear();
    }

    fn restock(&mut self, fridge: &FridgeId, meals: &[MealId]) {
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

    /// One order's life: a till sale paid and picked up, or (one in ten)
    /// an app order cancelled in its grace window.
    fn order(&mut self, n: u64, fridge: &FridgeId, meal: &MealId) {
        let order_id = OrderId::parse(region_node::clock::ulid_at(self.ctx.now).to_string())
            .unwrap_or_else(|_| unreachable!("a ULID is an order id"));
        let app = n % 10 == 3;
        self.run(place(
            &order_id,
            fridge,
            meal,
            app,
            &format!("c-{}", n % 5_000),
        ));
        if app {
            return self.run(Command::Order(OrderCommand::Cancel {
                order_id,
                customer: None,
            }));
        }
        // A till's grace window is 0 s: the purchase starts at once.
        self.run(Command::Order(OrderCommand::FireTimer {
            order_id: order_id.clone(),
            timer: district::OrderTimer::GraceWindowEnd,
        }));
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
        self.run(Command::Order(OrderCommand::Pickup {
            order_id,
            pickup_code: "482913".into(),
        }));
    }
}

fn place(order_id: &OrderId, fridge: &FridgeId, meal: &MealId, app: bool, who: &str) -> Command {
    Command::Order(OrderCommand::Place {
        order_id: order_id.clone(),
        customer: who.to_string(),
        channel: if app { Channel::App } else { Channel::Pos },
        request: PlaceOrder {
            fridge_id: fridge.clone(),
            items: vec![OrderItem {
                meal_id: meal.clone(),
                qty: 1,
            }],
            coupon: None,
            share_code: None,
            points: None,
            payment_method: "tok_visa".into(),
            pickup_date: None,
        },
        idempotency: None,
        referral: None,
    })
}

/// The child process: a writer on the history, its memory, its confirms.
fn measure(dir: &Path, args: &Args) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = EventLog::open(&dir.join("log")).unwrap();
        let district = District::start(
            WriterSetup {
                district_id: DistrictId::from_static(DISTRICT),
                area: district::demo::area(),
                log,
                clock: Clock::system(),
                metrics: Arc::new(Metrics::default()),
                policy: Default::default(),
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
        let history = std::fs::read_to_string(dir.join("complete")).unwrap_or_default();
        let in_memory = district.state().orders().len();
        let resident = rss_mb();
        let (rate, p50, p99) = confirms(&district, args).await;
        println!(
            "{} | {in_memory} | {resident} | {rate:.0} | {p50:.1} | {p99:.1}",
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
