//! Notifications through the push hub, in process: a customer's socket
//! gets theirs live, customers with no socket have theirs handed to the
//! phone-push queue, and a push queue nobody drains (a stuck provider)
//! slows neither the writer nor anyone's socket.

use std::sync::Arc;
use std::time::Duration;

use district::{CatalogCommand, Command, OrderCommand};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, PlaceOrder};
use protocol::{DistrictId, FridgeId, MealId};
use region_node::clock::Clock;
use region_node::metrics::Metrics;
use region_node::push::hub::{Hub, HubConfig, NotifyLink, Subscriber};
use region_node::push::Interest;
use region_node::writer::District;
use serde_json::Value;
use tokio::sync::mpsc;

mod support;

const FRIDGE: &str = "f-fox-theatre";
const MEAL: &str = "m-greek-salad";
const FRAME_DEADLINE: Duration = Duration::from_secs(5);

async fn place(d: &District, order_id: String, customer: &str) {
    let request: PlaceOrder = serde_json::from_value(serde_json::json!({
        "fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"
    }))
    .unwrap();
    d.submit(Command::Order(OrderCommand::Place {
        order_id: OrderId::parse(order_id).unwrap(),
        customer: customer.into(),
        channel: Channel::App,
        request,
        idempotency: None,
        referral: None,
    }))
    .await
    .unwrap();
}

/// Frames until a notification arrives; returns it.
async fn next_notification(sub: &mut Subscriber) -> Value {
    loop {
        let frame = tokio::time::timeout(FRAME_DEADLINE, sub.frames.recv())
            .await
            .expect("a frame in time")
            .expect("hub alive");
        let m: Value = serde_json::from_slice(&frame).unwrap();
        if m["type"] == "notification" {
            return m;
        }
    }
}

#[tokio::test]
async fn sockets_get_their_notifications_and_a_stuck_push_queue_slows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let district = support::demo_writer(dir.path()).await;
    district
        .submit(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: FridgeId::from_static(FRIDGE),
            spec: StockSpec {
                counts: vec![StockCount {
                    meal_id: MealId::from_static(MEAL),
                    units: 100,
                }],
            },
        }))
        .await
        .unwrap();
    // A push queue of one that nobody reads: the provider is stuck.
    let (offline, mut pushes) = mpsc::channel(1);
    let hub = Hub::start_with(
        district.clone(),
        HubConfig {
            district_id: DistrictId::from_static("detroit-downtown"),
            district_prefixes: vec!["dpsby".into()],
            utc_offset_minutes: 0,
            queue_frames: 64,
            resume_messages: 1024,
        },
        Arc::new(Metrics::default()),
        NotifyLink {
            clock: Clock::system(),
            offline: Some(offline),
        },
        &region_node::lifecycle::Shutdown::never(),
    );
    let mut bob = hub.connect().await.unwrap();
    let interest = Interest {
        customer: Some("bob".into()),
        ..Interest::default()
    };
    hub.follow(bob.id, interest, None).await;

    // Ten customers without a socket: ten notifications for a queue of one.
    for n in 0..10 {
        place(&district, format!("a-{n}"), &format!("away-{n}")).await;
    }
    // Bob's arrives at once, behind the other ten.
    place(&district, "b-1".into(), "bob").await;
    let note = next_notification(&mut bob).await;
    assert_eq!(note["kind"], "order_placed");
    assert_eq!(note["order_id"], "b-1");
    assert_eq!(note["version"], note["id"]);

    // The queue holds the first; the rest were dropped, not waited for.
    let first = pushes.try_recv().expect("the first notification");
    assert_eq!(first.customer, "away-0");
    assert!(matches!(
        &first.kind,
        district::notifications::NotificationKind::OrderPlaced { order_id, .. } if order_id.as_str() == "a-0"
    ));
    assert!(pushes.try_recv().is_err(), "only what fit was queued");
    // Bob's was delivered on his socket, so it was never a push.
}
