//! Fixtures shared by the district's tests (`mod support;` in each): a meal
//! spec, the demo area, and applying decided events to a state the way the
//! node's writer does.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use district::DistrictState;
use protocol::DistrictId;
use protocol::{Event, EventEnvelope};

#[allow(unused_imports)] // each test file uses a part
pub use district::demo::{area as demo_area, plain_meal as meal_spec};

/// Applies decided events to `state` as the writer would (next seqs, `now`
/// as their time).
pub fn apply(state: &mut DistrictState, events: &[Event], now: DateTime<Utc>) {
    for event in events {
        let env = EventEnvelope {
            event_id: ulid::Ulid::from_parts(
                now.timestamp_millis() as u64,
                u128::from(state.last_seq()),
            ),
            seq: state.last_seq() + 1,
            stream_id: event.stream_id(),
            stream_version: state.stream_version(&event.stream_id()) + 1,
            district_id: DistrictId::from_static("detroit-downtown"),
            recorded_at: now,
            valid_from: now,
            correlation_id: None,
            causation_id: None,
            schema_version: 1,
            event: event.clone(),
        };
        district::evolve(state, &env);
    }
}
