//! The consume → decide → record → publish → ack loop, a batch at a time.
//!
//! Requests come through one durable pull consumer that every instance
//! shares (`bus::request_consumer`), pulled up to `bus::REQUEST_BATCH_MAX`
//! messages (and `bus::REQUEST_PULL_MAX_BYTES`) at a time (the next pull
//! goes out when half of one has arrived). What has arrived, up to that
//! many messages, is one batch: a lone request is not held back waiting for
//! others. Up to [`BATCHES_IN_FLIGHT`] batches run at once.
//!
//! A message holds one request (the first wire shape) or a batch of up to
//! `bus::MAX_REQUESTS_PER_MESSAGE` (header `bus::BATCH_HEADER`, see
//! `bus::batch`); a batch works over the requests of all its messages,
//! flattened. Each is answered in the shape it came in: a single request
//! with a single result message under the request's msg id (old nodes read
//! nothing else), the requests of batch messages with batch result
//! messages, one or more per district, under `bus::batch_msg_id`. One
//! stored message, one fsync on nats-server, for up to 256 results.
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
//! 4. every result is published (single ones with `Nats-Msg-Id` = the
//!    request id, batch ones with the hash of their request ids): all are
//!    sent before JetStream's acks are awaited, together;
//! 5. each delivered message is settled by the worst fate of its requests:
//!    acked only when *every* one's result is on the stream; left without
//!    an ack (back after `ack_wait`) when any has no outcome (provider or
//!    book unavailable); otherwise, some publish failed, nak'd to come back
//!    in a second.
//!
//! Nothing is published before 3 returns, and no message is acked before
//! the results of all its requests are on the stream. A crash before 5, or
//! a message left or nak'd in 5, means redelivery of the whole message,
//! whose requests land in 1 (those already decided are answered from the
//! book and published again) or, before 3, in 2 where the provider's
//! idempotency key prevents a second capture. A result published twice is
//! harmless: under the same msg id (a single result, or an identical batch)
//! JetStream keeps one within its 2 min window; otherwise (a batch grouped
//! differently, or later) the node's outbox no longer owes it and the node
//! ignores the repeat.
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
use bus::{result_subject, PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult, Shape};
use futures::StreamExt;
use protocol::DistrictId;

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
    /// Each delivered message with the indexes of its requests.
    deliveries: Vec<(jetstream::Message, Vec<usize>)>,
}

struct Request {
    req: PaymentRequest,
    msg_id: String,
    /// Some delivery asked in the single shape: answer with a single
    /// result message, which an old node can read (a new one reads both).
    single: bool,
}

/// What became of a request's result, from best to worst: a message is
/// settled by the worst of its requests'.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
        let acked = self.settle(batch.deliveries, &fates).await;
        tracing::info!(
            deliveries,
            acked,
            requests = batch.requests.len(),
            published,
            approved,
            "payments: batch answered"
        );
    }

    /// Decodes a batch's deliveries (either shape), counts each request in
    /// `requests_seen` and gathers deliveries of the same request id
    /// (decided once).
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
            let (shape, reqs) = match bus::decode_requests(msg.headers.as_ref(), &msg.payload) {
                Ok(r) => r,
                Err(e) => {
                    // A message we cannot read will not get better: drop it
                    // loudly. (A node's requests come back: its outbox
                    // republishes what has no result.)
                    tracing::error!(error = %e, subject = %msg.subject, "payments: undecodable request dropped");
                    let _ = msg.ack().await;
                    continue;
                }
            };
            let mut of_msg = Vec::with_capacity(reqs.len());
            for req in reqs {
                let msg_id = req.msg_id();
                self.count_seen(&msg_id);
                let requests = &mut batch.requests;
                let i = *index.entry(msg_id.clone()).or_insert_with(|| {
                    requests.push(Request {
                        req,
                        msg_id,
                        single: false,
                    });
                    requests.len() - 1
                });
                requests[i].single |= shape == Shape::Single;
                of_msg.push(i);
            }
            // An empty batch is acked at once in `settle`: no request, no fate.
            batch.deliveries.push((msg, of_msg));
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
    /// together): a single result message for a request asked singly, batch
    /// messages per district for the others; the fate of each request.
    async fn publish(&self, requests: &[Request], answers: &[Option<PaymentResult>]) -> Vec<Fate> {
        let mut fates = vec![Fate::Unanswered; requests.len()];
        // Each sent message's ack with the requests it answers.
        let mut acks: Vec<(Vec<usize>, PublishAckFuture)> = Vec::new();
        let mut batched: HashMap<&DistrictId, Vec<usize>> = HashMap::new();
        for (i, (r, answer)) in requests.iter().zip(answers).enumerate() {
            let Some(result) = answer else { continue };
            if !r.single {
                batched.entry(&r.req.district_id).or_default().push(i);
                continue;
            }
            match self.send_single(r, result).await {
                Ok(ack) => acks.push((vec![i], ack)),
                Err(e) => {
                    tracing::warn!(error = %e, msg_id = %r.msg_id, "payments: result not published; request will be redelivered");
                    fates[i] = Fate::PublishFailed;
                }
            }
        }
        for (district, indexes) in batched {
            let results: Vec<&PaymentResult> = indexes
                .iter()
                .filter_map(|&i| answers[i].as_ref())
                .collect();
            let ranges = match bus::batch_ranges(&results, bus::MAX_REQUESTS_PER_MESSAGE) {
                Ok(ranges) => ranges,
                Err(e) => {
                    tracing::error!(error = %e, %district, "payments: results not encodable; requests will be redelivered");
                    indexes.iter().for_each(|&i| fates[i] = Fate::PublishFailed);
                    continue;
                }
            };
            for range in ranges {
                let of_msg = indexes[range.clone()].to_vec();
                match self
                    .send_batch(requests, district, &of_msg, &results[range])
                    .await
                {
                    Ok(ack) => acks.push((of_msg, ack)),
                    Err(e) => {
                        tracing::warn!(error = %e, %district, results = of_msg.len(), "payments: batch of results not published; requests will be redelivered");
                        of_msg.iter().for_each(|&i| fates[i] = Fate::PublishFailed);
                    }
                }
            }
        }
        let acked = futures::future::join_all(
            acks.into_iter()
                .map(|(of_msg, ack)| async move { (of_msg, ack.await) }),
        )
        .await;
        for (of_msg, ack) in acked {
            let fate = match ack {
                Ok(_) => {
                    tracing::debug!(results = of_msg.len(), "payments: answered");
                    Fate::Published
                }
                Err(e) => {
                    tracing::warn!(error = %e, results = of_msg.len(), "payments: results not published; requests will be redelivered");
                    Fate::PublishFailed
                }
            };
            of_msg.iter().for_each(|&i| fates[i] = fate);
        }
        fates
    }

    /// Sends one result alone (the first wire shape) to its district's
    /// subject, under the request's msg id; the future of its ack.
    async fn send_single(
        &self,
        r: &Request,
        result: &PaymentResult,
    ) -> Result<PublishAckFuture, String> {
        let bytes = protocol::codec::to_postcard(result).map_err(|e| e.to_string())?;
        let publish = Publish::build().payload(bytes.into()).message_id(&r.msg_id);
        self.js
            .send_publish(result_subject(&r.req.district_id), publish)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends the results of the requests at `of_msg` as one batch message
    /// to `district`'s subject; the future of its ack.
    async fn send_batch(
        &self,
        requests: &[Request],
        district: &DistrictId,
        of_msg: &[usize],
        results: &[&PaymentResult],
    ) -> Result<PublishAckFuture, String> {
        let bytes = bus::encode_batch(results).map_err(|e| e.to_string())?;
        let msg_id = bus::batch_msg_id(of_msg.iter().map(|&i| requests[i].msg_id.as_str()));
        self.js
            .send_publish(result_subject(district), bus::batch_publish(bytes, &msg_id))
            .await
            .map_err(|e| e.to_string())
    }

    /// Acks (or naks, or leaves) each delivery by the worst fate of its
    /// requests; how many were acked.
    async fn settle(
        &self,
        deliveries: Vec<(jetstream::Message, Vec<usize>)>,
        fates: &[Fate],
    ) -> usize {
        let acks = deliveries.into_iter().map(|(msg, of_msg)| {
            // No request (an empty batch): nothing to answer, done.
            let fate = of_msg.iter().map(|&i| fates[i]).max().unwrap_or(Fate::Published);
            async move {
                let sent = match fate {
                    Fate::Published => msg.ack().await,
                    Fate::PublishFailed => {
                        msg.ack_with(AckKind::Nak(Some(REDELIVER_AFTER_FAILURE)))
                            .await
                    }
                    // Redelivered after ack_wait; the book answers those of
                    // its requests that were decided.
                    Fate::Unanswered => return false,
                };
                if let Err(e) = &sent {
                    tracing::warn!(error = %e, "payments: ack failed; redelivery will be answered from the book");
                }
                fate == Fate::Published && sent.is_ok()
            }
        });
        futures::future::join_all(acks)
            .await
            .into_iter()
            .filter(|acked| *acked)
            .count()
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
