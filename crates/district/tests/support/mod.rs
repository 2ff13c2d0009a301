//! Fixtures shared by the district's tests (`mod support;` in each): a meal
//! spec, the demo area, applying decided events to a state the way the
//! node's writer does, and rebuilding a state from those events the way a
//! restarting node does.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use district::DistrictState;
use protocol::DistrictId;
use protocol::{Event, EventEnvelope};

/// The district every envelope made here belongs to.
pub const DISTRICT: &str = "detroit-downtown";

#[allow(unused_imports)] // each test file uses a part
pub use district::demo::{area as demo_area, plain_meal as meal_spec};

/// Applies decided events to `state` as the writer would (next seqs, `now`
/// as their time).
pub fn apply(state: &mut DistrictState, events: &[Event], now: DateTime<Utc>) {
    record(state, events, now);
}

/// [`apply`], returning the envelopes as the log would hold them, for tests
/// that rebuild the state from the log (see [`restart`]).
pub fn record(
    state: &mut DistrictState,
    events: &[Event],
    now: DateTime<Utc>,
) -> Vec<EventEnvelope> {
    let mut recorded = Vec::with_capacity(events.len());
    for event in events {
        let env = EventEnvelope {
            event_id: ulid::Ulid::from_parts(
                now.timestamp_millis() as u64,
                u128::from(state.last_seq()),
            ),
            seq: state.last_seq() + 1,
            stream_id: event.stream_id(),
            stream_version: state.stream_version(&event.stream_id()) + 1,
            district_id: DistrictId::from_static(DISTRICT),
            recorded_at: now,
            valid_from: now,
            correlation_id: None,
            causation_id: None,
            schema_version: 1,
            event: event.clone(),
        };
        district::evolve(state, &env);
        recorded.push(env);
    }
    recorded
}

/// The state a node starting up would have: a snapshot taken partway
/// through the log (here: halfway), encoded and decoded as the node's
/// snapshot file holds it, then the rest of the log folded on top, as
/// `region_node::snapshot::recover` does. The one place a test restarts.
pub fn restart(log: &[EventEnvelope]) -> DistrictState {
    let split = log.len() / 2;
    let mut state = DistrictState::default();
    for env in &log[..split] {
        district::evolve(&mut state, env);
    }
    let snapshot = postcard::to_stdvec(&state).expect("a state encodes");
    let mut state: DistrictState = postcard::from_bytes(&snapshot).expect("a snapshot decodes");
    for env in &log[split..] {
        district::evolve(&mut state, env);
    }
    state
}

/// A pricing moment for catalog reads (no campaign is defined in these
/// tests, so any moment prices at list).
pub fn when() -> district::promotions::When {
    let utc = DateTime::<Utc>::UNIX_EPOCH;
    district::promotions::When {
        local: utc.naive_utc(),
        utc,
    }
}

/// The demo district's decision context at `now`, with default policies.
pub fn context(now: DateTime<Utc>) -> district::Context {
    district::Context {
        district_id: DistrictId::from_static(DISTRICT),
        area: demo_area(),
        now,
        policy: Default::default(),
        fridges: Default::default(),
        utc_offset_minutes: 0,
        schedule: Default::default(),
    }
}
