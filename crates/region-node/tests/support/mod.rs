//! Fixtures shared by the node's in-process tests (`mod support;` in each):
//! a meal spec, a writer on a directory, and applying decided events to a
//! state the way the writer does. Each test file uses a part of it.
#![allow(dead_code)]

use protocol::DistrictId;
use std::path::Path;
use std::sync::Arc;

use region_node::clock::Clock;
use region_node::lifecycle::Shutdown;
use region_node::metrics::Metrics;
use region_node::store::EventLog;
use region_node::writer::{District, WriterSetup};

#[allow(unused_imports)] // each test file uses a part
pub use district::demo::{area as demo_area, plain_meal as meal_spec};

/// The writer of district `detroit-downtown` on `log`, running until every
/// handle is dropped.
pub fn writer(log: EventLog, clock: Clock) -> District {
    writer_until(log, clock, Shutdown::never())
}

/// The same writer, stopped by `shutdown`.
pub fn writer_until(log: EventLog, clock: Clock, shutdown: Shutdown) -> District {
    District::start(
        WriterSetup {
            district_id: DistrictId::from_static("detroit-downtown"),
            area: demo_area(),
            log,
            clock,
            metrics: Arc::new(Metrics::default()),
            policy: Default::default(),
            fridge_policy: Default::default(),
            utc_offset_minutes: 0,
            schedule_policy: Default::default(),
            snapshots: None,
        },
        shutdown,
    )
    .unwrap()
}

/// A writer on `dir` with the demo district loaded.
pub async fn demo_writer(dir: &Path) -> District {
    let district = writer(EventLog::open(dir).unwrap(), Clock::system());
    region_node::demo::seed_if_empty(&district, "detroit-downtown")
        .await
        .unwrap();
    district
}
