//! The event envelope: everything the log knows about an event besides the
//! event itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::events::Event;
use crate::DistrictId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Sortable, globally unique id (ULID: time-ordered, 128 bits).
    pub event_id: Ulid,
    /// Position in the district's log; dense, starts at 1.
    pub seq: u64,
    /// The aggregate stream, e.g. `meal-m-bowl` or `order-01J…`.
    pub stream_id: String,
    /// Version of that stream after this event; starts at 1.
    pub stream_version: u64,
    pub district_id: DistrictId,
    /// When the node recorded the event.
    pub recorded_at: DateTime<Utc>,
    /// When the fact became true (a fridge scan taken earlier, say).
    pub valid_from: DateTime<Utc>,
    /// The request or flow this event is part of.
    pub correlation_id: Option<Ulid>,
    /// The event or command that caused this one.
    pub causation_id: Option<Ulid>,
    /// Schema version the event was written with (see [`crate::codec`]).
    pub schema_version: u16,
    pub event: Event,
}
