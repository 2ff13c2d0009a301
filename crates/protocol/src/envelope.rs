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
    #[serde(with = "ulid_text")]
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
    #[serde(with = "ulid_text::option")]
    pub correlation_id: Option<Ulid>,
    /// The event or command that caused this one.
    #[serde(with = "ulid_text::option")]
    pub causation_id: Option<Ulid>,
    /// Schema version the event was written with (see [`crate::codec`]).
    pub schema_version: u16,
    pub event: Event,
}

/// ULIDs as their 26-character text, the shape `ulid`'s own serde feature
/// wrote when the log format was released (the goldens pin it). Kept here
/// because that feature needs ulid's `std`, which links `rand` into every
/// crate that reads envelopes.
mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(id: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};
        use ulid::Ulid;

        struct Text<'a>(&'a Ulid);

        impl Serialize for Text<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, s)
            }
        }

        pub fn serialize<S: Serializer>(id: &Option<Ulid>, s: S) -> Result<S::Ok, S::Error> {
            id.as_ref().map(Text).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ulid>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| text.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}
