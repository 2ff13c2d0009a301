//! The push hub's fan-out in process: a message is encoded once and the
//! same encoding reaches every connection that wants it (by fridge or by an
//! area's cells), and no other.

use std::sync::Arc;
use std::time::Duration;

use district::{CatalogCommand, Command};
use protocol::catalog::{StockCount, StockSpec};
use protocol::{DistrictId, FridgeId, MealId};
use region_node::metrics::Metrics;
use region_node::push::hub::{Frame, Hub, HubConfig, Subscriber};
use region_node::push::{cover, AreaSpec, Interest};
use serde_json::Value;

mod support;

const FRIDGE: &str = "f-fox-theatre";
const OTHER_FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// How long a frame the hub has queued may take to show up.
const FRAME_DEADLINE: Duration = Duration::from_secs(5);

async fn next(sub: &mut Subscriber) -> (Frame, Value) {
    let frame = tokio::time::timeout(FRAME_DEADLINE, sub.frames.recv())
        .await
        .expect("a frame in time")
        .expect("hub alive");
    let value = serde_json::from_slice(&frame).expect("JSON");
    (frame, value)
}

async fn follow(hub: &Hub, interest: Interest) -> Subscriber {
    let mut sub = hub.connect().await.expect("hub alive");
    hub.follow(sub.id, interest, None).await;
    let (_, ack) = next(&mut sub).await;
    assert_eq!(ack["type"], "subscribed");
    sub
}

fn fridges(ids: &[&'static str]) -> Interest {
    Interest {
        fridges: ids.iter().map(|f| FridgeId::from_static(f)).collect(),
        ..Interest::default()
    }
}

#[tokio::test]
async fn one_encoding_reaches_every_interested_connection_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let district = support::demo_writer(dir.path()).await;
    let hub = Hub::start(
        district.clone(),
        HubConfig {
            district_id: DistrictId::from_static("detroit-downtown"),
            district_prefixes: vec!["dpsby".into()],
            utc_offset_minutes: 0,
            queue_frames: 64,
            resume_messages: 64,
        },
        Arc::new(Metrics::default()),
        &region_node::lifecycle::Shutdown::never(),
    );
    let state = district.state();
    let at = state
        .catalog()
        .fridge(FRIDGE)
        .expect("demo fridge")
        .position;
    let area = AreaSpec {
        lat: at.lat,
        lon: at.lon,
        radius_m: 200,
    };
    let by_area = Interest {
        areas: vec![(area, cover(&at, area.radius_m))],
        ..Interest::default()
    };
    let mut fridge_a = follow(&hub, fridges(&[FRIDGE])).await;
    let mut fridge_b = follow(&hub, fridges(&[FRIDGE, OTHER_FRIDGE])).await;
    let mut area_c = follow(&hub, by_area).await;
    let mut other = follow(&hub, fridges(&[OTHER_FRIDGE])).await;

    district
        .submit(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static(MEAL),
                    units: 4_321,
                }],
            },
        }))
        .await
        .unwrap();

    let (first, msg) = next(&mut fridge_a).await;
    assert_eq!(
        (msg["type"].as_str(), msg["available"].as_u64()),
        (Some("stock"), Some(4_321))
    );
    for sub in [&mut fridge_b, &mut area_c] {
        let (frame, _) = next(sub).await;
        assert!(frame.shares_encoding(&first), "encoded once, shared");
        assert_eq!(&*frame, &*first);
    }
    // The hub handles a batch before the next control message: had the
    // other fridge's follower been sent the change, it would come first.
    hub.follow(other.id, fridges(&[OTHER_FRIDGE]), None).await;
    let (_, m) = next(&mut other).await;
    assert_eq!(
        m["type"], "subscribed",
        "not the other fridge's change: {m}"
    );
}
