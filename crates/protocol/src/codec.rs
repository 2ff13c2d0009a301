//! Encodings. JSON (serde_json) for HTTP and WebSocket; postcard for the log
//! and NATS because it is compact and fast.
//!
//! # Log record format and evolution policy
//! A log record is `[schema_version: u16 LE][postcard(EventEnvelope)]`.
//! postcard is not self-describing: a struct's fields are positional, so a
//! field added to an event would make every older record fail to decode.
//! Therefore:
//! 1. New event *variants* are appended to [`crate::Event`]: old records
//!    never use them, so no version bump is needed.
//! 2. Changing an existing variant's fields (adding one included) bumps
//!    [`LOG_SCHEMA_VERSION`]; the previous envelope/event types move to a
//!    `v{N}` module, and [`decode_log_record`] decodes old records with them
//!    and upcasts (`From<v{N}::EventEnvelope>`) into today's types.
//!    One change needs no copy of the old types: a field *appended* to a
//!    variant, whose value in older records is its `Default`. It is marked
//!    `#[serde(default, deserialize_with = "crate::codec::since_v{N}")]`:
//!    while [`decode_log_record`] decodes an older record, that function
//!    reads nothing and yields the default (the field's bytes are not
//!    there), and for records of version N or later it reads the field.
//!    Version 2 appended `price` to `OrderPlaced` this way (version-1 logs
//!    recorded the price as a separate `OrderPriced` event, still applied).
//! 3. `tests/golden.rs` holds records written by every released version;
//!    they must keep decoding to the same events. A failing golden test means
//!    an upcaster is missing — never regenerate the bytes to make it pass.
//!    It holds one record per `Event` variant, listed by an exhaustive
//!    `match`, so a new variant does not compile there until its golden line
//!    is appended.

use crate::envelope::EventEnvelope;

/// Schema version written by this build.
/// - 1: the first released log.
/// - 2: `OrderPlaced` gained `price` (appended; see [`since_v2`]).
pub const LOG_SCHEMA_VERSION: u16 = 2;

thread_local! {
    /// Schema version of the log record this thread is decoding; today's
    /// version outside [`decode_log_record`] (postcard of today's types).
    static DECODING_VERSION: std::cell::Cell<u16> = const { std::cell::Cell::new(LOG_SCHEMA_VERSION) };
}

/// Sets [`DECODING_VERSION`] for one decode, restoring it on every exit
/// (a panic in a nested decoder included).
struct DecodingVersion(u16);

impl DecodingVersion {
    fn set(version: u16) -> DecodingVersion {
        DecodingVersion(DECODING_VERSION.with(|v| v.replace(version)))
    }
}

impl Drop for DecodingVersion {
    fn drop(&mut self) {
        DECODING_VERSION.with(|v| v.set(self.0));
    }
}

/// `deserialize_with` for a field appended to a variant in schema version
/// 2 (the policy's rule 2, appended fields): a version-1 record has no bytes
/// for it, so it reads nothing and is the field's default.
pub fn since_v2<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if DECODING_VERSION.with(std::cell::Cell::get) < 2 {
        return Ok(T::default());
    }
    T::deserialize(d)
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("log record is shorter than its header")]
    Truncated,
    #[error("log record has schema version {0}, this build reads 1..={LOG_SCHEMA_VERSION}")]
    UnknownVersion(u16),
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
}

pub fn encode_log_record(env: &EventEnvelope) -> Result<Vec<u8>, CodecError> {
    let mut out = LOG_SCHEMA_VERSION.to_le_bytes().to_vec();
    postcard::to_io(env, &mut out).map_err(CodecError::Postcard)?;
    Ok(out)
}

pub fn decode_log_record(bytes: &[u8]) -> Result<EventEnvelope, CodecError> {
    if bytes.len() < 2 {
        return Err(CodecError::Truncated);
    }
    let version = u16::from_le_bytes([bytes[0], bytes[1]]);
    if version == 0 || version > LOG_SCHEMA_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let _decoding = DecodingVersion::set(version);
    Ok(postcard::from_bytes(&bytes[2..])?)
}

/// Postcard for small messages on NATS (payments and the like).
///
/// A payment request or result alone on a message is this encoding,
/// unversioned (the first shape on the streams, still read). Messages that
/// carry several (`bus::batch`) follow the log's rule instead: a `u16 LE`
/// schema version, then postcard, so their layout can change the way a log
/// record's does (a new version, the old one still decoded).
pub fn to_postcard<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(value)?)
}

pub fn from_postcard<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Length of `value`'s postcard encoding, without encoding it (to fill a
/// message up to a byte limit).
pub fn postcard_len<T: serde::Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    Ok(postcard::experimental::serialized_size(value)?)
}
