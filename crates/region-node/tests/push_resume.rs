//! The push hub in process: for random interleavings of stock changes,
//! dropped connections and resumes with `since`, a client that applies
//! what it receives ends up with exactly the district's counts, sees every
//! version once, in increasing order, and never needs a resync while the
//! node keeps enough history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use district::{CatalogCommand, Command};
use protocol::catalog::{StockCount, StockSpec};
use protocol::{DistrictId, FridgeId, MealId};
use rand::{rngs::StdRng, Rng, SeedableRng};
use region_node::metrics::Metrics;
use region_node::push::hub::{Hub, HubConfig, Subscriber};
use region_node::push::Interest;
use region_node::writer::District;
use serde_json::Value;

mod support;

const FRIDGE: &str = "f-fox-theatre";
const MEALS: [&str; 3] = ["m-kale-caesar", "m-quinoa-bowl", "m-greek-salad"];
/// How long a frame the hub has queued may take to show up.
const FRAME_DEADLINE: Duration = Duration::from_secs(5);

/// What a client app keeps: the last count per meal and the last version.
#[derive(Default)]
struct App {
    counts: BTreeMap<String, u64>,
    version: Option<u64>,
    versions_seen: Vec<u64>,
}

impl App {
    /// Reads frames until `subscribed`; returns whether a resync came.
    async fn read_until_subscribed(&mut self, sub: &mut Subscriber) -> bool {
        let mut resync = false;
        loop {
            let frame = tokio::time::timeout(FRAME_DEADLINE, sub.frames.recv())
                .await
                .expect("a frame in time")
                .expect("hub alive");
            let m: Value = serde_json::from_slice(&frame).unwrap();
            match m["type"].as_str() {
                Some("subscribed") => {
                    self.version = m["version"].as_u64();
                    return resync;
                }
                Some("resync") => resync = true,
                _ => self.apply(&m),
            }
        }
    }

    fn apply(&mut self, m: &Value) {
        if m["type"] == "stock" {
            let v = m["version"].as_u64().unwrap();
            self.versions_seen.push(v);
            self.version = Some(v);
            self.counts.insert(
                m["meal_id"].as_str().unwrap().to_string(),
                m["available"].as_u64().unwrap(),
            );
        }
    }
}

async fn set(district: &District, meal: &'static str, units: u32) {
    district
        .submit(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static(meal),
                    units,
                }],
            },
        }))
        .await
        .unwrap();
}

#[tokio::test]
async fn resuming_in_any_interleaving_gives_exactly_the_districts_counts() {
    for seed in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let district = support::demo_writer(dir.path()).await;
        let hub = Hub::start(
            district.clone(),
            HubConfig {
                district_id: DistrictId::from_static("detroit-downtown"),
                district_prefixes: vec!["dpsby".into()],
                utc_offset_minutes: 0,
                queue_frames: 1024,
                resume_messages: 4096,
            },
            Arc::new(Metrics::default()),
            &region_node::lifecycle::Shutdown::never(),
        );
        let interest = Interest {
            fridges: [FridgeId::from_static(FRIDGE)].into(),
            ..Interest::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut app = App::default();
        // The app starts from the HTTP truth, then follows the pushes.
        for meal in MEALS {
            let level = district.state().stock_level(FRIDGE, meal);
            app.counts
                .insert(meal.to_string(), u64::from(level.available()));
        }
        let mut sub = hub.connect().await.unwrap();
        hub.follow(sub.id, interest.clone(), None).await;
        assert!(!app.read_until_subscribed(&mut sub).await);

        for _ in 0..rng.gen_range(5..30) {
            let meal = MEALS[rng.gen_range(0..MEALS.len())];
            set(&district, meal, rng.gen_range(0..20)).await;
            match rng.gen_range(0..4) {
                // Read what has arrived so far.
                0 => {
                    while let Ok(frame) = sub.frames.try_recv() {
                        app.apply(&serde_json::from_slice(&frame).unwrap());
                    }
                }
                // Drop the connection (whatever is queued is lost) and
                // come back with the last version seen.
                1 => {
                    hub.disconnect(sub.id);
                    drop(sub);
                    sub = hub.connect().await.unwrap();
                    hub.follow(sub.id, interest.clone(), app.version).await;
                    let resync = app.read_until_subscribed(&mut sub).await;
                    assert!(!resync, "seed {seed}: resync within the kept history");
                }
                _ => {}
            }
        }
        // Finally resume once more and compare with the district.
        hub.disconnect(sub.id);
        drop(sub);
        let mut sub = hub.connect().await.unwrap();
        hub.follow(sub.id, interest.clone(), app.version).await;
        assert!(!app.read_until_subscribed(&mut sub).await);

        let state = district.state();
        for meal in MEALS {
            let truth = u64::from(state.stock_level(FRIDGE, meal).available());
            assert_eq!(app.counts[meal], truth, "seed {seed}, {meal}");
        }
        let v = &app.versions_seen;
        assert!(
            v.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: versions must increase, no duplicates: {v:?}"
        );
    }
}
