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
pub mod ids;
pub mod money;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod promotions;
pub mod restock;
pub mod schedule;
pub mod stream;
pub mod validation;
pub mod waitlist;
pub mod webhooks;

pub use envelope::EventEnvelope;
pub use events::Event;
pub use stream::StreamId;
pub use validation::{IdError, ValidationError};

pub use ids::WebhookId;
pub use ids::{
    CampaignId, ChargeId, CouponCode, DistrictId, FridgeId, KitchenId, MealId, OrderId, PlanId,
    SubsidyId, WaitlistId, MAX_ID_LEN, MAX_PLAN_ID_LEN,
};
pub use money::Money;
