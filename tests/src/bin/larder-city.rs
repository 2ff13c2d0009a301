//! `larder-city`: a simulated day in one district, at a chosen scale.
//!
//! Starts the real system (nats-server, payments, a region node with the
//! demo district) and plays the people around it at once for SECONDS:
//! app users (catalog, one-off orders, some cancelled, the rest picked up
//! with their code), POS tills selling at the fridges, subscribers making
//! weekly plans, watchers holding a WebSocket on a fridge's stock, the
//! kitchens reading their prep report and moving stages, and every fridge
//! reporting its temperature at the telemetry interval. Each operation's
//! latency goes into its own HDR histogram.
//!
//! At the end it checks DESIGN.md §6 over every order it placed: nothing
//! oversold (per fridge and meal, the units gone from the shelf are the
//! units of the orders holding or consuming stock) and every order charged
//! once (the processor's ledger per order agrees with its status: one
//! capture for a purchased or picked-up order, a refund for each capture of
//! a cancelled one). It exits non-zero if either fails.
//!
//! Its output and `--report` are what BENCHMARKS.md quotes for issue 15.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use larder_tests::report::{BenchArgs, Progress, Report};
use larder_tests::{demo_file, demo_fridge, Client, Nats, Node, Payments};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
larder-city: a simulated day in one district (nats-server, payments and a
region node with the demo district, all started here), with HDR latency per
operation and an invariant check at the end.

usage: larder-city [USERS] [TILLS] [SUBSCRIBERS] [WATCHERS] [SECONDS] [--progress] [--report FILE]

  USERS        app users: catalog, order, cancel one in five, else pick up (default 200)
  TILLS        POS tills selling one unit at a time (default 8)
  SUBSCRIBERS  customers who make a weekly plan at the start (default 50)
  WATCHERS     WebSocket clients following a fridge's stock (default 1000)
  SECONDS      length of the day, wall clock (default 60)
  --progress   draw a progress line on stderr (default: when stderr is a terminal)
  --report F   write a report with latency histograms: F.html, or F.svg for the charts
  -h, --help   this text

Env: UNITS (units of each meal per fridge at the start, default 200),
TELEMETRY_SECS (each fridge's report interval, default 10), THINK_MS
(an app user's pause between actions, default 200).

Results go to stdout; the run exits non-zero if the invariant check fails.";

/// Orders an app user leaves waiting (grace window, payment) before
/// ordering again: under the node's limit of held orders per customer.
const MAX_WAITING_ORDERS: usize = 2;
/// How long the payment backlog may take to drain after the day.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// Orders and ledger entries read at once by the final check.
const CHECK_CONCURRENCY: usize = 32;

/// Latency per operation, plus how many failed (not 2xx, or a sold-out
/// 409 counted apart as `sold_out`).
#[derive(Default)]
struct Ops {
    by_name: Mutex<BTreeMap<&'static str, (Histogram<u64>, u64)>>,
    sold_out: AtomicU64,
    /// The first refusal of each operation (status and body), to print.
    first_failure: Mutex<BTreeMap<&'static str, String>>,
}

impl Ops {
    fn record(&self, name: &'static str, took: Duration, ok: bool) {
        let mut ops = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let (h, failed) = ops.entry(name).or_insert_with(|| {
            (
                Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds"),
                0,
            )
        });
        h.record(took.as_nanos() as u64).ok();
        *failed += u64::from(!ok);
    }
}

/// What every actor shares.
struct Day {
    node: Node,
    ops: Ops,
    progress: Arc<Progress>,
    stop: AtomicBool,
    fridges: Vec<(String, f64, f64)>,
    meals: Vec<String>,
    /// Every order placed, for the final check.
    orders: Mutex<Vec<String>>,
    think: Duration,
}

impl Day {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Times `op`, records it, and returns its answer.
    async fn timed(
        &self,
        name: &'static str,
        op: impl std::future::Future<Output = larder_tests::Resp>,
    ) -> larder_tests::Resp {
        let t = Instant::now();
        let r = op.await;
        let ok = (200..300).contains(&r.status);
        if r.status == 409 && r.body["error"]["code"] == "insufficient_stock" {
            self.ops.sold_out.fetch_add(1, Ordering::Relaxed);
            self.ops.record(name, t.elapsed(), true);
        } else {
            self.ops.record(name, t.elapsed(), ok);
            if !ok {
                let mut first = self
                    .ops
                    .first_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                first
                    .entry(name)
                    .or_insert_with(|| format!("{} {}", r.status, r.body));
            }
        }
        self.progress.record(t.elapsed(), ok);
        r
    }

    fn pick(&self, n: usize) -> (&str, f64, f64, &str) {
        let (f, lat, lon) = &self.fridges[n % self.fridges.len()];
        let meal = &self.meals[(n / self.fridges.len()) % self.meals.len()];
        (f, *lat, *lon, meal)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = BenchArgs::or_usage(USAGE);
    let users = args.number(0, 200) as usize;
    let tills = args.number(1, 8) as usize;
    let subscribers = args.number(2, 50) as usize;
    let watchers = args.number(3, 1000) as usize;
    let seconds = args.number(4, 60);
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let units = env("UNITS", 200) as u32;
    let telemetry = Duration::from_secs(env("TELEMETRY_SECS", 10).max(1));

    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    // Every simulated user connects from 127.0.0.1: the per-IP catalog
    // limit would treat the whole city as one abusive client.
    let mut flags = larder_tests::LOAD_NODE_FLAGS.to_vec();
    flags.extend(["--catalog-reads-per-sec-per-ip", "0"]);
    let node = Node::start_with_nats(&nats, &flags).await;
    node.stock_every_meal(units).await;
    let demo: Value = serde_json::from_str(&std::fs::read_to_string(demo_file())?)?;
    let fridges = demo["fridges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["fridge_id"].as_str()?.to_string(),
                f["lat"].as_f64()?,
                f["lon"].as_f64()?,
            ))
        })
        .collect();
    let meals: Vec<(String, String)> = demo["meals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["meal_id"].as_str()?.to_string(),
                m["kitchen_id"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut kitchens: Vec<String> = meals.iter().map(|(_, k)| k.clone()).collect();
    kitchens.sort();
    kitchens.dedup();
    let day = Arc::new(Day {
        node,
        ops: Ops::default(),
        progress: Progress::start("city day", args.wants_progress()),
        stop: AtomicBool::new(false),
        fridges,
        meals: meals.into_iter().map(|(m, _)| m).collect(),
        orders: Mutex::new(vec![]),
        think: Duration::from_millis(env("THINK_MS", 200)),
    });

    let started = Instant::now();
    let mut actors = vec![];
    let watching = Arc::new(AtomicU64::new(0));
    for w in 0..watchers {
        actors.push(tokio::spawn(watcher(day.clone(), w, watching.clone())));
    }
    for s in 0..subscribers {
        actors.push(tokio::spawn(subscriber(day.clone(), s)));
    }
    for u in 0..users {
        actors.push(tokio::spawn(app_user(day.clone(), u)));
    }
    for t in 0..tills {
        actors.push(tokio::spawn(till(day.clone(), t)));
    }
    for k in kitchens {
        actors.push(tokio::spawn(kitchen(day.clone(), k)));
    }
    for f in 0..day.fridges.len() {
        actors.push(tokio::spawn(fridge(day.clone(), f, telemetry)));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    day.stop.store(true, Ordering::Relaxed);
    for a in actors {
        a.await?;
    }
    day.progress.finish();
    let elapsed = started.elapsed().as_secs_f64();

    let mut report = Report::new("larder-city");
    summary(&day, &mut report, elapsed, &watching);
    let verdict = check(&day, &payments, units).await;
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

/// One line per operation: count, failures, rate and latency.
fn summary(day: &Day, report: &mut Report, elapsed: f64, watching: &AtomicU64) {
    let ops = day.ops.by_name.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "seconds={elapsed:.1} watchers_connected={}",
        watching.load(Ordering::Relaxed)
    );
    for (name, (h, failed)) in ops.iter() {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
        println!(
            "{name:<14} n={:<8} failed={failed:<6} per_sec={:<8.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            h.len(),
            h.len() as f64 / elapsed,
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1e6
        );
        report.histogram_ns(name, h);
        report.number(&format!("{name} failed"), failed);
    }
    let first = day
        .ops
        .first_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (name, answer) in first.iter() {
        println!("first failure of {name}: {answer}");
    }
    let sold_out = day.ops.sold_out.load(Ordering::Relaxed);
    println!("sold_out_answers={sold_out}");
    report.number("sold_out_answers", sold_out);
}

/// An app user: catalog near a fridge, an order there; one in five cancels
/// at once (inside the grace window: nothing is charged), the others come
/// back to the order once it is paid and type the pickup code at the
/// fridge (its keypad confirms with a pos token).
async fn app_user(day: Arc<Day>, u: usize) {
    let me = day.node.as_role("customer", &format!("city-user-{u}"));
    let keypad = day.node.as_role("pos", &format!("city-keypad-{u}"));
    let mut waiting: VecDeque<(String, Instant)> = VecDeque::new();
    let mut n = u * 7919;
    while day.running() {
        n += 1;
        if let Some((id, placed)) = waiting.pop_front() {
            match pickup_if_paid(&day, &me, &keypad, &id, placed).await {
                Pickup::NotYet => waiting.push_back((id, placed)),
                Pickup::Done | Pickup::Gone => {}
            }
        }
        // A customer may have only a few orders in their grace window.
        if waiting.len() >= MAX_WAITING_ORDERS {
            tokio::time::sleep(day.think).await;
            continue;
        }
        let (fridge, lat, lon, meal) = day.pick(n);
        let q = format!("/v1/catalog?lat={lat}&lon={lon}&radius_m=2000");
        day.timed("catalog", me.get(&q)).await;
        let r = day
            .timed(
                "order_app",
                me.order(fridge, &[(meal, 1)], "tok_visa", None),
            )
            .await;
        if let Some(id) = r.body["order_id"].as_str().filter(|_| r.status == 201) {
            remember(&day, id);
            if n.is_multiple_of(5) {
                day.timed("cancel", me.cancel(id)).await;
            } else {
                waiting.push_back((id.to_string(), Instant::now()));
            }
        }
        tokio::time::sleep(day.think).await;
    }
}

enum Pickup {
    NotYet,
    Done,
    Gone,
}

/// Reads the order; once paid, picks it up with its code. `placed_to_paid`
/// is how long after the order the customer first saw it paid (the grace
/// window, then the payment).
async fn pickup_if_paid(
    day: &Day,
    me: &Client,
    keypad: &Client,
    id: &str,
    placed: Instant,
) -> Pickup {
    let order = day
        .timed("order_read", me.get(&format!("/v1/orders/{id}")))
        .await
        .body;
    match order["status"].as_str() {
        Some("held" | "paying") => Pickup::NotYet,
        Some("purchased") => {
            day.ops.record("placed_to_paid", placed.elapsed(), true);
            if let Some(code) = order["pickup_code"].as_str() {
                day.timed("pickup", keypad.pickup(id, code)).await;
            }
            Pickup::Done
        }
        _ => Pickup::Gone,
    }
}

fn remember(day: &Day, id: &str) {
    day.orders
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(id.to_string());
}

/// A till at a fridge: one-unit sales back to back.
async fn till(day: Arc<Day>, t: usize) {
    let pos = day.node.as_role("pos", &format!("city-till-{t}"));
    let mut n = t;
    while day.running() {
        n += 13;
        let (fridge, _, _, meal) = day.pick(n);
        let r = day
            .timed(
                "order_pos",
                pos.order(fridge, &[(meal, 1)], "tok_visa", None),
            )
            .await;
        if let Some(id) = r.body["order_id"].as_str().filter(|_| r.status == 201) {
            remember(&day, id);
        }
    }
}

/// A subscriber: one weekly plan (weekdays, one meal) from the earliest
/// date plans may start.
async fn subscriber(day: Arc<Day>, s: usize) {
    let me = day
        .node
        .as_role("customer", &format!("city-subscriber-{s}"));
    let (fridge, _, _, meal) = day.pick(s * 31);
    let start = day.timed("plan_read", me.plans()).await.body["earliest_change_date"].clone();
    let Some(start) = start
        .as_str()
        .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
    else {
        return;
    };
    let days: Vec<Value> = (1..=5)
        .map(|w| json!({"weekday": w, "meal_id": meal}))
        .collect();
    let plan = json!({
        "fridge_id": fridge,
        "days": days,
        "start_date": start,
        "end_date": start + chrono::Duration::days(27),
        "payment_method": "tok_visa",
    });
    day.timed("plan_create", me.create_plan(plan)).await;
}

/// A kitchen: reads tomorrow's prep report and moves it to `prepared`,
/// every few seconds.
async fn kitchen(day: Arc<Day>, kitchen_id: String) {
    let staff = day.node.kitchen(&kitchen_id);
    while day.running() {
        // A load tool, not a test: the wall clock is the day's clock.
        let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
        let date = tomorrow.to_string();
        day.timed("prep", staff.prep(&kitchen_id, &date)).await;
        day.timed(
            "kitchen_stage",
            staff.kitchen_event(&kitchen_id, "prepared", &date),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// A fridge: a signed temperature report every `interval`.
async fn fridge(day: Arc<Day>, f: usize, interval: Duration) {
    let mut sim = demo_fridge(&day.fridges[f].0);
    while day.running() {
        if let Ok(batch) = sim.temperature(3_800) {
            day.timed("telemetry", day.node.telemetry(&batch)).await;
        }
        tokio::time::sleep(interval).await;
    }
}

/// A WebSocket client following one fridge's stock until the day ends.
async fn watcher(day: Arc<Day>, w: usize, watching: Arc<AtomicU64>) {
    let url = day.node.url("/v1/ws").replacen("http://", "ws://", 1);
    let t = Instant::now();
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        day.ops.record("ws_connect", t.elapsed(), false);
        return;
    };
    let (fridge, _, _, _) = day.pick(w);
    let subscribe = json!({"type": "subscribe", "fridges": [fridge]}).to_string();
    if ws.send(Message::text(subscribe)).await.is_err() {
        day.ops.record("ws_connect", t.elapsed(), false);
        return;
    }
    day.ops.record("ws_connect", t.elapsed(), true);
    watching.fetch_add(1, Ordering::Relaxed);
    while day.running() {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(_) => return,
        }
    }
    let _ = ws.close(None).await;
}

/// DESIGN.md §6 over every order placed: see the module doc.
async fn check(day: &Day, payments: &Payments, units: u32) -> String {
    if !day.node.await_outbox_drained(DRAIN_DEADLINE).await {
        return "payment outbox not drained".into();
    }
    let orders = day.orders.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let admin = day.node.admin();
    let checked: Vec<(Value, Value)> = futures::stream::iter(orders)
        .map(|id| {
            let admin = admin.clone();
            async move {
                let order = admin.get(&format!("/v1/orders/{id}")).await.body;
                (order, payments.ledger(&id).await)
            }
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await;
    let mut broken = vec![];
    let mut off_shelf: HashMap<(String, String), u64> = HashMap::new();
    for (order, ledger) in &checked {
        let status = order["status"].as_str().unwrap_or("?");
        if matches!(status, "held" | "paying" | "purchased" | "picked_up") {
            for item in order["lines"].as_array().into_iter().flatten() {
                let key = (
                    order["fridge_id"].as_str().unwrap_or_default().to_string(),
                    item["meal_id"].as_str().unwrap_or_default().to_string(),
                );
                *off_shelf.entry(key).or_default() += item["qty"].as_u64().unwrap_or(0);
            }
        }
        let n = |k: &str| ledger["ledger"][k].as_u64().unwrap_or(0);
        let paid = u64::from(matches!(status, "purchased" | "picked_up"));
        if n("charges") > 1 || n("charges") - n("refunds").min(n("charges")) != paid {
            broken.push(format!(
                "order {} ({status}): ledger {}",
                order["order_id"], ledger["ledger"]
            ));
        }
    }
    let catalog = day.node.catalog(42.3316, -83.0466, 20_000).await;
    for f in catalog["fridges"].as_array().into_iter().flatten() {
        for m in f["meals"].as_array().into_iter().flatten() {
            let key = (
                f["fridge_id"].as_str().unwrap_or_default().to_string(),
                m["meal_id"].as_str().unwrap_or_default().to_string(),
            );
            let gone = u64::from(units).saturating_sub(m["available"].as_u64().unwrap_or(0));
            let held = off_shelf.get(&key).copied().unwrap_or(0);
            if gone != held {
                broken.push(format!(
                    "{key:?}: {gone} units gone from the shelf, {held} in orders"
                ));
            }
        }
    }
    match broken.len() {
        0 => format!(
            "ok ({} orders: nothing oversold, each charged once)",
            checked.len()
        ),
        n => format!("{n} broken, first: {}", broken[..n.min(5)].join("; ")),
    }
}
