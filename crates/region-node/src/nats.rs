//! The NATS adapter: publishes the outbox to JetStream and feeds payment
//! results back to the writer.
//!
//! - **Relay**: the outbox is `DistrictState::outbox`, derived from the log,
//!   so a payment request exists exactly when the decision that needs it is
//!   durable. The relay publishes every pending request with `Nats-Msg-Id`
//!   and republishes it every [`REPUBLISH_SECS`] until its *result* is
//!   recorded (the row leaves the outbox), not merely until JetStream acks.
//! - **Results**: a durable pull consumer on this district's result subject;
//!   each result is committed through the writer *before* it is acked, so a
//!   crash means redelivery, which the decider treats as a duplicate.
//!
//! The outbox (`district::outbox`) is the one list of what is owed: order
//! charges and refunds and plan charges alike, each row keyed by what it
//! pays for; the relay publishes rows by their key's message id and never
//! looks at event kinds. Results go back as `Command::RecordPayment`, which
//! `district::outbox::record_result` routes to the schedule (plan charges)
//! or the order book.
//!
//! With NATS down the node keeps taking orders; requests wait in the outbox.
//!
//! On shutdown the relay abandons its round (what it did not publish is
//! still in the outbox after the restart) and the consumer stops pulling,
//! finishes the results in flight and flushes its acks.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish};
use bus::{request_subject, result_subject, PaymentRequest, PaymentResult};
use futures::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::lifecycle::Shutdown;
use crate::writer::{CommittedBatch, District, WriteError};
use district::Command;
use protocol::DistrictId;

/// Republish a pending request after this long without a result. Longer
/// than a loaded round trip (so a backlog does not cause republish storms),
/// shorter than JetStream's duplicate window (so republishes are de-duplicated
/// there; the payments book catches the rest).
pub const REPUBLISH_SECS: u64 = 30;
/// How often the relay rescans the whole outbox for requests to (re)publish.
pub const RESCAN_MS: u64 = 1_000;
/// Most requests published (and awaited) in one relay round.
pub const MAX_PUBLISH_PER_ROUND: usize = 4096;
/// Results committed at once (they share group commits).
pub const RESULT_CONCURRENCY: usize = 512;
/// Longest wait for buffered acks to reach NATS at shutdown.
const FINAL_FLUSH_MS: u64 = 1_000;
/// Pause before retrying NATS setup.
const RETRY_DELAY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct NatsLink {
    client: async_nats::Client,
}

impl NatsLink {
    /// Connects in the background (the node starts even if NATS is down)
    /// and spawns the relay and the result consumer, both stopped by
    /// `shutdown`.
    pub async fn start(
        servers: &[String],
        replicas: usize,
        district: District,
        district_id: DistrictId,
        shutdown: &Shutdown,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("larder-region-{district_id}"))
            .retry_on_initial_connect()
            .connect(servers)
            .await?;
        let js = jetstream::new(client.clone());
        let outlet = JetStream {
            client: client.clone(),
            js: js.clone(),
            subject: request_subject(&district_id),
            streams_ready: false,
            replicas,
        };
        let relay_district = district.clone();
        shutdown.spawn("payment-relay", |s| relay(outlet, relay_district, s));
        let results_client = client.clone();
        shutdown.spawn("payment-results", |s| {
            consume_results(results_client, js, replicas, district, district_id, s)
        });
        Ok(NatsLink { client })
    }

    /// `connected`, `disconnected` or `pending`, for `/readyz`.
    pub fn state(&self) -> &'static str {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => "connected",
            async_nats::connection::State::Disconnected => "disconnected",
            async_nats::connection::State::Pending => "pending",
        }
    }
}

/// New outbox rows in a committed batch: the requests it just asked for,
/// as the outbox itself says (rows requested by the batch's events).
fn new_requests(batch: &CommittedBatch) -> Vec<(String, PaymentRequest)> {
    let Some(first) = batch.events.first() else {
        return vec![];
    };
    batch
        .state
        .outbox()
        .requested_after(first.seq.saturating_sub(1))
        .map(|(key, req)| (key.msg_id(), req.clone()))
        .collect()
}

/// Where the relay sends payment requests: JetStream in the node, a
/// recorder in tests (which run the relay under paused time).
pub trait Outlet: Send {
    /// Whether requests can be sent now.
    fn ready(&mut self) -> impl Future<Output = bool> + Send;
    /// Publishes one request under its message id; `Ok` once the broker
    /// has stored it.
    fn publish(
        &self,
        id: &str,
        request: &PaymentRequest,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The district's request subject on JetStream.
struct JetStream {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    streams_ready: bool,
    replicas: usize,
}

impl Outlet for JetStream {
    async fn ready(&mut self) -> bool {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected && !self.streams_ready {
            match bus::ensure_streams(&self.js, self.replicas).await {
                Ok(_) => self.streams_ready = true,
                Err(e) => tracing::warn!(error = %e, "relay: streams not ready"),
            }
        }
        connected && self.streams_ready
    }

    async fn publish(&self, id: &str, request: &PaymentRequest) -> Result<(), String> {
        let bytes = protocol::codec::to_postcard(request).map_err(|e| e.to_string())?;
        let ack = self
            .js
            .send_publish(
                self.subject.clone(),
                Publish::build().payload(bytes.into()).message_id(id),
            )
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Publishes the outbox through `outlet` until `shutdown`.
pub async fn relay<O: Outlet>(outlet: O, district: District, mut shutdown: Shutdown) {
    let mut feed = district.subscribe_feed();
    let mut relay = Relay {
        outlet,
        district,
        published: HashMap::new(),
        fresh: vec![],
        rescan_due: true,
    };
    let mut rescan = tokio::time::interval(Duration::from_millis(RESCAN_MS));
    loop {
        // A round cut short loses nothing: unpublished rows stay in the
        // outbox, and a publish that did land is deduplicated by its id.
        tokio::select! {
            () = relay.round() => {}
            () = shutdown.triggered() => return,
        }
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => relay.fresh.extend(new_requests(&batch)),
                Err(broadcast::error::RecvError::Lagged(_)) => relay.rescan_due = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = rescan.tick() => relay.rescan_due = true,
            () = shutdown.triggered() => return,
        }
        // Take whatever else is already waiting, so one round serves many batches.
        while let Ok(batch) = feed.try_recv() {
            relay.fresh.extend(new_requests(&batch));
        }
    }
}

struct Relay<O> {
    outlet: O,
    district: District,
    /// When each pending request was last published.
    published: HashMap<String, Instant>,
    /// Requests from the feed, published promptly; everything else is
    /// found by the periodic rescan (start-up, reconnects, lag, republish).
    fresh: Vec<(String, PaymentRequest)>,
    rescan_due: bool,
}

impl<O: Outlet> Relay<O> {
    async fn round(&mut self) {
        if !self.outlet.ready().await {
            // Nothing can be sent; the rescan after reconnecting finds it all.
            self.fresh.clear();
            self.rescan_due = true;
            return;
        }
        let mut due = std::mem::take(&mut self.fresh);
        if self.rescan_due {
            self.rescan_due = false;
            let state = self.district.state();
            let pending: HashSet<String> =
                state.outbox().iter().map(|(key, _)| key.msg_id()).collect();
            self.published.retain(|id, _| pending.contains(id));
            let republish = Duration::from_secs(REPUBLISH_SECS);
            let published = &self.published;
            due.extend(
                state
                    .outbox()
                    .iter()
                    .map(|(key, req)| (key.msg_id(), req))
                    .filter(|(id, _)| published.get(id).is_none_or(|at| at.elapsed() >= republish))
                    .take(MAX_PUBLISH_PER_ROUND)
                    .map(|(id, req)| (id, req.clone())),
            );
        }
        // Send them all, then await the acks: one round trip per round,
        // not per request.
        let outlet = &self.outlet;
        let sends = due
            .into_iter()
            .map(|(id, req)| async move { outlet.publish(&id, &req).await.map(|()| id) });
        let round = futures::future::join_all(sends).await;
        tracing::debug!(
            requests = round.len(),
            published = self.published.len(),
            "relay round"
        );
        for result in round {
            match result {
                Ok(id) => {
                    // A crash with the request on JetStream but not marked published here.
                    fail::fail_point!("relay-after-publish-before-mark", |_| std::process::abort());
                    self.published.insert(id, Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay: publish failed; will retry");
                    self.rescan_due = true;
                }
            }
        }
    }
}

fn pickup_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
}

async fn consume_results(
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
    district: District,
    district_id: DistrictId,
    mut shutdown: Shutdown,
) {
    let consumer_name = bus::result_consumer(&district_id);
    loop {
        let messages = async {
            let (_, results) = bus::ensure_streams(&js, replicas).await?;
            let consumer =
                bus::durable_consumer(&results, &consumer_name, result_subject(&district_id))
                    .await?;
            Ok::<_, async_nats::Error>(bus::pull(&consumer).await?)
        };
        let messages = tokio::select! {
            m = messages => m,
            () = shutdown.triggered() => break,
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "results: NATS not ready");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_DELAY) => continue,
                    () = shutdown.triggered() => break,
                }
            }
        };
        let district = Arc::new(district.clone());
        // At the signal the stream ends: no new result is pulled, and the
        // ones in flight are committed and acked before this returns.
        let mut stop = shutdown.clone();
        messages
            .take_until(async move { stop.triggered().await })
            .for_each_concurrent(RESULT_CONCURRENCY, |msg| {
                let district = district.clone();
                async move {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "results: delivery error");
                            return;
                        }
                    };
                    let result: PaymentResult = match protocol::codec::from_postcard(&msg.payload) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "results: undecodable result dropped");
                            let _ = msg.ack().await;
                            return;
                        }
                    };
                    let order_id = result.order_id.clone();
                    let cmd = Command::RecordPayment { result, pickup_code: pickup_code() };
                    match district.submit(cmd).await {
                        Ok(_) => {}
                        // Durable already or meaningless here: either way done.
                        Err(WriteError::Domain(e)) => tracing::warn!(%order_id, error = %e, "results: result refused"),
                        Err(e @ (WriteError::Unavailable(_) | WriteError::ShuttingDown)) => {
                            tracing::error!(%order_id, error = %e, "results: not recorded; left for redelivery");
                            return;
                        }
                    }
                    // A crash with the result in the log but the message not acked.
                    fail::fail_point!("results-after-record-before-ack", |_| std::process::abort());
                    if let Err(e) = msg.ack().await {
                        tracing::warn!(%order_id, error = %e, "results: ack failed; redelivery is harmless");
                    }
                }
            })
            .await;
        tokio::select! {
            () = tokio::time::sleep(RETRY_DELAY) => {}
            () = shutdown.triggered() => break,
        }
    }
    // Acks are buffered by the client; send them before the process exits
    // (one lost is only a redelivery, which the decider ignores), but do not
    // hold the shutdown for a broker that is not there.
    if client.connection_state() == async_nats::connection::State::Connected {
        let flush = tokio::time::timeout(Duration::from_millis(FINAL_FLUSH_MS), client.flush());
        if !matches!(flush.await, Ok(Ok(()))) {
            tracing::debug!("results: final flush of acks did not complete");
        }
    }
}
