//! Issue 14 (part 3): one notification stream per customer — live over
//! the WebSocket, replayed with `since`, polled over HTTP, pushed to the
//! phone (file push adapter here) when the customer has no socket, held
//! during their quiet hours, and a pickup reminder once before the
//! deadline.
//!
//! Real binaries: nats-server, payments, one node with the demo district,
//! a dev clock and `--push-file`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Timelike;
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// How long a push may take to reach the file once it may be sent (the
/// adapter looks at held pushes every second).
const PUSH_FILE_DEADLINE: Duration = Duration::from_secs(10);

struct System {
    node: Node,
    push_file: PathBuf,
    _dir: tempfile::TempDir,
    _payments: Payments,
    _nats: Nats,
}

async fn system(extra: &[&str]) -> System {
    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let push_file = dir.path().join("pushes.jsonl");
    let path = push_file.to_str().expect("utf-8 path").to_string();
    let mut flags = vec!["--push-file", path.as_str()];
    flags.extend_from_slice(extra);
    let node = Node::start_with_nats(&nats, &flags).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 20)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    System {
        node,
        push_file,
        _dir: dir,
        _payments: payments,
        _nats: nats,
    }
}

/// Every push the file adapter wrote so far.
fn pushes(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per push"))
        .collect()
}

fn pushed(path: &Path, customer: &str, order_id: &str, kind: &str) -> bool {
    pushes(path).iter().any(|p| {
        p["customer"] == customer
            && p["notification"]["order_id"] == order_id
            && p["notification"]["kind"] == kind
    })
}

async fn await_pushed(path: &Path, customer: &str, order_id: &str, kind: &str) {
    eventually(
        &format!("a {kind} push of {order_id} to {customer}"),
        PUSH_FILE_DEADLINE,
        || async { pushed(path, customer, order_id, kind) },
    )
    .await;
}

fn order_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().expect("order_id").to_string()
}

fn is_note(m: &Value, order_id: &str, kind: &str) -> bool {
    m["type"] == "notification" && m["order_id"] == order_id && m["kind"] == kind
}

/// The caller's notifications over HTTP after `since`.
async fn polled(client: &Client, since: u64) -> Vec<Value> {
    let r = client
        .get(&format!("/v1/me/notifications?since={since}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pays an app order: past its grace window, then the payment result.
async fn pay(node: &Node, order_id: &str) {
    node.advance_clock(25).await;
    node.await_status(order_id, "purchased", PAYMENT_DEADLINE)
        .await;
}

#[tokio::test]
async fn a_connected_customer_sees_notifications_live_and_a_reconnect_gets_exactly_the_missed() {
    let sys = system(&[]).await;
    let node = &sys.node;
    let alice = node.as_role("customer", "alice");
    let alice_token = token("customer", "alice", &[]);
    let mut ws = WsClient::connect(node, Some(&alice_token)).await;
    ws.subscribe(json!({"orders": true})).await;

    // Live: placed, then paid with the pickup code.
    let o1 = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    ws.expect("order_placed", |m| is_note(m, &o1, "order_placed"))
        .await;
    pay(node, &o1).await;
    let paid = ws
        .expect("order_paid", |m| is_note(m, &o1, "order_paid"))
        .await;
    assert_eq!(
        paid["pickup_code"].as_str().map(str::len),
        Some(6),
        "{paid}"
    );
    assert_eq!(paid["version"], paid["id"], "{paid}");
    let last = paid["version"].as_u64().expect("version");

    // Away (the hub has let go once `subscribed` answers the unsubscribe).
    ws.send_json(json!({"type": "unsubscribe", "orders": true}))
        .await;
    ws.expect("subscribed", |m| {
        m["type"] == "subscribed" && m["orders"] == false
    })
    .await;
    drop(ws);
    let o2 = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    let r = alice.cancel(&o2).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Someone else's order is never part of alice's stream.
    let bob = node.as_role("customer", "bob");
    let b1 = order_id(&bob.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);

    // Polling sees the two missed ones.
    let missed = polled(&alice, last).await;
    let kinds: Vec<(&str, &str)> = missed
        .iter()
        .map(|n| {
            (
                n["order_id"].as_str().unwrap_or(""),
                n["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (o2.as_str(), "order_placed"),
            (o2.as_str(), "order_cancelled")
        ],
        "{missed:#?}"
    );

    // A reconnect with `since` replays exactly those, in order, then live.
    let mut ws = WsClient::connect(node, Some(&alice_token)).await;
    ws.subscribe(json!({"orders": true, "since": last})).await;
    let replayed: Vec<Value> = ws
        .seen_matching(|m| m["type"] == "notification")
        .into_iter()
        .map(|mut m| {
            if let Some(o) = m.as_object_mut() {
                o.remove("type");
                o.remove("version");
            }
            m
        })
        .collect();
    assert_eq!(replayed, missed, "{:#?}", ws.seen);
    assert!(ws
        .seen_matching(|m| m["order_id"] == b1.as_str())
        .is_empty());
    let r = alice.cancel(&o1).await; // Paid: refunded.
    assert_eq!(r.status, 200, "{}", r.body);
    ws.expect_within("order_refunded", PAYMENT_DEADLINE, |m| {
        is_note(m, &o1, "order_refunded")
    })
    .await;

    // Pushes went to the phone only while alice had no socket.
    await_pushed(&sys.push_file, "alice", &o2, "order_cancelled").await;
    assert!(pushed(&sys.push_file, "alice", &o2, "order_placed"));
    assert!(!pushed(&sys.push_file, "alice", &o1, "order_placed"));
    assert!(!pushed(&sys.push_file, "alice", &o1, "order_paid"));
    await_pushed(&sys.push_file, "bob", &b1, "order_placed").await;
}

/// Minutes after the district's local midnight, `offset` minutes from now.
async fn local_hhmm(node: &Node, offset: i64) -> String {
    // The dev config's district is at UTC-5.
    let local = node.clock_now().await + chrono::Duration::minutes(offset - 300);
    format!("{:02}:{:02}", local.hour(), local.minute())
}

#[tokio::test]
async fn quiet_hours_hold_a_phone_push_until_they_end_and_the_socket_is_not_affected() {
    let sys = system(&[]).await;
    let node = &sys.node;
    let (alice, bob) = (
        node.as_role("customer", "alice"),
        node.as_role("customer", "bob"),
    );
    let (start, end) = (local_hhmm(node, -1).await, local_hhmm(node, 60).await);
    let r = alice
        .put(
            "/v1/me/quiet-hours",
            json!({"quiet_hours": {"start": start, "end": end}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quiet_hours"], json!({"start": start, "end": end}));
    assert_eq!(alice.get("/v1/me/quiet-hours").await.body, r.body);

    // Alice's push comes first and is held; bob's, after it, is sent.
    let a1 = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    let b1 = order_id(&bob.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    await_pushed(&sys.push_file, "bob", &b1, "order_placed").await;
    assert!(!pushed(&sys.push_file, "alice", &a1, "order_placed"));
    // Her stream itself is not quiet.
    let polled = polled(&alice, 0).await;
    assert!(
        polled.iter().any(|n| n["order_id"] == a1.as_str()),
        "{polled:#?}"
    );

    // The quiet hours end: the held push goes out, stamped after the end.
    node.advance_clock(61 * 60).await;
    await_pushed(&sys.push_file, "alice", &a1, "order_placed").await;
    let push = pushes(&sys.push_file)
        .into_iter()
        .find(|p| p["customer"] == "alice")
        .expect("alice's push");
    let sent_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(push["sent_at"].clone()).expect("sent_at");
    let sent_local = sent_at - chrono::Duration::minutes(300);
    let sent = format!("{:02}:{:02}", sent_local.hour(), sent_local.minute());
    assert!(
        sent >= end || end < start,
        "sent at {sent}, quiet until {end}"
    );

    // Cleared: nothing is held any more.
    let r = alice
        .put("/v1/me/quiet-hours", json!({"quiet_hours": null}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quiet_hours"], Value::Null);
}

#[tokio::test]
async fn a_pickup_reminder_arrives_once_before_the_deadline_even_across_a_restart() {
    let mut sys = system(&[
        "--pickup-window-secs",
        "3600",
        "--reminder-lead-minutes",
        "30",
    ])
    .await;
    let alice = sys.node.as_role("customer", "alice");
    let alice_token = token("customer", "alice", &[]);
    let o1 = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    pay(&sys.node, &o1).await;

    let mut ws = WsClient::connect(&sys.node, Some(&alice_token)).await;
    ws.subscribe(json!({"orders": true})).await;
    sys.node.advance_clock(20 * 60).await; // 40 min left: not yet.
    sys.node.advance_clock(11 * 60).await; // 29 min left.
    let reminder = ws
        .expect_within("pickup_reminder", Duration::from_secs(5), |m| {
            is_note(m, &o1, "pickup_reminder")
        })
        .await;
    assert_eq!(reminder["fridge_id"], FRIDGE);
    assert_eq!(reminder["pickup_code"].as_str().map(str::len), Some(6));
    drop(ws);

    // A restart, then past the deadline: unclaimed, and still one reminder.
    sys.node.restart().await;
    let alice = sys.node.as_role("customer", "alice");
    sys.node.advance_clock(30 * 60).await;
    sys.node
        .await_status(&o1, "unclaimed", Duration::from_secs(10))
        .await;
    let unclaimed = |n: &Value| n["kind"] == "order_unclaimed" && n["order_id"] == o1.as_str();
    eventually("order_unclaimed polled", Duration::from_secs(5), || async {
        polled(&alice, 0).await.iter().any(unclaimed)
    })
    .await;
    let all = polled(&alice, 0).await;
    let reminders = all
        .iter()
        .filter(|n| n["kind"] == "pickup_reminder")
        .count();
    assert_eq!(reminders, 1, "{all:#?}");
    // Alice had no socket after the reminder: the unclaimed one was pushed.
    await_pushed(&sys.push_file, "alice", &o1, "order_unclaimed").await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let sys = system(&[]).await;
    let node = &sys.node;
    let alice = node.as_role("customer", "alice");
    for body in [
        json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
        json!({"quiet_hours": {"start": "7:00", "end": "08:00"}}),
        json!({"quiet_hours": {"start": "22:00", "end": "22:00"}}),
    ] {
        let r = alice.put("/v1/me/quiet-hours", body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.code(), "invalid_quiet_hours");
    }
    for body in [
        json!({"quiet_hours": {"start": "22:00"}}),
        json!({"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "x"}}),
        json!({}),
        json!({"quiet_hours": 7}),
    ] {
        let r = alice.put("/v1/me/quiet-hours", body.clone()).await;
        assert!(
            matches!(r.status, 400 | 422),
            "{body}: {} {}",
            r.status,
            r.body
        );
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
    }
    let seq = node.log_seq().await;
    let r = alice.get("/v1/me/quiet-hours").await;
    assert_eq!(r.body["quiet_hours"], Value::Null, "{}", r.body);
    assert_eq!(node.log_seq().await, seq);

    let r = alice.get("/v1/me/notifications?since=abc").await;
    assert_eq!((r.status, r.code()), (400, "invalid_query"), "{}", r.body);
    let r = alice.get("/v1/me/notifications?since=-1").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let pos = node.as_role("pos", "till-1");
    let r = pos.get("/v1/me/notifications").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = pos
        .put("/v1/me/quiet-hours", json!({"quiet_hours": null}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = node.anonymous().get("/v1/me/notifications").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(node.log_seq().await, seq);
}

#[tokio::test]
async fn a_quarantine_tells_the_customer_whose_open_order_is_in_that_fridge() {
    let sys = system(&[]).await;
    let node = &sys.node;
    let fridge_id = "f-fox-theatre";
    let r = node.admin().set_stock(fridge_id, &[(MEAL, 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice = node.as_role("customer", "alice");
    let mut ws = WsClient::connect(node, Some(&token("customer", "alice", &[]))).await;
    ws.subscribe(json!({"orders": true})).await;
    let o1 = order_id(&alice.order(fridge_id, &[(MEAL, 1)], "tok_visa", None).await);
    let elsewhere = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);

    // Twenty minutes at 7.5 °C, a sample a minute, ending now (node clock).
    let mut fridge = demo_fridge(fridge_id);
    let now = node.clock_now().await;
    let samples = (0..20)
        .map(|i| fridge.temperature_report(now - chrono::TimeDelta::minutes(19 - i), 7_500))
        .collect();
    let warm = fridge
        .sign(samples, now, &fridge_sim::SignOptions::default())
        .expect("sign");
    let r = node.telemetry(&warm).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let told = ws
        .expect_within("fridge_quarantined", Duration::from_secs(5), |m| {
            m["type"] == "notification" && m["kind"] == "fridge_quarantined"
        })
        .await;
    assert_eq!(
        (told["fridge_id"].as_str(), told["order_id"].as_str()),
        (Some(fridge_id), Some(o1.as_str()))
    );
    // Only the order in that fridge.
    assert!(ws
        .seen_matching(|m| m["kind"] == "fridge_quarantined" && m["order_id"] == elsewhere.as_str())
        .is_empty());
}
