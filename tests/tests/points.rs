//! Issue 12, bonus points: one global balance on NATS (a JetStream KV
//! record per customer, changed by compare-and-set), earned on a purchase
//! in one district and spent in another; two districts spending the same
//! balance at once never overdraw; a cancel gives the hold back, a refund
//! returns the spent points and takes the earned ones; without NATS a
//! spend is refused (503) and nothing changes. Real 3-node NATS cluster,
//! two real nodes, the real payments service.

use std::time::Duration;

use larder_tests::fleet::*;
use larder_tests::*;
use serde_json::{json, Value};

/// The ledger is written off the request path (the district's loyalty
/// outbox): a purchase's points show once its node applied them.
const LEDGER_DEADLINE: Duration = Duration::from_secs(20);
const SALAD: &str = "m-greek-salad";
const DOWNTOWN_FRIDGE: &str = "f-campus-martius";

async fn points(client: &Client) -> Value {
    let r = client.get("/v1/me/points").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Awaits `/v1/me/points` showing `available` points.
async fn await_available(client: &Client, available: i64) -> Value {
    let mut last = Value::Null;
    let start = std::time::Instant::now();
    while start.elapsed() < LEDGER_DEADLINE {
        last = points(client).await;
        if last["available"] == available {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("points never became {available} available; last: {last}");
}

fn order_body(fridge: &str, meal: &str, qty: u32, points: Option<i64>) -> Value {
    let mut body = json!({"fridge_id": fridge, "items": [{"meal_id": meal, "qty": qty}],
                          "payment_method": "tok_visa"});
    if let Some(p) = points {
        body["points"] = json!(p);
    }
    body
}

fn created(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap_or_default().to_string()
}

/// Ends the grace window on `node` and awaits the purchase.
async fn pay(node: &Node, order_id: &str) {
    node.advance_clock(25).await;
    node.await_status(order_id, "purchased", PAYMENT_DEADLINE)
        .await;
}

#[tokio::test]
async fn points_earned_downtown_are_spent_in_the_west_and_never_twice() {
    let TwoDistricts {
        nats,
        configs: _configs,
        downtown,
        west,
    } = TwoDistricts::start().await;
    let payments = Payments::start_on(&nats.urls(), &["--nats-replicas", "3"]).await;
    stock_west_fridge(&west).await;
    let r = downtown
        .admin()
        .set_stock(DOWNTOWN_FRIDGE, &[(SALAD, 10)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice_downtown = downtown.as_role("customer", "alice");
    let alice_west = west.as_role("customer", "alice");

    // 3 × 10.45 = 31.35 earns 31 points (1 per whole dollar), seen in the west.
    let bought = created(
        &alice_downtown
            .order_body(order_body(DOWNTOWN_FRIDGE, SALAD, 3, None), None)
            .await,
    );
    pay(&downtown, &bought).await;
    let balance = await_available(&alice_west, 31).await;
    assert_eq!(balance["points"], 31, "{balance}");
    assert_eq!(balance["history"][0]["kind"], "earned", "{balance}");

    // Both districts try to spend all 31 at once: exactly one may.
    let (a, b) = tokio::join!(
        alice_downtown.order_body(order_body(DOWNTOWN_FRIDGE, SALAD, 1, Some(31)), None),
        alice_west.order_body(order_body("f-west", "m-coney", 1, Some(31)), None),
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&201) && statuses.contains(&422),
        "{} / {}",
        a.body,
        b.body
    );
    let (won, lost, winner_node) = if a.status == 201 {
        (&a, &b, &downtown)
    } else {
        (&b, &a, &west)
    };
    assert_eq!(
        lost.body["error"]["code"], "insufficient_points",
        "{}",
        lost.body
    );
    assert_eq!(won.body["pricing"]["points"]["points"], 31, "{}", won.body);
    assert_eq!(
        points(&alice_west).await["available"],
        0,
        "held for the winner"
    );

    // The winner cancels in its grace window: the hold comes back.
    let id = created(won);
    let r = winner_node.as_role("customer", "alice").cancel(&id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    await_available(&alice_downtown, 31).await;

    // 20 points off a 6.95 coney in the west: the card pays 6.75, which earns 6.
    let body = order_body("f-west", "m-coney", 1, Some(20));
    let r = alice_west.order_body(body.clone(), Some("spend-1")).await;
    let spent = created(&r);
    assert_eq!(r.body["total"], 675, "{}", r.body);
    // A retry with the same key is the first answer, not a second spend.
    let again = alice_west.order_body(body, Some("spend-1")).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["order_id"], spent.as_str());
    pay(&west, &spent).await;
    assert_eq!(payments.ledger(&spent).await["ledger"]["amount"], 675);
    let balance = await_available(&alice_downtown, 31 - 20 + 6).await;
    let kinds: Vec<&str> = balance["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["earned", "spent", "earned"], "{balance}");

    // Refunded (cancelled after the purchase): the 20 come back, the 6 go.
    let r = alice_west.cancel(&spent).await;
    assert_eq!(r.status, 200, "{}", r.body);
    west.await_status(&spent, "refunded", PAYMENT_DEADLINE)
        .await;
    await_available(&alice_west, 31).await;
}

#[tokio::test]
async fn without_nats_a_spend_is_refused_and_changes_nothing() {
    let node = Node::start(&["--demo"]).await;
    let r = node.admin().set_stock(DOWNTOWN_FRIDGE, &[(SALAD, 2)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seq = node.log_seq().await;
    let alice = node.as_role("customer", "alice");
    let r = alice
        .order_body(order_body(DOWNTOWN_FRIDGE, SALAD, 1, Some(10)), None)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "loyalty_unavailable");
    assert_eq!(node.log_seq().await, seq);
    assert_eq!(node.available(DOWNTOWN_FRIDGE, SALAD).await, 2);
    // The same order without points goes through: only spends need NATS.
    let r = alice
        .order_body(order_body(DOWNTOWN_FRIDGE, SALAD, 1, None), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = node
        .as_role("pos", "till")
        .order_body(order_body(DOWNTOWN_FRIDGE, SALAD, 1, Some(5)), None)
        .await;
    assert_eq!(r.status, 422, "a till does not spend points: {}", r.body);
    // A coupon counted over the fleet needs NATS too; a district's own does not.
    let fleet = json!({"discount": {"kind": "percent_off", "percent": 10},
        "valid_from": "2020-01-01T00:00:00", "valid_until": "2099-01-01T00:00:00",
        "fleet_max_uses": 5});
    let r = node.admin().put("/v1/admin/coupons/fleet", fleet).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut body = order_body(DOWNTOWN_FRIDGE, SALAD, 1, None);
    body["coupon"] = json!("fleet");
    let r = alice.order_body(body, None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "loyalty_unavailable");
}

#[tokio::test]
async fn a_coupon_counted_over_the_fleet_is_used_once_across_districts() {
    let TwoDistricts {
        nats: _nats,
        configs: _configs,
        downtown,
        west,
    } = TwoDistricts::start().await;
    stock_west_fridge(&west).await;
    let r = downtown
        .admin()
        .set_stock(DOWNTOWN_FRIDGE, &[(SALAD, 5)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let coupon = json!({"discount": {"kind": "amount_off", "amount_minor": 100},
        "valid_from": "2020-01-01T00:00:00", "valid_until": "2099-01-01T00:00:00",
        "fleet_max_uses": 1});
    for node in [&downtown, &west] {
        let r = node
            .admin()
            .put("/v1/admin/coupons/launch", coupon.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let with_coupon = |fridge: &str, meal: &str| {
        let mut body = order_body(fridge, meal, 1, None);
        body["coupon"] = json!("LAUNCH");
        body
    };
    let ann = downtown.as_role("customer", "ann");
    let r = ann
        .order_body(with_coupon(DOWNTOWN_FRIDGE, SALAD), None)
        .await;
    let first = created(&r);
    assert_eq!(r.body["total"], 945, "{}", r.body);

    // The one fleet-wide use is held downtown: the west refuses it.
    let bob = west.as_role("customer", "bob");
    let r = bob.order_body(with_coupon("f-west", "m-coney"), None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["reason"], "limit_reached", "{}", r.body);

    // Ann cancels in her grace window: once downtown tells the ledger, the
    // use is free again and the west may take it.
    let r = ann.cancel(&first).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let start = std::time::Instant::now();
    loop {
        let r = bob.order_body(with_coupon("f-west", "m-coney"), None).await;
        if r.status == 201 {
            assert_eq!(r.body["total"], 595, "{}", r.body);
            break;
        }
        assert_eq!(r.body["error"]["reason"], "limit_reached", "{}", r.body);
        assert!(start.elapsed() < LEDGER_DEADLINE, "the use never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
