//! `larder-chaos`: SIGKILL the node, the payments service or nats-server
//! under a steady order load, round after round, and check DESIGN.md §6
//! after each restart (the rounds live in `larder_tests::chaos`).
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/larder-chaos [--rounds N] [--seed S] [--round-secs SECS]
//! [--rate ORDERS_PER_SEC]` (default 10 rounds, a seed from the clock,
//! 10 s, 1000 orders/s). The seed is printed first: `--seed` replays the
//! same victims, kill moments and order mix. Prints a table row per round;
//! exits 1 if any round found a violation. Every child is killed on exit
//! (the harness's guards), on panic, and on SIGINT or SIGTERM (after the
//! rounds done so far are summed up). Children log to stderr
//! (`LARDER_TEST_LOG`, default warn): `2>chaos.log` keeps the table clean.

use anyhow::{bail, Context};
use larder_tests::chaos::{Chaos, Options, RoundReport};

fn parse() -> anyhow::Result<Options> {
    let mut options = Options {
        rounds: 10,
        seed: u64::from(std::process::id()) ^ larder_tests::unix_now(),
        round_secs: 10.0,
        rate: 1_000,
        victims: vec![],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: not a number: {value}");
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse().with_context(bad)?,
            "--seed" => options.seed = value.parse().with_context(bad)?,
            "--round-secs" => options.round_secs = value.parse().with_context(bad)?,
            "--rate" => options.rate = value.parse().with_context(bad)?,
            _ => bail!("unknown flag {flag} (--rounds, --seed, --round-secs, --rate)"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse()?;
    println!(
        "larder-chaos --rounds {} --seed {} --round-secs {} --rate {}",
        options.rounds, options.seed, options.round_secs, options.rate
    );
    let mut chaos = Chaos::start(options).await;
    println!("{}", RoundReport::header());
    let mut rows = vec![];
    // SIGINT or SIGTERM ends the run between two awaits: the summary is
    // printed and `chaos` dropped, which kills every child it started.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = chaos.run(|row| {
            println!("{}", row.row());
            rows.push(row.clone());
        }) => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted (SIGINT)"),
        _ = term.recv() => println!("interrupted (SIGTERM)"),
    }
    let bad = rows.iter().filter(|r| r.violations() > 0).count();
    let acked: usize = rows.iter().map(|r| r.acked).sum();
    let telemetry: u64 = rows.iter().map(|r| r.telemetry).sum();
    let rates: Vec<f64> = rows.iter().map(|r| r.orders_per_sec).collect();
    let (low, high) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    println!(
        "rounds={} acked={acked} orders_per_sec={low:.0}..{high:.0} telemetry_accepted={telemetry} rounds_with_violations={bad}",
        rows.len()
    );
    drop(chaos);
    if bad > 0 {
        std::process::exit(1);
    }
    Ok(())
}
