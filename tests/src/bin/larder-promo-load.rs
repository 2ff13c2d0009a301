//! `larder-promo-load`: confirm throughput with and without promotions
//! (issue 12), as interleaved A/B runs.
//!
//! Every run starts a fresh system as `larder-load` does (nats-server, the
//! payments service, a region node with the demo district, every meal
//! stocked in every fridge) and runs CLIENTS open-loop POS clients
//! confirming one-unit orders. After a warm-up of one second it counts, for
//! SECONDS, the orders confirmed (HTTP 201, after the durable commit), their
//! confirm latency, and the node's CPU time (user + system, from
//! `/proc/<pid>/stat`) per confirmed order.
//!
//! - **A**: no promotions.
//! - **B**: three active campaigns that apply to every ordered meal — 10 %
//!   off (combinable, priority 30), 0.50 off (combinable, priority 20) and
//!   a 15 % happy hour covering the whole day (combinable, priority 10) —
//!   and every order carries a coupon worth 0.50 without limits.
//!
//! Runs alternate A, B, A, B … (RUNS of each); the payment backlog is not
//! drained (confirm throughput is the measure; `larder-load` measures the
//! payment pipeline). B checks that its orders really were priced by all
//! three campaigns and the coupon.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-promo-load [CLIENTS] [SECONDS] [RUNS]`
//! (default 32 clients, 8 s, 3 runs of each). Results go to stdout; record
//! them in BENCHMARKS.md. `--progress` (on by itself on a terminal) and
//! `--report FILE` as in `larder-load` (`larder_tests::report`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::{Nats, Node, Payments};
use serde_json::{json, Value};

const USAGE: &str = "\
larder-promo-load: confirm throughput with and without promotions, as
interleaved A/B runs (each a fresh nats-server, payments and region node).

usage: larder-promo-load [CLIENTS] [SECONDS] [RUNS] [--progress] [--report FILE]

  CLIENTS      concurrent POS clients (default 32)
  SECONDS      counted seconds per run, after a 1 s warm-up (default 8)
  RUNS         runs of each variant, alternating A, B (default 3)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with the latency histograms of A and B: F.html, or F.svg
  -h, --help   this text";

/// Units of every meal in every fridge before a run.
const UNITS_PER_MEAL: u32 = 10_000;
/// Requests completed in this first second are not counted.
const WARM_UP: Duration = Duration::from_secs(1);
/// The coupon every order of B carries.
const COUPON: &str = "BENCH";

/// Phases a client sees: warming up, counting, stopping.
const WARMING: u8 = 0;
const COUNTING: u8 = 1;
const STOPPING: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// No promotions.
    A,
    /// Three campaigns and a coupon on every order.
    B,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::A => "A (no promotions)",
            Variant::B => "B (3 campaigns + coupon)",
        }
    }
}

/// What one run measured.
struct Run {
    confirms_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    node_cpu_us_per_confirm: f64,
    /// Confirm latencies in ns (for the report).
    latency: Histogram<u64>,
}

/// The three campaigns of B, as an admin sends them.
fn campaigns() -> Vec<(&'static str, Value)> {
    let spec = |name: &str, rule: Value, priority: u16| {
        json!({
            "name": name,
            "starts": "2020-01-01T00:00:00",
            "ends": "2099-01-01T00:00:00",
            "rule": rule,
            "stacking": "combinable",
            "priority": priority,
        })
    };
    vec![
        (
            "bench-ten-off",
            spec(
                "Ten percent off",
                json!({"kind": "percent_off", "percent": 10}),
                30,
            ),
        ),
        (
            "bench-fifty-cents",
            spec(
                "Fifty cents off",
                json!({"kind": "amount_off", "amount_minor": 50}),
                20,
            ),
        ),
        (
            "bench-all-day",
            spec(
                "Happy hour all day",
                json!({"kind": "happy_hour", "from": "00:00:00",
                       "until": "23:59:59.999", "percent": 15}),
                10,
            ),
        ),
    ]
}

/// Defines B's campaigns and coupon and checks each is live.
async fn define_promotions(node: &Node) -> anyhow::Result<()> {
    let admin = node.admin();
    for (id, spec) in campaigns() {
        let r = admin.put(&format!("/v1/admin/campaigns/{id}"), spec).await;
        anyhow::ensure!(r.status == 200, "campaign {id}: {} {}", r.status, r.body);
        anyhow::ensure!(r.body["live"] == true, "campaign {id} not live: {}", r.body);
    }
    let coupon = json!({
        "discount": {"kind": "amount_off", "amount_minor": 50},
        "valid_from": "2020-01-01T00:00:00",
        "valid_until": "2099-01-01T00:00:00",
    });
    let r = admin
        .put(&format!("/v1/admin/coupons/{COUPON}"), coupon)
        .await;
    anyhow::ensure!(r.status == 200, "coupon: {} {}", r.status, r.body);
    Ok(())
}

/// Whether a confirmed order's answer shows all of B's promotions.
fn fully_priced(body: &Value) -> bool {
    let pricing = &body["pricing"];
    pricing["campaigns"].as_array().map_or(0, Vec::len) == 3
        && pricing["coupon"]["code"] == COUPON
        && pricing["coupon"]["discount_minor"].as_i64() > Some(0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

async fn run(
    variant: Variant,
    clients: usize,
    seconds: u64,
    progress: Arc<Progress>,
) -> anyhow::Result<Run> {
    let mut nats = Nats::start().await;
    let mut payments = Payments::start(&nats, &[]).await;
    let mut node = Node::start_with_nats(&nats, &larder_tests::LOAD_NODE_FLAGS).await;
    let (fridges, meal_ids) = node.stock_every_meal(UNITS_PER_MEAL).await;
    if variant == Variant::B {
        define_promotions(&node).await?;
    }
    let pid = node
        .pid()
        .ok_or_else(|| anyhow::anyhow!("node has no pid"))?;

    let phase = Arc::new(AtomicU8::new(WARMING));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let pos = node.as_role("pos", &format!("pos-{c}"));
            let phase = phase.clone();
            let fridges = fridges.clone();
            let meal_ids = meal_ids.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                let (mut confirmed, mut refused, mut priced) = (0u64, 0u64, 0u64);
                let mut first_refusal = None;
                let mut i = c;
                while phase.load(Ordering::Relaxed) != STOPPING {
                    let fridge = &fridges[i % fridges.len()];
                    let meal = &meal_ids[(i / fridges.len()) % meal_ids.len()];
                    i += clients;
                    let mut body = json!({"fridge_id": fridge,
                                          "items": [{"meal_id": meal, "qty": 1}],
                                          "payment_method": "tok_visa"});
                    if variant == Variant::B {
                        body["coupon"] = json!(COUPON);
                    }
                    let t = Instant::now();
                    let r = pos.order_body(body, None).await;
                    let took = t.elapsed();
                    if phase.load(Ordering::Relaxed) != COUNTING {
                        continue;
                    }
                    progress.record(took, r.status == 201);
                    if r.status == 201 {
                        confirmed += 1;
                        latency.record(took.as_nanos() as u64).ok();
                        let promoted = match variant {
                            Variant::A => r.body.get("pricing").is_none(),
                            Variant::B => fully_priced(&r.body),
                        };
                        priced += u64::from(promoted);
                    } else {
                        refused += 1;
                        first_refusal.get_or_insert((r.status, r.body));
                    }
                }
                anyhow::Ok((latency, confirmed, refused, priced, first_refusal))
            })
        })
        .collect();

    tokio::time::sleep(WARM_UP).await;
    let cpu_before = cpu_secs(pid);
    let counting = Instant::now();
    phase.store(COUNTING, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    phase.store(STOPPING, Ordering::Relaxed);
    let window = counting.elapsed().as_secs_f64();
    let cpu_after = cpu_secs(pid);
    progress.finish();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut confirmed, mut refused, mut priced) = (0u64, 0u64, 0u64);
    let mut first_refusal = None;
    for t in tasks {
        let (h, c, r, p, f) = t.await??;
        latency.add(h).ok();
        confirmed += c;
        refused += r;
        priced += p;
        first_refusal = first_refusal.or(f);
    }
    anyhow::ensure!(confirmed > 0, "no order confirmed: {first_refusal:?}");
    anyhow::ensure!(
        priced == confirmed,
        "{} of {confirmed} orders of {} were not priced as expected",
        confirmed - priced,
        variant.name()
    );
    if let Some((status, body)) = &first_refusal {
        println!("  refused {refused}, the first: {status} {body}");
    }
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => (a - b) * 1e6 / confirmed as f64,
        _ => f64::NAN,
    };
    // Killed before their data directories go (dropping a `Node` removes
    // its directory first, and a still running node logs the failed append).
    node.kill();
    payments.kill();
    nats.stop();
    Ok(Run {
        confirms_per_sec: confirmed as f64 / window,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1e6,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1e6,
        node_cpu_us_per_confirm: cpu,
        latency,
    })
}

/// "min–max" of a measure over runs.
fn range(runs: &[Run], f: impl Fn(&Run) -> f64, digits: usize) -> String {
    let values: Vec<f64> = runs.iter().map(f).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.digits$}–{max:.digits$}")
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let clients = args.number(0, 32) as usize;
    let seconds = args.number(1, 8);
    let runs = args.number(2, 3) as usize;
    println!("clients={clients} seconds={seconds} (after {WARM_UP:?} warm-up) runs={runs} of each, alternating A, B");
    let (mut a, mut b) = (vec![], vec![]);
    for n in 1..=runs {
        for variant in [Variant::A, Variant::B] {
            let label = format!("run {n} {}", variant.name());
            let progress = Progress::start(&label, args.wants_progress());
            let r = run(variant, clients, seconds, progress).await?;
            println!(
                "run {n} {:<25} confirms/s={:>6.0} p50_ms={:>6.2} p99_ms={:>6.2} node_cpu_us_per_confirm={:>6.1}",
                variant.name(),
                r.confirms_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.node_cpu_us_per_confirm
            );
            match variant {
                Variant::A => a.push(r),
                Variant::B => b.push(r),
            }
            // Let the killed processes' sockets and files go before the next.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    for (name, set) in [("A", &a), ("B", &b)] {
        println!(
            "{name}: confirms/s {} p50_ms {} p99_ms {} node_cpu_us_per_confirm {}",
            range(set, |r| r.confirms_per_sec, 0),
            range(set, |r| r.p50_ms, 2),
            range(set, |r| r.p99_ms, 2),
            range(set, |r| r.node_cpu_us_per_confirm, 1),
        );
    }
    let ratios: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| b.confirms_per_sec / a.confirms_per_sec)
        .collect();
    let ratio_text: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    let of_means =
        mean(b.iter().map(|r| r.confirms_per_sec)) / mean(a.iter().map(|r| r.confirms_per_sec));
    println!(
        "B/A confirms/s per pair: {} (of the means {of_means:.3}); within 10 %: {}",
        ratio_text.join(", "),
        if ratios.iter().all(|r| *r >= 0.9) {
            "yes, every pair"
        } else if of_means >= 0.9 {
            "by the means, not in every pair"
        } else {
            "no"
        }
    );
    if let Some(path) = &args.report {
        let mut report = Report::new("larder-promo-load");
        report.number("clients", clients);
        report.number("seconds", seconds);
        report.number("runs of each", runs);
        report.number("B/A confirms/s, of the means", format!("{of_means:.3}"));
        for (name, set) in [("A", &a), ("B", &b)] {
            let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            for r in set.iter() {
                all.add(&r.latency).ok();
            }
            report.number(
                &format!("{name} confirms/s"),
                range(set, |r| r.confirms_per_sec, 0),
            );
            report.histogram_ns(&format!("{name}: confirm latency, every run"), &all);
        }
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
