//! `larder-abuse`: does one abusive caller take latency from everyone else?
//!
//! Starts a region node with the demo district (no NATS: POS orders are
//! confirmed and wait for payment, which is what is timed here), stocks
//! every meal, then runs GOOD POS tills at a steady RATE orders/s each (under
//! the per-caller limit) for SECONDS, three times:
//! 1. alone (the baseline),
//! 2. beside one abusive till that sends orders as fast as 32 requests in
//!    flight allow (far more than 10× a good till), rate limits on
//!    (the defaults),
//! 3. the same abuser on a node with the write limit off (what the limit
//!    prevents).
//!
//! Reports the good tills' confirm latency (p50, p99) per phase and what
//! the abuser got through.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-abuse [GOOD] [RATE] [SECONDS]` (default 16 tills,
//! 5 orders/s each, 10 s).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use larder_tests::{Client, Node};

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
        if r.status != 201 {
            refused += 1;
        }
    }
    (latency, refused)
}

/// The abuser: `ABUSER_IN_FLIGHT` loops of orders as fast as answered.
async fn abuser(
    pos: Client,
    setup: Arc<Setup>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    limited: Arc<AtomicU64>,
) {
    let loops = (0..ABUSER_IN_FLIGHT).map(|k| {
        let (pos, setup, stop, ok, limited) = (
            pos.clone(),
            setup.clone(),
            stop.clone(),
            ok.clone(),
            limited.clone(),
        );
        tokio::spawn(async move {
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                let fridge = &setup.fridges[i % setup.fridges.len()];
                let meal = &setup.meals[(i / setup.fridges.len()) % setup.meals.len()];
                i += ABUSER_IN_FLIGHT;
                match pos
                    .order(fridge, &[(meal, 1)], "tok_visa", None)
                    .await
                    .status
                {
                    201 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => limited.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        })
    });
    for l in loops.collect::<Vec<_>>() {
        let _ = l.await;
    }
}

async fn phase(
    name: &str,
    node: &Node,
    setup: &Arc<Setup>,
    good: usize,
    rate: u64,
    seconds: u64,
    with_abuser: bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let abuse = with_abuser.then(|| {
        tokio::spawn(abuser(
            node.as_role("pos", "pos-abuser"),
            setup.clone(),
            stop.clone(),
            ok.clone(),
            limited.clone(),
        ))
    });
    let tills: Vec<_> = (0..good)
        .map(|c| {
            tokio::spawn(good_till(
                node.as_role("pos", &format!("pos-{name}-{c}")),
                setup.clone(),
                c,
                rate,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
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
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let good = larder_tests::arg_or(1, 16) as usize;
    let rate = larder_tests::arg_or(2, 5);
    let seconds = larder_tests::arg_or(3, 10);
    println!("good_tills={good} rate_per_till={rate}/s seconds={seconds} abuser_in_flight={ABUSER_IN_FLIGHT}");
    let limited = Node::start(&["--demo"]).await;
    let setup = Arc::new(stock(&limited).await?);
    phase("baseline", &limited, &setup, good, rate, seconds, false).await;
    phase(
        "abuser_limited",
        &limited,
        &setup,
        good,
        rate,
        seconds,
        true,
    )
    .await;
    let open = Node::start(&["--demo", "--writes-per-sec-per-caller", "0"]).await;
    let setup = Arc::new(stock(&open).await?);
    phase("abuser_unlimited", &open, &setup, good, rate, seconds, true).await;
    Ok(())
}
