//! Issue 11, "a saved payment method and profile are global data too": a
//! customer's profile (display name, saved payment method) lives in a
//! JetStream KV bucket on a 3-node NATS cluster, written on one node and
//! read on another with the same token; an order without
//! `payment_method` uses the saved one; a node without NATS answers 503.

use std::time::Duration;

use larder_tests::fleet::*;
use larder_tests::*;
use serde_json::{json, Value};

/// A profile put on one node is read on another: at most a stream
/// leader's round trip, but the bucket may be made by the first request.
const PROFILE_DEADLINE: Duration = Duration::from_secs(15);
/// An order past its grace window is charged through the payments service.
const PAYMENT_DEADLINE: Duration = Duration::from_secs(20);
/// Past the grace window of an app order (20 s), on the node's dev clock.
const PAST_GRACE_SECS: i64 = 30;

/// Polls `GET /v1/me/profile` as `who` until it answers 200 with `want`'s
/// name and payment method, for up to `deadline`; the profile.
async fn await_profile(who: &Client, path: &str, want: &Value, deadline: Duration) -> Value {
    who.await_get(path, deadline, |v| {
        v["name"] == want["name"] && v["payment_method"] == want["payment_method"]
    })
    .await
}

/// An order of one `m-coney` at `f-west` without `payment_method`.
fn without_payment_method() -> Value {
    json!({"fridge_id": "f-west", "items": [{"meal_id": "m-coney", "qty": 1}]})
}

#[tokio::test]
async fn a_profile_saved_on_one_node_is_read_and_used_on_another() {
    let TwoDistricts {
        nats,
        configs: _configs,
        downtown,
        west,
    } = TwoDistricts::start().await;
    let _payments = Payments::start_on(&nats.urls(), &["--nats-replicas", "3"]).await;

    // Alice saves her profile downtown and reads it in the west.
    let alice_downtown = downtown.as_role("customer", "alice");
    let alice_west = west.as_role("customer", "alice");
    let saved = json!({"name": "  Alice Liddell ", "payment_method": "tok_visa"});
    let r = alice_downtown.put("/v1/me/profile", saved.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["customer"], "alice", "{}", r.body);
    assert_eq!(r.body["name"], "Alice Liddell", "trimmed: {}", r.body);
    assert_eq!(r.body["payment_method"], "tok_visa", "{}", r.body);
    assert!(r.body["updated_at"].is_string(), "{}", r.body);
    let stored = r.body.clone();
    let read = await_profile(&alice_west, "/v1/me/profile", &stored, PROFILE_DEADLINE).await;
    assert_eq!(read, stored);

    // Bob has none, and may not read alice's.
    let bob = west.as_role("customer", "bob");
    let r = bob.get("/v1/me/profile").await;
    assert_eq!((r.status, r.code()), (404, "no_profile"), "{}", r.body);
    let r = bob.get("/v1/me/profile?customer=alice").await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);

    // An admin reads alice's by name (and must name someone); only a
    // customer writes one.
    let admin = west.admin();
    let r = admin.get("/v1/me/profile?customer=alice").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, stored);
    let r = admin.get("/v1/me/profile").await;
    assert_eq!(
        (r.status, r.code()),
        (400, "missing_customer"),
        "{}",
        r.body
    );
    let r = admin.put("/v1/me/profile", saved.clone()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = west.anonymous().get("/v1/me/profile").await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Bad input: 422 naming the field, and nothing written.
    let long_name = "x".repeat(101);
    let long_token = "t".repeat(129);
    let bad = [
        (json!({"name": "   ", "payment_method": "tok_visa"}), "name"),
        (
            json!({"name": long_name, "payment_method": "tok_visa"}),
            "name",
        ),
        (json!({"name": "A", "payment_method": ""}), "payment_method"),
        (
            json!({"name": "A", "payment_method": "tok visa"}),
            "payment_method",
        ),
        (
            json!({"name": "A", "payment_method": long_token}),
            "payment_method",
        ),
        (json!({"name": "A"}), "payment_method"),
        (json!({"name": 7, "payment_method": "tok_visa"}), "name"),
    ];
    for (body, field) in bad {
        let r = alice_west.put("/v1/me/profile", body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid_body"),
            "{body}: {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: names {field}: {}", r.body);
    }
    let r = alice_downtown
        .put("/v1/me/profile", json!({"name": "A", "extra": 1}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    for n in [&downtown, &west] {
        let r = n.as_role("customer", "alice").get("/v1/me/profile").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, stored, "unchanged on {}", n.base);
    }

    // West has a fridge with stock (it has no demo data).
    stock_west_fridge(&west).await;

    // Alice orders in the west without naming a payment method: her saved
    // one pays.
    let r = alice_west.order_body(without_payment_method(), None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let paid = r.body["order_id"].as_str().expect("order id").to_string();
    west.advance_clock(PAST_GRACE_SECS).await;
    west.await_status(&paid, "purchased", PAYMENT_DEADLINE)
        .await;

    // Saved anew (downtown) as a declining token: the next such order in
    // the west is charged to it, and refused.
    let declining = json!({"name": "Alice", "payment_method": "tok_decline"});
    let r = alice_downtown
        .put("/v1/me/profile", declining.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    await_profile(&alice_west, "/v1/me/profile", &declining, PROFILE_DEADLINE).await;
    let r = alice_west.order_body(without_payment_method(), None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let refused = r.body["order_id"].as_str().expect("order id").to_string();
    west.advance_clock(PAST_GRACE_SECS).await;
    west.await_status(&refused, "refused", PAYMENT_DEADLINE)
        .await;

    // Without a profile, today's answer for the missing field.
    let r = bob.order_body(without_payment_method(), None).await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"), "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("payment_method"), "{}", r.body);
}

#[tokio::test]
async fn a_node_without_nats_answers_profile_unavailable() {
    let node = Node::start_demo().await;
    let alice = node.as_role("customer", "alice");
    let r = alice.get("/v1/me/profile").await;
    assert_eq!(
        (r.status, r.code()),
        (503, "profile_unavailable"),
        "{}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("NATS"), "{}", r.body);
    let r = alice
        .put(
            "/v1/me/profile",
            json!({"name": "Alice", "payment_method": "tok_visa"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (503, "profile_unavailable"),
        "{}",
        r.body
    );
    // Orders that name their payment method still sell; without one it is
    // the missing field, as before profiles.
    let r = alice
        .order_body(
            json!({"fridge_id": "f-campus-martius", "items": [{"meal_id": "m-greek-salad", "qty": 1}]}),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"), "{}", r.body);
    assert_eq!(
        r.body["error"]["message"],
        "invalid body: missing field `payment_method`"
    );
}
