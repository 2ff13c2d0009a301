//! `larder-abuse`: does one abusive caller take latency from everyone else?
//!
//! Starts a region node with the demo district (no NATS: POS orders are
//! confirmed and wait for payment, which is what is timed here), stocks
//! every meal, then runs GOOD POS tills at a steady RATE orders/s each (under
//! the per-caller limit) for SECONDS, three times:
//! 1. alone (the baseline),
//! 2. beside one abusive till sending orders at ABUSE × RATE (10× by
//!    default, above its limit), rate limits on (the defaults),
//! 3. the same abuser on a node with the write limit off (what the limit
//!    prevents).
//!
//! ABUSE = 0 makes the abuser a flood instead: 32 requests in flight, as
//! fast as answered. Reports the good tills' confirm latency (p50, p99) per
//! phase and what the abuser got through.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-abuse [GOOD] [RATE] [SECONDS] [ABUSE]` (default 16
//! tills, 5 orders/s each, 10 s, 10×). `--progress` (on by itself on a
//! terminal) and `--report FILE` as in `larder-load`
//! (`larder_tests::report`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::{Client, Node};

const USAGE: &str = "\
larder-abuse: the good tills' confirm latency alone, beside an abusive till
with the rate limits on, and with them off (a region node with the demo
district, started here).

usage: larder-abuse [GOOD] [RATE] [SECONDS] [ABUSE] [--progress] [--report FILE]

  GOOD         good POS tills (default 16)
  RATE         orders per second per good till (default 5)
  SECONDS      length of each phase (default 10)
  ABUSE        the abuser's rate as a multiple of RATE (default 10; 0: a flood)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with the good tills' latency per phase: F.html, or F.svg
  -h, --help   this text";

/// Units of every meal in every fridge before the run.
const UNITS_PER_MEAL: u32 = 10_000;
/// Requests the abuser keeps in flight.
const ABUSER_IN_FLIGHT: usize = 32;

struct Setup {
    fridges: Vec<String>,
    meals: Vec<String>,
}

async fn stock(node: &Node) -> anyhow::Result<Setup> {
    let (fridges, meals) = node.stock_every_meal(UNITS_PER_MEAL).await;
    anyhow::ensure!(!fridges.is_empty() && !meals.is_empty(), "no demo district");
    Ok(Setup { fridges, meals })
}

/// One good till: an order every `1/rate` s until `stop`; its latencies.
async fn good_till(
    pos: Client,
    setup: Arc<Setup>,
    seed: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> (Histogram<u64>, u64) {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut refused = 0;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let fridge = &setup.fridges[i % setup.fridges.len()];
        let meal = &setup.meals[(i / setup.fridges.len()) % setup.meals.len()];
        i += 7;
        let t = Instant::now();
        let r = pos.order(fridge, &[(meal, 1)], "tok_visa", None).await;
        latency.record(t.elapsed().as_nanos() as u64).ok();
        progress.record(t.elapsed(), r.status == 201);
        if r.status != 201 {
            refused += 1;
        }
    }
    (latency, refused)
}

/// How the abuser sends: paced at a rate, or a flood.
#[derive(Clone, Copy)]
enum Abuse {
    Paced { per_sec: u64 },
    Flood,
}

/// The abuser's counters: orders confirmed, requests refused with 429.
#[derive(Clone, Default)]
struct Tally {
    ok: Arc<AtomicU64>,
    limited: Arc<AtomicU64>,
}

impl Tally {
    fn count(&self, status: u16) {
        match status {
            201 => self.ok.fetch_add(1, Ordering::Relaxed),
            429 => self.limited.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// The abuser: `loops` request loops, each paced at `per_sec` (or not).
async fn abuser(pos: Client, setup: Arc<Setup>, abuse: Abuse, stop: Arc<AtomicBool>, tally: Tally) {
    let (loops, pace) = match abuse {
        Abuse::Paced { per_sec } => (1, Some(Duration::from_micros(1_000_000 / per_sec.max(1)))),
        Abuse::Flood => (ABUSER_IN_FLIGHT, None),
    };
    let tasks: Vec<_> = (0..loops)
        .map(|k| {
            let (pos, setup, stop, tally) =
                (pos.clone(), setup.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut tick = pace.map(tokio::time::interval);
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let fridge = &setup.fridges[i % setup.fridges.len()];
                    let meal = &setup.meals[(i / setup.fridges.len()) % setup.meals.len()];
                    i += loops;
                    tally.count(
                        pos.order(fridge, &[(meal, 1)], "tok_visa", None)
                            .await
                            .status,
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

struct Load {
    good: usize,
    rate: u64,
    seconds: u64,
    progress: bool,
}

/// One phase; prints its line and returns the good tills' latencies (ns).
async fn phase(
    name: &str,
    node: &Node,
    setup: &Arc<Setup>,
    load: &Load,
    abuse: Option<Abuse>,
) -> Histogram<u64> {
    let progress = Progress::start(&format!("{name} (good tills)"), load.progress);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::default();
    let abuse = abuse.map(|a| {
        tokio::spawn(abuser(
            node.as_role("pos", "pos-abuser"),
            setup.clone(),
            a,
            stop.clone(),
            tally.clone(),
        ))
    });
    let tills: Vec<_> = (0..load.good)
        .map(|c| {
            let pos = node.as_role("pos", &format!("pos-{name}-{c}"));
            let progress = progress.clone();
            tokio::spawn(good_till(
                pos,
                setup.clone(),
                c,
                load.rate,
                stop.clone(),
                progress,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    progress.finish();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut refused = 0;
    for t in tills {
        if let Ok((h, r)) = t.await {
            latency.add(h).ok();
            refused += r;
        }
    }
    if let Some(a) = abuse {
        let _ = a.await;
    }
    println!(
        "{name}: good_orders={} good_refused={refused} good_p50_ms={:.2} good_p99_ms={:.2} abuser_confirmed={} abuser_429={}",
        latency.len(),
        latency.value_at_quantile(0.5) as f64 / 1e6,
        latency.value_at_quantile(0.99) as f64 / 1e6,
        tally.ok.load(Ordering::Relaxed),
        tally.limited.load(Ordering::Relaxed),
    );
    latency
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let load = Load {
        good: args.number(0, 16) as usize,
        rate: args.number(1, 5),
        seconds: args.number(2, 10),
        progress: args.wants_progress(),
    };
    let abuse = match args.number(3, 10) {
        0 => Abuse::Flood,
        times => Abuse::Paced {
            per_sec: times * load.rate,
        },
    };
    let shape = match abuse {
        Abuse::Paced { per_sec } => format!("paced at {per_sec}/s"),
        Abuse::Flood => format!("flood, {ABUSER_IN_FLIGHT} in flight"),
    };
    println!(
        "good_tills={} rate_per_till={}/s seconds={} abuser={shape}",
        load.good, load.rate, load.seconds
    );
    let limited = Node::start(&["--demo"]).await;
    let setup = Arc::new(stock(&limited).await?);
    let baseline = phase("baseline", &limited, &setup, &load, None).await;
    let limited_run = phase("abuser_limited", &limited, &setup, &load, Some(abuse)).await;
    let open = Node::start(&["--demo", "--writes-per-sec-per-caller", "0"]).await;
    let setup = Arc::new(stock(&open).await?);
    let unlimited = phase("abuser_unlimited", &open, &setup, &load, Some(abuse)).await;
    if let Some(path) = &args.report {
        let mut report = Report::new("larder-abuse");
        report.number("good_tills", load.good);
        report.number("rate_per_till", format!("{}/s", load.rate));
        report.number("seconds", load.seconds);
        report.number("abuser", &shape);
        report.histogram_ns("baseline: good tills' confirm latency", &baseline);
        report.histogram_ns(
            "abuser, limits on: good tills' confirm latency",
            &limited_run,
        );
        report.histogram_ns(
            "abuser, limits off: good tills' confirm latency",
            &unlimited,
        );
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
