//! Wire and event types shared by every Larder component.
//!
//! This crate owns the *shapes* that cross a boundary: the event envelope and
//! the domain events stored in a region's log, the catalog and stock types the
//! HTTP/WebSocket API serves, money, geography (points, districts, geohash
//! prefixes), and the two encodings — JSON for HTTP/WS, postcard for the log
//! and NATS. It owns no behaviour beyond validation and encoding: no IO, no
//! async, no storage.
//!
//! # Schema evolution
//! See [`codec`]: log records carry a schema version, the current version is
//! [`codec::LOG_SCHEMA_VERSION`], and every older version keeps a decoder that
//! upcasts into today's types. Golden bytes in `tests/golden.rs` fail loudly
//! when a change would make old logs unreadable.

pub mod catalog;
pub mod codec;
pub mod envelope;
pub mod events;
pub mod geo;
pub mod money;
pub mod orders;
pub mod payments;
pub mod schedule;
pub mod stream;
pub mod validation;

pub use envelope::EventEnvelope;
pub use events::Event;
pub use stream::StreamId;
pub use validation::{IdError, ValidationError};

/// Identifier of a meal (chosen by the admin, e.g. `"m-bowl-teriyaki"`).
pub type MealId = String;
/// Identifier of a fridge.
pub type FridgeId = String;
/// Identifier of a kitchen.
pub type KitchenId = String;
/// Identifier of a district (one region node serves one district).
pub type DistrictId = String;

/// Longest id accepted anywhere (meal, fridge, kitchen, order ids).
pub const MAX_ID_LEN: usize = 64;

/// Ids are short ASCII slugs so they can be used in URLs, NATS subjects and
/// sled keys without escaping.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(IdError::Length);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::Characters);
    }
    Ok(())
}
