//! Issue 4, item 5: one clock. A node started with `--dev-clock` moves
//! token expiry and new ids with its clock, not the system's.

use larder_tests::*;
use serde_json::json;

/// `[auth] leeway_secs` of the dev config the harness starts nodes with.
fn leeway_secs() -> i64 {
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(dev_config()).unwrap()).unwrap();
    config["auth"]["leeway_secs"].as_integer().unwrap()
}

#[tokio::test]
async fn a_token_expires_when_the_nodes_clock_passes_its_exp() {
    let node = Node::start(&["--dev-clock"]).await;
    let now = node.clock_now().await.timestamp();
    let short = token_with_claims(&json!({"sub": "alice", "role": "customer", "exp": now + 60}));
    let long = token_with_claims(&json!({"sub": "bob", "role": "customer", "exp": now + 3600}));
    let alice = node.anonymous().with_token(&short);
    let bob = node.anonymous().with_token(&long);
    assert_eq!(alice.get("/v1/orders").await.status, 200);
    assert_eq!(bob.get("/v1/orders").await.status, 200);

    // Past exp and the leeway on the node's clock; the system's clock is
    // still a minute before exp.
    node.advance_clock(60 + leeway_secs() + 10).await;
    let r = alice.get("/v1/orders").await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{}", r.body);
    assert!(unix_now() < u64::try_from(now + 60).unwrap());
    assert_eq!(
        bob.get("/v1/orders").await.status,
        200,
        "a token whose exp the node clock has not passed still works"
    );
}

#[tokio::test]
async fn order_ids_carry_the_nodes_time() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let r = node
        .admin()
        .set_stock("f-campus-martius", &[("m-greek-salad", 5)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let customer = node.as_role("customer", "alice");
    let before = customer
        .order(
            "f-campus-martius",
            &[("m-greek-salad", 1)],
            "tok_visa",
            None,
        )
        .await;
    assert_eq!(before.status, 201, "{}", before.body);

    node.advance_clock(2 * 24 * 3600).await;
    let node_now = node.clock_now().await;
    let after = customer
        .order(
            "f-campus-martius",
            &[("m-greek-salad", 1)],
            "tok_visa",
            None,
        )
        .await;
    assert_eq!(after.status, 201, "{}", after.body);
    let id: ulid::Ulid = after.body["order_id"].as_str().unwrap().parse().unwrap();
    let id_ms = i64::try_from(id.timestamp_ms()).unwrap();
    assert!(
        (id_ms - node_now.timestamp_millis()).abs() < 60_000,
        "id time {id_ms} ms, node clock {node_now}"
    );
    let first: ulid::Ulid = before.body["order_id"].as_str().unwrap().parse().unwrap();
    assert!(first < id);
}
