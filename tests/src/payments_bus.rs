//! The payments service alone on the bus: a shared sandbox processor
//! (`payments sandbox-processor`), payment requests published straight on
//! the request stream as a region node's relay publishes them (postcard,
//! `Nats-Msg-Id` = the request id), and the result stream read back. For
//! `tests/tests/payments_scale.rs` and `larder-payments-bench`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::Publish};
use futures::StreamExt;
use protocol::money::Currency;
use protocol::payments::{PaymentKind, PaymentRequest, PaymentResult};
use serde_json::Value;

use crate::{bin, eventually, spawn_service, ChildGuard, POLL_STEP, START_DEADLINE};

/// The district the requests come from.
pub const DISTRICT: &str = "detroit-downtown";
/// Publishes awaiting their ack at once, as a relay keeps them in flight.
const PUBLISHES_IN_FLIGHT: usize = 1024;

/// `payments sandbox-processor` on a free port with its own ledger.
pub struct SandboxProcessor {
    pub base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    child: ChildGuard,
}

impl SandboxProcessor {
    /// Starts it with `extra` flags (e.g. `--latency-ms 3000`).
    pub async fn start(extra: &[&str]) -> SandboxProcessor {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("processor.addr");
        let mut cmd = Command::new(bin("payments"));
        cmd.args(["sandbox-processor", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("ledger"))
            .arg("--port-file")
            .arg(&port_file)
            .args(extra);
        let (child, base) =
            spawn_service(&mut cmd, &port_file, "sandbox processor", START_DEADLINE).await;
        SandboxProcessor {
            base,
            http: reqwest::Client::new(),
            _dir: dir,
            child,
        }
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

/// Publishes `requests` on the request stream, each with its msg id, up to
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

/// Results on the result stream (one per msg id: JetStream drops a
/// duplicate within its window).
pub async fn result_count(js: &jetstream::Context) -> u64 {
    match js.get_stream(bus::RESULT_STREAM).await {
        Ok(stream) => stream.get_info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Awaits `n` results on the result stream; when it got there.
pub async fn await_results(js: &jetstream::Context, n: u64, deadline: Duration) -> Instant {
    eventually(&format!("{n} results"), deadline, || async {
        result_count(js).await >= n
    })
    .await;
    Instant::now()
}

/// Every result on the result stream, by order id, read from the start by
/// an ephemeral consumer.
pub async fn results_by_order(js: &jetstream::Context) -> HashMap<String, Vec<PaymentResult>> {
    let total = result_count(js).await;
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
    let mut messages = reader.messages().await.expect("read results");
    let mut out: HashMap<String, Vec<PaymentResult>> = HashMap::new();
    for _ in 0..total {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a stored result within 10 s")
            .expect("the reader goes on")
            .expect("a result message");
        let result: PaymentResult =
            protocol::codec::from_postcard(&msg.payload).expect("a payment result");
        out.entry(result.order_id.to_string())
            .or_default()
            .push(result);
    }
    out
}

/// Polls the result count until `n`, calling `on_count` at each step
/// (benchmarks: progress and the 10 % / 90 % marks).
pub async fn follow_results(js: &jetstream::Context, n: u64, mut on_count: impl FnMut(u64)) {
    loop {
        let count = result_count(js).await;
        on_count(count);
        if count >= n {
            return;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
}
