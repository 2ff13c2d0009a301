//! `larder-load`: end-to-end order benchmark on loopback.
//!
//! Starts the real system (nats-server, payments, a region node with the demo
//! district) through the test harness, stocks every meal in every fridge,
//! then runs N concurrent POS clients confirming one-unit orders for D
//! seconds. Reports confirmed orders/s and confirm latency (HTTP 201, after
//! the durable commit), and the payment round trip (PurchaseRequested →
//! OrderPurchased, from each order's durable status history).
//!
//! Phase 1 is open loop (as fast as CLIENTS can confirm); its payments are
//! drained afterwards, which measures the payment pipeline's throughput.
//! Phase 2 is closed loop: RT_CLIENTS each confirm, wait for the purchase,
//! repeat — the payment round trip at a load the pipeline sustains.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-load [CLIENTS] [SECONDS] [RT_CLIENTS]`
//! (default 64 clients, 10 s, 16 round-trip clients).
//! Results go to stdout; record them in BENCHMARKS.md. The run ends with an
//! invariant check (nothing oversold, every order paid and captured once)
//! and fails if it does not hold. `--progress` (on
//! by itself when stderr is a terminal) draws a progress line on stderr;
//! `--report FILE.html|.svg` writes the latency histograms and the
//! summary (`larder_tests::report`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::{Nats, Node, Payments};
use serde_json::Value;

const USAGE: &str = "\
larder-load: end-to-end order benchmark on loopback (nats-server, payments,
a region node with the demo district, all started here).

usage: larder-load [CLIENTS] [SECONDS] [RT_CLIENTS] [--wrk] [--progress] [--report FILE]

  CLIENTS      concurrent POS clients in the open-loop phase (default 64)
  SECONDS      length of each phase (default 10)
  RT_CLIENTS   clients in the closed-loop payment round-trip phase (default 16)
  --wrk        confirm with wrk (a C client, one thread; WRK_THREADS to change;
               apt-get install wrk) instead of this tool's Rust clients, so the
               client costs the node's cores less (cpu_secs in the output)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with latency histograms: F.html, or F.svg for the charts
  -h, --help   this text

Results go to stdout (the lines BENCHMARKS.md quotes). The run ends with an
invariant check (nothing oversold, every confirmed order purchased and
captured exactly once) and exits non-zero if it fails.";

/// How long the payment backlog of phase 1 may take to drain.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// Units of every meal in every fridge before the run.
const UNITS_PER_MEAL: u32 = 10_000;

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let clients = args.number(0, 64) as usize;
    let seconds = args.number(1, 10);
    let mut report = Report::new("larder-load");
    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    // Phase 1 builds a payment backlog on purpose: the orders taken are
    // paid late, not refused by the payment timeout; while the backlog is
    // at `[payments] max_backlog` new ones get 503 payments_backlog
    // (counted as refused, and they change nothing).
    let node = Node::start_with_nats(&nats, &larder_tests::LOAD_NODE_FLAGS).await;

    let (fridges, meal_ids) = node.stock_every_meal(UNITS_PER_MEAL).await;

    let started = Instant::now();
    let node_cpu = CpuClock::of_process(node.pid());
    let client_cpu = CpuClock::of_client(args.wrk);
    let open = if args.wrk {
        wrk_phase(&node, &fridges, &meal_ids, clients, seconds).await?
    } else {
        rust_phase(&node, &fridges, &meal_ids, clients, seconds, &args).await?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (node_cpu, client_cpu) = (node_cpu.elapsed(), client_cpu.elapsed());
    let mut ids = open.ids;
    let phase_one_ids = ids.len();
    let client = if args.wrk { "wrk" } else { "rust" };
    println!("clients={clients} seconds={seconds} client={client}");
    report.number("clients", clients);
    report.number("seconds", seconds);
    report.number("client", client);
    report.number("confirmed", open.confirmed);
    report.number("refused", open.refused);
    report.number(
        "confirmed_per_sec",
        format!("{:.0}", open.confirmed as f64 / elapsed),
    );
    if let Some(latency) = &open.histogram {
        report.histogram_ns(
            "confirm latency (HTTP 201, after the durable commit)",
            latency,
        );
    }
    println!(
        "confirmed={} refused={} confirmed_per_sec={:.0}",
        open.confirmed,
        open.refused,
        open.confirmed as f64 / elapsed
    );
    let [p50, p99, max] = open.latency_ms;
    println!("confirm_latency_ms p50={p50:.2} p99={p99:.2} max={max:.2}");
    // Whether the client is cheaper than the node it measures (issue 15
    // asks for a load generator shown to cost less than the node).
    println!("cpu_secs node={node_cpu:.1} client={client_cpu:.1} (open loop)");
    report.number("cpu_secs_node", format!("{node_cpu:.1}"));
    report.number("cpu_secs_client", format!("{client_cpu:.1}"));

    // The payment pipeline's own throughput: time until the backlog is paid.
    let drain_started = Instant::now();
    if !node.await_outbox_drained(DRAIN_DEADLINE).await {
        let state = node.readyz().await;
        let admin = node.admin();
        let mut stuck = vec![];
        for id in ids.iter().rev().take(2000) {
            let o = admin.get(&format!("/v1/orders/{id}")).await.body;
            if o["status"] == "paying" {
                stuck.push((id.clone(), payments.ledger(id).await));
            }
        }
        anyhow::bail!(
            "backlog not drained: readyz={state} paying_in_last_2000={} first={:?}",
            stuck.len(),
            stuck.first()
        );
    }
    let drain = drain_started.elapsed().as_secs_f64();
    println!(
        "payment backlog drained {drain:.1}s after the run → payments throughput ≈ {:.0}/s",
        open.confirmed as f64 / (elapsed + drain)
    );

    // Closed loop: each client waits for its purchase before the next order.
    report.number("payment_backlog_drained_secs", format!("{drain:.1}"));
    let round_trip_clients = args.number(2, 16) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start("payment round trips (closed loop)", args.wants_progress());
    let tasks: Vec<_> = (0..round_trip_clients)
        .map(|c| {
            let node_base = node.base.clone();
            let pos = node.as_role("pos", &format!("rt-{c}"));
            let admin = node.admin();
            let stop = stop.clone();
            let fridges = fridges.clone();
            let meal_ids = meal_ids.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let _ = node_base;
                let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
                let mut ids = vec![];
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let r = pos
                        .order(
                            &fridges[i % fridges.len()],
                            &[(&meal_ids[i % meal_ids.len()], 1)],
                            "tok_visa",
                            None,
                        )
                        .await;
                    i += 7;
                    let id = r.body["order_id"].as_str().unwrap_or_default().to_string();
                    ids.push(id.clone());
                    loop {
                        let order = admin.get(&format!("/v1/orders/{id}")).await.body;
                        if order["status"] == "purchased" {
                            if let Some(us) = round_trip_us(&order) {
                                h.record(us).ok();
                                progress.record(Duration::from_micros(us), true);
                            }
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                (h, ids)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut round_trip = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
    for t in tasks {
        let (h, phase_two_ids) = t.await?;
        round_trip.add(h).ok();
        ids.extend(phase_two_ids);
    }
    println!(
        "payment_round_trip_ms (closed loop, {round_trip_clients} clients, n={}) p50={:.2} p99={:.2} max={:.2}",
        round_trip.len(),
        round_trip.value_at_quantile(0.5) as f64 / 1000.0,
        round_trip.value_at_quantile(0.99) as f64 / 1000.0,
        round_trip.max() as f64 / 1000.0
    );
    progress.finish();
    report.number("round_trip_clients", round_trip_clients);
    report.histogram_us(
        "payment round trip (PurchaseRequested → OrderPurchased)",
        &round_trip,
    );
    let totals = payments.totals().await;
    println!("sandbox totals: {totals}");
    report.number("sandbox totals", totals.clone());
    let confirmed = open.confirmed + (ids.len() - phase_one_ids) as u64;
    let in_flight_at_stop = if args.wrk { clients as u64 } else { 0 };
    let verdict = check_invariants(
        &node,
        &fridges,
        Confirmed {
            count: confirmed,
            in_flight_at_stop,
            ids: &ids,
        },
        &totals,
    )
    .await;
    println!("invariants: {verdict}");
    report.number("invariants", verdict.clone());
    if let Some(path) = &args.report {
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    anyhow::ensure!(
        verdict.starts_with("ok"),
        "invariant check failed: {verdict}"
    );
    Ok(())
}

/// The open-loop phase's outcome.
struct OpenLoop {
    confirmed: u64,
    refused: u64,
    /// The confirmed orders' ids (Rust clients only: wrk does not keep them).
    ids: Vec<String>,
    /// Confirm latency p50, p99 and max, ms.
    latency_ms: [f64; 3],
    histogram: Option<Histogram<u64>>,
}

/// Phase 1 with the tool's own Rust clients (reqwest, one task each).
async fn rust_phase(
    node: &Node,
    fridges: &[String],
    meal_ids: &[String],
    clients: usize,
    seconds: u64,
    args: &BenchArgs,
) -> anyhow::Result<OpenLoop> {
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start("confirming (open loop)", args.wants_progress());
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let pos = node.as_role("pos", &format!("pos-{c}"));
            let (stop, progress) = (stop.clone(), progress.clone());
            let (fridges, meal_ids) = (fridges.to_vec(), meal_ids.to_vec());
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                let mut ids = vec![];
                let mut refused = 0u64;
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let fridge = &fridges[i % fridges.len()];
                    let meal = &meal_ids[(i / fridges.len()) % meal_ids.len()];
                    i += clients;
                    let t = Instant::now();
                    let r = pos.order(fridge, &[(meal, 1)], "tok_visa", None).await;
                    latency.record(t.elapsed().as_nanos() as u64).ok();
                    progress.record(t.elapsed(), r.status == 201);
                    match r.body["order_id"].as_str() {
                        Some(id) if r.status == 201 => ids.push(id.to_string()),
                        _ => refused += 1,
                    }
                }
                anyhow::Ok((latency, ids, refused))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut ids, mut refused) = (vec![], 0);
    for t in tasks {
        let (h, i, r) = t.await??;
        latency.add(h).ok();
        ids.extend(i);
        refused += r;
    }
    progress.finish();
    Ok(OpenLoop {
        confirmed: ids.len() as u64,
        refused,
        ids,
        latency_ms: [
            micros(&latency, 0.5) / 1000.0,
            micros(&latency, 0.99) / 1000.0,
            latency.max() as f64 / 1e6,
        ],
        histogram: Some(latency),
    })
}

/// The wrk script (scripts/bench/wrk-orders.lua), written to a temp file.
const WRK_SCRIPT: &str = include_str!("../../../scripts/bench/wrk-orders.lua");

/// Phase 1 with wrk: the same orders from a C client with one thread
/// (`WRK_THREADS` to change), so the node keeps most of the cores.
async fn wrk_phase(
    node: &Node,
    fridges: &[String],
    meal_ids: &[String],
    clients: usize,
    seconds: u64,
) -> anyhow::Result<OpenLoop> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("wrk-orders.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let threads = std::env::var("WRK_THREADS").unwrap_or_else(|_| "1".into());
    let token = node.as_role("pos", "wrk").token.unwrap_or_default();
    let out = tokio::process::Command::new("wrk")
        .args(["-t", &threads, "-c", &clients.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(&node.base)
        .env("LARDER_TOKEN", token)
        .env("LARDER_FRIDGES", fridges.join(","))
        .env("LARDER_MEALS", meal_ids.join(","))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run wrk ({e}); install it: apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let value = |key: &str| {
        text.lines()
            .flat_map(|l| l.split_whitespace())
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("wrk printed no {key}: {text}"))
    };
    Ok(OpenLoop {
        confirmed: value("created")? as u64,
        refused: value("other")? as u64,
        ids: vec![],
        latency_ms: [
            value("latency_p50_ms")?,
            value("latency_p99_ms")?,
            value("latency_max_ms")?,
        ],
        histogram: None,
    })
}

/// CPU seconds a process spent between two readings.
struct CpuClock {
    read: Box<dyn Fn() -> f64>,
    start: f64,
}

impl CpuClock {
    /// The node's, from /proc/PID/stat (user + system).
    fn of_process(pid: Option<u32>) -> CpuClock {
        CpuClock::new(Box::new(move || {
            let Some(pid) = pid else { return 0.0 };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces).
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
            // SAFETY: sysconf has no preconditions.
            ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
        }))
    }

    /// The load client's: this process, or its finished children (wrk).
    fn of_client(wrk: bool) -> CpuClock {
        let who = if wrk {
            libc::RUSAGE_CHILDREN
        } else {
            libc::RUSAGE_SELF
        };
        CpuClock::new(Box::new(move || {
            // SAFETY: getrusage writes into the zeroed struct we own.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(who, &mut u) };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(u.ru_utime) + secs(u.ru_stime)
        }))
    }

    fn new(read: Box<dyn Fn() -> f64>) -> CpuClock {
        let start = read();
        CpuClock { read, start }
    }

    fn elapsed(&self) -> f64 {
        (self.read)() - self.start
    }
}

/// What the clients saw confirmed (HTTP 201).
struct Confirmed<'a> {
    count: u64,
    /// Requests the client may have abandoned in flight when it stopped
    /// (wrk does not read their answers): each may still have been
    /// committed, so the shelves can be short by up to this many more.
    in_flight_at_stop: u64,
    /// Ids of orders whose confirmation was read (all of them with the
    /// Rust clients; only phase 2's with wrk).
    ids: &'a [String],
}

/// DESIGN.md §6 at the end of a run (every order is one unit, paid with an
/// approving token, none cancelled): nothing oversold and every unit paid
/// once — the units gone from the shelves are exactly the processor's
/// captures, with no decline and no refund, and as many as the clients
/// saw confirmed; every order whose id was read is purchased. `ok …` or
/// what broke.
async fn check_invariants(
    node: &Node,
    fridges: &[String],
    confirmed: Confirmed<'_>,
    totals: &Value,
) -> String {
    if !node.await_outbox_drained(DRAIN_DEADLINE).await {
        return "outbox not drained".into();
    }
    let sold = units_sold(node, fridges).await;
    let not_purchased = unpurchased(node, confirmed.ids).await;
    let count = |k: &str| totals[k].as_u64().unwrap_or(u64::MAX);
    let (captures, declines, refunds) = (count("charges"), count("declines"), count("refunds"));
    let n = confirmed.count;
    let mut broken = vec![];
    if sold < n || sold > n + confirmed.in_flight_at_stop {
        broken.push(format!(
            "units sold {sold} for {n} confirmed orders (+ up to {} in flight)",
            confirmed.in_flight_at_stop
        ));
    }
    if captures != sold || declines != 0 || refunds != 0 {
        broken.push(format!(
            "captures {captures} declines {declines} refunds {refunds} for {sold} units sold"
        ));
    }
    if !not_purchased.is_empty() {
        broken.push(format!(
            "{} confirmed orders not purchased, first {:?}",
            not_purchased.len(),
            not_purchased.first()
        ));
    }
    if broken.is_empty() {
        format!(
            "ok (confirmed={n} units_sold={sold} captures={captures} refunds=0, {} orders checked one by one)",
            confirmed.ids.len()
        )
    } else {
        broken.join("; ")
    }
}

/// Units gone from the benchmark's fridges since they were stocked.
async fn units_sold(node: &Node, fridges: &[String]) -> u64 {
    let catalog = node.catalog(42.3316, -83.0466, 20_000).await;
    let (mut stocked, mut remaining) = (0u64, 0u64);
    for f in catalog["fridges"].as_array().into_iter().flatten() {
        if fridges.iter().any(|id| f["fridge_id"] == id.as_str()) {
            for m in f["meals"].as_array().into_iter().flatten() {
                stocked += u64::from(UNITS_PER_MEAL);
                remaining += m["available"].as_u64().unwrap_or(0);
            }
        }
    }
    stocked.saturating_sub(remaining)
}

/// The confirmed orders whose status is not `purchased`, asked 32 at a time.
async fn unpurchased(node: &Node, ids: &[String]) -> Vec<String> {
    use futures::StreamExt;
    let admin = node.admin();
    futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let admin = admin.clone();
            async move {
                let order = admin.get(&format!("/v1/orders/{id}")).await.body;
                (order["status"] != "purchased").then_some(id)
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// PurchaseRequested → OrderPurchased (µs), from the order's durable history.
fn round_trip_us(order: &Value) -> Option<u64> {
    let at = |status: &str| {
        order["history"]
            .as_array()
            .and_then(|h| h.iter().find(|e| e["status"] == status))
            .and_then(|e| e["at"].as_str())
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let (paying, purchased) = (at("paying")?, at("purchased")?);
    Some((purchased - paying).num_microseconds()?.max(1) as u64)
}
