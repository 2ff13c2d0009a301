//! The steady load of a chaos round: POS and app orders, app cancels inside
//! the grace window, and fridge temperature uploads.
//!
//! Every order carries an `Idempotency-Key` and is retried with it, across
//! a crash and a restart, until the node answers: a client that lost its
//! answer in a crash learns it this way, so every order the node committed
//! ends up acknowledged here and the round's checks know all of them.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Rng;

/// How long one order or cancel is retried across a crash; past it the
/// attempt is counted unresolved (and the checks cannot account for it).
const RETRY_DEADLINE: Duration = Duration::from_secs(90);
/// Pause between retries while the node is down.
const RETRY_STEP: Duration = Duration::from_millis(50);
/// A request to a killed node fails at once; one to a stuck node after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Share of orders placed by customers' apps (the rest by POS terminals).
const APP_SHARE: f64 = 0.3;
/// Share of app orders their customer cancels inside the grace window.
const CANCEL_SHARE: f64 = 0.5;
/// Share of orders paid with the card the sandbox declines.
const DECLINE_SHARE: f64 = 0.05;
/// Share of orders for two units instead of one.
const TWO_UNITS_SHARE: f64 = 0.2;
/// Orders each worker aims for per second (more workers for higher rates).
const ORDERS_PER_SEC_PER_WORKER: u32 = 8;
/// Pause between temperature uploads (all fridges in turn).
const TELEMETRY_STEP: Duration = Duration::from_millis(50);
/// A cabinet temperature inside the fridges' limit (5 °C).
const IN_RANGE_MILLI_C: i32 = 3_500;

/// What the load and the round share while processes come and go.
pub struct Shared {
    /// The node's base URL: a restarted node listens on a new port.
    pub node_base: RwLock<String>,
    pub http: reqwest::Client,
    /// The node's clock minus the wall clock, in ms (`--dev-clock`).
    pub clock_offset_ms: AtomicI64,
}

impl Shared {
    pub fn base(&self) -> String {
        self.node_base
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn set_base(&self, base: &str) {
        let mut b = self.node_base.write().unwrap_or_else(|e| e.into_inner());
        *b = base.to_string();
    }

    /// Now on the node's clock (telemetry is judged by it).
    fn node_now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::TimeDelta::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }
}

/// Who orders what: the demo district's fridges and meals, and the callers.
pub struct Cast {
    pub fridges: Vec<String>,
    pub meals: Vec<String>,
    pub pos_tokens: Vec<String>,
    pub customer_tokens: Vec<String>,
    /// The fridges as firmware: their report numbers run on across rounds.
    pub sims: std::sync::Mutex<Vec<fridge_sim::SimFridge>>,
}

/// An order the node acknowledged (201).
#[derive(Debug, Clone)]
pub struct Acked {
    pub order_id: String,
    pub fridge: String,
    pub meal: String,
    pub qty: u32,
}

/// What a round's load did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub acked: Vec<Acked>,
    /// Orders answered with a 4xx (sold out, hoarding limits).
    pub refused: u64,
    /// Orders or cancels that got no answer within `RETRY_DEADLINE`.
    pub unresolved: u64,
    pub cancels_sent: u64,
    pub telemetry_accepted: u64,
    pub telemetry_failed: u64,
    pub load_secs: f64,
}

/// A running load; `finish` stops it and collects what it did.
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<LoadOutcome>>,
    telemetry: tokio::task::JoinHandle<(u64, u64)>,
}

impl Load {
    /// Starts `rate` orders/s spread over workers, plus telemetry.
    pub fn start(shared: &Arc<Shared>, cast: &Arc<Cast>, rate: u32, seed: u64, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let count = rate.div_ceil(ORDERS_PER_SEC_PER_WORKER).max(1);
        let pace = Duration::from_secs_f64(f64::from(count) / f64::from(rate.max(1)));
        let workers = (0..count)
            .map(|w| {
                let worker = Worker {
                    shared: shared.clone(),
                    cast: cast.clone(),
                    rng: Rng::new(seed ^ (u64::from(w) << 32)),
                    id: format!("{tag}-w{w}"),
                    pos_token: cast.pos_tokens[w as usize % cast.pos_tokens.len()].clone(),
                };
                tokio::spawn(worker.run(stop.clone(), pace))
            })
            .collect();
        let telemetry = tokio::spawn(telemetry(shared.clone(), cast.clone(), stop.clone()));
        Load {
            stop,
            started: Instant::now(),
            workers,
            telemetry,
        }
    }

    /// Stops taking new orders, lets every attempt in flight resolve.
    pub async fn finish(self) -> LoadOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let load_secs = self.started.elapsed().as_secs_f64();
        let mut out = LoadOutcome {
            load_secs,
            ..LoadOutcome::default()
        };
        for w in self.workers {
            let Ok(o) = w.await else {
                out.unresolved += 1;
                continue;
            };
            out.acked.extend(o.acked);
            out.refused += o.refused;
            out.unresolved += o.unresolved;
            out.cancels_sent += o.cancels_sent;
        }
        let (ok, failed) = self.telemetry.await.unwrap_or((0, 0));
        out.telemetry_accepted = ok;
        out.telemetry_failed = failed;
        out
    }
}

struct Worker {
    shared: Arc<Shared>,
    cast: Arc<Cast>,
    rng: Rng,
    id: String,
    pos_token: String,
}

/// The answer to one request, or that there was none (node down).
type Answer = Option<(u16, Value)>;

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>, pace: Duration) -> LoadOutcome {
        let mut out = LoadOutcome::default();
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            self.one_order(n, &mut out).await;
        }
        out
    }

    async fn one_order(&mut self, n: u64, out: &mut LoadOutcome) {
        let cast = self.cast.clone();
        let fridge = &cast.fridges[self.rng.below(cast.fridges.len())];
        let meal = &cast.meals[self.rng.below(cast.meals.len())];
        let qty = if self.rng.chance(TWO_UNITS_SHARE) {
            2
        } else {
            1
        };
        let card = if self.rng.chance(DECLINE_SHARE) {
            "tok_decline"
        } else {
            "tok_visa"
        };
        let app = self.rng.chance(APP_SHARE);
        let token = if app {
            cast.customer_tokens[self.rng.below(cast.customer_tokens.len())].clone()
        } else {
            self.pos_token.clone()
        };
        let body = json!({"fridge_id": fridge, "items": [{"meal_id": meal, "qty": qty}],
            "payment_method": card});
        let key = format!("{}-{n}", self.id);
        let answer = self
            .until_answered("/v1/orders", &token, &body, Some(&key))
            .await;
        let order_id = match answer {
            Some((201, b)) => b["order_id"].as_str().unwrap_or_default().to_string(),
            Some(_) => return out.refused += 1,
            None => return out.unresolved += 1,
        };
        out.acked.push(Acked {
            order_id: order_id.clone(),
            fridge: fridge.clone(),
            meal: meal.clone(),
            qty,
        });
        if app && self.rng.chance(CANCEL_SHARE) {
            out.cancels_sent += 1;
            let path = format!("/v1/orders/{order_id}/cancel");
            if self
                .until_answered(&path, &token, &Value::Null, None)
                .await
                .is_none()
            {
                out.unresolved += 1;
            }
        }
    }

    /// POSTs until the node answers with anything but a 5xx, through a
    /// crash; `None` after `RETRY_DEADLINE`.
    async fn until_answered(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Answer {
        let started = Instant::now();
        while started.elapsed() < RETRY_DEADLINE {
            match post(&self.shared, path, token, body, key).await {
                Some((status, b)) if status < 500 => return Some((status, b)),
                _ => tokio::time::sleep(RETRY_STEP).await,
            }
        }
        None
    }
}

async fn post(shared: &Shared, path: &str, token: &str, body: &Value, key: Option<&str>) -> Answer {
    let mut req = shared
        .http
        .post(format!("{}{path}", shared.base()))
        .bearer_auth(token)
        .timeout(REQUEST_TIMEOUT)
        .json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

/// Every demo fridge reports an in-range temperature in turn, stamped with
/// the node's clock; uploads lost to a crash are simply lost (the fridge's
/// next report number skips them, as firmware's would).
async fn telemetry(shared: Arc<Shared>, cast: Arc<Cast>, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let sent = match sign_next(&shared, &cast, i) {
            Some(batch) => fridge_sim::send(&shared.http, &shared.base(), &batch)
                .await
                .ok(),
            None => None,
        };
        match sent {
            Some(a) if a.status == 202 => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(TELEMETRY_STEP).await;
    }
    (ok, failed)
}

/// The next report of fridge `i` (modulo their number), signed.
fn sign_next(shared: &Shared, cast: &Cast, i: usize) -> Option<fridge_sim::SignedBatch> {
    let mut sims = cast.sims.lock().unwrap_or_else(|e| e.into_inner());
    let count = sims.len();
    let fridge = sims.get_mut(i % count.max(1))?;
    let now = shared.node_now();
    let report = fridge.temperature_report(now, IN_RANGE_MILLI_C);
    fridge
        .sign(vec![report], now, &fridge_sim::SignOptions::default())
        .ok()
}
