//! Issue 4: live catalog and stock over WebSocket (`/v1/ws`).
//!
//! A node with the demo district and no NATS: orders stay held (the outbox
//! waits), which is all these stories need — reservations and cancels move
//! stock, and every move must reach the right subscribers at once.

use std::time::Duration;

use larder_tests::ws::Ended;
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const FAR_FRIDGE: &str = "f-new-center";

fn area(lat: f64, lon: f64, radius_m: u32) -> Value {
    json!({"lat": lat, "lon": lon, "radius_m": radius_m})
}

fn campus_area() -> Value {
    area(42.3316, -83.0466, 300)
}

fn new_center_area() -> Value {
    area(42.3695, -83.0755, 300)
}

async fn node_with_stock(flags: &[&str], units: u32) -> Node {
    let mut args = vec!["--demo"];
    args.extend_from_slice(flags);
    let node = Node::start(&args).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, units)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    node
}

fn version(m: &Value) -> u64 {
    m["version"]
        .as_u64()
        .expect("every message carries a version")
}

fn is_stock_of(m: &Value, fridge: &str) -> bool {
    m["type"] == "stock" && m["fridge_id"] == fridge
}

/// Every meal any demo fridge offers, sorted.
async fn district_meals(node: &Node) -> Vec<String> {
    node.catalog(42.3316, -83.0466, 50_000).await["fridges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["meals"].as_array().unwrap().clone())
        .map(|m| m["meal_id"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn an_area_subscriber_sees_an_order_take_stock_and_a_cancel_give_it_back() {
    let node = node_with_stock(&[], 5).await;
    let mut here = WsClient::connect(&node, None).await;
    let mut elsewhere = WsClient::connect(&node, None).await;
    here.subscribe(json!({"areas": [campus_area()]})).await;
    elsewhere
        .subscribe(json!({"areas": [new_center_area()]}))
        .await;

    let alice = node.as_role("customer", "alice");
    let r = alice.order(FRIDGE, &[(MEAL, 2)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let dropped = here.expect_stock(FRIDGE, MEAL, 3).await;

    let order_id = r.body["order_id"].as_str().unwrap();
    let r = alice.cancel(order_id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let back = here.expect_stock(FRIDGE, MEAL, 5).await;
    assert!(version(&back) > version(&dropped));

    // The other area hears about its own fridge, and never about this one.
    let r = node.admin().set_stock(FAR_FRIDGE, &[(MEAL, 9)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    elsewhere.expect_stock(FAR_FRIDGE, MEAL, 9).await;
    assert!(
        elsewhere
            .seen_matching(|m| is_stock_of(m, FRIDGE))
            .is_empty(),
        "{:#?}",
        elsewhere.seen
    );
    // And the campus subscriber never heard about New Center.
    assert!(here
        .seen_matching(|m| is_stock_of(m, FAR_FRIDGE))
        .is_empty());
}

#[tokio::test]
async fn a_fridge_subscriber_sees_changes_and_a_meal_change_is_announced_as_a_fact() {
    let node = node_with_stock(&[], 5).await;
    let mut ws = WsClient::connect(&node, None).await;
    let ack = ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    assert_eq!(ack["fridges"], 1);

    node.admin().set_stock(FRIDGE, &[(MEAL, 7)]).await;
    ws.expect_stock(FRIDGE, MEAL, 7).await;

    let r = node
        .admin()
        .put_meal(MEAL, meal_spec("Greek Salad", 1295))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fact = ws
        .expect("catalog_updated", |m| m["type"] == "catalog_updated")
        .await;
    assert_eq!(fact["catalog_id"], "detroit-downtown");
    assert!(
        fact.get("fridges").is_none(),
        "the fact only, not the catalog"
    );
    // The catalog_version is what a refetch returns.
    let catalog = node.catalog(42.3316, -83.0466, 500).await;
    assert_eq!(fact["catalog_version"], catalog["version"]);
}

#[tokio::test]
async fn customers_only_receive_their_own_order_messages() {
    let node = node_with_stock(&[], 10).await;
    let (alice_token, bob_token) = (
        token("customer", "alice", &[]),
        token("customer", "bob", &[]),
    );
    let mut alice_ws = WsClient::connect(&node, Some(&alice_token)).await;
    let mut bob_ws = WsClient::connect(&node, None).await;
    alice_ws.subscribe(json!({"orders": true})).await;
    // A browser passes the token in the message instead of a header.
    bob_ws
        .subscribe(json!({"orders": true, "token": bob_token}))
        .await;

    let alice = node.as_role("customer", "alice");
    let bob = node.as_role("customer", "bob");
    let a = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    let b = bob.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    let (a_id, b_id) = (
        a.body["order_id"].as_str().unwrap().to_string(),
        b.body["order_id"].as_str().unwrap().to_string(),
    );
    alice_ws
        .expect("alice's order held", |m| {
            m["type"] == "order" && m["order_id"] == a_id.as_str() && m["status"] == "held"
        })
        .await;
    bob_ws
        .expect("bob's order held", |m| {
            m["type"] == "order" && m["order_id"] == b_id.as_str() && m["status"] == "held"
        })
        .await;
    alice.cancel(&a_id).await;
    bob.cancel(&b_id).await;
    alice_ws
        .expect("alice's order cancelled", |m| {
            m["order_id"] == a_id.as_str() && m["status"] == "cancelled"
        })
        .await;
    bob_ws
        .expect("bob's order cancelled", |m| {
            m["order_id"] == b_id.as_str() && m["status"] == "cancelled"
        })
        .await;

    assert!(alice_ws
        .seen_matching(|m| m["order_id"] == b_id.as_str())
        .is_empty());
    assert!(bob_ws
        .seen_matching(|m| m["order_id"] == a_id.as_str())
        .is_empty());

    // Without a token there are no orders to follow.
    let mut anonymous = WsClient::connect(&node, None).await;
    anonymous
        .send_json(json!({"type": "subscribe", "orders": true}))
        .await;
    let err = anonymous.expect("error", |m| m["type"] == "error").await;
    assert_eq!(err["code"], "unauthorized");
}

#[tokio::test]
async fn resuming_with_since_delivers_exactly_what_was_missed() {
    let node = node_with_stock(&[], 1).await;
    let admin = node.admin();
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    admin.set_stock(FRIDGE, &[(MEAL, 2)]).await;
    let last = ws.expect_stock(FRIDGE, MEAL, 2).await;
    drop(ws);

    // Missed while away: three changes here, one at a fridge not followed.
    for units in [3, 4, 5] {
        admin.set_stock(FRIDGE, &[(MEAL, units)]).await;
    }
    admin.set_stock(FAR_FRIDGE, &[(MEAL, 1)]).await;

    let mut ws = WsClient::connect(&node, None).await;
    let ack = ws
        .subscribe(json!({"fridges": [FRIDGE], "since": version(&last)}))
        .await;
    let replayed: Vec<u64> = ws
        .seen_matching(|m| m["type"] == "stock")
        .iter()
        .map(|m| m["available"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, vec![3, 4, 5], "{:#?}", ws.seen);
    let versions: Vec<u64> = ws.seen.iter().map(version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert!(version(&ack) >= *versions.last().unwrap());

    // Then live, with nothing repeated.
    admin.set_stock(FRIDGE, &[(MEAL, 6)]).await;
    ws.expect_stock(FRIDGE, MEAL, 6).await;
    let stock: Vec<u64> = ws
        .seen_matching(|m| m["type"] == "stock")
        .iter()
        .map(|m| m["available"].as_u64().unwrap())
        .collect();
    assert_eq!(stock, vec![3, 4, 5, 6]);
}

#[tokio::test]
async fn a_since_older_than_the_node_keeps_yields_one_resync() {
    let node = node_with_stock(&["--ws-resume-messages", "4"], 1).await;
    let mut ws = WsClient::connect(&node, None).await;
    let first = ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    drop(ws);
    for units in 2..10 {
        node.admin().set_stock(FRIDGE, &[(MEAL, units)]).await;
    }
    let mut ws = WsClient::connect(&node, None).await;
    let ack = ws
        .subscribe(json!({"fridges": [FRIDGE], "since": version(&first)}))
        .await;
    let resyncs = ws.seen_matching(|m| m["type"] == "resync");
    assert_eq!(resyncs.len(), 1, "{:#?}", ws.seen);
    assert!(ws.seen_matching(|m| m["type"] == "stock").is_empty());
    assert_eq!(version(&resyncs[0]), version(&ack));

    // A version this node never issued (from before a wipe) is no better.
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE], "since": version(&ack) + (1 << 40)}))
        .await;
    assert_eq!(ws.seen_matching(|m| m["type"] == "resync").len(), 1);
}

#[tokio::test]
async fn changes_queued_for_a_client_arrive_complete_and_in_order() {
    // The node writes whatever a connection has queued with one flush; that
    // must never lose, repeat or reorder a message. The client reads only
    // after all the changes, so their messages pile up for it.
    const ROUNDS: u32 = 12;
    let node = node_with_stock(&[], 1).await;
    let meals = district_meals(&node).await;
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    let admin = node.admin();
    for round in 1..=ROUNDS {
        // Counts no demo fridge starts with, so every meal changes.
        let counts: Vec<(&str, u32)> = meals.iter().map(|m| (m.as_str(), 1_000 + round)).collect();
        let r = admin.set_stock(FRIDGE, &counts).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let want = meals.len() * ROUNDS as usize;
    let mut stock = Vec::new();
    while stock.len() < want {
        let m = ws
            .next(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{} of {want} stock messages", stock.len()));
        if is_stock_of(&m, FRIDGE) {
            stock.push(m);
        }
    }
    let versions: Vec<u64> = stock.iter().map(version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions increase: {versions:?}"
    );
    for meal in &meals {
        let counts: Vec<u64> = stock
            .iter()
            .filter(|m| m["meal_id"] == meal.as_str())
            .map(|m| m["available"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=ROUNDS).map(|r| u64::from(1_000 + r)).collect();
        assert_eq!(counts, expected, "{meal}");
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_others_keep_receiving() {
    let node = node_with_stock(&["--ws-queue-frames", "64"], 1).await;
    let mut stuck = WsClient::connect_with_small_buffer(&node).await;
    stuck
        .send_json(json!({"type": "subscribe", "fridges": [FRIDGE]}))
        .await;
    let mut reader = WsClient::connect(&node, None).await;
    reader.subscribe(json!({"fridges": [FRIDGE]})).await;

    let meals = district_meals(&node).await;
    let admin = node.admin();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0u32;
    while node.metric("larder_ws_slow_disconnects_total").await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck client was never cut off"
        );
        round += 1;
        let counts: Vec<(&str, u32)> = meals.iter().map(|m| (m.as_str(), round)).collect();
        let r = admin.set_stock(FRIDGE, &counts).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The reading client keeps up, every round.
        reader
            .expect_stock(FRIDGE, &meals[0], u64::from(round))
            .await;
        reader.seen.clear();
    }
    // After the cut, the reader still gets changes at once.
    let r = admin.set_stock(FRIDGE, &[(MEAL, 999)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    reader.expect_stock(FRIDGE, MEAL, 999).await;

    match stuck.ended(Duration::from_secs(30)).await {
        Some(Ended::Closed { code, reason }) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("too slow"), "{reason}");
        }
        Some(Ended::Dropped) => {} // The close frame could not get through.
        None => panic!("the stuck client's connection is still open"),
    }
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_the_node_keeps_serving() {
    let node = node_with_stock(&["--ws-max-subscriptions", "3"], 1).await;
    let mut ws = WsClient::connect(&node, None).await;
    let cases = [
        ("{not json", "malformed_message"),
        (r#"{"kind":"subscribe"}"#, "malformed_message"),
        (r#"{"type":"teleport"}"#, "unknown_type"),
        (r#"{"type":"subscribe","fridges":"f-1"}"#, "invalid_message"),
        (r#"{"type":"subscribe","colour":"red"}"#, "invalid_message"),
        (
            r#"{"type":"subscribe","fridges":["f-nowhere"]}"#,
            "unknown_fridge",
        ),
        (
            r#"{"type":"subscribe","areas":[{"lat":91,"lon":0,"radius_m":100}]}"#,
            "invalid_area",
        ),
        (
            r#"{"type":"subscribe","areas":[{"lat":42.3,"lon":-83,"radius_m":999999}]}"#,
            "invalid_area",
        ),
        (
            r#"{"type":"subscribe","fridges":["f-campus-martius","f-fox-theatre","f-corktown","f-wsu"]}"#,
            "too_many_subscriptions",
        ),
    ];
    for (frame, code) in cases {
        ws.send_text(frame).await;
        let err = ws.expect(code, |m| m["type"] == "error").await;
        assert_eq!(err["code"], code, "for {frame}: {err}");
        assert!(!err["message"].as_str().unwrap_or("").is_empty());
    }
    ws.send_binary(vec![1, 2, 3]).await;
    let err = ws.expect("binary error", |m| m["type"] == "error").await;
    assert_eq!(err["code"], "binary_not_supported");

    // Nothing above subscribed to anything: a change is not pushed.
    ws.send_json(json!({"type": "ping"})).await;
    ws.expect("pong", |m| m["type"] == "pong").await;
    node.admin().set_stock(FRIDGE, &[(MEAL, 4)]).await;
    let ack = ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    assert_eq!(ack["fridges"], 1);
    assert!(ws.seen_matching(|m| m["type"] == "stock").is_empty());

    // An oversized frame closes the connection with a reason.
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(64 * 1024));
    ws.send_text(&huge).await;
    assert_eq!(
        ws.ended(Duration::from_secs(5)).await,
        Some(Ended::Closed {
            code: 1009,
            reason: "frame too big".into()
        })
    );

    // The node keeps serving.
    let mut again = WsClient::connect(&node, None).await;
    again.subscribe(json!({"fridges": [FRIDGE]})).await;
    node.admin().set_stock(FRIDGE, &[(MEAL, 5)]).await;
    again.expect_stock(FRIDGE, MEAL, 5).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_a_reason() {
    let node = Node::start(&["--demo", "--ws-max-connections", "2"]).await;
    let _a = WsClient::connect(&node, None).await;
    let _b = WsClient::connect(&node, None).await;
    match WsClient::try_connect(&node, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}"))
                .unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
        }
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("a third connection was accepted"),
    }
    // A forged token is refused before the upgrade.
    match WsClient::try_connect(&node, Some(&foreign_token("customer"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // Closing one frees its slot.
    drop(_a);
    eventually("a slot frees up", Duration::from_secs(5), || async {
        WsClient::try_connect(&node, None).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn an_idle_client_is_closed_and_an_answering_one_is_kept() {
    let node = Node::start(&[
        "--demo",
        "--ws-idle-timeout-secs",
        "2",
        "--ws-ping-interval-secs",
        "1",
    ])
    .await;
    let mut silent = WsClient::connect(&node, None).await;
    let mut lively = WsClient::connect(&node, None).await;
    lively.subscribe(json!({"fridges": [FRIDGE]})).await;
    // `lively` reads (so its client answers pings) for longer than the
    // idle timeout; `silent` does not read at all.
    assert_eq!(lively.next(Duration::from_secs(4)).await, None);
    assert_eq!(
        silent.ended(Duration::from_secs(5)).await,
        Some(Ended::Closed {
            code: 1001,
            reason: "idle timeout".into()
        })
    );
    lively.send_json(json!({"type": "ping"})).await;
    lively.expect("pong", |m| m["type"] == "pong").await;
}
