//! Prometheus metrics, rendered by hand in the text exposition format: a few
//! atomics are all the node needs, and it keeps the dependency tree small.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use storage::SyncStats;

/// Upper bounds of the commit-latency histogram, in seconds.
const COMMIT_BUCKETS_SECS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];

#[derive(Default)]
pub struct Metrics {
    batches: AtomicU64,
    commands: AtomicU64,
    events: AtomicU64,
    commit_micros_sum: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_SECS.len()],
    /// Informational answers: WebSocket upgrades (101).
    http_1xx: AtomicU64,
    http_2xx: AtomicU64,
    http_3xx: AtomicU64,
    http_4xx: AtomicU64,
    http_5xx: AtomicU64,
    /// Frames queued to WebSocket connections.
    pub ws_frames: AtomicU64,
    /// Connections cut off for not reading fast enough.
    pub ws_slow_kicks: AtomicU64,
    /// `resync` answers (a `since` too old, or the hub fell behind).
    pub ws_resyncs: AtomicU64,
    /// Connections refused at the connection limit.
    pub ws_refused: AtomicU64,
    /// Syncs of the event log, counted by the store itself.
    pub store: Arc<SyncStats>,
    /// Orders locked for `POST /v1/orders/{id}/pickup` after too many wrong codes.
    pub pickup_lockouts: AtomicU64,
    /// Requests answered 429 by the rate limits (`http::limits`).
    pub rate_limited: AtomicU64,
    /// Start-up: the seq of the snapshot the state was loaded from (0: none,
    /// the whole log was replayed) and how many log events were replayed.
    pub recovered_from_seq: AtomicU64,
    pub recovery_replayed_events: AtomicU64,
    /// State snapshots written since start, and the seq of the newest.
    pub snapshots_written: AtomicU64,
    pub snapshot_seq: AtomicU64,
    /// The last log seq moved out of sled into sealed segments.
    pub log_sealed_seq: AtomicU64,
    /// Phone pushes handed to the provider, failed tries (retried), and
    /// dropped (push queue full, too many held, or out of tries).
    pub pushes_sent: AtomicU64,
    pub push_failures: AtomicU64,
    pub pushes_dropped: AtomicU64,
    /// Webhooks (`webhooks/`): deliveries answered 2xx, attempts that were
    /// not, deliveries given up after the retry window, and deliveries
    /// pending in the senders now.
    pub webhook_delivered: AtomicU64,
    pub webhook_attempts_failed: AtomicU64,
    pub webhook_failed: AtomicU64,
    pub webhook_backlog: AtomicI64,
    /// The payment relay (`nats.rs`): requests JetStream acknowledged, and
    /// publishes that failed (each is published again).
    pub payments_published: AtomicU64,
    pub payment_publish_failures: AtomicU64,
    /// Payment results committed (or found duplicate) and acked.
    pub payment_results_recorded: AtomicU64,
    /// New orders refused with 503 `payments_backlog`.
    pub payments_backlog_refusals: AtomicU64,
}

impl Metrics {
    pub fn record_batch(&self, commands: usize, events: usize, took: Duration) {
        self.batches.fetch_add(1, Relaxed);
        self.commands.fetch_add(commands as u64, Relaxed);
        self.events.fetch_add(events as u64, Relaxed);
        self.commit_micros_sum
            .fetch_add(took.as_micros() as u64, Relaxed);
        let secs = took.as_secs_f64();
        for (i, bound) in COMMIT_BUCKETS_SECS.iter().enumerate() {
            if secs <= *bound {
                self.commit_buckets[i].fetch_add(1, Relaxed);
            }
        }
    }

    pub fn record_http(&self, status: u16) {
        let counter = match status {
            100..=199 => &self.http_1xx,
            200..=299 => &self.http_2xx,
            300..=399 => &self.http_3xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_5xx,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Prometheus text format. `gauges` are point-in-time values the caller
    /// reads from the current state.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        self.render_recovery(&mut out);
        self.render_http(&mut out);
        self.render_commit_histogram(&mut out);
        self.render_webhooks(&mut out);
        self.render_payments(&mut out);
        for (name, help, v) in gauges {
            gauge(&mut out, name, help, *v);
        }
        out
    }

    fn render_counters(&self, out: &mut String) {
        let counters: [(&str, &str, u64); 15] = [
            (
                "larder_commit_batches_total",
                "Group commits (one sync each when they append events).",
                self.batches.load(Relaxed),
            ),
            (
                "larder_store_syncs_total",
                "Event log flushes that ended in an fdatasync (one per appending batch).",
                self.store.commits(),
            ),
            (
                "larder_store_fsyncs_total",
                "fsync/fdatasync calls on the event log's files and directories.",
                self.store.fsyncs(),
            ),
            (
                "larder_commands_total",
                "Commands decided by the writer.",
                self.commands.load(Relaxed),
            ),
            (
                "larder_events_appended_total",
                "Events appended to the log.",
                self.events.load(Relaxed),
            ),
            (
                "larder_ws_frames_total",
                "Frames queued to WebSocket connections.",
                self.ws_frames.load(Relaxed),
            ),
            (
                "larder_ws_slow_disconnects_total",
                "WebSocket connections cut off for not reading fast enough.",
                self.ws_slow_kicks.load(Relaxed),
            ),
            (
                "larder_ws_resyncs_total",
                "WebSocket resync answers.",
                self.ws_resyncs.load(Relaxed),
            ),
            (
                "larder_ws_refused_total",
                "WebSocket connections refused at the connection limit.",
                self.ws_refused.load(Relaxed),
            ),
            (
                "larder_pickup_lockouts_total",
                "Orders locked for manual pickup after too many wrong codes (alert on any).",
                self.pickup_lockouts.load(Relaxed),
            ),
            (
                "larder_rate_limited_total",
                "Requests refused with 429 by the per-caller and per-IP rate limits.",
                self.rate_limited.load(Relaxed),
            ),
            (
                "larder_snapshots_written_total",
                "State snapshots written since start.",
                self.snapshots_written.load(Relaxed),
            ),
            (
                "larder_pushes_sent_total",
                "Phone pushes of notifications handed to the push provider.",
                self.pushes_sent.load(Relaxed),
            ),
            (
                "larder_push_failures_total",
                "Failed phone-push tries (retried up to 5 times).",
                self.push_failures.load(Relaxed),
            ),
            (
                "larder_pushes_dropped_total",
                "Phone pushes dropped: push queue full, too many held, or out of tries.",
                self.pushes_dropped.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            counter(out, name, help, v);
        }
    }

    /// Where start-up came from and the snapshots written since.
    fn render_recovery(&self, out: &mut String) {
        for (name, help, g) in [
            (
                "larder_recovered_from_snapshot_seq",
                "Seq of the snapshot start-up loaded (0: the whole log was replayed).",
                &self.recovered_from_seq,
            ),
            (
                "larder_recovery_replayed_events",
                "Log events start-up replayed after the snapshot.",
                &self.recovery_replayed_events,
            ),
            (
                "larder_snapshot_seq",
                "Seq of the newest snapshot written since start (0: none yet).",
                &self.snapshot_seq,
            ),
            (
                "larder_log_sealed_seq",
                "Last log seq moved out of sled into sealed segment files (0: none).",
                &self.log_sealed_seq,
            ),
        ] {
            gauge(out, name, help, g.load(Relaxed));
        }
    }

    fn render_http(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP larder_http_responses_total HTTP responses by status class.\n# TYPE larder_http_responses_total counter");
        for (class, c) in [
            ("1xx", &self.http_1xx),
            ("2xx", &self.http_2xx),
            ("3xx", &self.http_3xx),
            ("4xx", &self.http_4xx),
            ("5xx", &self.http_5xx),
        ] {
            let _ = writeln!(
                out,
                "larder_http_responses_total{{class=\"{class}\"}} {}",
                c.load(Relaxed)
            );
        }
    }

    fn render_commit_histogram(&self, out: &mut String) {
        let name = "larder_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from taking a batch to its fsync.\n# TYPE {name} histogram"
        );
        for (i, bound) in COMMIT_BUCKETS_SECS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.commit_buckets[i].load(Relaxed)
            );
        }
        let batches = self.batches.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {batches}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.commit_micros_sum.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {batches}");
    }
}

impl Metrics {
    fn render_webhooks(&self, out: &mut String) {
        for (name, help, v) in [
            (
                "larder_webhook_deliveries_total",
                "Webhook deliveries answered with a 2xx.",
                &self.webhook_delivered,
            ),
            (
                "larder_webhook_attempts_failed_total",
                "Webhook attempts without a 2xx answer (each is retried).",
                &self.webhook_attempts_failed,
            ),
            (
                "larder_webhook_deliveries_failed_total",
                "Webhook deliveries given up after the retry window (alert on any).",
                &self.webhook_failed,
            ),
        ] {
            counter(out, name, help, v.load(Relaxed));
        }
        let backlog = self.webhook_backlog.load(Relaxed).max(0) as u64;
        gauge(
            out,
            "larder_webhook_backlog",
            "Webhook deliveries pending in the senders.",
            backlog,
        );
    }
}

impl Metrics {
    fn render_payments(&self, out: &mut String) {
        for (name, help, v) in [
            (
                "larder_payments_published_total",
                "Payment requests published and acknowledged by JetStream (republishes included).",
                &self.payments_published,
            ),
            (
                "larder_payment_publish_failures_total",
                "Payment request publishes that failed or were not acknowledged (published again).",
                &self.payment_publish_failures,
            ),
            (
                "larder_payment_results_recorded_total",
                "Payment results committed to the log (or found duplicate) and acked.",
                &self.payment_results_recorded,
            ),
            (
                "larder_payments_backlog_refusals_total",
                "New orders refused with 503 payments_backlog ([payments] max_backlog reached).",
                &self.payments_backlog_refusals,
            ),
        ] {
            counter(out, name, help, v.load(Relaxed));
        }
    }
}

pub(crate) fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}
