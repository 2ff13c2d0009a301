//! The NATS JetStream contract between region nodes and the payments
//! service: subjects, streams, their retention and de-duplication, and the
//! durable consumer names. Both sides call [`ensure_streams`] and
//! [`durable_consumer`] from here, so their configs cannot drift, and a
//! region node reaches the bus without depending on the payments service.
//!
//! # Where the message types live
//! [`PaymentRequest`], [`PaymentResult`], [`PaymentKind`], [`PaymentOutcome`]
//! and [`msg_id`] stay in `protocol::payments` and are only re-exported here.
//! They are not transport details: `PaymentKind` is a field of a logged event
//! (`Event::PaymentResultRecorded`), the outbox of payment requests is
//! derived from the log by the pure decider, and `msg_id` is the key of that
//! outbox. The decider must not depend on this crate (it pulls in
//! async-nats and tokio), so the shapes stay with the other logged shapes
//! and this crate adds only what exists because there is a broker.
//!
//! # Batch envelopes
//! A message carries one request (or result), the first shape, or a batch
//! of up to [`MAX_REQUESTS_PER_MESSAGE`] marked by the [`BATCH_HEADER`]
//! header, on the same subjects: one JetStream store (one fsync on a
//! `sync_interval: always` server) for hundreds of payments. See [`batch`]
//! for the wire, the answering shape and the deploy order.
//!
//! # Compatibility
//! Stream names, subjects, consumer names and message ids are persistent
//! state in a running JetStream: changing one orphans messages or consumers
//! already there. The unit tests below pin them. The batch header, its
//! payload's version prefix and [`batch_msg_id`] are wire too: a message
//! already on a stream is read by the next build (`batch`'s tests pin them).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

pub mod batch;

pub use batch::{
    batch_msg_id, batch_publish, batch_ranges, decode_requests, decode_results, encode_batch,
    BatchError, Shape, BATCH_HEADER, BATCH_HEADER_VALUE, MAX_BATCH_PAYLOAD_BYTES,
    MAX_REQUESTS_PER_MESSAGE,
};

pub use protocol::payments::{msg_id, PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};

/// Stream holding every district's payment requests.
pub const REQUEST_STREAM: &str = "LARDER_PAYMENT_REQUESTS";
/// Stream holding every district's payment results.
pub const RESULT_STREAM: &str = "LARDER_PAYMENT_RESULTS";
/// A node publishes requests on `{REQUEST_SUBJECT_PREFIX}.{district}`.
pub const REQUEST_SUBJECT_PREFIX: &str = "larder.payments.request";
/// The payments service publishes results on `{RESULT_SUBJECT_PREFIX}.{district}`.
pub const RESULT_SUBJECT_PREFIX: &str = "larder.payments.result";

/// How long JetStream keeps payment messages: long enough to outlive any
/// outage a node or the service recovers from, short enough to stay small.
pub const RETENTION_SECS: u64 = 7 * 24 * 3600;
/// JetStream de-duplication window for `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW_SECS: u64 = 120;
/// Durable consumer of requests, shared by every payments service instance.
pub const REQUEST_CONSUMER: &str = "payments";
/// How long a delivered message may stay unacknowledged before redelivery.
pub const ACK_WAIT_SECS: u64 = 30;

/// Subject a district's payment requests are published on.
pub fn request_subject(district: &str) -> String {
    format!("{REQUEST_SUBJECT_PREFIX}.{district}")
}

/// Subject the payments service answers a district on.
pub fn result_subject(district: &str) -> String {
    format!("{RESULT_SUBJECT_PREFIX}.{district}")
}

/// Filter for the requests of every district (what the payments service
/// consumes).
pub fn all_requests_subject() -> String {
    format!("{REQUEST_SUBJECT_PREFIX}.>")
}

/// Durable consumer of one district's results. One per district, not per
/// process: a restarted node resumes where its previous run stopped acking.
pub fn result_consumer(district: &str) -> String {
    format!("region-{district}")
}

fn stream_config(name: &str, prefix: &str, replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas.max(1),
        name: name.to_string(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(RETENTION_SECS),
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
        ..Default::default()
    }
}

/// Creates both payment streams if they do not exist yet, with `replicas`
/// copies (3 on a NATS cluster, so a stream survives losing one server; 1
/// on a single server). Existing streams are used as they are.
pub async fn ensure_streams(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<(stream::Stream, stream::Stream), async_nats::Error> {
    let requests = js
        .get_or_create_stream(stream_config(
            REQUEST_STREAM,
            REQUEST_SUBJECT_PREFIX,
            replicas,
        ))
        .await?;
    let results = js
        .get_or_create_stream(stream_config(
            RESULT_STREAM,
            RESULT_SUBJECT_PREFIX,
            replicas,
        ))
        .await?;
    Ok((requests, results))
}

/// How long one pull waits for messages before it is renewed.
pub const PULL_EXPIRES_SECS: u64 = 10;
/// The server's idle heartbeat on a pull: two missed beats tell a dead
/// pull (a server lost, a stream leader moved) within seconds, where the
/// client's default (15 s beats, 30 s pulls) took up to half a minute.
pub const PULL_HEARTBEAT_SECS: u64 = 2;

/// The message stream of a durable pull consumer, with the pull timing
/// above.
pub async fn pull(
    consumer: &consumer::Consumer<consumer::pull::Config>,
) -> Result<consumer::pull::Stream, consumer::StreamError> {
    consumer
        .stream()
        .expires(Duration::from_secs(PULL_EXPIRES_SECS))
        .heartbeat(Duration::from_secs(PULL_HEARTBEAT_SECS))
        .messages()
        .await
}

fn consumer_config(name: &str, filter_subject: String) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_string()),
        filter_subject,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(ACK_WAIT_SECS),
        ..Default::default()
    }
}

/// A durable pull consumer with explicit acks.
pub async fn durable_consumer(
    stream: &stream::Stream,
    name: &str,
    filter_subject: String,
) -> Result<consumer::Consumer<consumer::pull::Config>, async_nats::Error> {
    Ok(stream
        .get_or_create_consumer(name, consumer_config(name, filter_subject))
        .await?)
}

/// Most request *messages* the payments service's consumer lets its
/// instances hold unacknowledged at once, over all of them. The server's
/// default (1,000) would cap the batched service: a few instances with a
/// few batches of [`REQUEST_BATCH_MAX`] in flight each already hold more.
/// (With batch messages each holds up to [`MAX_REQUESTS_PER_MESSAGE`]
/// requests; JetStream counts messages.)
pub const REQUEST_MAX_ACK_PENDING: i64 = 20_000;
/// Most request messages one pull asks for (and one batch of the service
/// holds: up to this many times [`MAX_REQUESTS_PER_MESSAGE`] requests).
pub const REQUEST_BATCH_MAX: usize = 512;

/// The payments service's request consumer, created or updated to these
/// settings (the service owns its consumer's config, so a new `ack_wait`
/// takes effect at the next start). Every instance shares it: JetStream
/// hands each request to one of them, and to another after `ack_wait`
/// without an ack. Instances should run with the same `ack_wait`: the last
/// one started sets it.
pub async fn request_consumer(
    stream: &stream::Stream,
    ack_wait: Duration,
) -> Result<consumer::Consumer<consumer::pull::Config>, async_nats::Error> {
    Ok(stream
        .create_consumer(request_consumer_config(ack_wait))
        .await?)
}

fn request_consumer_config(ack_wait: Duration) -> consumer::pull::Config {
    consumer::pull::Config {
        ack_wait,
        max_ack_pending: REQUEST_MAX_ACK_PENDING,
        ..consumer_config(REQUEST_CONSUMER, all_requests_subject())
    }
}

/// Most payload bytes one pull of requests asks for. With batch messages
/// the message count no longer bounds the requests a pull delivers (512
/// messages could hold 131,072), and every delivered message's `ack_wait`
/// runs from delivery: this keeps a pull to a few thousand requests, well
/// under a second of work, so none waits in the client past its
/// `ack_wait`. Singles (~150 bytes) stay bound by [`REQUEST_BATCH_MAX`].
/// Above the largest batch message, which would otherwise never fit.
pub const REQUEST_PULL_MAX_BYTES: usize = 512 * 1024;

/// The message stream of a durable pull consumer that asks for up to
/// `batch_max` messages and [`REQUEST_PULL_MAX_BYTES`] per pull and asks
/// again when half of them arrived, so the next batch is on its way while
/// one is handled. The pull timing is [`pull`]'s. A consumer reads it in
/// groups (e.g. `ready_chunks`): what has arrived, up to `batch_max`,
/// without waiting for a batch to fill.
pub async fn pull_batches(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    batch_max: usize,
) -> Result<consumer::pull::Stream, consumer::StreamError> {
    consumer
        .stream()
        .max_messages_per_batch(batch_max.max(1))
        .max_bytes_per_batch(REQUEST_PULL_MAX_BYTES)
        .expires(Duration::from_secs(PULL_EXPIRES_SECS))
        .heartbeat(Duration::from_secs(PULL_HEARTBEAT_SECS))
        .messages()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subjects_are_the_ones_already_in_jetstream() {
        assert_eq!(
            request_subject("detroit"),
            "larder.payments.request.detroit"
        );
        assert_eq!(result_subject("detroit"), "larder.payments.result.detroit");
        assert_eq!(all_requests_subject(), "larder.payments.request.>");
        assert_eq!(result_consumer("detroit"), "region-detroit");
        assert_eq!(REQUEST_CONSUMER, "payments");
        assert_eq!(msg_id(PaymentKind::Charge, "o1"), "charge-o1");
        assert_eq!(msg_id(PaymentKind::Refund, "o1"), "refund-o1");
    }

    #[test]
    fn stream_configs_keep_retention_and_dedupe() {
        let s = stream_config(REQUEST_STREAM, REQUEST_SUBJECT_PREFIX, 3);
        assert_eq!(s.name, "LARDER_PAYMENT_REQUESTS");
        assert_eq!(s.num_replicas, 3);
        assert_eq!(s.subjects, vec!["larder.payments.request.>".to_string()]);
        assert_eq!(s.storage, stream::StorageType::File);
        assert_eq!(s.max_age, Duration::from_secs(604_800));
        assert_eq!(s.duplicate_window, Duration::from_secs(120));
        let r = stream_config(RESULT_STREAM, RESULT_SUBJECT_PREFIX, 0);
        assert_eq!(r.num_replicas, 1, "never fewer than one copy");
        assert_eq!(r.name, "LARDER_PAYMENT_RESULTS");
        assert_eq!(r.subjects, vec!["larder.payments.result.>".to_string()]);
    }

    #[test]
    fn consumers_ack_explicitly() {
        let c = consumer_config("region-detroit", result_subject("detroit"));
        assert_eq!(c.durable_name.as_deref(), Some("region-detroit"));
        assert_eq!(c.filter_subject, "larder.payments.result.detroit");
        assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
    }

    #[test]
    fn a_pull_of_requests_fits_the_largest_batch_message() {
        // Headers (msg id, batch marker) and JetStream's own add well
        // under 4 KiB.
        const { assert!(REQUEST_PULL_MAX_BYTES >= MAX_BATCH_PAYLOAD_BYTES + 4096) };
        const { assert!(MAX_BATCH_PAYLOAD_BYTES <= 1024 * 1024 / 2) };
    }

    #[test]
    fn the_request_consumer_is_the_shared_durable_with_its_own_ack_wait() {
        let c = request_consumer_config(Duration::from_millis(500));
        assert_eq!(c.durable_name.as_deref(), Some("payments"));
        assert_eq!(c.filter_subject, "larder.payments.request.>");
        assert_eq!(c.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(c.ack_wait, Duration::from_millis(500));
        assert_eq!(c.max_ack_pending, REQUEST_MAX_ACK_PENDING);
    }
}
