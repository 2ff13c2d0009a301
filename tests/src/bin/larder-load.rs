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
//! Results go to stdout; record them in BENCHMARKS.md. `--progress` (on
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

usage: larder-load [CLIENTS] [SECONDS] [RT_CLIENTS] [--progress] [--report FILE]

  CLIENTS      concurrent POS clients in the open-loop phase (default 64)
  SECONDS      length of each phase (default 10)
  RT_CLIENTS   clients in the closed-loop payment round-trip phase (default 16)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with latency histograms: F.html, or F.svg for the charts
  -h, --help   this text

Results go to stdout (the lines BENCHMARKS.md quotes).";

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
    // Phase 1 builds a payment backlog on purpose; its orders should be
    // paid late, not refused.
    let node = Node::start_with_nats(&nats, &larder_tests::LOAD_NODE_FLAGS).await;

    let (fridges, meal_ids) = node.stock_every_meal(UNITS_PER_MEAL).await;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let progress = Progress::start("confirming (open loop)", args.wants_progress());
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let pos = node.as_role("pos", &format!("pos-{c}"));
            let stop = stop.clone();
            let progress = progress.clone();
            let fridges = fridges.clone();
            let meal_ids = meal_ids.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
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
                    if r.status == 201 {
                        ids.push(r.body["order_id"].as_str().unwrap_or_default().to_string());
                    } else {
                        refused += 1;
                    }
                }
                (latency, ids, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let mut ids = vec![];
    let mut refused = 0;
    for t in tasks {
        let (h, i, r) = t.await?;
        latency.add(h).ok();
        ids.extend(i);
        refused += r;
    }
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    println!("clients={clients} seconds={seconds}");
    report.number("clients", clients);
    report.number("seconds", seconds);
    report.number("confirmed", ids.len());
    report.number("refused", refused);
    report.number(
        "confirmed_per_sec",
        format!("{:.0}", ids.len() as f64 / elapsed),
    );
    report.histogram_ns(
        "confirm latency (HTTP 201, after the durable commit)",
        &latency,
    );
    println!(
        "confirmed={} refused={refused} confirmed_per_sec={:.0}",
        ids.len(),
        ids.len() as f64 / elapsed
    );
    println!(
        "confirm_latency_ms p50={:.2} p99={:.2} max={:.2}",
        micros(&latency, 0.5) / 1000.0,
        micros(&latency, 0.99) / 1000.0,
        latency.max() as f64 / 1e6
    );

    // The payment pipeline's own throughput: time until the backlog is paid.
    let drain_started = Instant::now();
    let admin = node.admin();
    loop {
        let pending = node.readyz().await["outbox_pending"]
            .as_u64()
            .unwrap_or(u64::MAX);
        let paying = ids.iter().rev().take(200).filter(|_| pending > 0).count();
        if pending == 0 {
            break;
        }
        if drain_started.elapsed() > DRAIN_DEADLINE {
            let state = node.readyz().await;
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
        let _ = paying;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = drain_started.elapsed().as_secs_f64();
    println!(
        "payment backlog drained {drain:.1}s after the run → payments throughput ≈ {:.0}/s",
        ids.len() as f64 / (elapsed + drain)
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
                h
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut round_trip = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
    for t in tasks {
        round_trip.add(t.await?).ok();
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
    report.number("sandbox totals", totals);
    if let Some(path) = &args.report {
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
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
