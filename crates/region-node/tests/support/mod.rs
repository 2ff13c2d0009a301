//! Fixtures shared by the node's in-process tests (`mod support;` in each):
//! a meal spec, a writer on a directory, and applying decided events to a
//! state the way the writer does. Each test file uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use protocol::catalog::{MealSpec, Nutrition};
use protocol::{Event, EventEnvelope};
use region_node::clock::Clock;
use region_node::domain::{self, DistrictState};
use region_node::lifecycle::Shutdown;
use region_node::metrics::Metrics;
use region_node::store::EventLog;
use region_node::writer::{District, WriterSetup};

/// The demo district's geohash prefixes (`deploy/dev/region-detroit.toml`).
pub const DEMO_PREFIXES: [&str; 3] = ["dpsbv", "dpsby", "dpscj"];

/// A plain meal from kitchen `k-1` at `price` minor units.
pub fn meal_spec(price: i64) -> MealSpec {
    MealSpec {
        name: "Bowl".into(),
        description: String::new(),
        kitchen_id: "k-1".into(),
        price,
        currency: "USD".to_string().try_into().unwrap(),
        nutrition: Nutrition {
            kcal: 500,
            protein_mg: 1,
            fat_mg: 1,
            carbs_mg: 2,
            sugar_mg: 1,
            salt_mg: 1,
        },
        allergens: vec![],
        ingredients: vec![],
        tags: vec![],
        shelf_life_hours: 24,
    }
}

pub fn demo_area() -> protocol::geo::DistrictArea {
    protocol::geo::DistrictArea::new(DEMO_PREFIXES.iter().map(|p| p.to_string()).collect()).unwrap()
}

/// The writer of district `detroit-downtown` on `log`, running until every
/// handle is dropped.
pub fn writer(log: EventLog, clock: Clock) -> District {
    writer_until(log, clock, Shutdown::never())
}

/// The same writer, stopped by `shutdown`.
pub fn writer_until(log: EventLog, clock: Clock, shutdown: Shutdown) -> District {
    District::start(
        WriterSetup {
            district_id: "detroit-downtown".into(),
            area: demo_area(),
            log,
            clock,
            metrics: Arc::new(Metrics::default()),
            policy: Default::default(),
            fridge_policy: Default::default(),
        },
        shutdown,
    )
    .unwrap()
}

/// A writer on `dir` with the demo district loaded.
pub async fn demo_writer(dir: &Path) -> District {
    let district = writer(EventLog::open(dir).unwrap(), Clock::system());
    region_node::demo::seed_if_empty(&district).await.unwrap();
    district
}

/// Applies decided events to `state` as the writer would (next seqs, `now`
/// as their time).
pub fn apply(state: &mut DistrictState, events: &[Event], now: DateTime<Utc>) {
    for event in events {
        let env = EventEnvelope {
            event_id: ulid::Ulid::new(),
            seq: state.last_seq + 1,
            stream_id: event.stream_id(),
            stream_version: state.stream_version(&event.stream_id()) + 1,
            district_id: "detroit-downtown".into(),
            recorded_at: now,
            valid_from: now,
            correlation_id: None,
            causation_id: None,
            schema_version: 1,
            event: event.clone(),
        };
        domain::evolve(state, &env);
    }
}
