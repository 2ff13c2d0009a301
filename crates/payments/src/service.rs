//! The consume → decide → record → publish → ack loop, a batch at a time.
//!
//! Requests come through one durable pull consumer that every instance
//! shares (`bus::request_consumer`), pulled up to `bus::REQUEST_BATCH_MAX`
//! at a time (the next pull goes out when half of one has arrived). What
//! has arrived, up to that many, is one batch: a lone request is not held
//! back waiting for others. Up to [`BATCHES_IN_FLIGHT`] batches run at once.
//!
//! Order of effects for a batch, and why it is safe to crash anywhere:
//! 1. each request id's outcome already in the book (a redelivery, a
//!    replay, another delivery of it in this batch) is taken from there;
//! 2. the others are asked of the provider (idempotent per order id),
//!    [`PROVIDER_CALLS_IN_FLIGHT`] at a time;
//! 3. the new outcomes are recorded in the book, all with ONE flush +
//!    `fdatasync` (`Book::record_many`, group-committed with concurrent
//!    batches), which also makes the outcomes found in 1 durable (a found
//!    record may be a concurrent batch's that is still waiting for its
//!    sync);
//! 4. every result is published with `Nats-Msg-Id` = the request id: all
//!    are sent before JetStream's acks are awaited, together;
//! 5. each request whose result JetStream acknowledged is acked; one whose
//!    publish failed is nak'd to come back in a second; one without an
//!    outcome (provider or book unavailable) comes back after `ack_wait`.
//!
//! Nothing is published before 3 returns, and no request is acked before
//! its result is on the stream. A crash before 5 means redelivery, which
//! lands in 1 or, before 3, in 2 where the provider's idempotency key
//! prevents a second capture. A result published twice carries the same
//! msg id, so JetStream keeps one (2 min window; later, the node's outbox
//! no longer owes it and ignores the repeat).
//! `tests/tests/failpoints.rs` crashes the service between 2 and 3 and
//! between 3 and 4 (failpoints, feature `failpoints`), with its batch.
//!
//! Several instances: each has its own book, which answers only what that
//! instance decided. A request JetStream hands to another instance (after
//! `ack_wait` without an ack, or a crash) is decided there again, and what
//! keeps the card from being charged twice is the processor's idempotency
//! key, as with a real card processor. So instances must share one
//! processor (`--processor-url`, e.g. `payments sandbox-processor`), never
//! run their own in-process sandbox each. Both answer with the same msg id
//! and the stream keeps one result. `tests/tests/payments_scale.rs` runs
//! two instances racing on one request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{MessagesError, Stream as PullStream};
use async_nats::jetstream::context::{Publish, PublishAckFuture};
use async_nats::jetstream::{self, AckKind};
use bus::{result_subject, PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use futures::StreamExt;

use crate::book::Book;
use crate::provider::{Provider, ProviderError, ProviderOutcome};

/// Batches handled at once: while one waits on the provider, the book's
/// sync or JetStream's acks, the next is decided.
pub const BATCHES_IN_FLIGHT: usize = 4;
/// Provider calls of one batch made at once (each mostly waits on the
/// processor).
pub const PROVIDER_CALLS_IN_FLIGHT: usize = 256;
/// Pause before retrying NATS setup after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// A request whose result could not be published (a NATS server lost, a
/// stream leader moving) comes back after this long, not after the
/// consumer's whole `ack_wait`: the outcome is in the book, so the retry
/// only publishes it.
const REDELIVER_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct Service<P> {
    js: jetstream::Context,
    book: Book,
    provider: Arc<P>,
    seen: sled::Tree,
    /// Copies of the payment streams if this service creates them.
    replicas: usize,
    /// How long a delivered request may go unacknowledged before JetStream
    /// hands it out again (the consumer's `ack_wait`).
    ack_wait: Duration,
}

/// The distinct requests of a batch and the deliveries of each.
#[derive(Default)]
struct Batch {
    requests: Vec<Request>,
    /// Each delivered message with the index of its request.
    deliveries: Vec<(jetstream::Message, usize)>,
}

struct Request {
    req: PaymentRequest,
    msg_id: String,
}

/// What became of a request's result.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// On the result stream: ack.
    Published,
    /// Decided and durable, not published: nak, back in a second.
    PublishFailed,
    /// No durable outcome: no ack, back after `ack_wait`.
    Unanswered,
}

impl<P: Provider> Service<P> {
    pub fn new(
        client: async_nats::Client,
        book: Book,
        provider: Arc<P>,
    ) -> Result<Self, sled::Error> {
        let seen = book.db().open_tree("requests_seen")?;
        Ok(Service {
            js: jetstream::new(client),
            book,
            provider,
            seen,
            replicas: 1,
            ack_wait: Duration::from_secs(bus::ACK_WAIT_SECS),
        })
    }

    /// Creates the payment streams with `replicas` copies (3 on a NATS
    /// cluster) if they do not exist yet.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Sets the request consumer's `ack_wait` (default
    /// `bus::ACK_WAIT_SECS`); every instance should use the same.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// How many times a request id was delivered here.
    pub fn times_seen(seen: &sled::Tree, msg_id: &str) -> u64 {
        seen.get(msg_id)
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    }

    /// Runs until the process stops; reconnects and re-subscribes by itself.
    pub async fn run(self: Arc<Self>) {
        loop {
            let messages = match self.subscribe().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "payments: cannot consume requests yet");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            tracing::info!(
                batch_max = bus::REQUEST_BATCH_MAX,
                batches_in_flight = BATCHES_IN_FLIGHT,
                ack_wait_ms = self.ack_wait.as_millis() as u64,
                "payments: consuming requests"
            );
            messages
                .ready_chunks(bus::REQUEST_BATCH_MAX)
                .for_each_concurrent(BATCHES_IN_FLIGHT, |delivered| {
                    let this = self.clone();
                    async move { this.handle_batch(delivered).await }
                })
                .await;
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    async fn subscribe(&self) -> Result<PullStream, async_nats::Error> {
        let (requests, _) = bus::ensure_streams(&self.js, self.replicas).await?;
        let consumer = bus::request_consumer(&requests, self.ack_wait).await?;
        Ok(bus::pull_batches(&consumer, bus::REQUEST_BATCH_MAX).await?)
    }

    async fn handle_batch(&self, delivered: Vec<Result<jetstream::Message, MessagesError>>) {
        let batch = self.read(delivered).await;
        if batch.requests.is_empty() {
            return;
        }
        let answers = self.answers(&batch.requests).await;
        if answers.iter().any(Option::is_some) {
            // A crash with the outcomes durable but neither published nor acked.
            fail::fail_point!("payments-after-record-before-ack", |_| {
                std::process::abort()
            });
        }
        let fates = self.publish(&batch.requests, &answers).await;
        let published = fates.iter().filter(|f| **f == Fate::Published).count();
        let approved = answers
            .iter()
            .flatten()
            .filter(|r| Book::is_approved(r))
            .count();
        let deliveries = batch.deliveries.len();
        self.settle(batch.deliveries, &fates).await;
        tracing::info!(
            deliveries,
            requests = batch.requests.len(),
            published,
            approved,
            "payments: batch answered"
        );
    }

    /// Decodes a batch's deliveries, counts each in `requests_seen` and
    /// gathers deliveries of the same request id (decided once).
    async fn read(&self, delivered: Vec<Result<jetstream::Message, MessagesError>>) -> Batch {
        let mut batch = Batch::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        for msg in delivered {
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::warn!(error = %e, "payments: delivery error");
                    continue;
                }
            };
            let req: PaymentRequest = match protocol::codec::from_postcard(&msg.payload) {
                Ok(r) => r,
                Err(e) => {
                    // A message we cannot read will not get better: drop it loudly.
                    tracing::error!(error = %e, subject = %msg.subject, "payments: undecodable request dropped");
                    let _ = msg.ack().await;
                    continue;
                }
            };
            let msg_id = req.msg_id();
            self.count_seen(&msg_id);
            let requests = &mut batch.requests;
            let i = *index.entry(msg_id.clone()).or_insert_with(|| {
                requests.push(Request { req, msg_id });
                requests.len() - 1
            });
            batch.deliveries.push((msg, i));
        }
        batch
    }

    fn count_seen(&self, msg_id: &str) {
        let _ = self.seen.update_and_fetch(msg_id, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        });
    }

    /// The durable outcome of each request (`None`, logged, where there is
    /// none now): the book's, or a new decision, recorded with one sync.
    async fn answers(&self, requests: &[Request]) -> Vec<Option<PaymentResult>> {
        let mut answers = vec![None; requests.len()];
        let mut undecided = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.book.get(&r.msg_id) {
                Ok(Some(found)) => answers[i] = Some(found),
                Ok(None) => undecided.push(i),
                Err(e) => {
                    tracing::error!(error = %e, msg_id = %r.msg_id, "payments: book unreadable")
                }
            }
        }
        let (decided, new) = self.decide_all(requests, undecided).await;
        if !new.is_empty() {
            // A crash with the provider's captures made but not in the book.
            fail::fail_point!("payments-after-charge-before-record", |_| {
                std::process::abort()
            });
        }
        if new.is_empty() && answers.iter().all(Option::is_none) {
            return answers;
        }
        // Also the sync that makes the found outcomes durable.
        match self.book.record_many(&new).await {
            Ok(stored) => {
                for (i, result) in decided.into_iter().zip(stored) {
                    answers[i] = Some(result);
                }
                answers
            }
            Err(e) => {
                tracing::error!(error = %e, requests = requests.len(), "payments: cannot record outcomes; will retry");
                vec![None; requests.len()]
            }
        }
    }

    /// Asks the provider about the requests at `undecided`; the indexes it
    /// answered and the outcomes to record, keyed by request id.
    async fn decide_all(
        &self,
        requests: &[Request],
        undecided: Vec<usize>,
    ) -> (Vec<usize>, Vec<(String, PaymentResult)>) {
        // Indexes by value: a closure over `&usize` makes the future not
        // provably `Send` (a higher-ranked lifetime rustc cannot prove).
        let outcomes: Vec<_> = futures::stream::iter(undecided.clone())
            .map(|i| self.decide(&requests[i].req))
            .buffered(PROVIDER_CALLS_IN_FLIGHT)
            .collect()
            .await;
        let mut decided = Vec::with_capacity(undecided.len());
        let mut new = Vec::with_capacity(undecided.len());
        for (i, outcome) in undecided.into_iter().zip(outcomes) {
            let msg_id = &requests[i].msg_id;
            match outcome {
                Ok(result) => {
                    decided.push(i);
                    new.push((msg_id.clone(), result));
                }
                Err(e) => {
                    tracing::warn!(error = %e, %msg_id, "payments: provider unavailable; will retry")
                }
            }
        }
        (decided, new)
    }

    /// Publishes every answer (all sent, then JetStream's acks awaited
    /// together); the fate of each request.
    async fn publish(&self, requests: &[Request], answers: &[Option<PaymentResult>]) -> Vec<Fate> {
        let mut fates = vec![Fate::Unanswered; requests.len()];
        let mut acks = Vec::new();
        for (i, (r, answer)) in requests.iter().zip(answers).enumerate() {
            let Some(result) = answer else { continue };
            match self.send(r, result).await {
                Ok(ack) => acks.push((i, ack)),
                Err(e) => {
                    tracing::warn!(error = %e, msg_id = %r.msg_id, "payments: result not published; request will be redelivered");
                    fates[i] = Fate::PublishFailed;
                }
            }
        }
        let acked = futures::future::join_all(
            acks.into_iter()
                .map(|(i, ack)| async move { (i, ack.await) }),
        )
        .await;
        for (i, ack) in acked {
            let r = &requests[i];
            fates[i] = match ack {
                Ok(_) => {
                    tracing::debug!(msg_id = %r.msg_id, "payments: answered");
                    Fate::Published
                }
                Err(e) => {
                    tracing::warn!(error = %e, msg_id = %r.msg_id, "payments: result not published; request will be redelivered");
                    Fate::PublishFailed
                }
            };
        }
        fates
    }

    /// Sends one result to its district's subject; the future of its ack.
    async fn send(&self, r: &Request, result: &PaymentResult) -> Result<PublishAckFuture, String> {
        let bytes = protocol::codec::to_postcard(result).map_err(|e| e.to_string())?;
        let publish = Publish::build().payload(bytes.into()).message_id(&r.msg_id);
        self.js
            .send_publish(result_subject(&r.req.district_id), publish)
            .await
            .map_err(|e| e.to_string())
    }

    /// Acks (or naks) each delivery by its request's fate.
    async fn settle(&self, deliveries: Vec<(jetstream::Message, usize)>, fates: &[Fate]) {
        let acks = deliveries.into_iter().map(|(msg, i)| {
            let fate = fates[i];
            async move {
                let sent = match fate {
                    Fate::Published => msg.ack().await,
                    Fate::PublishFailed => {
                        msg.ack_with(AckKind::Nak(Some(REDELIVER_AFTER_FAILURE)))
                            .await
                    }
                    Fate::Unanswered => return, // Redelivered after ack_wait.
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "payments: ack failed; redelivery will be answered from the book");
                }
            }
        });
        futures::future::join_all(acks).await;
    }

    async fn decide(&self, req: &PaymentRequest) -> Result<PaymentResult, ProviderError> {
        let outcome = match req.kind {
            PaymentKind::Charge => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                if now_ms > req.deadline_unix_ms {
                    // Too late to charge; but report a capture made before a crash.
                    match self.provider.captured(&req.order_id).await? {
                        Some(reference) => ProviderOutcome::Approved { reference },
                        None => ProviderOutcome::Declined {
                            reason: "deadline_passed".into(),
                        },
                    }
                } else {
                    self.provider
                        .charge(&req.order_id, &req.money(), &req.payment_method)
                        .await?
                }
            }
            PaymentKind::Refund => {
                if self.was_charged(&req.order_id).await? {
                    self.provider.refund(&req.order_id, &req.money()).await?
                } else {
                    ProviderOutcome::Declined {
                        reason: "nothing_charged".into(),
                    }
                }
            }
        };
        let outcome = match outcome {
            ProviderOutcome::Approved { reference } => PaymentOutcome::Approved { reference },
            ProviderOutcome::Declined { reason } => PaymentOutcome::Declined { reason },
        };
        Ok(PaymentResult {
            kind: req.kind,
            order_id: req.order_id.clone(),
            district_id: req.district_id.clone(),
            outcome,
        })
    }

    /// Whether there is a capture to refund: this instance's book says so,
    /// or else the processor does (another instance may have answered the
    /// charge; a refund is only asked for after its charge's result).
    async fn was_charged(&self, order_id: &str) -> Result<bool, ProviderError> {
        let charge_id = protocol::payments::msg_id(PaymentKind::Charge, order_id);
        if matches!(self.book.get(&charge_id), Ok(Some(r)) if Book::is_approved(&r)) {
            return Ok(true);
        }
        Ok(self.provider.captured(order_id).await?.is_some())
    }
}
