//! `larder-ws-fanout`: one stock change fanned out to N WebSocket clients.
//!
//! Starts a region node (demo district, no NATS) through the test harness,
//! opens N real WebSocket connections on loopback, all subscribed to one
//! fridge, and measures:
//! - node memory per idle connection (VmRSS of the node before and after
//!   the connections, divided by N);
//! - for each of R stock changes (an admin `PUT .../stock`), the time from
//!   sending the change until each client has the message: p50/p99 over
//!   clients per round, and the time until the last client has it.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-ws-fanout [CLIENTS] [ROUNDS]` (default 10000, 20).
//! Each process needs an open file per connection: `ulimit -n` ≥ CLIENTS + 100.
//! `--progress` (on by itself on a terminal) and `--report FILE` as in
//! `larder-load` (`larder_tests::report`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::Node;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::Message;

/// The 10,000 clients share the node's two cores; they should cost what
/// real apps would, not what glibc malloc makes them cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Connections opened at once while setting up (the listener's backlog).
const CONNECT_PARALLELISM: usize = 256;
/// How long one round may take before the benchmark gives up.
const ROUND_DEADLINE: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct StockMsg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    available: u64,
}

const USAGE: &str = "\
larder-ws-fanout: one stock change fanned out to N WebSocket clients (a region
node with the demo district, started here).

usage: larder-ws-fanout [CLIENTS] [ROUNDS] [--progress] [--report FILE]

  CLIENTS      WebSocket connections, all following one fridge (default 10000;
               needs ulimit -n >= CLIENTS + 100)
  ROUNDS       stock changes sent one after another (default 20)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with delivery histograms: F.html, or F.svg
  -h, --help   this text";

/// CPU time (user, system) the process has used, in milliseconds.
fn cpu_ms(pid: u32) -> (u64, u64) {
    let ticks_per_sec = 100; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime * 1000 / ticks_per_sec, stime * 1000 / ticks_per_sec))
        })
        .unwrap_or((0, 0))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let clients = args.number(0, 10_000) as usize;
    let rounds = args.number(1, 20) as u32;
    let max = (clients + 100).to_string();
    let node = Node::start(&[
        "--demo",
        "--ws-max-connections",
        &max,
        "--ws-idle-timeout-secs",
        "600",
        "--ws-ping-interval-secs",
        "300",
    ])
    .await;
    let pid = node.pid().ok_or_else(|| anyhow::anyhow!("node pid"))?;
    let admin = node.admin();
    let r = admin.set_stock(FRIDGE, &[(MEAL, 1_000)]).await;
    anyhow::ensure!(r.status == 200, "set stock: {}", r.body);
    // Let the node settle (demo seeding, allocator warm-up) before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);

    let url = node.url("/v1/ws").replacen("http://", "ws://", 1);
    // Each client reports (round, receipt instant) for every stock message.
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let ready = Arc::new(Barrier::new(clients + 1));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_PARALLELISM));
    let started = Instant::now();
    let connecting = Progress::start("connecting", args.wants_progress());
    for _ in 0..clients {
        let (url, tx, ready, gate) = (url.clone(), tx.clone(), ready.clone(), gate.clone());
        let connecting = connecting.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let permit = gate.acquire_owned().await;
            let (mut ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("connect failed: {e}");
                    std::process::exit(1);
                }
            };
            let sub = json!({"type": "subscribe", "fridges": [FRIDGE]}).to_string();
            if ws.send(Message::text(sub)).await.is_err() {
                std::process::exit(1);
            }
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "subscribed" {
                        break;
                    }
                }
            }
            drop(permit);
            connecting.record(t.elapsed(), true);
            drop(connecting);
            ready.wait().await;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let at = Instant::now();
                    // A typed parse: the clients share the node's two cores,
                    // so they must cost as little as a real app's would.
                    if let Ok(m) = serde_json::from_str::<StockMsg>(t.as_str()) {
                        if m.kind == "stock" {
                            let _ = tx.send((m.available, at));
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    ready.wait().await;
    connecting.finish();
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / clients as f64;

    let cpu_before = cpu_ms(pid);
    let mut all = Histogram::<u64>::new(3)?;
    let mut last = Histogram::<u64>::new(3)?;
    let progress = Progress::start("rounds (time until the last client)", args.wants_progress());
    for round in 1..=rounds {
        let value = u64::from(round);
        let t0 = Instant::now();
        let r = admin.set_stock(FRIDGE, &[(MEAL, round)]).await;
        anyhow::ensure!(r.status == 200, "set stock: {}", r.body);
        let mut got = 0usize;
        let mut slowest = Duration::ZERO;
        while got < clients {
            let (v, at) = tokio::time::timeout(ROUND_DEADLINE, rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("clients gone"))?;
            if v != value {
                continue;
            }
            got += 1;
            let d = at.saturating_duration_since(t0);
            slowest = slowest.max(d);
            all.record(d.as_micros() as u64)?;
        }
        last.record(slowest.as_micros() as u64)?;
        progress.record(slowest, true);
    }
    progress.finish();
    let cpu_after = cpu_ms(pid);
    let per_round = |a: u64, b: u64| a.saturating_sub(b) as f64 / f64::from(rounds);
    let (user_ms, sys_ms) = (
        per_round(cpu_after.0, cpu_before.0),
        per_round(cpu_after.1, cpu_before.1),
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("clients={clients} rounds={rounds} connect_secs={connect_secs:.1}");
    println!(
        "node_rss_kib before={rss_before} after={rss_after} per_idle_connection_bytes={per_conn:.0}"
    );
    println!("node_cpu_ms_per_round user={user_ms:.1} system={sys_ms:.1}");
    println!(
        "delivery_ms (all clients, all rounds) p50={:.2} p99={:.2} max={:.2}",
        ms(&all, 0.5),
        ms(&all, 0.99),
        ms(&all, 1.0)
    );
    println!(
        "last_client_ms (per round) p50={:.2} p99={:.2} max={:.2}",
        ms(&last, 0.5),
        ms(&last, 0.99),
        ms(&last, 1.0)
    );
    if let Some(path) = &args.report {
        let mut report = Report::new("larder-ws-fanout");
        report.number("clients", clients);
        report.number("rounds", rounds);
        report.number("connect_secs", format!("{connect_secs:.1}"));
        report.number("per_idle_connection_bytes", format!("{per_conn:.0}"));
        report.number(
            "node_cpu_ms_per_round",
            format!("user {user_ms:.1}, system {sys_ms:.1}"),
        );
        report.histogram_us("delivery (all clients, all rounds)", &all);
        report.histogram_us("last client (per round)", &last);
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
