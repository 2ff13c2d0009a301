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
//! 3. `tests/golden.rs` holds records written by every released version;
//!    they must keep decoding to the same events. A failing golden test means
//!    an upcaster is missing — never regenerate the bytes to make it pass.
//!    It holds one record per `Event` variant, listed by an exhaustive
//!    `match`, so a new variant does not compile there until its golden line
//!    is appended.

use crate::envelope::EventEnvelope;

/// Schema version written by this build.
pub const LOG_SCHEMA_VERSION: u16 = 1;

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
    match version {
        1 => Ok(postcard::from_bytes(&bytes[2..])?),
        other => Err(CodecError::UnknownVersion(other)),
    }
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
