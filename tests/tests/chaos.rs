//! A short chaos run: one round per victim kind (the node, the payments
//! service, nats-server), each on its own system so the three run in
//! parallel, each killed with SIGKILL under load and checked against
//! DESIGN.md §6 once quiet. `larder-chaos` runs the long version.

use larder_tests::chaos::{Chaos, Options, Victim};

/// Orders/s per system: three systems share the machine, in a debug build.
const RATE: u32 = 150;
const ROUND_SECS: f64 = 4.0;

async fn one_round(victim: Victim, seed: u64) {
    let options = Options {
        rounds: 1,
        seed,
        round_secs: ROUND_SECS,
        rate: RATE,
        victims: vec![victim],
    };
    let mut chaos = Chaos::start(options).await;
    let rows = chaos.run(|_| {}).await;
    let row = &rows[0];
    eprintln!(
        "{}\n{}",
        larder_tests::chaos::RoundReport::header(),
        row.row()
    );
    assert!(row.acked > 0, "the load placed no order: {row:?}");
    assert_eq!(row.violations(), 0, "seed {seed}: {row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_under_load_breaks_no_invariant() {
    one_round(Victim::Node, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_payments_under_load_breaks_no_invariant() {
    one_round(Victim::Payments, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_nats_under_load_breaks_no_invariant() {
    one_round(Victim::Nats, 3).await;
}
