//! Batch envelopes: many payment requests, or the results of many, in one
//! JetStream message.
//!
//! Why: nats-server runs with `sync_interval: always`, so every stored
//! message is its own fsync, and with one request and one result per
//! message that fsync was the whole system's limit on payments/s. One
//! message of up to [`MAX_REQUESTS_PER_MESSAGE`] shares one fsync.
//!
//! # Wire
//! A batch message goes on the same subjects and streams as a single one
//! (no stream or consumer config changes) and carries the header
//! [`BATCH_HEADER`]` = `[`BATCH_HEADER_VALUE`]. Its payload follows the
//! log's evolution rule (`protocol::codec`): `[schema_version: u16 LE]`
//! then postcard of the sequence of requests (or results), so a later
//! layout is a new version with the old one still decoded. A message
//! without the header is the first shape: one postcard
//! `PaymentRequest`/`PaymentResult`, unversioned, still read (old nodes and
//! old services during a rolling deploy, messages already on the streams).
//!
//! Both sides answer in the shape they were asked: the payments service
//! answers a single request with a single result under the request's msg
//! id, and a batch with batch result messages (one or more per district).
//! Deploy the payments service before the nodes: an older service cannot
//! read a batch and drops it (acked, logged); nothing is lost, since the
//! node's outbox republishes every request without a result, but payments
//! wait until the service is upgraded.
//!
//! # De-duplication
//! A batch message's `Nats-Msg-Id` is [`batch_msg_id`], a hash of the
//! request ids it carries: republishing the same batch inside the
//! duplicate window stores it once. Different batches holding the same
//! request (a republish after `REPUBLISH_SECS` groups requests
//! differently) are different messages; that is harmless: the payments
//! book answers a repeated request with its recorded outcome, and a node
//! ignores a result its outbox no longer owes.

use std::ops::Range;

use async_nats::jetstream::context::Publish;
use async_nats::HeaderMap;
use protocol::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{PaymentRequest, PaymentResult};

/// The header marking a batch payload.
pub const BATCH_HEADER: &str = "Larder-Batch";
/// Its value. The payload carries its own layout version
/// ([`BATCH_SCHEMA_VERSION`]); the header only says "a batch".
pub const BATCH_HEADER_VALUE: &str = "1";
/// Layout of the batch payload written by this build.
pub const BATCH_SCHEMA_VERSION: u16 = 1;
/// Most requests (or results) one batch message carries: enough to share
/// one fsync among hundreds of payments, few enough that a message held
/// back by one undecided request redelivers little.
pub const MAX_REQUESTS_PER_MESSAGE: usize = 256;
/// Most payload bytes a batch message is filled to: a quarter of
/// nats-server's default `max_payload` (1 MiB), so headers and an unusually
/// long request never push a message over it. A request is ~100 bytes, so
/// in practice the count cap binds first.
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 256 * 1024;
/// The version prefix and the longest sequence-length varint (u32).
const BATCH_OVERHEAD_BYTES: usize = 2 + 5;

/// How a delivered message carried its requests (or results), and so how
/// it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The first wire shape: one request (or result), no header.
    Single,
    /// [`BATCH_HEADER`]: a versioned sequence.
    Batch,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch payload is shorter than its header")]
    Truncated,
    #[error("batch payload has schema version {0}, this build reads 1..={BATCH_SCHEMA_VERSION}")]
    UnknownVersion(u16),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Whether a message's headers mark a batch payload.
pub fn shape(headers: Option<&HeaderMap>) -> Shape {
    match headers.and_then(|h| h.get(BATCH_HEADER)) {
        Some(_) => Shape::Batch,
        None => Shape::Single,
    }
}

/// A batch payload of `items` (`T` may be a reference: it encodes as the
/// value). Does not split: see [`batch_ranges`].
pub fn encode_batch<T: Serialize>(items: &[T]) -> Result<Vec<u8>, CodecError> {
    let mut out = BATCH_SCHEMA_VERSION.to_le_bytes().to_vec();
    out.extend(codec::to_postcard(items)?);
    Ok(out)
}

/// The items of a batch payload.
pub fn decode_batch<T: DeserializeOwned>(payload: &[u8]) -> Result<Vec<T>, BatchError> {
    let Some((version, body)) = payload.split_first_chunk::<2>() else {
        return Err(BatchError::Truncated);
    };
    match u16::from_le_bytes(*version) {
        1 => Ok(codec::from_postcard(body)?),
        other => Err(BatchError::UnknownVersion(other)),
    }
}

/// The items of a delivered message in either shape, and its shape.
pub fn decode<T: DeserializeOwned>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Shape, Vec<T>), BatchError> {
    match shape(headers) {
        Shape::Single => Ok((Shape::Single, vec![codec::from_postcard(payload)?])),
        Shape::Batch => Ok((Shape::Batch, decode_batch(payload)?)),
    }
}

/// The payment requests of a delivered request message.
pub fn decode_requests(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Shape, Vec<PaymentRequest>), BatchError> {
    decode(headers, payload)
}

/// The payment results of a delivered result message.
pub fn decode_results(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Shape, Vec<PaymentResult>), BatchError> {
    decode(headers, payload)
}

/// Splits `items` into consecutive runs, one per batch message: at most
/// `max_items` (itself at most [`MAX_REQUESTS_PER_MESSAGE`]) and, encoded,
/// at most [`MAX_BATCH_PAYLOAD_BYTES`]. An item too large for that alone
/// gets a message of its own (the broker refuses it if it exceeds
/// `max_payload`, as it would a single message).
pub fn batch_ranges<T: Serialize>(
    items: &[T],
    max_items: usize,
) -> Result<Vec<Range<usize>>, CodecError> {
    let max_items = max_items.clamp(1, MAX_REQUESTS_PER_MESSAGE);
    let mut ranges = Vec::with_capacity(items.len().div_ceil(max_items));
    let (mut start, mut bytes) = (0, BATCH_OVERHEAD_BYTES);
    for (i, item) in items.iter().enumerate() {
        let len = codec::postcard_len(item)?;
        let full = i - start >= max_items || bytes + len > MAX_BATCH_PAYLOAD_BYTES;
        if full && i > start {
            ranges.push(start..i);
            (start, bytes) = (i, BATCH_OVERHEAD_BYTES);
        }
        bytes += len;
    }
    if start < items.len() {
        ranges.push(start..items.len());
    }
    Ok(ranges)
}

/// The `Nats-Msg-Id` of a batch message: a hash of the request ids it
/// carries, in order (128 bits of SHA-256: stable across builds, so two
/// instances or two versions agree, and no collision in practice).
pub fn batch_msg_id<'a>(request_ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    let mut n = 0usize;
    for id in request_ids {
        hash.update(id.as_bytes());
        // A separator no request id contains, so ["ab","c"] ≠ ["a","bc"].
        hash.update(b"\n");
        n += 1;
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("batch-{n}-{hex}")
}

/// The publish of a batch payload under `msg_id`, with its header.
pub fn batch_publish(payload: Vec<u8>, msg_id: &str) -> Publish {
    Publish::build()
        .payload(payload.into())
        .message_id(msg_id)
        .header(BATCH_HEADER, BATCH_HEADER_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PaymentKind, PaymentOutcome};
    use protocol::money::Currency;

    fn request(order: &str, method_len: usize) -> PaymentRequest {
        PaymentRequest {
            kind: PaymentKind::Charge,
            order_id: order.parse().unwrap(),
            district_id: "detroit-downtown".parse().unwrap(),
            amount: 995,
            currency: Currency::try_from("USD".to_string()).unwrap(),
            payment_method: "t".repeat(method_len),
            deadline_unix_ms: 1_800_000_000_000,
        }
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(BATCH_HEADER, BATCH_HEADER_VALUE);
        h
    }

    #[test]
    fn a_batch_round_trips_and_starts_with_its_version() {
        let requests: Vec<_> = (0..3).map(|i| request(&format!("o{i}"), 8)).collect();
        let refs: Vec<&PaymentRequest> = requests.iter().collect();
        let bytes = encode_batch(&refs).unwrap();
        assert_eq!(&bytes[..2], &1u16.to_le_bytes(), "u16 LE version first");
        assert_eq!(
            bytes.len(),
            2 + codec::postcard_len(&refs).unwrap(),
            "postcard_len is the encoded length"
        );
        let (shape, back) = decode_requests(Some(&headers()), &bytes).unwrap();
        assert_eq!(shape, Shape::Batch);
        assert_eq!(back, requests);
    }

    #[test]
    fn the_single_shape_still_decodes_without_the_header() {
        let r = request("o1", 8);
        let bytes = codec::to_postcard(&r).unwrap();
        assert_eq!(
            decode_requests(None, &bytes).unwrap(),
            (Shape::Single, vec![r.clone()])
        );
        assert_eq!(
            decode_requests(Some(&HeaderMap::new()), &bytes).unwrap(),
            (Shape::Single, vec![r])
        );
        let result = PaymentResult {
            kind: PaymentKind::Refund,
            order_id: "o1".parse().unwrap(),
            district_id: "detroit-downtown".parse().unwrap(),
            outcome: PaymentOutcome::Declined {
                reason: "nothing_charged".into(),
            },
        };
        let bytes = codec::to_postcard(&result).unwrap();
        assert_eq!(
            decode_results(None, &bytes).unwrap(),
            (Shape::Single, vec![result])
        );
    }

    #[test]
    fn unknown_versions_and_short_payloads_are_errors_not_panics() {
        let mut bytes = encode_batch(&[request("o1", 8)]).unwrap();
        bytes[0] = 9;
        assert!(matches!(
            decode_batch::<PaymentRequest>(&bytes),
            Err(BatchError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode_batch::<PaymentRequest>(&[1]),
            Err(BatchError::Truncated)
        ));
        assert!(decode_requests(Some(&headers()), b"\x01\x00\xff").is_err());
    }

    #[test]
    fn batches_respect_the_count_cap() {
        let requests: Vec<_> = (0..600).map(|i| request(&format!("o{i}"), 8)).collect();
        let ranges = batch_ranges(&requests, usize::MAX).unwrap();
        let lens: Vec<_> = ranges.iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![256, 256, 88]);
        assert_eq!(ranges.last().map(|r| r.end), Some(600), "all covered");
        let lens: Vec<_> = batch_ranges(&requests[..5], 2)
            .unwrap()
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(lens, vec![2, 2, 1]);
        assert!(batch_ranges::<PaymentRequest>(&[], 256).unwrap().is_empty());
    }

    #[test]
    fn batches_respect_the_byte_cap() {
        // ~10 KiB each: about 25 fit under the byte cap, far below 256.
        let requests: Vec<_> = (0..100)
            .map(|i| request(&format!("o{i}"), 10 * 1024))
            .collect();
        let ranges = batch_ranges(&requests, MAX_REQUESTS_PER_MESSAGE).unwrap();
        assert!(ranges.len() > 1);
        let mut next = 0;
        for range in ranges {
            assert_eq!(range.start, next, "consecutive, none skipped");
            next = range.end;
            let refs: Vec<&PaymentRequest> = requests[range].iter().collect();
            let len = encode_batch(&refs).unwrap().len();
            assert!(len <= MAX_BATCH_PAYLOAD_BYTES, "{len} bytes");
        }
        assert_eq!(next, requests.len());
        // One request larger than the cap still gets a message of its own.
        let huge = vec![request("o1", MAX_BATCH_PAYLOAD_BYTES), request("o2", 8)];
        assert_eq!(batch_ranges(&huge, 256).unwrap(), vec![0..1, 1..2]);
    }

    #[test]
    fn batch_msg_ids_follow_the_contents() {
        let a = batch_msg_id(["charge-o1", "charge-o2"]);
        assert_eq!(a, batch_msg_id(["charge-o1", "charge-o2"]), "deterministic");
        assert_ne!(a, batch_msg_id(["charge-o2", "charge-o1"]));
        assert_ne!(a, batch_msg_id(["charge-o1", "charge-o3"]));
        assert_ne!(batch_msg_id(["ab", "c"]), batch_msg_id(["a", "bc"]));
        assert!(a.starts_with("batch-2-"), "{a}");
        // Pinned: a republish by another build must carry the same id
        // (SHA-256 of the ids, each followed by a newline; 32 hex digits).
        assert_eq!(
            batch_msg_id(["charge-o1"]),
            "batch-1-62ddf935f71ce26523f835530ec5470a"
        );
        assert_eq!(a, "batch-2-edd1e6326443851d841b15f915305f19");
    }

    #[test]
    fn the_version_1_layout_is_pinned() {
        // Messages already on a stream must keep decoding: a failure here
        // means a new layout needs a new version, not new bytes.
        let mut golden = vec![1, 0, 1, 0, 2, b'o', b'1', 16];
        golden.extend(b"detroit-downtown");
        golden.extend([0, 1, b'r']);
        let result = PaymentResult {
            kind: PaymentKind::Charge,
            order_id: "o1".parse().unwrap(),
            district_id: "detroit-downtown".parse().unwrap(),
            outcome: PaymentOutcome::Approved {
                reference: "r".into(),
            },
        };
        assert_eq!(encode_batch(&[&result]).unwrap(), golden);
        assert_eq!(
            decode_results(Some(&headers()), &golden).unwrap(),
            (Shape::Batch, vec![result])
        );
    }
}
