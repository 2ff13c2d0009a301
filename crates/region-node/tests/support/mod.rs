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

/// Places order `order_id`: one unit of `meal` at `fridge`, at a till,
/// for customer `customer`; panics if refused.
pub async fn place_at_till(
    district: &District,
    order_id: &str,
    customer: &str,
    (fridge, meal): (protocol::FridgeId, protocol::MealId),
) {
    let request = district::demo::one_unit(fridge, meal);
    let placed = district
        .submit(district::Command::Order(district::OrderCommand::Place {
            order_id: protocol::orders::OrderId::parse(order_id).unwrap(),
            customer: customer.to_string(),
            channel: protocol::orders::Channel::Pos,
            request,
            idempotency: None,
            referral: None,
        }))
        .await;
    assert!(placed.is_ok(), "order {order_id}: {placed:?}");
}

/// Opens the log in `dir`, waiting up to 5 s for a handle just dropped in
/// this process to let go of it: sled 0.34 closes its file (and releases
/// the lock on it) when its IO threads drop their last reference, which
/// under load can be after the `Db` itself was dropped.
pub fn try_open_log(dir: &Path) -> Result<EventLog, region_node::store::StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match EventLog::open(dir) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// [`try_open_log`], which must succeed.
pub fn open_log(dir: &Path) -> EventLog {
    try_open_log(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// The files in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
