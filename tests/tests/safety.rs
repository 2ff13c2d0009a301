//! Food safety and abuse limits: a quarantine is lifted only when the
//! fridge is back in range, and the units that were exposed stay withheld
//! until a scan after the lift.

use std::time::Duration;

use fridge_sim::{MealCounts, SignOptions, SimFridge};
use larder_tests::*;
use serde_json::Value;

const FRIDGE: &str = "f-lafayette";
const MEAL: &str = "m-kale-caesar";

fn counts(pairs: &[(&'static str, u32)]) -> MealCounts {
    pairs
        .iter()
        .map(|(m, u)| (protocol::MealId::from_static(m), *u))
        .collect()
}

async fn scan(node: &Node, fridge: &mut SimFridge, units: u32) {
    let r = node
        .telemetry(&fridge.scan(&counts(&[(MEAL, units)])).expect("scan"))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
}

/// `minutes` samples at `milli_c`, one a minute, ending at `end`.
async fn samples(
    node: &Node,
    fridge: &mut SimFridge,
    end: chrono::DateTime<chrono::Utc>,
    minutes: i64,
    milli_c: impl Fn(i64) -> i32,
) {
    let reports = (0..minutes)
        .map(|i| {
            fridge.temperature_report(
                end - chrono::TimeDelta::minutes(minutes - 1 - i),
                milli_c(i),
            )
        })
        .collect();
    let signed = fridge
        .sign(reports, chrono::Utc::now(), &SignOptions::default())
        .expect("sign");
    let r = node.telemetry(&signed).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

async fn fridge_status(node: &Node) -> Value {
    let catalog = node.catalog(42.3314, -83.0458, 20_000).await;
    catalog["fridges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["fridge_id"] == FRIDGE)
        .map(|f| f["status"].clone())
        .unwrap_or(Value::Null)
}

async fn lift(node: &Node) -> Resp {
    node.admin()
        .post(
            &format!("/v1/admin/fridges/{FRIDGE}/quarantine/lift"),
            serde_json::json!({}),
        )
        .await
}

/// Six units scanned, then twenty minutes at 9.5 °C ending `end`: quarantined.
async fn quarantined(node: &Node, fridge: &mut SimFridge, end: chrono::DateTime<chrono::Utc>) {
    scan(node, fridge, 6).await;
    eventually("scan in the catalog", Duration::from_secs(5), || async {
        node.available(FRIDGE, MEAL).await == 6
    })
    .await;
    samples(node, fridge, end, 20, |_| 9_500).await;
    eventually("quarantine", Duration::from_secs(5), || async {
        fridge_status(node).await == "quarantined"
    })
    .await;
}

#[tokio::test]
async fn a_quarantine_is_not_lifted_while_the_fridge_stays_warm() {
    let node = Node::start_demo().await;
    let mut fridge = demo_fridge(FRIDGE);
    let now = chrono::Utc::now();
    quarantined(&node, &mut fridge, now - chrono::TimeDelta::minutes(30)).await;
    // Still warm: 12–12.5 °C since.
    samples(
        &node,
        &mut fridge,
        now - chrono::TimeDelta::minutes(5),
        25,
        |i| 12_000 + (i as i32 % 2) * 500,
    )
    .await;

    let r = lift(&node).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "fridge_out_of_range"),
        "{}",
        r.body
    );
    samples(&node, &mut fridge, now, 5, |i| {
        12_000 + (i as i32 % 2) * 500
    })
    .await;
    assert_eq!(fridge_status(&node).await, "quarantined");
    let customer = node.as_role("customer", "c-safety");
    let r = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 409, "{}", r.body);

    // Back in range: the lift is taken.
    samples(&node, &mut fridge, chrono::Utc::now(), 1, |_| 4_000).await;
    let r = lift(&node).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fridge_status(&node).await, "online");
}

#[tokio::test]
async fn exposed_units_stay_withheld_after_a_lift_until_a_fresh_scan() {
    let node = Node::start_demo().await;
    let mut fridge = demo_fridge(FRIDGE);
    let now = chrono::Utc::now();
    quarantined(&node, &mut fridge, now - chrono::TimeDelta::minutes(2)).await;
    samples(&node, &mut fridge, now, 1, |_| 4_000).await;
    let r = lift(&node).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fridge_status(&node).await, "online");

    // The six units sat at 9.5 °C: not for sale.
    assert_eq!(node.available(FRIDGE, MEAL).await, 0);
    let customer = node.as_role("customer", "c-safety");
    let r = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "insufficient_stock"),
        "{}",
        r.body
    );

    // Staff replaced them with as many fresh ones; the fridge's scan
    // (the same count) releases them.
    scan(&node, &mut fridge, 6).await;
    eventually("fresh scan sells", Duration::from_secs(5), || async {
        node.available(FRIDGE, MEAL).await == 6
    })
    .await;
    let r = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A node with payments, selling `units` of the meal at the fridge (as
/// its scan says).
async fn selling(units: u32) -> (Nats, Payments, Node) {
    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &[]).await;
    let mut fridge = demo_fridge(FRIDGE);
    scan(&node, &mut fridge, units).await;
    eventually("scan in the catalog", Duration::from_secs(5), || async {
        node.available(FRIDGE, MEAL).await == u64::from(units)
    })
    .await;
    (nats, payments, node)
}

#[tokio::test]
async fn pickup_codes_cannot_be_guessed_at_the_counter() {
    let (_nats, _payments, node) = selling(3).await;
    let pos = node.as_role("pos", "pos-lafayette");
    let r = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order_id = r.body["order_id"].as_str().expect("order id").to_string();
    let order = node
        .await_status(&order_id, "purchased", Duration::from_secs(10))
        .await;
    let code = order["pickup_code"].as_str().expect("code").to_string();
    let wrong = if code == "000000" { "000001" } else { "000000" };

    // Guesses in parallel cannot overtake the limit.
    let guesses = (0..20).map(|_| pos.pickup(&order_id, wrong));
    let answers: Vec<Resp> = futures::future::join_all(guesses).await;
    let judged = answers
        .iter()
        .filter(|r| r.code() == "wrong_pickup_code")
        .count();
    assert_eq!(
        judged,
        5,
        "{:?}",
        answers.iter().map(|r| r.code()).collect::<Vec<_>>()
    );
    assert!(answers
        .iter()
        .all(|r| (r.status, r.code()) == (422, "wrong_pickup_code")
            || (r.status, r.code()) == (423, "pickup_locked")));
    // Now even the right code is refused here; nothing changed.
    let r = pos.pickup(&order_id, &code).await;
    assert_eq!((r.status, r.code()), (423, "pickup_locked"), "{}", r.body);
    node.await_status(&order_id, "purchased", Duration::from_secs(1))
        .await;
    assert_eq!(node.metric("larder_pickup_lockouts_total").await, 1);
}

#[tokio::test]
async fn tokens_not_yet_valid_or_oversized_are_refused() {
    let node = Node::start_demo().await;
    let now = unix_now();
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"sub": "alice", "role": "customer", "exp": now + 7200});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        token_with_claims(&c)
    };
    let path = "/v1/orders";
    for (what, token) in [
        (
            "nbf in an hour",
            claims(serde_json::json!({"nbf": now + 3600})),
        ),
        (
            "issued in an hour",
            claims(serde_json::json!({"iat": now + 3600})),
        ),
        (
            "5 KiB",
            claims(serde_json::json!({"pad": "x".repeat(5 * 1024)})),
        ),
    ] {
        let r = node.anonymous().with_token(&token).get(path).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "invalid_token"),
            "{what}: {}",
            r.body
        );
    }
    // Within the leeway (30 s in the dev config), and already valid: fine.
    let ok = claims(serde_json::json!({"nbf": now + 5, "iat": now + 5}));
    let r = node.anonymous().with_token(&ok).get(path).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_websocket_upgrade_is_not_counted_as_a_server_error() {
    let node = Node::start_demo().await;
    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(serde_json::json!({"fridges": [FRIDGE]})).await;
    eventually("the upgrade counted", Duration::from_secs(5), || async {
        node.metric("larder_http_responses_total{class=\"1xx\"}")
            .await
            == 1
    })
    .await;
    assert_eq!(
        node.metric("larder_http_responses_total{class=\"5xx\"}")
            .await,
        0
    );
}

#[tokio::test]
async fn the_payments_ledger_needs_an_admin_token() {
    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    for (token, status, code) in [
        (None, 401, "unauthenticated"),
        (Some(token("customer", "alice", &[])), 403, "forbidden"),
        (Some(foreign_token("admin")), 401, "invalid_token"),
    ] {
        let (s, body) = payments.get_with("/v1/ledger", token.as_deref()).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (s, body) = payments.get_with("/v1/ledger", Some(admin_token())).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = payments.get_with("/healthz", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_till_guessing_across_many_orders_is_stopped_too() {
    let (_nats, _payments, node) = selling(6).await;
    let pos = node.as_role("pos", "pos-greedy");
    let mut orders = vec![];
    for _ in 0..5 {
        let r = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["order_id"].as_str().expect("order id").to_string();
        let order = node
            .await_status(&id, "purchased", Duration::from_secs(10))
            .await;
        let code = order["pickup_code"].as_str().expect("code").to_string();
        orders.push((id, code));
    }
    // Four wrong codes on each of five orders: no order locks by itself...
    for (id, code) in &orders {
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 0..4 {
            let r = pos.pickup(id, wrong).await;
            assert_eq!(r.code(), "wrong_pickup_code", "{}", r.body);
        }
    }
    // ...but the till has had its twenty guesses for the hour.
    let (id, code) = &orders[0];
    let r = pos.pickup(id, code).await;
    assert_eq!((r.status, r.code()), (423, "pickup_locked"), "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    // Another till is not affected, and the hour passes.
    let other = node.as_role("pos", "pos-honest");
    let r = other.pickup(id, code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    node.advance_clock(3601).await;
    let (id, code) = &orders[1];
    let r = pos.pickup(id, code).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
