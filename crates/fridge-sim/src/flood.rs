//! Load generation: many fridges uploading full batches of temperature
//! readings back to back, one upload in flight per fridge, for a fixed
//! time — to measure how many readings per second a node takes through
//! signature check, parse, translate and durable append.
//!
//! A reading counts as *taken* when the batch carrying it was answered
//! `202`; `applied` is what the node says it applied. Batches are built and
//! signed on the fly (the HMAC is part of the fridge's real cost).

use std::time::{Duration, Instant};

use chrono::Utc;
use fridge_acl::report::MAX_REPORTS_PER_BATCH;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{send, Tally};
use crate::fridge::{SignOptions, SimFridge};
use crate::run::resume_seq;

/// Coldest flood reading, in milli-degrees Celsius (in range, so a flood
/// never quarantines a fridge).
const FLOOD_TEMP_BASE_MILLI_C: i32 = 3_000;
/// Readings cycle over this many tenths above the base (3.0 … 4.4 °C).
const FLOOD_TEMP_STEPS_TENTHS: u64 = 15;
const MICROS_PER_MILLI: f64 = 1000.0;
/// Pause after an upload that got no answer, in milliseconds.
const FAILED_UPLOAD_PAUSE_MS: u64 = 50;

#[derive(Debug, Clone)]
pub struct FloodConfig {
    pub node_url: String,
    /// Reports per upload, 1..=[`MAX_REPORTS_PER_BATCH`].
    pub readings_per_batch: usize,
    pub duration: Duration,
    /// Learn each fridge's highest report number first (see
    /// [`resume_seq`]), so a second flood is not all duplicates.
    pub resume_from_node: bool,
}

/// Upload latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The outcome of one flood, printed as one JSON line by the binary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloodReport {
    pub fridges: usize,
    pub readings_per_batch: usize,
    pub seconds: f64,
    /// Uploads (batches) and readings (reports), as the node answered them.
    #[serde(flatten)]
    pub tally: Tally,
    /// Readings in batches answered `202`, per second.
    pub readings_per_sec: f64,
    /// Readings the node says it applied, per second.
    pub applied_per_sec: f64,
    pub latency_ms: LatencyMs,
    /// The first refusal seen (status and body), to tell why.
    pub first_refusal: Option<Value>,
    /// The first transport error seen.
    pub first_error: Option<String>,
}

#[derive(Default)]
struct FridgeTally {
    tally: Tally,
    latencies_us: Vec<u64>,
    first_refusal: Option<Value>,
    first_error: Option<String>,
}

/// Floods the node with `fridges` until `config.duration` has passed or
/// `stop` turns true.
pub async fn flood(
    fridges: Vec<SimFridge>,
    config: FloodConfig,
    stop: watch::Receiver<bool>,
) -> FloodReport {
    let per_batch = config.readings_per_batch.clamp(1, MAX_REPORTS_PER_BATCH);
    let client = reqwest::Client::new();
    let fridge_count = fridges.len();
    let mut fridges = fridges;
    if config.resume_from_node {
        for fridge in &mut fridges {
            if let Err(e) = resume_seq(&client, &config.node_url, fridge).await {
                tracing::warn!(fridge = %fridge.id, error = %e, "heartbeat failed");
            }
        }
    }
    let started = Instant::now();
    let deadline = started + config.duration;
    let tasks: Vec<_> = fridges
        .into_iter()
        .map(|fridge| {
            tokio::spawn(flood_one(
                fridge,
                client.clone(),
                config.node_url.clone(),
                per_batch,
                deadline,
                stop.clone(),
            ))
        })
        .collect();
    let mut report = FloodReport {
        fridges: fridge_count,
        readings_per_batch: per_batch,
        ..FloodReport::default()
    };
    let mut latencies_us = Vec::new();
    for task in tasks {
        match task.await {
            Ok(part) => {
                report.tally.add(&part.tally);
                latencies_us.extend(part.latencies_us);
                report.first_refusal = report.first_refusal.or(part.first_refusal);
                report.first_error = report.first_error.or(part.first_error);
            }
            Err(e) => tracing::error!(error = %e, "flood task failed"),
        }
    }
    report.seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
    report.readings_per_sec = report.tally.reports_accepted as f64 / report.seconds;
    report.applied_per_sec = report.tally.applied as f64 / report.seconds;
    latencies_us.sort_unstable();
    report.latency_ms = percentiles(&latencies_us);
    report
}

/// Nearest-rank percentiles of sorted microsecond samples.
fn percentiles(sorted_us: &[u64]) -> LatencyMs {
    let at = |q: f64| -> f64 {
        if sorted_us.is_empty() {
            return 0.0;
        }
        let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
        sorted_us[rank - 1] as f64 / MICROS_PER_MILLI
    };
    LatencyMs {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

async fn flood_one(
    mut fridge: SimFridge,
    client: reqwest::Client,
    node_url: String,
    per_batch: usize,
    deadline: Instant,
    stop: watch::Receiver<bool>,
) -> FridgeTally {
    let mut out = FridgeTally::default();
    while Instant::now() < deadline && !*stop.borrow() {
        let now = Utc::now();
        let reports = (0..per_batch)
            .map(|_| {
                let step = (fridge.seq % FLOOD_TEMP_STEPS_TENTHS) as i32;
                fridge.temperature_report(now, FLOOD_TEMP_BASE_MILLI_C + step * 100)
            })
            .collect();
        let signed = match fridge.sign(reports, now, &SignOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                out.first_error.get_or_insert_with(|| e.to_string());
                break;
            }
        };
        let sent_at = Instant::now();
        let result = send(&client, &node_url, &signed).await;
        out.tally.record(per_batch, &result);
        match result {
            Ok(answer) => {
                let micros = sent_at.elapsed().as_micros();
                out.latencies_us.push(micros.try_into().unwrap_or(u64::MAX));
                if !answer.is_accepted() {
                    out.first_refusal.get_or_insert_with(
                        || serde_json::json!({"status": answer.status, "body": answer.body}),
                    );
                }
            }
            Err(e) => {
                out.first_error.get_or_insert_with(|| e.to_string());
                // A node that is down answers at once; do not spin.
                tokio::time::sleep(Duration::from_millis(FAILED_UPLOAD_PAUSE_MS)).await;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fridge_acl::FridgeId;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        let p = percentiles(&samples);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentiles(&[]), LatencyMs::default());
    }

    #[tokio::test]
    async fn an_unreachable_node_is_counted_not_fatal() {
        // Port 9 on loopback: nothing listens; the connection is refused.
        let fridge = SimFridge::new(
            FridgeId::from_static("f-1"),
            fridge_acl::Dialect::ColdlineLines,
            "k",
        );
        let (_tx, rx) = watch::channel(false);
        let report = flood(
            vec![fridge],
            FloodConfig {
                node_url: "http://127.0.0.1:9".into(),
                readings_per_batch: 10,
                duration: Duration::from_millis(120),
                resume_from_node: false,
            },
            rx,
        )
        .await;
        assert!(report.tally.failed >= 1);
        assert_eq!(report.tally.accepted, 0);
        assert!(report.first_error.is_some());
    }
}
