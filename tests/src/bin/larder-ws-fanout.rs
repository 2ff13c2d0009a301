//! `larder-ws-fanout`: WebSocket fan-out of a region node.
//!
//! Starts a region node (demo district, no NATS) as its own process through
//! the test harness and opens N real WebSocket connections to it from this
//! process, all subscribed to one fridge. Two modes:
//! - **change** (default): memory per idle connection, then R stock changes
//!   (an admin `PUT .../stock` each), timing from sending the change until
//!   each client has the `stock` message: every delivery, and the last
//!   client per change (p50/p99/max over the rounds).
//! - **idle**: only opens the connections (up to 50,000 and more) and
//!   reports the node's RSS and KiB per connection.
//!
//! Client sockets are bound to 127.0.0.2, 127.0.0.3, … (one source address
//! per [`CONNECTIONS_PER_SOURCE_ADDR`]) so the ephemeral ports of one
//! address (~28,000) do not run out; the tool raises its own open-file
//! limit to the hard limit, which the node inherits. `--pin` puts the node
//! on CPU 0 and the clients on the other CPUs.
//!
//! Usage: see [`USAGE`] (`--help`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::Node;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, Barrier, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The clients share the machine with the node; they should cost what
/// real apps would, not what glibc malloc makes them cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Connections opened at once while setting up (the listener's backlog).
const CONNECT_PARALLELISM: usize = 256;
/// How long one round may take before the benchmark gives up.
const ROUND_DEADLINE: Duration = Duration::from_secs(30);
/// Client connections per source address: well under the ~28,000
/// ephemeral ports of Linux's default range.
const CONNECTIONS_PER_SOURCE_ADDR: usize = 20_000;
/// Files the tool needs besides its connections.
const FD_SPARE: u64 = 200;
/// A client's read buffer. tungstenite zero-fills its whole read buffer
/// before each read (128 KiB by default): at 10,000 clients that would be
/// the tool's main cost on the shared cores, which no phone pays.
const CLIENT_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Time for the node to settle (allocator, lazily created state) before
/// its memory is read.
const SETTLE: Duration = Duration::from_millis(500);

const USAGE: &str = "\
larder-ws-fanout: WebSocket fan-out of a region node (demo district, started
here as its own process); the clients run in this process.

usage: larder-ws-fanout [CLIENTS] [ROUNDS] [--pin] [--progress] [--report FILE]
       larder-ws-fanout idle [CONNECTIONS] [--pin] [--progress]

  CLIENTS      change mode: WebSocket connections, all following one fridge
               (default 10000); then ROUNDS stock changes (default 20), each
               timed until every client has it: prints every delivery's and
               the last client's latency per change (p50/p99/max)
  idle         open CONNECTIONS (default 50000) subscribed connections, print
               the node's RSS and KiB per connection, and stop
  --pin        node on CPU 0, these clients on the other CPUs
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   change mode: write a report with the histograms: F.html, or F.svg
  -h, --help   this text

Open files: one per connection in each process. The tool raises its soft
RLIMIT_NOFILE to the hard limit (the node inherits it and raises its own);
the hard limit must be at least CONNECTIONS + 1300 (ulimit -Hn; root or
/etc/security/limits.conf to raise it). Client sockets are bound to
127.0.0.2, 127.0.0.3, … (one per 20,000 connections).";

enum Mode {
    Change { clients: usize, rounds: u32 },
    Idle { connections: usize },
}

struct Args {
    mode: Mode,
    pin: bool,
    bench: BenchArgs,
}

fn parse_args() -> Args {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let pin = all.iter().any(|a| a == "--pin");
    let rest = all.into_iter().filter(|a| a != "--pin");
    let bench = match BenchArgs::parse(rest) {
        Ok(b) if b.help => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let idle = std::env::args().skip(1).any(|a| a == "idle");
    let mode = if idle {
        Mode::Idle {
            connections: bench.number(1, 50_000) as usize,
        }
    } else {
        Mode::Change {
            clients: bench.number(0, 10_000) as usize,
            rounds: bench.number(1, 20) as u32,
        }
    };
    Args { mode, pin, bench }
}

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

/// Pins every thread of process `pid` to `cpus`. Threads started later
/// inherit the affinity of the thread that starts them.
fn pin(pid: u32, cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` is below the machine's CPU count, far below
        // CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: libc::pid_t = task?.file_name().to_string_lossy().parse()?;
        // SAFETY: sched_setaffinity(2) reads the set we pass.
        let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        anyhow::ensure!(
            r == 0,
            "sched_setaffinity({tid}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `--pin`: the node on CPU 0, this process on the others.
fn pin_apart(node_pid: u32) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    if cpus < 2 {
        eprintln!("--pin: one CPU only; nothing pinned");
        return Ok(());
    }
    pin(node_pid, &[0])?;
    let others: Vec<usize> = (1..cpus).collect();
    pin(std::process::id(), &others)?;
    eprintln!("pinned: node on CPU 0, clients on CPUs {others:?}");
    Ok(())
}

/// Raises this process's open-file limit for `connections` (the node
/// started afterwards inherits it).
fn raise_fd_limit(connections: usize) -> anyhow::Result<()> {
    let lim = region_node::fd_limit::raise_to_hard()?;
    let needed = connections as u64 + FD_SPARE + region_node::fd_limit::FD_HEADROOM;
    anyhow::ensure!(
        lim.after >= needed,
        "{connections} connections need an open-file limit of at least {needed}; \
         the hard limit is {} (raise it: ulimit -Hn as root, or limits.conf)",
        lim.hard
    );
    Ok(())
}

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Opens connection number `i`: from its source address, subscribed to
/// [`FRIDGE`], past the `subscribed` answer.
async fn open(node: SocketAddr, url: &str, i: usize) -> anyhow::Result<Ws> {
    let host = 2 + (i / CONNECTIONS_PER_SOURCE_ADDR) as u8;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
        0,
    ))?;
    let tcp = socket.connect(node).await?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(CLIENT_READ_BUFFER_BYTES)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    let sub = json!({"type": "subscribe", "fridges": [FRIDGE]}).to_string();
    ws.send(Message::text(sub)).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            if t.as_str().contains("\"type\":\"subscribed\"") {
                return Ok(ws);
            }
        }
    }
    anyhow::bail!("connection {i} closed before it was subscribed")
}

#[derive(serde::Deserialize)]
struct StockMsg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    available: u64,
}

/// Reads until the connection ends; with `tx`, reports (available,
/// receipt instant) of every stock message.
async fn listen(mut ws: Ws, tx: Option<mpsc::UnboundedSender<(u64, Instant)>>) {
    while let Some(Ok(msg)) = ws.next().await {
        let (Message::Text(t), Some(tx)) = (msg, &tx) else {
            continue;
        };
        let at = Instant::now();
        // A typed parse: the clients share the machine with the node, so
        // they must cost as little as a real app's would.
        if let Ok(m) = serde_json::from_str::<StockMsg>(t.as_str()) {
            if m.kind == "stock" {
                let _ = tx.send((m.available, at));
            }
        }
    }
}

/// Opens `n` connections (see [`open`]) and leaves each listening; returns
/// once all are subscribed, with how long that took.
async fn connect_all(
    node: &Node,
    n: usize,
    tx: Option<mpsc::UnboundedSender<(u64, Instant)>>,
    progress: bool,
) -> anyhow::Result<Duration> {
    let addr: SocketAddr = node.base.trim_start_matches("http://").parse()?;
    let url = Arc::new(node.url("/v1/ws").replacen("http://", "ws://", 1));
    let ready = Arc::new(Barrier::new(n + 1));
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
    let (failed_tx, mut failed) = mpsc::channel::<String>(1);
    let started = Instant::now();
    let connecting = Progress::start("connecting", progress);
    for i in 0..n {
        let (url, tx, ready, gate) = (url.clone(), tx.clone(), ready.clone(), gate.clone());
        let (connecting, failed_tx) = (connecting.clone(), failed_tx.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let permit = gate.acquire_owned().await;
            let ws = match open(addr, &url, i).await {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = failed_tx.try_send(format!("connection {i}: {e}"));
                    return;
                }
            };
            drop(permit);
            connecting.record(t.elapsed(), true);
            drop(connecting);
            ready.wait().await;
            listen(ws, tx).await;
        });
    }
    drop(failed_tx);
    tokio::select! {
        _ = ready.wait() => {}
        Some(e) = failed.recv() => anyhow::bail!("connect failed: {e}"),
    }
    connecting.finish();
    Ok(started.elapsed())
}

/// Starts the node for `connections`, pinned if asked.
async fn start_node(connections: usize, pin: bool) -> anyhow::Result<(Node, u32)> {
    raise_fd_limit(connections)?;
    let max = (connections + 100).to_string();
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
    if pin {
        pin_apart(pid)?;
    }
    Ok((node, pid))
}

/// The node's RSS before and after `n` connections, and per connection.
struct Memory {
    before_kib: u64,
    after_kib: u64,
}

impl Memory {
    fn per_connection_bytes(&self, n: usize) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 * 1024.0 / n.max(1) as f64
    }

    fn print(&self, n: usize) {
        let per = self.per_connection_bytes(n);
        println!(
            "node_rss_kib before={} after={} per_idle_connection_bytes={per:.0} \
             per_idle_connection_kib={:.2}",
            self.before_kib,
            self.after_kib,
            per / 1024.0
        );
    }
}

async fn idle(connections: usize, args: &Args) -> anyhow::Result<()> {
    let (node, pid) = start_node(connections, args.pin).await?;
    tokio::time::sleep(SETTLE).await;
    let before_kib = rss_kib(pid);
    let took = connect_all(&node, connections, None, args.bench.wants_progress()).await?;
    tokio::time::sleep(SETTLE).await;
    let mem = Memory {
        before_kib,
        after_kib: rss_kib(pid),
    };
    println!(
        "mode=idle connections={connections} connect_secs={:.1}",
        took.as_secs_f64()
    );
    mem.print(connections);
    println!(
        "node_rss_mib={:.0} tool_rss_mib={:.0}",
        mem.after_kib as f64 / 1024.0,
        rss_kib(std::process::id()) as f64 / 1024.0
    );
    Ok(())
}

/// Delivery latencies: every client's, and the last client's per round.
struct Latencies {
    all: Histogram<u64>,
    last: Histogram<u64>,
}

/// Sends `rounds` stock changes one after another; each round ends when
/// every client has its message.
async fn rounds(
    node: &Node,
    clients: usize,
    rounds: u32,
    rx: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    progress: bool,
) -> anyhow::Result<Latencies> {
    let admin = node.admin();
    let mut lat = Latencies {
        all: Histogram::new(3)?,
        last: Histogram::new(3)?,
    };
    let progress = Progress::start("rounds (time until the last client)", progress);
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
            lat.all.record(d.as_micros() as u64)?;
        }
        lat.last.record(slowest.as_micros() as u64)?;
        progress.record(slowest, true);
    }
    progress.finish();
    Ok(lat)
}

async fn change(clients: usize, n_rounds: u32, args: &Args) -> anyhow::Result<()> {
    let (node, pid) = start_node(clients, args.pin).await?;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 1_000)]).await;
    anyhow::ensure!(r.status == 200, "set stock: {}", r.body);
    tokio::time::sleep(SETTLE).await;
    let before_kib = rss_kib(pid);
    // Each client reports (available, receipt instant) of every stock message.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let took = connect_all(&node, clients, Some(tx), args.bench.wants_progress()).await?;
    tokio::time::sleep(SETTLE).await;
    let mem = Memory {
        before_kib,
        after_kib: rss_kib(pid),
    };
    let cpu_before = cpu_ms(pid);
    let progress = args.bench.wants_progress();
    let lat = rounds(&node, clients, n_rounds, &mut rx, progress).await?;
    let cpu_after = cpu_ms(pid);
    let per_round = |a: u64, b: u64| a.saturating_sub(b) as f64 / f64::from(n_rounds);
    let cpu = (
        per_round(cpu_after.0, cpu_before.0),
        per_round(cpu_after.1, cpu_before.1),
    );
    println!(
        "mode=change clients={clients} rounds={n_rounds} pinned={} connect_secs={:.1}",
        args.pin,
        took.as_secs_f64()
    );
    mem.print(clients);
    print_latencies(&lat, cpu);
    if let Some(path) = &args.bench.report {
        let mut report = Report::new("larder-ws-fanout");
        report.number("clients", clients);
        report.number("rounds", n_rounds);
        report.number("pinned", args.pin);
        report.number("connect_secs", format!("{:.1}", took.as_secs_f64()));
        report.number(
            "per_idle_connection_bytes",
            format!("{:.0}", mem.per_connection_bytes(clients)),
        );
        report.number(
            "node_cpu_ms_per_round",
            format!("user {:.1}, system {:.1}", cpu.0, cpu.1),
        );
        report.histogram_us("delivery (all clients, all rounds)", &lat.all);
        report.histogram_us("last client (per change)", &lat.last);
        report.write(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

fn print_latencies(lat: &Latencies, (user_ms, sys_ms): (f64, f64)) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("node_cpu_ms_per_round user={user_ms:.1} system={sys_ms:.1}");
    println!(
        "delivery_ms (all clients, all rounds) p50={:.2} p99={:.2} max={:.2}",
        ms(&lat.all, 0.5),
        ms(&lat.all, 0.99),
        ms(&lat.all, 1.0)
    );
    println!(
        "last_client_ms (per change) p50={:.2} p99={:.2} max={:.2}",
        ms(&lat.last, 0.5),
        ms(&lat.last, 0.99),
        ms(&lat.last, 1.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args();
    match args.mode {
        Mode::Change { clients, rounds } => change(clients, rounds, &args).await,
        Mode::Idle { connections } => idle(connections, &args).await,
    }
}
