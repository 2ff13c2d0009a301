//! The consume → decide → record → publish → ack loop.
//!
//! Order of effects per request, and why it is safe to crash anywhere:
//! 1. outcome already in the book → make it durable, skip to 4 (redelivery,
//!    replay);
//! 2. ask the provider (idempotent per order id);
//! 3. record the outcome in the book (sled flush + `fdatasync`);
//! 4. publish the result with `Nats-Msg-Id` and await JetStream's ack;
//! 5. ack the request.
//!
//! A crash before 5 means redelivery, which lands in 1 or, before 3, in 2
//! where the provider's idempotency key prevents a second capture.
//! `tests/tests/failpoints.rs` crashes the service between 2 and 3 and
//! between 3 and 4 (failpoints, feature `failpoints`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish};
use bus::{result_subject, PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use futures::StreamExt;

use crate::book::Book;
use crate::provider::{Provider, ProviderError, ProviderOutcome};

/// Requests handled at once (each mostly waits on the provider).
pub const CONCURRENCY: usize = 256;
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
        })
    }

    /// Creates the payment streams with `replicas` copies (3 on a NATS
    /// cluster) if they do not exist yet.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
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
            let consumer = async {
                let (requests, _) = bus::ensure_streams(&self.js, self.replicas).await?;
                bus::durable_consumer(
                    &requests,
                    bus::REQUEST_CONSUMER,
                    bus::all_requests_subject(),
                )
                .await
            };
            let messages = match consumer.await {
                Ok(c) => bus::pull(&c).await,
                Err(e) => {
                    tracing::warn!(error = %e, "payments: NATS not ready");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            let messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "payments: cannot subscribe");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            tracing::info!("payments: consuming requests");
            messages
                .for_each_concurrent(CONCURRENCY, |msg| {
                    let this = self.clone();
                    async move {
                        match msg {
                            Ok(msg) => this.handle(msg).await,
                            Err(e) => tracing::warn!(error = %e, "payments: delivery error"),
                        }
                    }
                })
                .await;
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    async fn handle(&self, msg: jetstream::Message) {
        let req: PaymentRequest = match protocol::codec::from_postcard(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                // A message we cannot read will not get better: drop it loudly.
                tracing::error!(error = %e, subject = %msg.subject, "payments: undecodable request dropped");
                let _ = msg.ack().await;
                return;
            }
        };
        let msg_id = req.msg_id();
        let _ = self.seen.update_and_fetch(&msg_id, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        });
        let Some(result) = self.outcome(&req, &msg_id).await else {
            return; // Not acked: redelivery retries.
        };
        // A crash with the outcome in the book but neither published nor acked.
        fail::fail_point!("payments-after-record-before-ack", |_| std::process::abort(
        ));
        let bytes = match protocol::codec::to_postcard(&result) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "payments: cannot encode result");
                return;
            }
        };
        let publish = Publish::build().payload(bytes.into()).message_id(&msg_id);
        let published = match self
            .js
            .send_publish(result_subject(&req.district_id), publish)
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = published {
            tracing::warn!(error = %e, %msg_id, "payments: result not published; request will be redelivered");
            let nak = jetstream::AckKind::Nak(Some(REDELIVER_AFTER_FAILURE));
            let _ = msg.ack_with(nak).await;
            return;
        }
        tracing::info!(%msg_id, approved = Book::is_approved(&result), "payments: answered");
        if let Err(e) = msg.ack().await {
            tracing::warn!(error = %e, %msg_id, "payments: ack failed; redelivery will be answered from the book");
        }
    }

    /// The durable outcome for a request: the book's, or a new decision
    /// recorded there. `None` (logged) when it cannot be had now.
    async fn outcome(&self, req: &PaymentRequest, msg_id: &str) -> Option<PaymentResult> {
        // Durable, not merely present: a duplicate delivery can find the
        // record of a first one that is still waiting for its sync.
        match self.book.get_durable(msg_id).await {
            Ok(Some(recorded)) => return Some(recorded),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, %msg_id, "payments: book unreadable");
                return None;
            }
        }
        let result = match self.decide(req).await {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(error = %e, %msg_id, "payments: provider unavailable; will retry");
                return None;
            }
        };
        // A crash with the provider's capture made but not in the book.
        fail::fail_point!("payments-after-charge-before-record", |_| {
            std::process::abort()
        });
        match self.book.record(msg_id, &result).await {
            Ok(stored) => Some(stored),
            Err(e) => {
                tracing::error!(error = %e, %msg_id, "payments: cannot record outcome; will retry");
                None
            }
        }
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
                let charge_id = protocol::payments::msg_id(PaymentKind::Charge, &req.order_id);
                let charged =
                    matches!(self.book.get(&charge_id), Ok(Some(r)) if Book::is_approved(&r));
                if charged {
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
}
