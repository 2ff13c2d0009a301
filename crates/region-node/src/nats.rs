//! The NATS adapter: publishes the outbox to JetStream and feeds payment
//! results back to the writer.
//!
//! - **Relay**: the outbox is `DistrictState::outbox`, derived from the log,
//!   so a payment request exists exactly when the decision that needs it is
//!   durable. The relay publishes every pending request and republishes it
//!   every [`REPUBLISH_SECS`] until its *result* is recorded (the row leaves
//!   the outbox), not merely until JetStream acks. A round packs its due
//!   requests into batch messages (`bus::batch`: up to
//!   `bus::MAX_REQUESTS_PER_MESSAGE` each, `Nats-Msg-Id` = the hash of their
//!   request ids), because nats-server fsyncs every stored message: one
//!   fsync for hundreds of requests, not one each. It hands the messages to
//!   the client one after another without waiting for the broker, then
//!   awaits their acks together, with at most [`MAX_PUBLISH_IN_FLIGHT`]
//!   messages unacknowledged at once; every request of a message is marked
//!   published when that message's ack lands. Republishing is per request:
//!   a republished request goes in whatever message its round builds, so a
//!   request may reach the payments service in two different messages,
//!   which is harmless (its book answers a repeat with the recorded
//!   outcome). The payments service must be one that reads batches (deploy
//!   it first; see `bus::batch`).
//! - **Results**: a durable pull consumer on this district's result subject,
//!   fetched [`RESULT_FETCH_BATCH`] messages at a time; a message holds one
//!   result (the first shape, from older payments services or answering a
//!   single request) or a batch of them. The messages ready together (up to
//!   [`RESULT_BATCH`]) have all their results submitted to the writer
//!   together, on its background lane (a customer's confirm goes before
//!   them: see `writer`), so they share group commits, and a message is
//!   acked only after *all* its results are durable, so a crash means
//!   redelivery, which the decider treats as a duplicate (as it does a
//!   result it no longer owes). An ack is a plain publish the client
//!   buffers: no round trip per message.
//!
//! The outbox (`district::outbox`) is the one list of what is owed: order
//! charges and refunds and plan charges alike, each row keyed by what it
//! pays for; the relay publishes rows by their key's message id and never
//! looks at event kinds. Results go back as `Command::RecordPayment`, which
//! `district::outbox::record_result` routes to the schedule (plan charges)
//! or the order book.
//!
//! With NATS down the node keeps taking orders; requests wait in the outbox
//! until it holds `[payments] max_backlog` of them, after which new orders
//! are refused (503 `payments_backlog`, see `http::orders`).
//!
//! On shutdown the relay abandons its round (what it did not publish, or
//! published without an ack yet, is still in the outbox after the restart
//! and is published again under the same id) and the consumer stops
//! pulling, finishes the batches in flight (commit, then ack) and flushes
//! its acks.

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use bus::{request_subject, result_subject, PaymentRequest};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::Rng;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::lifecycle::Shutdown;
use crate::metrics::Metrics;
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
/// Most requests a rescan adds to one relay round.
pub const MAX_PUBLISH_PER_ROUND: usize = 4096;
/// Most messages sent and not yet acknowledged by JetStream at once (each
/// holds up to `bus::MAX_REQUESTS_PER_MESSAGE` requests): a round's acks
/// are awaited together, but a broker that stopped answering must not
/// collect an unbounded pile of pending acks (each holds an inbox and times
/// out on its own).
pub const MAX_PUBLISH_IN_FLIGHT: usize = 1024;
/// Result messages the consumer asks JetStream for in one pull request.
/// Below the server's default `max_ack_pending` (1,000), so a second pull
/// can be under way while the first batch is committed.
pub const RESULT_FETCH_BATCH: usize = 500;
/// Most result messages committed (and then acked) as one batch: those
/// delivered and ready together, up to this many (each holds up to
/// `bus::MAX_REQUESTS_PER_MESSAGE` results).
pub const RESULT_BATCH: usize = 256;
/// Result batches being committed at once; with [`RESULT_BATCH`] this
/// bounds the results waiting for the writer.
pub const RESULT_BATCHES_IN_FLIGHT: usize = 4;
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
        metrics: Arc<Metrics>,
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
        let (relay_district, relay_metrics) = (district.clone(), metrics.clone());
        shutdown.spawn("payment-relay", |s| {
            relay(outlet, relay_district, relay_metrics, s)
        });
        let consumer = ResultConsumer {
            client: client.clone(),
            js,
            replicas,
            district,
            district_id,
            metrics,
        };
        shutdown.spawn("payment-results", |s| consumer.run(s));
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
    /// Resolves once the broker has stored one sent message (`Ok`), or
    /// refused or lost it.
    type Ack: Future<Output = Result<(), String>> + Send + 'static;
    /// Whether requests can be sent now.
    fn ready(&mut self) -> impl Future<Output = bool> + Send;
    /// Hands one message holding `requests` (each with its request id; at
    /// most [`Self::max_requests_per_message`], within
    /// `bus::MAX_BATCH_PAYLOAD_BYTES`) to the broker, without waiting for
    /// the broker's answer: that is the returned [`Self::Ack`].
    fn send(
        &self,
        requests: &[(String, PaymentRequest)],
    ) -> impl Future<Output = Result<Self::Ack, String>> + Send;
    /// Most messages awaiting their ack at once.
    fn max_in_flight(&self) -> usize {
        MAX_PUBLISH_IN_FLIGHT
    }
    /// Most requests the relay puts in one message.
    fn max_requests_per_message(&self) -> usize {
        bus::MAX_REQUESTS_PER_MESSAGE
    }
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
    type Ack = BoxFuture<'static, Result<(), String>>;

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

    async fn send(&self, requests: &[(String, PaymentRequest)]) -> Result<Self::Ack, String> {
        let payload: Vec<&PaymentRequest> = requests.iter().map(|(_, r)| r).collect();
        let bytes = bus::encode_batch(&payload).map_err(|e| e.to_string())?;
        let msg_id = bus::batch_msg_id(requests.iter().map(|(id, _)| id.as_str()));
        // Waits only for room in the client's send queue, not for the broker.
        let ack = self
            .js
            .send_publish(self.subject.clone(), bus::batch_publish(bytes, &msg_id))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ack
            .into_future()
            .map(|stored| stored.map(|_| ()).map_err(|e| e.to_string()))
            .boxed())
    }
}

/// Publishes the outbox through `outlet` until `shutdown`.
pub async fn relay<O: Outlet>(
    outlet: O,
    district: District,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let mut feed = district.subscribe_feed();
    let mut relay = Relay {
        outlet,
        district,
        metrics,
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
    metrics: Arc<Metrics>,
    /// When each pending request was last published.
    published: HashMap<String, Instant>,
    /// Requests from the feed, published promptly; everything else is
    /// found by the periodic rescan (start-up, reconnects, lag, republish).
    fresh: Vec<(String, PaymentRequest)>,
    rescan_due: bool,
}

/// What one round's publishes came to.
#[derive(Default)]
struct RoundOutcome {
    stored: usize,
    failed: usize,
    first_error: Option<String>,
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
            due.extend(self.rescan());
        }
        // A fresh request is also found by a rescan in the same round: one
        // copy per message is enough.
        let mut seen = HashSet::with_capacity(due.len());
        due.retain(|(id, _)| seen.insert(id.clone()));
        if due.is_empty() {
            return;
        }
        let requests = due.len();
        let outcome = self.publish(due).await;
        self.metrics
            .payments_published
            .fetch_add(outcome.stored as u64, Relaxed);
        self.metrics
            .payment_publish_failures
            .fetch_add(outcome.failed as u64, Relaxed);
        tracing::debug!(
            requests,
            stored = outcome.stored,
            failed = outcome.failed,
            published = self.published.len(),
            "relay round"
        );
        if let Some(error) = outcome.first_error {
            tracing::warn!(failed = outcome.failed, %error, "relay: publishes failed; will retry");
            self.rescan_due = true;
        }
    }

    /// Pending requests never published, or published longer than
    /// [`REPUBLISH_SECS`] ago without a result; forgets the published
    /// marks of rows that have left the outbox.
    fn rescan(&mut self) -> Vec<(String, PaymentRequest)> {
        let state = self.district.state();
        let pending: HashSet<String> = state.outbox().iter().map(|(key, _)| key.msg_id()).collect();
        self.published.retain(|id, _| pending.contains(id));
        let republish = Duration::from_secs(REPUBLISH_SECS);
        let published = &self.published;
        state
            .outbox()
            .iter()
            .map(|(key, req)| (key.msg_id(), req))
            .filter(|(id, _)| published.get(id).is_none_or(|at| at.elapsed() >= republish))
            .take(MAX_PUBLISH_PER_ROUND)
            .map(|(id, req)| (id, req.clone()))
            .collect()
    }

    /// Packs the requests into messages (by count and bytes,
    /// `bus::batch_ranges`) and sends every message without waiting for
    /// the broker, then awaits the acks together; at most `max_in_flight`
    /// messages are unacknowledged at once (at the limit, the next send
    /// waits for the oldest outstanding ack to land, whichever does first).
    /// A request is marked published only once its message's ack is in.
    async fn publish(&mut self, due: Vec<(String, PaymentRequest)>) -> RoundOutcome {
        let limit = self.outlet.max_in_flight().max(1);
        let mut outcome = RoundOutcome::default();
        let requests: Vec<&PaymentRequest> = due.iter().map(|(_, r)| r).collect();
        let ranges = match bus::batch_ranges(&requests, self.outlet.max_requests_per_message()) {
            Ok(ranges) => ranges,
            Err(e) => {
                outcome.failed = due.len();
                outcome.first_error = Some(e.to_string());
                return outcome;
            }
        };
        let mut acks = FuturesUnordered::new();
        let mut due = due.into_iter();
        for range in ranges {
            if acks.len() >= limit {
                if let Some(acked) = acks.next().await {
                    self.mark(acked, &mut outcome);
                }
            }
            let message: Vec<_> = due.by_ref().take(range.len()).collect();
            match self.outlet.send(&message).await {
                Ok(ack) => {
                    let ids: Vec<String> = message.into_iter().map(|(id, _)| id).collect();
                    acks.push(async move { (ids, ack.await) })
                }
                Err(e) => {
                    // The client's queue is closed or stuck: the rest would
                    // fail the same way. The next rescan finds them.
                    outcome.failed += message.len();
                    outcome.first_error.get_or_insert(e);
                    break;
                }
            }
        }
        while let Some(acked) = acks.next().await {
            self.mark(acked, &mut outcome);
        }
        outcome
    }

    /// Marks every request of an acknowledged message published.
    fn mark(
        &mut self,
        (ids, stored): (Vec<String>, Result<(), String>),
        outcome: &mut RoundOutcome,
    ) {
        match stored {
            Ok(()) => {
                // A crash with the requests on JetStream but not marked published here.
                fail::fail_point!("relay-after-publish-before-mark", |_| std::process::abort());
                outcome.stored += ids.len();
                let now = Instant::now();
                for id in ids {
                    self.published.insert(id, now);
                }
            }
            Err(e) => {
                outcome.failed += ids.len();
                outcome.first_error.get_or_insert(e);
            }
        }
    }
}

fn pickup_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
}

/// One delivered result message (one result, or a batch of them):
/// JetStream's message in the node, a fake in tests.
pub trait Delivery: Send + Sync + 'static {
    fn payload(&self) -> &[u8];
    /// Its headers; `bus::BATCH_HEADER` marks a batch.
    fn headers(&self) -> Option<&async_nats::HeaderMap>;
    /// Tells the broker the result is done with; it is not delivered again.
    fn ack(&self) -> impl Future<Output = Result<(), String>> + Send;
}

impl Delivery for jetstream::Message {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn headers(&self) -> Option<&async_nats::HeaderMap> {
        self.headers.as_ref()
    }

    async fn ack(&self) -> Result<(), String> {
        // A publish to the reply subject, buffered by the client: no round trip.
        jetstream::Message::ack(self)
            .await
            .map_err(|e| e.to_string())
    }
}

/// How a batch of result messages ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResultsRecorded {
    /// Results durable now (recorded, or found duplicate or meaningless).
    pub recorded: usize,
    /// Undecodable messages: dropped and acked.
    pub dropped: usize,
    /// Results not recorded (the writer is stopping or failed): their
    /// messages are not acked, so JetStream delivers them again.
    pub left: usize,
    /// Messages acked: every result in them durable, or undecodable.
    pub acked: usize,
}

/// Submits every result of every message of `batch` to the writer at once
/// (they land in the same group commits), waits until all are durable, then
/// acks each message all of whose results are: a message is never acked
/// before the commits that record all its results.
pub async fn record_results<D: Delivery>(district: &District, batch: Vec<D>) -> ResultsRecorded {
    let mut done = ResultsRecorded::default();
    let mut acks: Vec<D> = Vec::with_capacity(batch.len());
    // Each decodable message with its results' index range in `commits`.
    let mut messages = Vec::with_capacity(batch.len());
    let mut commits = Vec::with_capacity(batch.len());
    for delivery in batch {
        match bus::decode_results(delivery.headers(), delivery.payload()) {
            Ok((_, results)) => {
                let start = commits.len();
                for result in results {
                    commits.push(async move {
                        let order_id = result.order_id.clone();
                        let cmd = Command::RecordPayment {
                            result,
                            pickup_code: pickup_code(),
                        };
                        (order_id, district.submit_background(cmd).await)
                    });
                }
                messages.push((delivery, start..commits.len()));
            }
            Err(e) => {
                tracing::error!(error = %e, "results: undecodable result message dropped");
                done.dropped += 1;
                acks.push(delivery);
            }
        }
    }
    let mut durable = Vec::with_capacity(commits.len());
    for (order_id, committed) in futures::future::join_all(commits).await {
        durable.push(match committed {
            Ok(_) => true,
            // Durable already or meaningless here: either way done.
            Err(WriteError::Domain(e)) => {
                tracing::warn!(%order_id, error = %e, "results: result refused");
                true
            }
            Err(e @ (WriteError::Unavailable(_) | WriteError::ShuttingDown)) => {
                tracing::error!(%order_id, error = %e, "results: not recorded; left for redelivery");
                false
            }
        });
    }
    done.recorded = durable.iter().filter(|d| **d).count();
    done.left = durable.len() - done.recorded;
    for (delivery, results) in messages {
        // One result left means the whole message comes back; the others
        // in it are then duplicates, which the decider ignores.
        if durable[results].iter().all(|d| *d) {
            acks.push(delivery);
        }
    }
    // A crash with the results in the log but the messages not acked.
    fail::fail_point!("results-after-record-before-ack", |_| std::process::abort());
    for delivery in &acks {
        if let Err(e) = delivery.ack().await {
            tracing::warn!(error = %e, "results: ack failed; redelivery is harmless");
        }
    }
    done.acked = acks.len();
    done
}

/// The result consumer's connection and where results go.
struct ResultConsumer {
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
    district: District,
    district_id: DistrictId,
    metrics: Arc<Metrics>,
}

impl ResultConsumer {
    async fn run(self, mut shutdown: Shutdown) {
        loop {
            let messages = tokio::select! {
                m = self.messages() => m,
                () = shutdown.triggered() => break,
            };
            match messages {
                Ok(messages) => self.consume(messages, &shutdown).await,
                Err(e) => tracing::warn!(error = %e, "results: NATS not ready"),
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_DELAY) => {}
                () = shutdown.triggered() => break,
            }
        }
        // Acks are buffered by the client; send them before the process exits
        // (one lost is only a redelivery, which the decider ignores), but do not
        // hold the shutdown for a broker that is not there.
        if self.client.connection_state() == async_nats::connection::State::Connected {
            let flush =
                tokio::time::timeout(Duration::from_millis(FINAL_FLUSH_MS), self.client.flush());
            if !matches!(flush.await, Ok(Ok(()))) {
                tracing::debug!("results: final flush of acks did not complete");
            }
        }
    }

    /// The district's result consumer, pulled [`RESULT_FETCH_BATCH`] at a
    /// time with `bus`'s pull timing.
    async fn messages(&self) -> Result<consumer::pull::Stream, async_nats::Error> {
        let (_, results) = bus::ensure_streams(&self.js, self.replicas).await?;
        let name = bus::result_consumer(&self.district_id);
        let consumer =
            bus::durable_consumer(&results, &name, result_subject(&self.district_id)).await?;
        Ok(consumer
            .stream()
            .max_messages_per_batch(RESULT_FETCH_BATCH)
            .expires(Duration::from_secs(bus::PULL_EXPIRES_SECS))
            .heartbeat(Duration::from_secs(bus::PULL_HEARTBEAT_SECS))
            .messages()
            .await?)
    }

    /// Commits and acks results in batches until the stream breaks or the
    /// signal. At the signal no new result is pulled, and the batches in
    /// flight are committed and acked before this returns.
    async fn consume(&self, messages: consumer::pull::Stream, shutdown: &Shutdown) {
        let mut stop = shutdown.clone();
        messages
            .take_until(async move { stop.triggered().await })
            .filter_map(|msg| async move {
                msg.map_err(|e| tracing::warn!(error = %e, "results: delivery error"))
                    .ok()
            })
            .ready_chunks(RESULT_BATCH)
            .for_each_concurrent(RESULT_BATCHES_IN_FLIGHT, |batch| async move {
                let done = record_results(&self.district, batch).await;
                self.metrics
                    .payment_results_recorded
                    .fetch_add(done.recorded as u64, Relaxed);
                tracing::debug!(
                    recorded = done.recorded,
                    dropped = done.dropped,
                    left = done.left,
                    acked = done.acked,
                    "results batch"
                );
            })
            .await;
    }
}
