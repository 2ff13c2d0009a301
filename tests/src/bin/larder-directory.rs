//! `larder-directory`: the global plane's capacity — the region directory
//! on a real 3-node NATS cluster with many nodes.
//!
//! Simulates NODES district nodes in one process, each with its own NATS
//! connection, running the node's own code (`region_node::fleet::join`:
//! claim, heartbeat, watch). Measures:
//! - registrations: NODES joining at once (each a read of the bucket, an
//!   overlap check, a put, a second read), per-join latency and the time
//!   until every copy lists every district;
//! - watch fan-out: ROUNDS times a new district joins, and the time until
//!   all NODES copies route its point (then it leaves, and the time until
//!   all have dropped it);
//! - lookups: `Fleet::locate` on a copy of NODES districts, one thread;
//! - the customer index (`region_node::fleet::customers`): ENTRIES puts
//!   (customers in two districts each, 64 at a time), then `districts_of`
//!   for random customers, 16 at a time.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-directory [NODES] [ROUNDS] [ENTRIES]` (default
//! 100, 20, 20000).
//! Results go to stdout; record them in BENCHMARKS.md.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use larder_tests::fleet::NatsCluster;
use region_node::config::FleetConfig;
use region_node::fleet::customers::CustomerIndex;
use region_node::fleet::{self, Fleet, Registration};
use region_node::lifecycle::Lifecycle;

const ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
/// Longest wait for every copy to agree.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

/// A distinct 3-character geohash prefix per index (under `u`: Europe).
fn prefix(i: usize) -> String {
    let a = ALPHABET[(i / 32) % 32] as char;
    let b = ALPHABET[i % 32] as char;
    format!("u{a}{b}")
}

fn registration(i: usize) -> Registration {
    Registration {
        district_id: format!("d-{i}").parse().expect("district id"),
        url: format!("http://node-{i}.test"),
        geohash_prefixes: vec![prefix(i)],
        version: "bench".into(),
        instance: format!("i-{i}"),
        fridge_ids: vec![],
    }
}

fn config() -> FleetConfig {
    FleetConfig {
        heartbeat_secs: 5,
        ttl_secs: 15,
        join_timeout_secs: 30,
        ..FleetConfig::default()
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Until `check` holds for every copy; the time it took.
async fn converge(nodes: &[Fleet], check: impl Fn(&Fleet) -> bool) -> Duration {
    let start = Instant::now();
    while !nodes.iter().all(&check) {
        assert!(
            start.elapsed() < CONVERGE_DEADLINE,
            "copies did not converge"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

const USAGE: &str = "\
larder-directory: the region directory on a real 3-node NATS cluster with
many simulated district nodes (started here).

usage: larder-directory [NODES] [ROUNDS] [ENTRIES]

  NODES        district nodes joining the directory (default 100)
  ROUNDS       districts joining and leaving, one after another (default 20)
  ENTRIES      customer-index entries put, then looked up (default 20000)
  -h, --help   this text

Results go to stdout (the lines BENCHMARKS.md quotes).";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = larder_tests::report::BenchArgs::or_usage(USAGE);
    anyhow::ensure!(
        args.report.is_none(),
        "larder-directory writes no report (its results are counts and times on stdout)"
    );
    let n = args.number(0, 100) as usize;
    let rounds = args.number(1, 20) as usize;
    let cluster = NatsCluster::start().await;
    let servers: Vec<String> = cluster.urls().split(',').map(String::from).collect();
    let life = Lifecycle::new();

    // The first node makes the bucket (a fleet's first start).
    let t = Instant::now();
    let first = fleet::join(&servers, 3, registration(0), &config(), &life.shutdown()).await?;
    println!(
        "first node: joined (bucket created, R3) in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Registrations: every other node joins at once.
    let start = Instant::now();
    let joins = (1..n).map(|i| {
        let (servers, shutdown) = (servers.clone(), life.shutdown());
        async move {
            let t = Instant::now();
            let f = fleet::join(&servers, 3, registration(i), &config(), &shutdown).await;
            (f, t.elapsed())
        }
    });
    let mut nodes = vec![first];
    let mut join_us = Histogram::<u64>::new(3)?;
    for (f, took) in futures::future::join_all(joins).await {
        nodes.push(f?);
        join_us.record(took.as_micros() as u64)?;
    }
    let joined = start.elapsed();
    let all = converge(&nodes, |f| f.districts().len() >= n).await;
    println!(
        "registrations: {} more nodes joined at once in {:.0} ms (per join p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms); every copy listed all {n} after {:.0} ms",
        n - 1,
        joined.as_secs_f64() * 1e3,
        ms(&join_us, 0.5),
        ms(&join_us, 0.99),
        join_us.max() as f64 / 1000.0,
        (joined + all).as_secs_f64() * 1e3,
    );

    // Fan-out: a new district appears at every node, then leaves.
    let mut appear_us = Histogram::<u64>::new(3)?;
    let mut leave_us = Histogram::<u64>::new(3)?;
    for r in 0..rounds {
        let i = n + r;
        let probe_life = Lifecycle::new();
        let point = format!("{}0000", prefix(i));
        // From the start of the join (its put is the second of three
        // steps) until every copy routes the new district's point.
        let t = Instant::now();
        let shutdown = probe_life.shutdown();
        let _probe = fleet::join(&servers, 3, registration(i), &config(), &shutdown).await?;
        drop(shutdown);
        converge(&nodes, |f| f.locate(&point).is_some()).await;
        appear_us.record(t.elapsed().as_micros() as u64)?;
        // From the leave (the entry's delete) until every copy drops it.
        let t = Instant::now();
        probe_life
            .stop(tokio::time::Instant::now() + Duration::from_secs(5))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        converge(&nodes, |f| f.locate(&point).is_none()).await;
        leave_us.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "fan-out to {n} copies over {rounds} rounds: a join (from its start) seen by all after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; a leave (from its start) after p50 {:.1} ms, p99 {:.1} ms",
        ms(&appear_us, 0.5),
        ms(&appear_us, 0.99),
        appear_us.max() as f64 / 1000.0,
        ms(&leave_us, 0.5),
        ms(&leave_us, 0.99),
    );

    // Lookups on one copy.
    let copy = &nodes[0];
    let points: Vec<String> = (0..n).map(|i| format!("{}1234", prefix(i))).collect();
    let start = Instant::now();
    let mut found = 0u64;
    let mut lookups = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for p in &points {
            found += u64::from(copy.locate(p).is_some());
            lookups += 1;
        }
    }
    assert_eq!(found, lookups, "every point is served");
    println!(
        "lookups: {:.2} M/s on one thread, copy of {} districts",
        lookups as f64 / start.elapsed().as_secs_f64() / 1e6,
        copy.districts().len()
    );
    customer_index(&cluster, args.number(2, 20_000) as usize).await?;
    life.stop(tokio::time::Instant::now() + Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(cluster);
    Ok(())
}

/// Puts and lookups on the customer index, through the node's own code.
async fn customer_index(cluster: &NatsCluster, entries: usize) -> anyhow::Result<()> {
    let servers: Vec<String> = cluster.urls().split(',').map(String::from).collect();
    let client = async_nats::connect(servers.as_slice()).await?;
    let index = CustomerIndex::new(client, 3);
    let districts: Vec<protocol::DistrictId> = ["d-a", "d-b"]
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let customers = entries / districts.len();
    let start = Instant::now();
    let puts = (0..customers).flat_map(|c| districts.iter().map(move |d| (c, d)));
    let failed = futures::stream::iter(puts)
        .map(|(c, d)| {
            let index = index.clone();
            async move { index.put(&format!("customer-{c}"), d).await.is_err() }
        })
        .buffer_unordered(64)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    anyhow::ensure!(failed == 0, "{failed} puts failed");
    let put_secs = start.elapsed().as_secs_f64();
    let mut lookup_us = Histogram::<u64>::new(3)?;
    let asks = 2_000usize;
    let start = Instant::now();
    let answers: Vec<(Duration, usize)> = futures::stream::iter(0..asks)
        .map(|i| {
            let index = index.clone();
            // Spread over the customers (a multiplicative hash of i).
            let c = (i.wrapping_mul(2_654_435_761)) % customers.max(1);
            async move {
                let t = Instant::now();
                let found = index.districts_of(&format!("customer-{c}")).await;
                (t.elapsed(), found.map(|d| d.len()).unwrap_or(0))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let lookup_secs = start.elapsed().as_secs_f64();
    for (took, found) in &answers {
        anyhow::ensure!(
            *found == districts.len(),
            "a lookup found {found} districts"
        );
        lookup_us.record(took.as_micros() as u64)?;
    }
    println!(
        "customer index: {} puts at {:.0}/s; {asks} lookups at {:.0}/s (p50 {:.1} ms, p99 {:.1} ms) over {customers} customers",
        customers * districts.len(),
        (customers * districts.len()) as f64 / put_secs,
        asks as f64 / lookup_secs,
        ms(&lookup_us, 0.5),
        ms(&lookup_us, 0.99),
    );
    Ok(())
}
