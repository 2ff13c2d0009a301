//! Back-in-stock waitlists (issue 14) against the real node: customers
//! wait for a sold-out meal, a fridge's refill scan arrives, and holds go
//! to the first in line; a lapsed hold passes to the next.

use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-fox-theatre";
const MEAL: &str = "m-kale-caesar";
/// The default hold, in seconds (`[waitlist] hold_secs`).
const HOLD_SECS: i64 = 300;
const OFFER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

async fn join(customer: &Client) -> Value {
    let r = customer
        .post(
            "/v1/waitlist",
            json!({"meal_id": MEAL, "fridge_id": FRIDGE}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn await_entry(customer: &Client, entry: &Value, status: &str) -> Value {
    let path = format!("/v1/waitlist/{}", entry["entry_id"].as_str().unwrap());
    customer
        .await_get(&path, OFFER_DEADLINE, |b| b["status"] == status)
        .await
}

/// The fridge scans `units` of the meal (a refill), stamped with the
/// node's time.
async fn refill_scan(node: &Node, units: u32) {
    let mut fridge = demo_fridge(FRIDGE);
    let counts: fridge_sim::MealCounts = [(protocol::MealId::from_static(MEAL), units)]
        .into_iter()
        .collect();
    let now = node.clock_now().await;
    let report = fridge.scan_report(now, &counts);
    let batch = fridge
        .sign(vec![report], now, &fridge_sim::SignOptions::default())
        .unwrap();
    let r = node.telemetry(&batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

fn order_body() -> Value {
    json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"})
}

#[tokio::test]
async fn three_wait_two_arrive_and_a_lapsed_hold_goes_to_the_third() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 0)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (ann, bob, cat) = (
        node.as_role("customer", "ann"),
        node.as_role("customer", "bob"),
        node.as_role("customer", "cat"),
    );
    let a = join(&ann).await;
    let b = join(&bob).await;
    let c = join(&cat).await;
    assert_eq!(
        (a["status"].clone(), a["position"].clone()),
        (json!("waiting"), json!(1))
    );
    assert_eq!(c["position"], 3, "{c}");

    refill_scan(&node, 2).await;
    let a = await_entry(&ann, &a, "held").await;
    await_entry(&bob, &b, "held").await;
    assert_eq!(a["hold"]["fridge_id"], FRIDGE, "{a}");
    let c = await_entry(&cat, &c, "waiting").await;
    assert_eq!(c["position"], 1, "{c}");
    assert_eq!(node.available(FRIDGE, MEAL).await, 0, "both units are held");
    let dan = node.as_role("customer", "dan");
    let r = dan.order_body(order_body(), None).await;
    assert_eq!(r.status, 409, "a held unit is no one else's: {}", r.body);

    let r = ann.order_body(order_body(), None).await;
    assert_eq!(r.status, 201, "ann orders with her hold: {}", r.body);
    let a = await_entry(&ann, &a, "ordered").await;
    assert_eq!(a["order_id"], r.body["order_id"], "{a}");

    // Bob lets his hold run out: it passes to Cat.
    node.advance_clock(HOLD_SECS + 1).await;
    await_entry(&bob, &b, "lapsed").await;
    let c = await_entry(&cat, &c, "held").await;
    assert_eq!(c["hold"]["fridge_id"], FRIDGE, "{c}");
    assert_eq!(node.available(FRIDGE, MEAL).await, 0);
}

#[tokio::test]
async fn an_order_refused_for_stock_names_other_fridges_and_the_waitlist() {
    let node = Node::start_demo().await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 0)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = node
        .admin()
        .set_stock("f-campus-martius", &[(MEAL, 4)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dan = node.as_role("customer", "dan");
    let r = dan.order_body(order_body(), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "insufficient_stock", "{}", r.body);
    let details = &r.body["error"];
    let alternatives = details["alternatives"].as_array().expect("alternatives");
    assert!(
        !alternatives.is_empty() && alternatives.len() <= 3,
        "{details}"
    );
    assert!(
        alternatives
            .iter()
            .any(|a| a["fridge_id"] == "f-campus-martius" && a["meals"][0]["available"] == 4),
        "{details}"
    );
    let distances: Vec<u64> = alternatives
        .iter()
        .map(|a| a["distance_m"].as_u64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "nearest first: {distances:?}"
    );
    assert_eq!(
        details["waitlist"],
        json!([{"meal_id": MEAL, "fridge_id": FRIDGE}])
    );
    // The suggested body joins the list as it is.
    let r = dan
        .post("/v1/waitlist", details["waitlist"][0].clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn waitlist_requests_that_make_no_sense_get_4xx_and_change_nothing() {
    let node = Node::start_demo().await;
    let ann = node.as_role("customer", "ann");
    let seq = node.log_seq().await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 3)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seq_after_stock = node.log_seq().await;
    assert!(seq_after_stock > seq);
    let r = ann
        .post(
            "/v1/waitlist",
            json!({"meal_id": MEAL, "fridge_id": FRIDGE}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "meal_available", "{}", r.body);
    for (body, status) in [
        (json!({"meal_id": MEAL}), 422),
        (
            json!({"meal_id": MEAL, "fridge_id": FRIDGE, "near": {"lat": 42.3, "lon": -83.0, "radius_m": 100}}),
            422,
        ),
        (
            json!({"meal_id": MEAL, "near": {"lat": 42.3, "lon": -83.0, "radius_m": 0}}),
            422,
        ),
        (json!({"meal_id": "m-nope", "fridge_id": FRIDGE}), 404),
        (json!({"meal_id": MEAL, "fridge_id": "f-nope"}), 404),
        (
            json!({"meal_id": MEAL, "fridge_id": FRIDGE, "extra": 1}),
            422,
        ),
    ] {
        let r = ann.post("/v1/waitlist", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body["error"]["message"].is_string(), "{}", r.body);
    }
    let pos = node.as_role("pos", "pos-1");
    let r = pos
        .post(
            "/v1/waitlist",
            json!({"meal_id": MEAL, "fridge_id": "f-corktown"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = ann.delete("/v1/waitlist/01JNOSUCHENTRY").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(node.log_seq().await, seq_after_stock, "nothing was written");
}
