//! Crash rounds against the real system: a steady order load, one SIGKILL
//! per round (the node, the payments service or nats-server, drawn by a
//! seeded RNG), a restart, then — once the system is quiet — the money and
//! stock invariants of DESIGN.md §6 (see `check`).
//!
//! `larder-chaos` is the CLI; `tests/chaos.rs` runs a short version.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::{quick_token, Nats, Node, Payments};

mod check;
pub mod load;

pub use check::Findings;
use check::Tracked;
use load::{Cast, Load, Shared};

/// The node's grace window for app orders, in seconds (the configurable
/// minimum): settling a round moves the node's clock past it.
pub const GRACE_WINDOW_SECS: i64 = 10;
/// The node's payment timeout, in seconds (the default).
pub const PAYMENT_TIMEOUT_SECS: i64 = 60;
/// How long a round may take to settle after its load stops. A message a
/// killed process had taken is redelivered after JetStream's 30 s ack wait.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between polls while settling.
const SETTLE_STEP: Duration = Duration::from_millis(250);
/// Customers placing app orders (several, so per-customer hold limits
/// refuse few of them).
const CUSTOMERS: usize = 1_000;
/// POS terminals (one per load worker, reused round-robin).
const TERMINALS: usize = 64;
/// Share of a round's expected units stocked: some pairs sell out, so
/// "nothing oversold" is tested at the edge.
const STOCK_SHARE: f64 = 0.8;
/// How long a restarted node may take to listen: it replays the whole log,
/// which grows by every round (and a debug build replays slowly).
const NODE_RESTART_DEADLINE: Duration = Duration::from_secs(300);
/// Longest pause between a kill and the restart, in ms.
const MAX_DOWNTIME_MS: u64 = 1_000;

/// What a round kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Node,
    Payments,
    Nats,
}

impl fmt::Display for Victim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Victim::Node => "node",
            Victim::Payments => "payments",
            Victim::Nats => "nats",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: u32,
    pub seed: u64,
    pub round_secs: f64,
    /// Orders per second the load aims for.
    pub rate: u32,
    /// Victims in order (cycled); empty: drawn by the seeded RNG.
    pub victims: Vec<Victim>,
}

/// splitmix64: a few lines, seeded, the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// One row of the table.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    pub round: u32,
    pub victim: Option<Victim>,
    pub acked: usize,
    pub orders_per_sec: f64,
    pub findings: Findings,
    pub refused: u64,
    pub telemetry: u64,
    /// From the kill until the victim listens again (after the downtime).
    pub restart_secs: f64,
    pub settle_secs: f64,
    pub secs: f64,
}

impl RoundReport {
    pub fn violations(&self) -> u64 {
        self.findings.violations()
    }

    pub fn header() -> String {
        format!(
            "{:>5} {:>8} {:>7} {:>7} {:>5} {:>8} {:>6} {:>6} {:>5} {:>10} {:>9} {:>10} {:>8} {:>7} {:>7} {:>6}",
            "round", "victim", "acked", "ord/s", "lost", "oversold", "stock", "double", "late",
            "unrefunded", "uncharged", "unresolved", "refused", "restart", "settle", "secs"
        )
    }

    pub fn row(&self) -> String {
        let f = &self.findings;
        let victim = self.victim.map_or("-".to_string(), |v| v.to_string());
        format!(
            "{:>5} {:>8} {:>7} {:>7.0} {:>5} {:>8} {:>6} {:>6} {:>5} {:>10} {:>9} {:>10} {:>8} {:>7.1} {:>7.1} {:>6.1}",
            self.round, victim, self.acked, self.orders_per_sec, f.lost, f.oversold,
            f.stock_mismatch, f.double_charges, f.late_charges, f.unrefunded, f.uncharged,
            f.unresolved, self.refused, self.restart_secs, self.settle_secs, self.secs
        )
    }
}

/// The system under test and everything the checks remember.
pub struct Chaos {
    nats: Nats,
    payments: Payments,
    node: Node,
    shared: Arc<Shared>,
    cast: Arc<Cast>,
    rng: Rng,
    options: Options,
    /// Every acknowledged order so far, with its settled status.
    orders: HashMap<String, Tracked>,
    /// Units counted in per (fridge, meal): the last absolute count set.
    counted: HashMap<(String, String), u32>,
}

impl Chaos {
    /// Starts nats-server, payments and a demo node (rate limits off: the
    /// load is a few tills and many apps on one machine).
    pub async fn start(options: Options) -> Chaos {
        let nats = Nats::start().await;
        let payments = Payments::start(&nats, &[]).await;
        let grace = GRACE_WINDOW_SECS.to_string();
        let timeout = PAYMENT_TIMEOUT_SECS.to_string();
        let mut node = Node::start_with_nats(
            &nats,
            &[
                "--writes-per-sec-per-caller",
                "0",
                "--grace-window-secs",
                &grace,
                "--payment-timeout-secs",
                &timeout,
            ],
        )
        .await;
        node.set_start_deadline(NODE_RESTART_DEADLINE);
        let (fridges, meals) = node.stock_every_meal(0).await;
        let sims = fridges.iter().map(|f| crate::demo_fridge(f)).collect();
        let cast = Cast {
            pos_tokens: (0..TERMINALS)
                .map(|i| quick_token("pos", &format!("till-{i}")))
                .collect(),
            customer_tokens: (0..CUSTOMERS)
                .map(|i| quick_token("customer", &format!("cust-{i}")))
                .collect(),
            fridges,
            meals,
            sims: std::sync::Mutex::new(sims),
        };
        let shared = Shared {
            node_base: RwLock::new(node.base.clone()),
            http: reqwest::Client::new(),
            clock_offset_ms: AtomicI64::new(0),
        };
        Chaos {
            nats,
            payments,
            node,
            shared: Arc::new(shared),
            cast: Arc::new(cast),
            rng: Rng::new(options.seed),
            options,
            orders: HashMap::new(),
            counted: HashMap::new(),
        }
    }

    /// Runs every round, calling `each` with its row; all rows.
    pub async fn run(&mut self, mut each: impl FnMut(&RoundReport)) -> Vec<RoundReport> {
        let mut rows = vec![];
        for round in 1..=self.options.rounds {
            let row = self.round(round).await;
            each(&row);
            rows.push(row);
        }
        rows
    }

    /// One round: restock, load, kill and restart a victim mid-load, stop
    /// the load, settle, check.
    pub async fn round(&mut self, round: u32) -> RoundReport {
        let started = Instant::now();
        let victims = &self.options.victims;
        let victim = match victims.len() {
            0 => [Victim::Node, Victim::Payments, Victim::Nats][self.rng.below(3)],
            n => victims[(round as usize - 1) % n],
        };
        let round_secs = self.options.round_secs;
        let kill_at = Duration::from_secs_f64(round_secs * (0.2 + 0.6 * self.rng.unit()));
        let downtime = Duration::from_millis(self.rng.next_u64() % MAX_DOWNTIME_MS);
        self.restock().await;
        self.sync_clock().await;
        let seed = self.rng.next_u64();
        let load = Load::start(
            &self.shared,
            &self.cast,
            self.options.rate,
            seed,
            &format!("r{round}"),
        );
        tokio::time::sleep(kill_at).await;
        let restart_secs = self.kill_and_restart(victim, downtime).await;
        let rest = Duration::from_secs_f64(round_secs).saturating_sub(kill_at + downtime);
        tokio::time::sleep(rest).await;
        let outcome = load.finish().await;
        let settling = Instant::now();
        let ids: Vec<String> = outcome.acked.iter().map(|a| a.order_id.clone()).collect();
        let settled = self.settle(&ids).await;
        let settle_secs = settling.elapsed().as_secs_f64();
        let findings = self.check(&outcome, settled).await;
        RoundReport {
            round,
            victim: Some(victim),
            acked: outcome.acked.len(),
            orders_per_sec: outcome.acked.len() as f64 / outcome.load_secs.max(1e-9),
            findings,
            refused: outcome.refused,
            telemetry: outcome.telemetry_accepted,
            restart_secs,
            settle_secs,
            secs: started.elapsed().as_secs_f64(),
        }
    }

    /// SIGKILL, a pause, a restart on the same data; seconds until the
    /// victim listens again.
    async fn kill_and_restart(&mut self, victim: Victim, downtime: Duration) -> f64 {
        match victim {
            Victim::Node => self.node.kill(),
            Victim::Payments => self.payments.kill(),
            Victim::Nats => self.nats.stop(),
        }
        tokio::time::sleep(downtime).await;
        let restarting = Instant::now();
        match victim {
            Victim::Node => {
                self.node.restart().await;
                self.shared.set_base(&self.node.base);
            }
            Victim::Payments => self.payments.restart(None).await,
            Victim::Nats => self.nats.restart().await,
        }
        restarting.elapsed().as_secs_f64()
    }

    /// Reads the node's clock offset (telemetry is stamped with it).
    async fn sync_clock(&self) {
        let offset = self.node.clock_now().await - chrono::Utc::now();
        self.shared
            .clock_offset_ms
            .store(offset.num_milliseconds(), Ordering::Relaxed);
    }

    /// Counts every (fridge, meal) in at what is reserved plus this round's
    /// share, so the round can sell out some of them.
    async fn restock(&mut self) {
        let pairs = (self.cast.fridges.len() * self.cast.meals.len()).max(1) as f64;
        let expected = f64::from(self.options.rate) * self.options.round_secs;
        let fresh = ((expected * STOCK_SHARE / pairs).ceil() as u32).max(1);
        let admin = self.node.admin();
        for fridge in self.cast.fridges.clone() {
            let stock = check::fridge_stock(&admin, &fridge).await;
            let counts: Vec<(String, u32)> = self
                .cast
                .meals
                .iter()
                .map(|m| (m.clone(), stock.get(m).map_or(0, |l| l.reserved) + fresh))
                .collect();
            let refs: Vec<(&str, u32)> = counts.iter().map(|(m, u)| (m.as_str(), *u)).collect();
            let r = admin.set_stock(&fridge, &refs).await;
            assert_eq!(r.status, 200, "restocking {fridge}: {}", r.body);
            for (m, u) in counts {
                self.counted.insert((fridge.clone(), m), u);
            }
        }
    }
}
