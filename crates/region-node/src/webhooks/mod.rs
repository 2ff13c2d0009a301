//! Webhooks for integrators (issue 14): a durable outbox fed by the
//! writer's committed feed, and one sender per endpoint.
//!
//! ```text
//! writer ──committed feed──▶ outbox task ──deliveries + cursor, 1 sync──▶ sled `webhooks`
//!                              │ (catches up from the log after a lag or a restart)
//!                              └──▶ sender per endpoint ──signed POST, retries──▶ integrator
//! ```
//!
//! - Never on the write path: the outbox task reads the feed (published
//!   after the fsync) and its own database; a slow disk here or a dead
//!   endpoint never delays a commit. Senders are independent tasks, so one
//!   endpoint never waits for another.
//! - Nothing committed is skipped: the cursor (the last log seq turned into
//!   deliveries) is stored with the deliveries in one synced batch; after a
//!   restart, or when the feed lagged, the task reads the log after the
//!   cursor. Which endpoints want an event is decided by seq
//!   (`district::webhooks::Endpoint::wants`), so catching up with today's
//!   registrations gives the same deliveries as the live feed did.
//! - At least once, in order per stream: see [`sender`].
//! - Registrations are district data (`district::webhooks`, in the log);
//!   deliveries are this node's outbox, not district data.

pub mod sender;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::{EventEnvelope, WebhookId};
use tokio::sync::{broadcast, mpsc};

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::metrics::Metrics;
use crate::store::LogReader;
use crate::writer::District;
use district::DistrictState;
use store::{Delivery, DeliveryState, DeliveryStore, DeliveryStoreError};

/// Log records read per step when catching up.
const CATCH_UP_RECORDS: usize = 1024;
/// Pause before trying again after the outbox could not be written.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Deliveries listed by the delivery log route, newest first.
pub const DELIVERY_LOG_LIMIT: usize = 100;

/// Why a redelivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("no delivery {1} for webhook endpoint {0}")]
    Unknown(String, u64),
    #[error("delivery {0} is still pending; it is retried on its own")]
    Pending(u64),
    #[error(transparent)]
    Store(#[from] DeliveryStoreError),
    #[error("the webhook outbox is not running")]
    Stopped,
}

/// The outbox as HTTP handlers see it: the delivery log and redelivery.
#[derive(Clone)]
pub struct Webhooks {
    store: DeliveryStore,
    clock: Clock,
    /// To the outbox task, which hands deliveries to the senders.
    requeue: mpsc::UnboundedSender<Delivery>,
}

impl Webhooks {
    /// Opens the outbox in `data_dir/webhooks` and spawns its task.
    pub fn start(
        data_dir: &Path,
        district: District,
        log: LogReader,
        clock: Clock,
        metrics: Arc<Metrics>,
        tasks: &crate::lifecycle::Lifecycle,
    ) -> Result<Self, crate::NodeError> {
        let store = DeliveryStore::open(&data_dir.join("webhooks"))
            .map_err(|e| crate::NodeError::Webhooks(e.to_string()))?;
        let transport =
            Arc::new(sender::Http::new().map_err(|e| crate::NodeError::Webhooks(e.to_string()))?);
        let (requeue, requeued) = mpsc::unbounded_channel();
        let outbox = Outbox {
            store: store.clone(),
            district,
            log,
            clock: clock.clone(),
            metrics,
            transport,
            senders: HashMap::new(),
            cursor: None,
        };
        tasks.spawn("webhook-outbox", |s| outbox.run(requeued, s));
        Ok(Webhooks {
            store,
            clock,
            requeue,
        })
    }

    /// An endpoint's newest deliveries, newest first.
    pub fn deliveries(&self, endpoint: &str) -> Result<Vec<Delivery>, DeliveryStoreError> {
        self.store.latest(endpoint, DELIVERY_LOG_LIMIT)
    }

    /// Sends a delivered or failed delivery again, with a new retry window
    /// (same body, same `Larder-Delivery` id).
    pub async fn redeliver(&self, endpoint: &str, seq: u64) -> Result<Delivery, RedeliverError> {
        let mut d = self
            .store
            .get(endpoint, seq)?
            .ok_or_else(|| RedeliverError::Unknown(endpoint.to_string(), seq))?;
        if d.state == DeliveryState::Pending {
            return Err(RedeliverError::Pending(seq));
        }
        let now = self.clock.now();
        d.state = DeliveryState::Pending;
        d.window_start = now;
        d.next_attempt_at = Some(now);
        self.store.put(&d).await?;
        self.requeue
            .send(d.clone())
            .map_err(|_| RedeliverError::Stopped)?;
        tracing::info!(endpoint, seq, "webhook redelivery queued");
        Ok(d)
    }
}

/// The outbox task's state.
struct Outbox {
    store: DeliveryStore,
    district: District,
    log: LogReader,
    clock: Clock,
    metrics: Arc<Metrics>,
    transport: Arc<sender::Http>,
    senders: HashMap<WebhookId, mpsc::UnboundedSender<Delivery>>,
    /// The last log seq taken, when it is ahead of the stored one: a move
    /// past events that made no deliveries is not synced (reading those
    /// events again after a crash makes nothing), so a busy district whose
    /// events no endpoint wants costs no fsync per batch. Written with the
    /// next deliveries, and at shutdown.
    cursor: Option<u64>,
}

impl Outbox {
    async fn run(
        mut self,
        mut requeued: mpsc::UnboundedReceiver<Delivery>,
        mut shutdown: Shutdown,
    ) {
        // Subscribed before catching up, so nothing falls between the two.
        let mut feed = self.district.subscribe_feed();
        let spawner = shutdown.clone();
        match self.store.pending() {
            Ok(pending) => {
                for d in pending {
                    self.dispatch(d, &spawner);
                }
            }
            Err(e) => tracing::error!(error = %e, "webhooks: pending deliveries not read"),
        }
        let mut behind = true;
        loop {
            if behind {
                tokio::select! {
                    r = self.catch_up(&spawner) => match r {
                        Ok(()) => behind = false,
                        Err(e) => {
                            tracing::error!(error = %e, "webhooks: catching up failed; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_DELAY) => {}
                                () = shutdown.triggered() => return,
                            }
                        }
                    },
                    () = shutdown.triggered() => return,
                }
                continue;
            }
            tokio::select! {
                batch = feed.recv() => match batch {
                    Ok(batch) => {
                        if let Err(e) = self.take(&batch.events, &batch.state, &spawner).await {
                            tracing::error!(error = %e, "webhooks: batch not queued; catching up from the log");
                            behind = true;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "webhooks: feed lagged; catching up from the log");
                        behind = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(d) = requeued.recv() => self.dispatch(d, &spawner),
                () = shutdown.triggered() => {
                    self.save_cursor().await;
                    return;
                }
            }
        }
    }

    /// Stores the cursor reached (shutdown), so the next start does not
    /// read those events again.
    async fn save_cursor(&mut self) {
        let Some(cursor) = self.cursor else { return };
        let saved = match self.store.advance_cursor(cursor) {
            Ok(()) => self.store.sync().await,
            Err(e) => Err(e),
        };
        match saved {
            Ok(()) => self.cursor = None,
            Err(e) => tracing::warn!(error = %e, "webhooks: cursor not saved"),
        }
    }

    /// The last log seq taken.
    fn cursor(&self) -> Result<u64, DeliveryStoreError> {
        match self.cursor {
            Some(c) => Ok(c),
            None => self.store.cursor(),
        }
    }

    /// Turns the log after the cursor into deliveries, up to the state
    /// published now (later batches come from the feed).
    async fn catch_up(&mut self, spawner: &Shutdown) -> Result<(), String> {
        let state = self.district.state();
        let upto = state.last_seq();
        loop {
            let cursor = self
                .skip_unwanted(&state, upto)
                .map_err(|e| e.to_string())?;
            if cursor >= upto {
                return Ok(());
            }
            let log = self.log.clone();
            let records =
                tokio::task::spawn_blocking(move || log.records(cursor, upto, CATCH_UP_RECORDS))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            let mut events = Vec::with_capacity(records.len());
            for (seq, bytes) in records {
                let env = protocol::codec::decode_log_record(&bytes)
                    .map_err(|e| format!("log record {seq}: {e}"))?;
                events.push(env);
            }
            if events.is_empty() {
                return Err(format!("log has no records after {cursor} up to {upto}"));
            }
            self.take(&events, &state, spawner)
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    /// Queues the deliveries of `events` (those after the cursor), moves the
    /// cursor past them, syncs once, then hands them to the senders (a
    /// batch that makes none moves the cursor without a sync). A batch
    /// that does not start right after the cursor is left to `catch_up`.
    async fn take(
        &mut self,
        events: &[EventEnvelope],
        state: &DistrictState,
        spawner: &Shutdown,
    ) -> Result<(), DeliveryStoreError> {
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let cursor = self.skip_unwanted(state, last)?;
        if last <= cursor {
            return Ok(());
        }
        let fresh: Vec<EventEnvelope> = events.iter().filter(|e| e.seq > cursor).cloned().collect();
        if fresh.first().map(|e| e.seq) != Some(cursor + 1) {
            return Err(DeliveryStoreError::Gap(
                cursor,
                fresh.first().map_or(0, |e| e.seq),
            ));
        }
        let now = self.clock.now();
        let mut new = vec![];
        for payload in district::webhooks::payloads(&fresh) {
            let body = payload.body.to_string();
            for endpoint in state.webhooks().iter() {
                if endpoint.wants(payload.family, payload.seq) {
                    new.push(Delivery::new(
                        endpoint.id().clone(),
                        &payload,
                        body.clone(),
                        now,
                    ));
                }
            }
        }
        if new.is_empty() {
            self.cursor = Some(last);
            return Ok(());
        }
        // The deliveries and the cursor past them: one batch, one sync.
        self.store.append(&new, last).await?;
        self.cursor = None;
        tracing::debug!(
            deliveries = new.len(),
            cursor = last,
            "webhooks: deliveries queued"
        );
        for d in new {
            self.dispatch(d, spawner);
        }
        Ok(())
    }

    /// The cursor, moved (in memory) up to the oldest endpoint's
    /// registration: no endpoint wants anything before it, so a node without
    /// endpoints reads and writes nothing. At most `upto`.
    fn skip_unwanted(
        &mut self,
        state: &DistrictState,
        upto: u64,
    ) -> Result<u64, DeliveryStoreError> {
        let floor = state
            .webhooks()
            .iter()
            .map(|e| e.registered_seq())
            .min()
            .unwrap_or(upto)
            .min(upto);
        let cursor = self.cursor()?;
        if cursor < floor {
            self.cursor = Some(floor);
            return Ok(floor);
        }
        Ok(cursor)
    }

    /// Hands a durable pending delivery to its endpoint's sender, starting
    /// the sender on first use.
    fn dispatch(&mut self, d: Delivery, spawner: &Shutdown) {
        let endpoint_id = d.endpoint_id.clone();
        let d = match self.senders.get(&endpoint_id) {
            Some(tx) => match tx.send(d) {
                Ok(()) => return,
                // Its sender ended (it only does at shutdown): start anew.
                Err(mpsc::error::SendError(d)) => d,
            },
            None => d,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = sender::Sender {
            endpoint_id: endpoint_id.clone(),
            transport: self.transport.clone(),
            store: self.store.clone(),
            district: self.district.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        };
        spawner.spawn("webhook-sender", move |s| sender::run(sender, rx, s));
        if let Err(e) = tx.send(d) {
            // Only if the sender ended at once (shutdown): the delivery is
            // durable and pending, so the next start sends it.
            tracing::warn!(endpoint = %endpoint_id, seq = e.0.seq, "webhooks: sender gone");
        }
        self.senders.insert(endpoint_id, tx);
    }
}
