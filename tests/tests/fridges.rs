//! Issue 5: fridges through the ACL, played by `fridge-sim` (the library
//! and the binary) against a real node's
//! `POST /v1/fridges/{fridge_id}/telemetry`.

use std::time::Duration;

use fridge_sim::{DoorActor, MealCounts, SignOptions};
use larder_tests::*;
use protocol::{FridgeId, MealId};
use serde_json::Value;

/// f-campus-martius speaks coldline-lines, f-fox-theatre frostline-json.
const FRIDGES: [&str; 2] = ["f-campus-martius", "f-fox-theatre"];
const MEAL: &str = "m-kale-caesar";

fn counts(pairs: &[(&'static str, u32)]) -> MealCounts {
    pairs
        .iter()
        .map(|(m, u)| (MealId::from_static(m), *u))
        .collect()
}

#[tokio::test]
async fn scans_and_doors_move_the_catalog_in_both_dialects() {
    let node = Node::start_demo().await;
    for id in FRIDGES {
        let mut fridge = demo_fridge(id);
        let scan = fridge.scan(&counts(&[(MEAL, 7)])).expect("scan");
        let r = node.telemetry(&scan).await;
        assert_eq!(r.status, 202, "{id}: {}", r.body);
        assert_eq!(r.body["applied"], 1, "{id}: {}", r.body);
        eventually("scan in the catalog", Duration::from_secs(5), || async {
            node.available(id, MEAL).await == 7
        })
        .await;

        // Resending is harmless.
        let r = node.telemetry(&scan).await;
        assert_eq!((r.status, &r.body["duplicate"]), (202, &Value::from(1)));

        let door = fridge
            .door(
                DoorActor::Unknown,
                &counts(&[(MEAL, 2)]),
                &MealCounts::new(),
            )
            .expect("door");
        let r = node.telemetry(&door).await;
        assert_eq!(r.status, 202, "{id}: {}", r.body);
        eventually("door in the catalog", Duration::from_secs(5), || async {
            node.available(id, MEAL).await == 5
        })
        .await;
    }
}

#[tokio::test]
async fn forged_and_misaddressed_uploads_change_nothing() {
    let node = Node::start_demo().await;
    let mut fridge = demo_fridge("f-fox-theatre");
    let before = node.available("f-fox-theatre", MEAL).await;
    let report = fridge.scan_report(chrono::Utc::now(), &counts(&[(MEAL, 40)]));
    for (options, status, code) in [
        (
            SignOptions {
                wrong_secret: Some(b"not-the-secret".to_vec()),
                ..SignOptions::default()
            },
            401,
            "unauthenticated",
        ),
        (
            SignOptions {
                stale_timestamp_secs: 600,
                ..SignOptions::default()
            },
            401,
            "clock_skew",
        ),
        (
            SignOptions {
                fridge_in_body: Some(FridgeId::from_static("f-wsu")),
                ..SignOptions::default()
            },
            403,
            "wrong_fridge",
        ),
    ] {
        let signed = fridge
            .sign(vec![report.clone()], chrono::Utc::now(), &options)
            .expect("sign");
        let r = node.telemetry(&signed).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    assert_eq!(node.available("f-fox-theatre", MEAL).await, before);
}

#[tokio::test]
async fn the_cli_scans_a_demo_fridge() {
    let node = Node::start_demo().await;
    let demo = demo_file();
    let out = std::process::Command::new(bin("fridge-sim"))
        .args(["scan", "--node", &node.base, "--demo"])
        .arg(&demo)
        .args(["--fridge", "f-campus-martius", "--seq", "1", "--count"])
        .arg(format!("{MEAL}=3"))
        .output()
        .expect("fridge-sim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["status"], 202, "{line}");
    eventually(
        "cli scan in the catalog",
        Duration::from_secs(5),
        || async { node.available("f-campus-martius", MEAL).await == 3 },
    )
    .await;
}

#[tokio::test]
async fn an_older_scan_delivered_late_never_overwrites_a_newer_one() {
    let node = Node::start_demo().await;
    for id in FRIDGES {
        let mut fridge = demo_fridge(id);
        let now = chrono::Utc::now();
        let older = fridge.scan_report(now - chrono::TimeDelta::seconds(60), &counts(&[(MEAL, 9)]));
        let newer = fridge.scan_report(now, &counts(&[(MEAL, 4)]));
        let sign = |r| {
            fridge
                .sign(vec![r], now, &SignOptions::default())
                .expect("sign")
        };
        let (older, newer) = (sign(older), sign(newer));
        let r = node.telemetry(&newer).await;
        assert_eq!(
            (r.status, &r.body["applied"]),
            (202, &Value::from(1)),
            "{}",
            r.body
        );
        let r = node.telemetry(&older).await;
        assert_eq!(
            (r.status, &r.body["stale"]),
            (202, &Value::from(1)),
            "{}",
            r.body
        );
        eventually("newer scan stands", Duration::from_secs(5), || async {
            node.available(id, MEAL).await == 4
        })
        .await;
    }
}

#[tokio::test]
async fn a_warm_fridge_is_quarantined_and_leaves_the_catalog() {
    let node = Node::start_demo().await;
    let id = "f-fox-theatre";
    let mut fridge = demo_fridge(id);
    scanned(&node, &mut fridge, 6).await;
    // Twenty minutes at 7.5 °C, a sample a minute, ending now: longer than
    // the 15 minutes allowed above 5 °C.
    let now = chrono::Utc::now();
    let samples = (0..20)
        .map(|i| fridge.temperature_report(now - chrono::TimeDelta::minutes(19 - i), 7_500))
        .collect();
    let warm = fridge
        .sign(samples, now, &SignOptions::default())
        .expect("sign");
    let r = node.telemetry(&warm).await;
    assert_eq!(
        (r.status, &r.body["applied"]),
        (202, &Value::from(20)),
        "{}",
        r.body
    );
    eventually("quarantine", Duration::from_secs(5), || async {
        node.available(id, MEAL).await == 0
    })
    .await;
    let catalog = node.catalog(42.3314, -83.0458, 20_000).await;
    let status = catalog["fridges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["fridge_id"] == id)
        .map(|f| f["status"].clone());
    assert_eq!(status, Some(Value::from("quarantined")), "{catalog}");
}

/// The fridge scans `units` of MEAL and the catalog shows them.
async fn scanned(node: &Node, fridge: &mut fridge_sim::SimFridge, units: u32) {
    let r = node
        .telemetry(&fridge.scan(&counts(&[(MEAL, units)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = fridge.id.clone();
    eventually("scan in the catalog", Duration::from_secs(5), || async {
        node.available(&id, MEAL).await == u64::from(units)
    })
    .await;
}

#[tokio::test]
async fn websocket_subscribers_see_a_scan_and_a_quarantine_at_once() {
    let node = Node::start_demo().await;
    let id = "f-fox-theatre";
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(serde_json::json!({"fridges": [id]})).await;
    let mut fridge = demo_fridge(id);

    let r = node
        .telemetry(&fridge.scan(&counts(&[(MEAL, 6)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    ws.expect_stock(id, MEAL, 6).await;

    let now = chrono::Utc::now();
    let samples = (0..20)
        .map(|i| fridge.temperature_report(now - chrono::TimeDelta::minutes(19 - i), 8_000))
        .collect();
    let warm = fridge
        .sign(samples, now, &SignOptions::default())
        .expect("sign");
    assert_eq!(node.telemetry(&warm).await.status, 202);
    ws.expect_stock(id, MEAL, 0).await;
    // The fridge's status change is announced too (before its stock).
    let announced = ws.seen_matching(|m| {
        m["type"] == "catalog_updated" && m["area"][0].as_str().is_some_and(|a| a.len() == 6)
    });
    assert_eq!(announced.len(), 1, "{:#?}", ws.seen);

    // Back in range, an operator clears it; the next scan sells again.
    let sample = fridge.temperature_report(chrono::Utc::now(), 4_000);
    let cool = fridge
        .sign(vec![sample], chrono::Utc::now(), &SignOptions::default())
        .expect("sign");
    assert_eq!(node.telemetry(&cool).await.status, 202);
    let r = node
        .admin()
        .post(
            &format!("/v1/admin/fridges/{id}/quarantine/lift"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = node
        .telemetry(&fridge.scan(&counts(&[(MEAL, 3)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    ws.expect_stock(id, MEAL, 3).await;
}

#[tokio::test]
async fn a_pickup_door_session_completes_a_purchased_order() {
    let nats = Nats::start().await;
    let _payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &[]).await;
    let id = "f-campus-martius";
    let mut fridge = demo_fridge(id);
    scanned(&node, &mut fridge, 3).await;

    // A POS order has no grace window: it is paid at once.
    let pos = node.as_role("pos", "pos-campus");
    let r = pos.order(id, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order_id = r.body["order_id"].as_str().unwrap().to_string();
    let order = node
        .await_status(&order_id, "purchased", Duration::from_secs(10))
        .await;
    let code = order["pickup_code"]
        .as_str()
        .expect("pickup code")
        .to_string();

    let door = fridge
        .door(
            DoorActor::PickupCode(code),
            &counts(&[(MEAL, 1)]),
            &MealCounts::new(),
        )
        .expect("door");
    let r = node.telemetry(&door).await;
    assert_eq!(r.status, 202, "{}", r.body);
    node.await_status(&order_id, "picked_up", Duration::from_secs(5))
        .await;
    // Two units left, none reserved any more.
    assert_eq!(node.available(id, MEAL).await, 2);
}

#[tokio::test]
async fn a_shortage_flags_the_order_and_its_customer_is_told() {
    let node = Node::start_demo().await;
    let id = "f-fox-theatre";
    let mut fridge = demo_fridge(id);
    scanned(&node, &mut fridge, 3).await;
    let alice = node.as_role("customer", "alice");
    let mut ws = WsClient::connect(&node, Some(&token("customer", "alice", &[]))).await;
    ws.subscribe(serde_json::json!({"orders": true})).await;
    let r = alice.order(id, &[(MEAL, 2)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order_id = r.body["order_id"].as_str().unwrap().to_string();

    // Someone took two units without paying: one left for two promised.
    let r = node
        .telemetry(&fridge.scan(&counts(&[(MEAL, 1)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let told = ws
        .expect("the order flagged", |m| {
            m["type"] == "order" && m["order_id"] == order_id.as_str() && m["shortage"][0] == MEAL
        })
        .await;
    assert_eq!(told["status"], "held");
    let r = alice.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(r.body["shortage"], serde_json::json!([MEAL]), "{}", r.body);
}

#[tokio::test]
async fn a_silent_fridge_shows_offline_until_it_reports_again() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let id = "f-fox-theatre";
    let fridge = demo_fridge(id);
    let hello = fridge
        .sign(vec![], node.clock_now().await, &SignOptions::default())
        .expect("heartbeat");
    assert_eq!(node.telemetry(&hello).await.status, 202);

    let status = || async {
        let catalog = node.catalog(42.3384, -83.0527, 100).await;
        catalog["fridges"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status().await, "online");
    node.advance_clock(11 * 60).await;
    eventually("offline", Duration::from_secs(5), || async {
        status().await == "offline"
    })
    .await;
    // Orders are not taken at a fridge nobody has heard from.
    let r = node
        .as_role("customer", "bob")
        .order(id, &[(MEAL, 1)], "tok_visa", None)
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    let again = fridge
        .sign(vec![], node.clock_now().await, &SignOptions::default())
        .expect("heartbeat");
    assert_eq!(node.telemetry(&again).await.status, 202);
    assert_eq!(status().await, "online");
}

#[tokio::test]
async fn a_rotated_secret_takes_over_once_the_fridge_uses_it() {
    let node = Node::start_demo().await;
    let id = "f-fox-theatre";
    let mut old = demo_fridge(id);
    let new_secret = "rotated-secret-for-fox-theatre-0001";
    let r = node
        .admin()
        .put_fridge(
            id,
            serde_json::json!({"name": "Fox Theatre Offices", "address": "2211 Woodward Ave",
                "lat": 42.3384, "lon": -83.0527, "vendor": "frostline-json", "secret": new_secret}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The fridge has not picked up its new secret yet: still accepted.
    let r = node
        .telemetry(&old.scan(&counts(&[(MEAL, 2)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);

    // It switches; from then on the old secret is refused.
    let mut new = old.clone();
    new.secret = new_secret.as_bytes().to_vec();
    let r = node
        .telemetry(&new.scan(&counts(&[(MEAL, 3)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    old.seq = new.seq;
    let r = node
        .telemetry(&old.scan(&counts(&[(MEAL, 9)])).expect("scan"))
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"), "{}", r.body);
    assert_eq!(node.available(id, MEAL).await, 3);
}

#[tokio::test]
async fn acknowledged_reports_survive_a_crash_and_resending_them_changes_nothing() {
    let mut node = Node::start_demo().await;
    let id = "f-campus-martius";
    let mut fridge = demo_fridge(id);
    let mut sent = Vec::new();
    for units in 1..=10 {
        let scan = fridge.scan(&counts(&[(MEAL, units)])).expect("scan");
        let r = node.telemetry(&scan).await;
        assert_eq!(r.status, 202, "{}", r.body);
        sent.push(scan);
    }
    node.kill(); // SIGKILL right after the acknowledgements.
    node.restart().await;
    assert_eq!(node.available(id, MEAL).await, 10);
    // Firmware that did not see the answers resends everything.
    for scan in &sent {
        let r = node.telemetry(scan).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body["duplicate"], 1, "{}", r.body);
    }
    assert_eq!(node.available(id, MEAL).await, 10);
}

#[tokio::test]
async fn malformed_oversized_unsigned_and_unknown_uploads_get_clear_errors() {
    let node = Node::start_demo().await;
    let id = "f-fox-theatre";
    let secret = demo_fridge(id).secret;
    let before = node.log_seq().await;
    let post = |fridge: &str, body: Vec<u8>, signed: bool| {
        let url = node.url(&format!("/v1/fridges/{fridge}/telemetry"));
        let ts = chrono::Utc::now().timestamp();
        let sig = fridge_acl::sign(&secret, ts, &body);
        let mut req = node.http.post(url).body(body);
        if signed {
            req = req
                .header("x-larder-timestamp", ts.to_string())
                .header("x-larder-signature", sig);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    let cases = [
        (id, b"{\"fridge_id\": oops".to_vec(), true, 400, "invalid_telemetry"),
        (id, br#"{"fridge_id":"f-fox-theatre","batch_ts":"2026-01-01T00:00:00Z","reports":[],"extra":1}"#.to_vec(), true, 400, "invalid_telemetry"),
        (id, vec![b' '; 300 * 1024], true, 413, "payload_too_large"),
        (id, br#"{"fridge_id":"f-fox-theatre","batch_ts":"2026-01-01T00:00:00Z","reports":[]}"#.to_vec(), false, 401, "unauthenticated"),
        ("f-nowhere", b"{}".to_vec(), true, 404, "unknown_fridge"),
    ];
    for (fridge, body, signed, status, code) in cases {
        let got = post(fridge, body, signed).await;
        assert_eq!(got, (status, code.to_string()), "{fridge} signed={signed}");
    }
    assert_eq!(
        node.log_seq().await,
        before,
        "refused uploads change nothing"
    );
}

#[tokio::test]
async fn units_past_their_best_before_leave_the_catalog_by_themselves() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let id = "f-fox-theatre";
    let shelf_life_h = node
        .anonymous()
        .get(&format!("/v1/meals/{MEAL}"))
        .await
        .body["shelf_life_hours"]
        .as_i64()
        .expect("shelf life");
    let r = node.admin().set_stock(id, &[(MEAL, 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(serde_json::json!({"fridges": [id]})).await;

    node.advance_clock(shelf_life_h * 3600).await;
    ws.expect_within("the expired units withheld", Duration::from_secs(5), |m| {
        m["type"] == "stock" && m["meal_id"] == MEAL && m["available"] == 0
    })
    .await;
    assert_eq!(node.available(id, MEAL).await, 0);

    // Fresh units put in now are for sale.
    let r = node.admin().set_stock(id, &[(MEAL, 8)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    ws.expect_stock(id, MEAL, 3).await;
}
