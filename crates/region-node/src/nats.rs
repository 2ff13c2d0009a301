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
//! the outbox routes by the row's key.
//!
//! With NATS down the node keeps taking orders; requests wait in the outbox.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::Publish};
use bus::{request_subject, result_subject, PaymentRequest, PaymentResult};
use futures::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;

use crate::writer::{CommittedBatch, District, WriteError};
use district::Command;

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
/// Pause before retrying NATS setup.
const RETRY_DELAY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct NatsLink {
    client: async_nats::Client,
}

impl NatsLink {
    /// Connects in the background (the node starts even if NATS is down)
    /// and spawns the relay and the result consumer.
    pub async fn start(
        url: &str,
        district: District,
        district_id: String,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("larder-region-{district_id}"))
            .retry_on_initial_connect()
            .connect(url)
            .await?;
        let js = jetstream::new(client.clone());
        tokio::spawn(relay(
            client.clone(),
            js.clone(),
            district.clone(),
            district_id.clone(),
        ));
        tokio::spawn(consume_results(js, district, district_id));
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

async fn relay(
    client: async_nats::Client,
    js: jetstream::Context,
    district: District,
    district_id: String,
) {
    let subject = request_subject(&district_id);
    let mut feed = district.subscribe_feed();
    let mut published: HashMap<String, Instant> = HashMap::new();
    let mut streams_ready = false;
    // Requests from the feed are published promptly; everything else is
    // found by the periodic rescan (start-up, reconnects, lag, republish).
    let mut fresh: Vec<(String, PaymentRequest)> = vec![];
    let mut rescan_due = true;
    let mut rescan = tokio::time::interval(Duration::from_millis(RESCAN_MS));
    loop {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if connected && !streams_ready {
            match bus::ensure_streams(&js).await {
                Ok(_) => streams_ready = true,
                Err(e) => tracing::warn!(error = %e, "relay: streams not ready"),
            }
        }
        if !(connected && streams_ready) {
            // Nothing can be sent; the rescan after reconnecting finds it all.
            fresh.clear();
            rescan_due = true;
        } else {
            let mut due = std::mem::take(&mut fresh);
            if rescan_due {
                rescan_due = false;
                let state = district.state();
                let pending: HashSet<String> =
                    state.outbox().iter().map(|(key, _)| key.msg_id()).collect();
                published.retain(|id, _| pending.contains(id));
                let republish = Duration::from_secs(REPUBLISH_SECS);
                due.extend(
                    state
                        .outbox()
                        .iter()
                        .map(|(key, req)| (key.msg_id(), req))
                        .filter(|(id, _)| {
                            published.get(id).is_none_or(|at| at.elapsed() >= republish)
                        })
                        .take(MAX_PUBLISH_PER_ROUND)
                        .map(|(id, req)| (id, req.clone())),
                );
            }
            // Send them all, then await the acks: one round trip per round,
            // not per request.
            let sends = due.into_iter().map(|(id, req)| {
                let js = js.clone();
                let subject = subject.clone();
                async move {
                    let bytes = protocol::codec::to_postcard(&req).map_err(|e| e.to_string())?;
                    let ack = js
                        .send_publish(
                            subject,
                            Publish::build().payload(bytes.into()).message_id(&id),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    ack.await.map_err(|e| e.to_string())?;
                    Ok::<_, String>(id)
                }
            });
            let round = futures::future::join_all(sends).await;
            tracing::debug!(
                requests = round.len(),
                published = published.len(),
                "relay round"
            );
            for result in round {
                match result {
                    Ok(id) => {
                        published.insert(id, Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay: publish failed; will retry");
                        rescan_due = true;
                    }
                }
            }
        }
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => fresh.extend(new_requests(&batch)),
                Err(broadcast::error::RecvError::Lagged(_)) => rescan_due = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = rescan.tick() => rescan_due = true,
        }
        // Take whatever else is already waiting, so one round serves many batches.
        while let Ok(batch) = feed.try_recv() {
            fresh.extend(new_requests(&batch));
        }
    }
}

fn pickup_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
}

async fn consume_results(js: jetstream::Context, district: District, district_id: String) {
    let consumer_name = bus::result_consumer(&district_id);
    loop {
        let messages = async {
            let (_, results) = bus::ensure_streams(&js).await?;
            let consumer =
                bus::durable_consumer(&results, &consumer_name, result_subject(&district_id))
                    .await?;
            Ok::<_, async_nats::Error>(consumer.messages().await?)
        };
        let messages = match messages.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "results: NATS not ready");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let district = Arc::new(district.clone());
        messages
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
                        Err(WriteError::Unavailable(e)) => {
                            tracing::error!(%order_id, error = %e, "results: not recorded; left for redelivery");
                            return;
                        }
                    }
                    if let Err(e) = msg.ack().await {
                        tracing::warn!(%order_id, error = %e, "results: ack failed; redelivery is harmless");
                    }
                }
            })
            .await;
        tokio::time::sleep(RETRY_DELAY).await;
    }
}
