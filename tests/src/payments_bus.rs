//! The payments service alone on the bus: a shared sandbox processor
//! (`payments sandbox-processor`), payment requests published straight on
//! the request stream — in batch messages as a region node's relay
//! publishes them (`bus::batch`), or one per message as older nodes did
//! (postcard, `Nats-Msg-Id` = the request id) — and the result stream read
//! back, in either shape. For `tests/tests/payments_scale.rs` and
//! `larder-payments-bench`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::Publish};
use futures::StreamExt;
use protocol::money::Currency;
use protocol::payments::{PaymentKind, PaymentRequest, PaymentResult};
use serde_json::Value;

use crate::{bin, eventually, spawn_service, ChildGuard, START_DEADLINE};

/// The district the requests come from.
pub const DISTRICT: &str = "detroit-downtown";
/// Publishes awaiting their ack at once, as a relay keeps them in flight.
const PUBLISHES_IN_FLIGHT: usize = 1024;
/// How long a reader of the result stream waits for a stored message.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// `payments sandbox-processor` on a free port with its own ledger.
pub struct SandboxProcessor {
    pub base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    child: ChildGuard,
}

impl SandboxProcessor {
    /// Starts it with `extra` flags (e.g. `--latency-ms 3000`).
    pub async fn start(extra: &[&str]) -> SandboxProcessor {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, base) = Self::spawn(&dir, "127.0.0.1:0", extra).await;
        SandboxProcessor {
            base,
            http: reqwest::Client::new(),
            dir,
            child,
        }
    }

    async fn spawn(dir: &tempfile::TempDir, listen: &str, extra: &[&str]) -> (ChildGuard, String) {
        let port_file = dir.path().join("processor.addr");
        let mut cmd = Command::new(bin("payments"));
        cmd.args(["sandbox-processor", "--listen", listen])
            .arg("--data-dir")
            .arg(dir.path().join("ledger"))
            .arg("--port-file")
            .arg(&port_file)
            .args(extra);
        spawn_service(&mut cmd, &port_file, "sandbox processor", START_DEADLINE).await
    }

    /// Starts it again after [`Self::kill`], on the same address (the
    /// payments instances keep their `--processor-url`) with the same
    /// ledger.
    pub async fn restart(&mut self, extra: &[&str]) {
        let listen = self.base.trim_start_matches("http://").to_string();
        let (child, base) = Self::spawn(&self.dir, &listen, extra).await;
        assert_eq!(base, self.base, "the same address");
        self.child = child;
    }

    /// What it did for one idempotency key (an order id).
    pub async fn entry(&self, key: &str) -> Value {
        self.get(&format!("/v1/ledger/{key}")).await
    }

    /// Its totals over every key.
    pub async fn totals(&self) -> Value {
        self.get("/v1/ledger").await
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }
}

/// A payment request for `order_id` due in an hour, as a node's outbox
/// builds it (USD, a card the sandbox approves).
pub fn request(kind: PaymentKind, order_id: &str, amount_minor: i64) -> PaymentRequest {
    let deadline = chrono::Utc::now() + chrono::Duration::hours(1);
    PaymentRequest {
        kind,
        order_id: order_id.parse().expect("a valid order id"),
        district_id: DISTRICT.parse().expect("a valid district id"),
        amount: amount_minor,
        currency: Currency::try_from("USD".to_string()).expect("USD"),
        payment_method: "tok_visa".into(),
        deadline_unix_ms: deadline.timestamp_millis(),
    }
}

/// JetStream on `url`.
pub async fn jetstream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    jetstream::new(client)
}

/// Creates the payment streams (one copy) if no service has yet.
pub async fn ensure_streams(js: &jetstream::Context) {
    bus::ensure_streams(js, 1).await.expect("payment streams");
}

/// Publishes `requests` on the request stream as the relay does: in batch
/// messages of up to `bus::MAX_REQUESTS_PER_MESSAGE` (consecutive requests
/// of one district), up to [`PUBLISHES_IN_FLIGHT`] awaiting their ack at
/// once.
pub async fn publish_request_batches(js: &jetstream::Context, requests: &[PaymentRequest]) {
    let ranges =
        bus::batch_ranges(requests, bus::MAX_REQUESTS_PER_MESSAGE).expect("requests encode");
    for chunk in ranges.chunks(PUBLISHES_IN_FLIGHT) {
        let mut acks = Vec::with_capacity(chunk.len());
        for range in chunk {
            let message = &requests[range.clone()];
            let district = &message[0].district_id;
            assert!(
                message.iter().all(|r| &r.district_id == district),
                "one district per message, as one node's relay sends"
            );
            let bytes = bus::encode_batch(message).expect("encode batch");
            let ids: Vec<String> = message.iter().map(PaymentRequest::msg_id).collect();
            let msg_id = bus::batch_msg_id(ids.iter().map(String::as_str));
            let publish = bus::batch_publish(bytes, &msg_id);
            let subject = bus::request_subject(district);
            acks.push(js.send_publish(subject, publish).await.expect("publish"));
        }
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for ack in futures::future::join_all(acks).await {
            ack.expect("batch stored by JetStream");
        }
    }
}

/// Publishes `requests` on the request stream one per message (the first
/// wire shape, as older nodes did), each with its msg id, up to
/// [`PUBLISHES_IN_FLIGHT`] awaiting their ack at once.
pub async fn publish_requests(js: &jetstream::Context, requests: &[PaymentRequest]) {
    for chunk in requests.chunks(PUBLISHES_IN_FLIGHT) {
        let mut acks = Vec::with_capacity(chunk.len());
        for r in chunk {
            let bytes = protocol::codec::to_postcard(r).expect("encode request");
            let publish = Publish::build()
                .payload(bytes.into())
                .message_id(r.msg_id());
            let subject = bus::request_subject(&r.district_id);
            acks.push(js.send_publish(subject, publish).await.expect("publish"));
        }
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for ack in futures::future::join_all(acks).await {
            ack.expect("request stored by JetStream");
        }
    }
}

/// The payments consumer's state: `(pull requests waiting, messages not
/// yet delivered, delivered and not acked)`; `None` until it exists.
pub async fn consumer_state(js: &jetstream::Context) -> Option<(usize, u64, usize)> {
    let stream = js.get_stream(bus::REQUEST_STREAM).await.ok()?;
    let info = stream.consumer_info(bus::REQUEST_CONSUMER).await.ok()?;
    Some((info.num_waiting, info.num_pending, info.num_ack_pending))
}

/// Awaits `instances` payments instances pulling from the shared consumer.
pub async fn await_consumers(js: &jetstream::Context, instances: usize, deadline: Duration) {
    eventually(
        &format!("{instances} instance(s) pulling requests"),
        deadline,
        || async {
            matches!(consumer_state(js).await, Some((waiting, _, _)) if waiting >= instances)
        },
    )
    .await;
}

/// Awaits every request delivered and acknowledged.
pub async fn await_requests_acked(js: &jetstream::Context, deadline: Duration) {
    eventually("every request acknowledged", deadline, || async {
        matches!(consumer_state(js).await, Some((_, 0, 0)))
    })
    .await;
}

/// Messages on the result stream (one per msg id: JetStream drops a
/// duplicate within its window); a batch message holds many results.
pub async fn result_messages(js: &jetstream::Context) -> u64 {
    match js.get_stream(bus::RESULT_STREAM).await {
        Ok(stream) => stream.get_info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Results on the result stream, over both shapes.
pub async fn result_count(js: &jetstream::Context) -> u64 {
    all_results(js).await.len() as u64
}

/// Awaits `n` results on the result stream; when it got there.
pub async fn await_results(js: &jetstream::Context, n: u64, deadline: Duration) -> Instant {
    eventually(&format!("{n} results"), deadline, || async {
        result_count(js).await >= n
    })
    .await;
    Instant::now()
}

/// An ephemeral reader of the whole result stream, from the start.
async fn result_reader(js: &jetstream::Context) -> consumer::pull::Stream {
    let stream = js
        .get_stream(bus::RESULT_STREAM)
        .await
        .expect("result stream");
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("ephemeral reader");
    reader.messages().await.expect("read results")
}

/// The results of the next stored message (either shape).
async fn next_results(messages: &mut consumer::pull::Stream) -> Vec<PaymentResult> {
    let msg = tokio::time::timeout(READ_DEADLINE, messages.next())
        .await
        .expect("a stored result message within the deadline")
        .expect("the reader goes on")
        .expect("a result message");
    let (_, results) =
        bus::decode_results(msg.headers.as_ref(), &msg.payload).expect("payment results");
    results
}

/// Every result on the result stream, in stream order.
pub async fn all_results(js: &jetstream::Context) -> Vec<PaymentResult> {
    let total = result_messages(js).await;
    if total == 0 {
        return vec![];
    }
    let mut messages = result_reader(js).await;
    let mut out = Vec::new();
    for _ in 0..total {
        out.extend(next_results(&mut messages).await);
    }
    out
}

/// Every result on the result stream, by order id.
pub async fn results_by_order(js: &jetstream::Context) -> HashMap<String, Vec<PaymentResult>> {
    let mut out: HashMap<String, Vec<PaymentResult>> = HashMap::new();
    for result in all_results(js).await {
        out.entry(result.order_id.to_string())
            .or_default()
            .push(result);
    }
    out
}

/// Reads the result stream as it fills until it holds `n` results, calling
/// `on_count` with the running count after each message (benchmarks:
/// progress and the 10 % / 90 % marks).
pub async fn follow_results(js: &jetstream::Context, n: u64, mut on_count: impl FnMut(u64)) {
    // The stream exists once a payments instance started.
    eventually("the result stream", START_DEADLINE, || async {
        js.get_stream(bus::RESULT_STREAM).await.is_ok()
    })
    .await;
    let mut messages = result_reader(js).await;
    let mut count = 0;
    on_count(count);
    while count < n {
        let Some(msg) = messages.next().await else {
            return;
        };
        let msg = msg.expect("a result message");
        let (_, results) =
            bus::decode_results(msg.headers.as_ref(), &msg.payload).expect("payment results");
        count += results.len() as u64;
        on_count(count);
    }
}
