//! JetStream streams for payments, defined once and used by both sides (the
//! payments service and every region node), so their configs cannot drift.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use protocol::payments::{
    REQUEST_STREAM, REQUEST_SUBJECT_PREFIX, RESULT_STREAM, RESULT_SUBJECT_PREFIX,
};

/// How long JetStream keeps payment messages: long enough to outlive any
/// outage a node or the service recovers from, short enough to stay small.
pub const RETENTION_SECS: u64 = 7 * 24 * 3600;
/// JetStream de-duplication window for `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW_SECS: u64 = 120;
/// Durable consumer of requests, shared by every payments service instance.
pub const REQUEST_CONSUMER: &str = "payments";
/// How long a delivered message may stay unacknowledged before redelivery.
pub const ACK_WAIT_SECS: u64 = 30;

fn stream_config(name: &str, prefix: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(RETENTION_SECS),
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
        ..Default::default()
    }
}

/// Creates both payment streams if they do not exist yet.
pub async fn ensure_streams(
    js: &jetstream::Context,
) -> Result<(stream::Stream, stream::Stream), async_nats::Error> {
    let requests = js
        .get_or_create_stream(stream_config(REQUEST_STREAM, REQUEST_SUBJECT_PREFIX))
        .await?;
    let results = js
        .get_or_create_stream(stream_config(RESULT_STREAM, RESULT_SUBJECT_PREFIX))
        .await?;
    Ok((requests, results))
}

/// A durable pull consumer with explicit acks.
pub async fn durable_consumer(
    stream: &stream::Stream,
    name: &str,
    filter_subject: String,
) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::Config>, async_nats::Error> {
    Ok(stream
        .get_or_create_consumer(
            name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.to_string()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(ACK_WAIT_SECS),
                ..Default::default()
            },
        )
        .await?)
}
