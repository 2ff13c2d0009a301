//! Phone pushes for customers with no live socket.
//!
//! The push hub hands this task each notification whose customer has no
//! connection following orders, through a bounded queue it only
//! `try_send`s into (so neither the writer nor the hub ever waits here).
//! The task sends them through the configured [`PushProvider`] in order,
//! one at a time with a timeout; a failed push is retried every tick (up
//! to [`PUSH_ATTEMPTS`] times). A customer's pushes that fall in their
//! quiet hours (district-local, judged by the node's [`Clock`], so
//! `--dev-clock` moves it) are held, in order, and sent when they end; the
//! WebSocket stream is not affected.
//!
//! Known limits: what is queued or held here lives in memory only, so a
//! restart loses pushes not yet sent (the notifications themselves stay in
//! the log and at `GET /v1/me/notifications` for a day); at most
//! [`MAX_HELD_PUSHES`] wait at once (the oldest are dropped, with a
//! warning).

pub mod provider;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike;
use district::notifications::Notification;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::{NotificationsConfig, PushAdapter};
use crate::lifecycle::{Lifecycle, Shutdown};
use crate::metrics::Metrics;
use crate::writer::District;
pub use provider::{FilePush, LogPush, PhonePush, PushError, PushProvider};

/// How often held pushes are looked at (quiet hours ending, retries).
pub const PUSH_TICK_MS: u64 = 1_000;
/// Longest a provider may take for one push before it counts as failed.
pub const PUSH_TIMEOUT_MS: u64 = 5_000;
/// Tries per push before it is dropped.
pub const PUSH_ATTEMPTS: u32 = 5;
/// Most pushes held (quiet hours, retries) at once.
pub const MAX_HELD_PUSHES: usize = 10_000;

/// Starts the push task with the configured adapter; returns the queue
/// the hub feeds.
pub fn start(
    config: &NotificationsConfig,
    district: District,
    clock: Clock,
    utc_offset_minutes: i32,
    metrics: Arc<Metrics>,
    tasks: &Lifecycle,
) -> mpsc::Sender<Notification> {
    let (queue, inbox) = mpsc::channel(config.push_queue_notifications.max(1));
    let pusher = Pusher {
        district,
        clock,
        utc_offset_minutes,
        metrics,
        held: VecDeque::new(),
    };
    match (config.push, config.push_file.clone()) {
        (PushAdapter::File, Some(path)) => {
            tasks.spawn("phone-push", |s| pusher.run(FilePush { path }, inbox, s));
        }
        // `validate` refuses `file` without a path.
        _ => tasks.spawn("phone-push", |s| pusher.run(LogPush, inbox, s)),
    }
    queue
}

struct Held {
    notification: Notification,
    attempts: u32,
}

struct Pusher {
    district: District,
    clock: Clock,
    utc_offset_minutes: i32,
    metrics: Arc<Metrics>,
    /// Waiting pushes, in the order they came.
    held: VecDeque<Held>,
}

impl Pusher {
    async fn run<P: PushProvider>(
        mut self,
        mut provider: P,
        mut inbox: mpsc::Receiver<Notification>,
        mut shutdown: Shutdown,
    ) {
        tracing::info!(adapter = provider.name(), "phone pushes started");
        let mut tick = tokio::time::interval(Duration::from_millis(PUSH_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.triggered() => break,
                n = inbox.recv() => match n {
                    Some(notification) => self.hold(notification),
                    None => break,
                },
                _ = tick.tick() => {}
            }
            // Everything queued meanwhile joins first, in order.
            while let Ok(notification) = inbox.try_recv() {
                self.hold(notification);
            }
            self.flush(&mut provider).await;
        }
        if !self.held.is_empty() {
            tracing::warn!(held = self.held.len(), "phone pushes not sent at shutdown");
        }
    }

    fn hold(&mut self, notification: Notification) {
        if self.held.len() >= MAX_HELD_PUSHES {
            if let Some(old) = self.held.pop_front() {
                self.metrics.pushes_dropped.fetch_add(1, Relaxed);
                tracing::warn!(
                    notification = old.notification.id,
                    customer = %old.notification.customer,
                    "phone push dropped: too many held"
                );
            }
        }
        self.held.push_back(Held {
            notification,
            attempts: 0,
        });
    }

    /// Whether `customer` is in their quiet hours now.
    fn quiet(&self, state: &district::DistrictState, customer: &str) -> bool {
        let Some(q) = state.notifications().quiet_hours(customer) else {
            return false;
        };
        let local =
            self.clock.now() + chrono::Duration::minutes(i64::from(self.utc_offset_minutes));
        let minute = (local.hour() * 60 + local.minute()) as u16;
        q.contains(minute)
    }

    /// Sends what may go now, in order; keeps the quiet customers' and the
    /// failed ones (a customer's later pushes wait behind a failed one).
    async fn flush<P: PushProvider>(&mut self, provider: &mut P) {
        let state = self.district.state();
        let mut keep = VecDeque::new();
        let mut blocked: std::collections::HashSet<String> = Default::default();
        while let Some(mut h) = self.held.pop_front() {
            let customer = h.notification.customer.clone();
            if blocked.contains(&customer) || self.quiet(&state, &customer) {
                keep.push_back(h);
                continue;
            }
            let push = PhonePush {
                customer: customer.clone(),
                sent_at: self.clock.now(),
                notification: h.notification.to_json(),
            };
            let sent =
                tokio::time::timeout(Duration::from_millis(PUSH_TIMEOUT_MS), provider.send(&push))
                    .await
                    .unwrap_or_else(|_| Err(PushError::Provider("timed out".into())));
            match sent {
                Ok(()) => {
                    self.metrics.pushes_sent.fetch_add(1, Relaxed);
                    tracing::debug!(
                        notification = h.notification.id,
                        customer = %customer,
                        "phone push sent"
                    );
                }
                Err(e) => {
                    self.metrics.push_failures.fetch_add(1, Relaxed);
                    h.attempts += 1;
                    if h.attempts >= PUSH_ATTEMPTS {
                        self.metrics.pushes_dropped.fetch_add(1, Relaxed);
                        tracing::warn!(
                            notification = h.notification.id,
                            customer = %customer,
                            error = %e,
                            "phone push dropped after {PUSH_ATTEMPTS} attempts"
                        );
                    } else {
                        tracing::info!(
                            notification = h.notification.id,
                            customer = %customer,
                            error = %e,
                            "phone push failed; retrying"
                        );
                        blocked.insert(customer);
                        keep.push_back(h);
                    }
                }
            }
        }
        self.held = keep;
    }
}
