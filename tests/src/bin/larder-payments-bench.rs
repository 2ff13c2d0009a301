//! `larder-payments-bench`: payments/s of the payments service alone.
//!
//! Starts nats-server (the tests' config: `sync_interval: always`), a
//! shared sandbox processor when asked or when there is more than one
//! instance, and publishes REQUESTS charge requests on the request stream
//! as a region node's relay would — in batch messages of up to
//! `bus::MAX_REQUESTS_PER_MESSAGE` (`--singles`: one per message, as older
//! nodes did) — all of them *before* any payments
//! instance runs, so the run drains a backlog and the publisher's speed
//! does not count. Then it starts INSTANCES payments instances on the one
//! request consumer and follows the result stream until every request has
//! its result.
//!
//! Reports (stdout): the drain rate from the instances' start to the last
//! result, and the steady rate between the 10 % and 90 % marks (start-up
//! left out). The run fails unless the processor captured each order once
//! (shared processor) and the stream holds exactly one result per request.
//!
//! Usage: `cargo build --release -p payments -p larder-tests --bins &&
//! target/release/larder-payments-bench [--singles] [INSTANCES] [REQUESTS] [SHARED]`.

use std::time::{Duration, Instant};

use larder_tests::payments_bus::{self, SandboxProcessor};
use larder_tests::report::BenchArgs;
use larder_tests::{Nats, Payments};
use protocol::payments::PaymentKind;

const USAGE: &str = "\
larder-payments-bench: payments/s of the payments service alone (nats-server,
a sandbox processor if shared, INSTANCES payments instances, all started here).

usage: larder-payments-bench [--singles] [INSTANCES] [REQUESTS] [SHARED]

  INSTANCES  payments instances on the one request consumer (default 1)
  REQUESTS   charge requests published before the instances start (default 20000)
  SHARED     1: charge through a shared `payments sandbox-processor`;
             0: the in-process sandbox (only with one instance).
             Default: 1 with more than one instance, else 0
  --singles  one request per message (the first wire shape, older nodes);
             default: batch messages, as the relay publishes
  -h, --help this text

The sandbox answers at once (0 ms). Results go to stdout (the lines
BENCHMARKS.md quotes).";

/// How long the backlog may take to drain before the run fails.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);
/// The amount of every charge, in cents.
const AMOUNT_MINOR: i64 = 995;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let instances = args.number(0, 1).max(1) as usize;
    let requests = args.number(1, 20_000).max(1) as usize;
    let shared = args.number(2, u64::from(instances > 1)) == 1;
    anyhow::ensure!(
        shared || instances == 1,
        "several instances must share a processor (SHARED 1): each in-process sandbox would charge on its own"
    );

    let nats = Nats::start().await;
    let processor = if shared {
        Some(SandboxProcessor::start(&[]).await)
    } else {
        None
    };
    let js = payments_bus::jetstream(&nats.url).await;
    payments_bus::ensure_streams(&js).await;
    let published = publish_backlog(&js, requests, args.singles).await;
    println!(
        "published {requests} requests ({}) in {:.2} s ({:.0}/s)",
        if args.singles { "singles" } else { "batches" },
        published.as_secs_f64(),
        requests as f64 / published.as_secs_f64()
    );

    let flags: Vec<String> = match &processor {
        Some(p) => vec!["--processor-url".into(), p.base.clone()],
        None => vec![],
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut running = Vec::with_capacity(instances);
    for _ in 0..instances {
        running.push(Payments::start(&nats, &flags).await);
    }
    let (first, marks, last) = drain(&js, requests as u64).await?;
    report(instances, shared, requests, started, first, marks, last);
    check(&js, processor.as_ref(), requests).await?;
    drop(running);
    Ok(())
}

/// Publishes the backlog (in batch messages unless `singles`); how long it
/// took.
async fn publish_backlog(
    js: &async_nats::jetstream::Context,
    requests: usize,
    singles: bool,
) -> Duration {
    // A fresh nats-server per run: the order ids need not differ between runs.
    let backlog: Vec<_> = (0..requests)
        .map(|i| payments_bus::request(PaymentKind::Charge, &format!("bench-{i}"), AMOUNT_MINOR))
        .collect();
    let start = Instant::now();
    if singles {
        payments_bus::publish_requests(js, &backlog).await;
    } else {
        payments_bus::publish_request_batches(js, &backlog).await;
    }
    start.elapsed()
}

/// Follows the result count to `n`: when the first result, the 10 % and
/// 90 % marks and the last result were seen.
async fn drain(
    js: &async_nats::jetstream::Context,
    n: u64,
) -> anyhow::Result<(Instant, (Instant, Instant), Instant)> {
    let (mut first, mut tenth, mut ninetieth) = (None, None, None);
    let follow = payments_bus::follow_results(js, n, |count| {
        let now = Instant::now();
        if count > 0 {
            first.get_or_insert(now);
        }
        if count * 10 >= n {
            tenth.get_or_insert(now);
        }
        if count * 10 >= n * 9 {
            ninetieth.get_or_insert(now);
        }
    });
    tokio::time::timeout(DRAIN_DEADLINE, follow)
        .await
        .map_err(|_| anyhow::anyhow!("{n} results not there within {DRAIN_DEADLINE:?}"))?;
    let last = Instant::now();
    let or_last = |m: Option<Instant>| m.unwrap_or(last);
    Ok((or_last(first), (or_last(tenth), or_last(ninetieth)), last))
}

fn report(
    instances: usize,
    shared: bool,
    requests: usize,
    started: Instant,
    first: Instant,
    (tenth, ninetieth): (Instant, Instant),
    last: Instant,
) {
    let total = last.duration_since(started).as_secs_f64();
    let steady = ninetieth.duration_since(tenth).as_secs_f64();
    let steady_rate = if steady > 0.0 {
        format!("{:.0}", requests as f64 * 0.8 / steady)
    } else {
        "n/a (too few requests)".into()
    };
    println!(
        "instances={instances} processor={} requests={requests}",
        if shared { "shared" } else { "in-process" }
    );
    println!(
        "first result after {:.2} s; drained in {total:.2} s: payments_per_sec={:.0} steady_10_90_per_sec={steady_rate}",
        first.duration_since(started).as_secs_f64(),
        requests as f64 / total,
    );
}

/// One result per request on the stream, and (shared processor) one
/// capture per order.
async fn check(
    js: &async_nats::jetstream::Context,
    processor: Option<&SandboxProcessor>,
    requests: usize,
) -> anyhow::Result<()> {
    let by_order = payments_bus::results_by_order(js).await;
    let results: usize = by_order.values().map(Vec::len).sum();
    anyhow::ensure!(
        results == requests && by_order.len() == requests,
        "{results} results for {} of {requests} requests",
        by_order.len()
    );
    let messages = payments_bus::result_messages(js).await;
    if let Some(p) = processor {
        let totals = p.totals().await;
        anyhow::ensure!(
            totals["charges"] == requests,
            "the processor captured {} times for {requests} orders",
            totals["charges"]
        );
    }
    println!("checked: {results} results in {messages} messages, one per request");
    Ok(())
}
