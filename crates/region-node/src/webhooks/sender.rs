//! One endpoint's sender: POSTs its pending deliveries, signed, and retries
//! them with exponential backoff until a 2xx or the end of the retry window.
//!
//! Each endpoint has its own task, so a slow or dead endpoint only delays
//! itself. Order per stream: only the oldest pending delivery of each
//! stream (its *head*) may be in flight; a later one of the same stream
//! waits until the head is delivered or has failed. Heads of different
//! streams go out side by side, up to [`MAX_IN_FLIGHT_PER_ENDPOINT`].
//!
//! Time: due dates and the retry window are judged on the node's
//! [`Clock`] (so `--dev-clock` moves them), checked every [`TICK_MS`];
//! tokio time only paces the loop and bounds each attempt.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use protocol::WebhookId;
use tokio::sync::mpsc;

use super::store::{Attempt, Delivery, DeliveryState, DeliveryStore};
use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::metrics::Metrics;
use crate::writer::District;

/// Header with `t=<unix seconds>,v1=<hex HMAC-SHA256>` (see `docs/webhooks.md`).
pub const SIGNATURE_HEADER: &str = "larder-signature";
/// Header with the delivery's id, `{endpoint_id}-{seq}`: the same on every
/// retry and redelivery.
pub const DELIVERY_HEADER: &str = "larder-delivery";
/// Header with the event type (`order.placed`, …).
pub const EVENT_HEADER: &str = "larder-event";
/// Longest wait for one attempt's answer (connect, send, status line).
pub const ATTEMPT_TIMEOUT_MS: u64 = 10_000;
/// The first retry comes this long after the first failure; each next one
/// waits twice as long as the one before …
pub const FIRST_RETRY_MS: u64 = 1_000;
/// … but never longer than this.
pub const MAX_RETRY_MS: u64 = 3_600_000;
/// A delivery without a 2xx this long after it was queued (or redelivered)
/// is marked failed, after one last attempt at the end of the window.
pub const RETRY_WINDOW_SECS: i64 = 24 * 3600;
/// Deliveries of one endpoint in flight at once (one per stream).
pub const MAX_IN_FLIGHT_PER_ENDPOINT: usize = 4;
/// How often the loop looks at the node clock for due retries.
pub const TICK_MS: u64 = 200;
/// Longest error text kept in the delivery log, in bytes.
const MAX_ERROR_BYTES: usize = 200;

/// The `Larder-Signature` header value for `body` sent at `timestamp`:
/// the fridge scheme (`fridge_acl::auth::sign`: HMAC-SHA256 over
/// `"{timestamp}.{body}"`, lowercase hex), so both are verified the same way.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let v1 = fridge_acl::auth::sign(secret.as_bytes(), timestamp, body);
    format!("t={timestamp},v1={v1}")
}

/// The wait before the retry after `failures` failed attempts (≥ 1):
/// 1 s, 2 s, 4 s, … capped at [`MAX_RETRY_MS`].
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    Duration::from_millis(
        FIRST_RETRY_MS
            .saturating_mul(1u64 << doublings)
            .min(MAX_RETRY_MS),
    )
}

/// What to do after a failed attempt at `now`: the next attempt's time,
/// or `None` when the retry window is over (mark it failed). The last
/// retry is moved up to the window's end, so it is never skipped.
pub fn next_attempt(
    window_start: DateTime<Utc>,
    failures: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let end = window_start + chrono::Duration::seconds(RETRY_WINDOW_SECS);
    if now >= end {
        return None;
    }
    let wait = chrono::Duration::from_std(backoff(failures)).unwrap_or(chrono::Duration::MAX);
    Some(now.checked_add_signed(wait).unwrap_or(end).min(end))
}

/// Where a sender POSTs: HTTP in the node, a recorder in tests.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` with `headers` to `url`; the status code, or why there
    /// was none.
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> impl Future<Output = Result<u16, String>> + Send;
}

/// reqwest (already the node's client for other districts): redirects are
/// not followed (a 3xx is a failed attempt the log shows), and each
/// attempt is bounded by [`ATTEMPT_TIMEOUT_MS`] in the loop.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
            .user_agent(concat!("larder-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Http { client })
    }
}

impl Transport for Http {
    async fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Result<u16, String> {
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let resp = req.body(body).send().await.map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    }
}

/// What one endpoint's sender works with.
pub struct Sender<T> {
    pub endpoint_id: WebhookId,
    pub transport: Arc<T>,
    pub store: DeliveryStore,
    /// For the endpoint's URL, secret and whether it is enabled, read
    /// before every attempt (a disabled endpoint is sent nothing more).
    pub district: District,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
}

/// Sends one endpoint's deliveries until `shutdown` (or its inbox closes).
/// `inbox` brings new and redelivered deliveries, already durable.
pub async fn run<T: Transport>(
    sender: Sender<T>,
    mut inbox: mpsc::UnboundedReceiver<Delivery>,
    mut shutdown: Shutdown,
) {
    let Sender {
        endpoint_id,
        transport,
        store,
        district,
        clock,
        metrics,
    } = sender;
    let mut pending: BTreeMap<u64, Delivery> = BTreeMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let state = district.state();
        // A disabled (or unknown) endpoint sends nothing; its pending
        // deliveries stay in the log as they are.
        if let Some(endpoint) = state
            .webhooks()
            .get(&endpoint_id)
            .filter(|e| e.is_enabled())
        {
            let now = clock.now();
            for seq in due_heads(
                &pending,
                &busy,
                now,
                MAX_IN_FLIGHT_PER_ENDPOINT - in_flight.len(),
            ) {
                let Some(d) = pending.get(&seq) else { continue };
                busy.insert(d.stream.clone());
                in_flight.push(attempt(transport.clone(), endpoint, d, now));
            }
        }
        tokio::select! {
            Some((seq, outcome, took)) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(mut d) = pending.remove(&seq) else { continue };
                busy.remove(&d.stream);
                settle(&mut d, outcome, took, clock.now(), &metrics);
                if let Err(e) = store.put(&d).await {
                    // The sender goes on from what it knows; at worst a
                    // restart sends this delivery again (at least once).
                    tracing::error!(endpoint = %endpoint_id, seq, error = %e, "webhooks: attempt result not stored");
                }
                if d.state == DeliveryState::Pending {
                    pending.insert(seq, d);
                } else {
                    metrics.webhook_backlog.fetch_sub(1, Relaxed);
                }
            }
            new = inbox.recv() => match new {
                Some(d) => {
                    if pending.insert(d.seq, d).is_none() {
                        metrics.webhook_backlog.fetch_add(1, Relaxed);
                    }
                }
                None => {
                    metrics.webhook_backlog.fetch_sub(pending.len() as i64, Relaxed);
                    return;
                }
            },
            _ = tick.tick() => {}
            () = shutdown.triggered() => {
                // Attempts in flight are dropped: not recorded, so they are
                // sent again after the restart (at least once).
                metrics.webhook_backlog.fetch_sub(pending.len() as i64, Relaxed);
                return;
            }
        }
    }
}

/// One signed POST of `d` at `now`, bounded by [`ATTEMPT_TIMEOUT_MS`]:
/// its seq, the outcome and how long it took.
fn attempt<T: Transport>(
    transport: Arc<T>,
    endpoint: &district::webhooks::Endpoint,
    d: &Delivery,
    now: DateTime<Utc>,
) -> impl Future<Output = (u64, Result<u16, String>, Duration)> + Send + 'static {
    let headers = vec![
        (
            SIGNATURE_HEADER,
            signature(endpoint.secret(), now.timestamp(), d.body.as_bytes()),
        ),
        (DELIVERY_HEADER, d.header_id()),
        (EVENT_HEADER, d.event_type.clone()),
    ];
    let (seq, url, body) = (d.seq, endpoint.url().to_string(), d.body.clone());
    async move {
        let started = std::time::Instant::now();
        let limit = Duration::from_millis(ATTEMPT_TIMEOUT_MS);
        let outcome = match tokio::time::timeout(limit, transport.post(&url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {ATTEMPT_TIMEOUT_MS} ms")),
        };
        (seq, outcome, started.elapsed())
    }
}

/// The pending deliveries to start now: each stream's oldest (when none of
/// its stream is in flight) whose time has come, oldest first, at most `room`.
fn due_heads(
    pending: &BTreeMap<u64, Delivery>,
    busy: &HashSet<String>,
    now: DateTime<Utc>,
    room: usize,
) -> Vec<u64> {
    let mut seen: HashSet<&str> = HashSet::new();
    pending
        .values()
        .filter(|d| seen.insert(d.stream.as_str()))
        .filter(|d| !busy.contains(&d.stream) && d.next_attempt_at.is_none_or(|at| at <= now))
        .map(|d| d.seq)
        .take(room)
        .collect()
}

/// Records an attempt's outcome on the delivery: delivered on a 2xx,
/// otherwise retried later or, past the window, failed.
fn settle(
    d: &mut Delivery,
    outcome: Result<u16, String>,
    took: Duration,
    now: DateTime<Utc>,
    metrics: &Metrics,
) {
    let (status, error) = match outcome {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(truncate(e))),
    };
    d.record_attempt(Attempt {
        at: now,
        status,
        error: error.clone(),
        duration_ms: took.as_millis() as u64,
    });
    if status.is_some_and(|s| (200..300).contains(&s)) {
        d.state = DeliveryState::Delivered;
        d.next_attempt_at = None;
        metrics.webhook_delivered.fetch_add(1, Relaxed);
        tracing::debug!(endpoint = %d.endpoint_id, seq = d.seq, attempts = d.attempts, "webhook delivered");
        return;
    }
    metrics.webhook_attempts_failed.fetch_add(1, Relaxed);
    d.next_attempt_at = next_attempt(d.window_start, failures_in_window(d), now);
    if d.next_attempt_at.is_none() {
        d.state = DeliveryState::Failed;
        metrics.webhook_failed.fetch_add(1, Relaxed);
        tracing::warn!(endpoint = %d.endpoint_id, seq = d.seq, attempts = d.attempts, ?status, "webhook delivery failed for good");
    } else {
        tracing::info!(endpoint = %d.endpoint_id, seq = d.seq, attempts = d.attempts, ?status, error = error.as_deref().unwrap_or(""), next = ?d.next_attempt_at, "webhook attempt failed");
    }
}

/// Failed attempts since the window started (a redelivery starts the
/// backoff again at 1 s).
fn failures_in_window(d: &Delivery) -> u32 {
    d.last_attempts
        .iter()
        .rev()
        .take_while(|a| a.at >= d.window_start)
        .count()
        .max(1) as u32
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut cut = MAX_ERROR_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_is_capped() {
        let secs: Vec<u64> = (1..=5).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16]);
        assert_eq!(backoff(13), Duration::from_millis(MAX_RETRY_MS));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(MAX_RETRY_MS));
    }

    #[test]
    fn the_window_ends_with_one_last_attempt_then_failure() {
        let start = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |secs: i64| start + chrono::Duration::seconds(secs);
        assert_eq!(next_attempt(start, 1, at(0)), Some(at(1)));
        assert_eq!(next_attempt(start, 3, at(10)), Some(at(14)));
        // An hour's wait would pass the end: the last try is at the end.
        let end = RETRY_WINDOW_SECS;
        assert_eq!(next_attempt(start, 30, at(end - 60)), Some(at(end)));
        assert_eq!(next_attempt(start, 31, at(end)), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: Python's
        // hmac.new(b"whsec-0123456789abcdef", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = signature("whsec-0123456789abcdef", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=2d586df5f91a6ea5c4bc37bd80e94fb1103f9da69ee9cbd3f6a22a939e1fe1f8"
        );
        // And the example in docs/webhooks.md.
        let body = r#"{"data":{"order_id":"01JDQW5T2M0000000000000000"},"district_id":"detroit-downtown","event_id":"01JDQW5V8X0000000000000000","family":"orders","occurred_at":"2026-11-25T17:03:11.204Z","seq":42,"stream":"order-01JDQW5T2M0000000000000000","type":"order.cancelled"}"#;
        assert_eq!(
            signature("whsec-0123456789abcdef", 1_764_090_191, body.as_bytes()),
            "t=1764090191,v1=68dd4edc245f179870fbb481f50adf383ed1fceac0baed62deba1cc7a879ef14"
        );
    }

    fn pending(seqs: &[(u64, &str)], now: DateTime<Utc>) -> BTreeMap<u64, Delivery> {
        seqs.iter()
            .map(|(seq, stream)| {
                let payload = district::webhooks::Payload {
                    family: protocol::webhooks::WebhookFamily::Orders,
                    seq: *seq,
                    stream: (*stream).into(),
                    event_type: "order.placed",
                    body: serde_json::json!({}),
                };
                (
                    *seq,
                    Delivery::new(WebhookId::from_static("w"), &payload, "{}".into(), now),
                )
            })
            .collect()
    }

    #[test]
    fn only_the_head_of_each_stream_goes_out() {
        let now = Utc::now();
        let mut p = pending(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")], now);
        assert_eq!(due_heads(&p, &HashSet::new(), now, 10), vec![1, 3, 4]);
        assert_eq!(due_heads(&p, &HashSet::new(), now, 2), vec![1, 3]);
        let busy: HashSet<String> = ["a".to_string()].into();
        assert_eq!(due_heads(&p, &busy, now, 10), vec![3, 4], "2 waits for 1");
        // A head waiting for its retry holds its stream back.
        p.get_mut(&1).unwrap().next_attempt_at = Some(now + chrono::Duration::seconds(5));
        assert_eq!(due_heads(&p, &HashSet::new(), now, 10), vec![3, 4]);
    }
}
