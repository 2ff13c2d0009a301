//! Issue 15, part 5: bounded memory. A final order leaves the node's
//! in-memory state once the node's clock passes the retention
//! (`[orders] retention_days`, 7 by default), and is still served from the
//! archive index with the same body, the same authorisation and the same
//! answers to commands — also after a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_tests::*;
use serde_json::Value;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const IN_MEMORY: &str = "larder_orders_in_memory";

/// What a caller sees of one order: status, error code and body.
async fn seen(client: &Client, path: &str) -> (u16, Value) {
    let r = client.get(path).await;
    (r.status, r.body)
}

/// Everything the archived order must keep answering the same way.
struct Answers {
    own: (u16, Value),
    admin: (u16, Value),
    other: (u16, Value),
    listed: Value,
    cancel: (u16, Value),
    pickup: (u16, Value),
    unknown: (u16, Value),
}

async fn answers(node: &Node, order_id: &str) -> Answers {
    let alice = node.as_role("customer", "alice");
    let bob = node.as_role("customer", "bob");
    let path = format!("/v1/orders/{order_id}");
    let list = alice.get("/v1/orders").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let cancel = alice.cancel(order_id).await;
    let pickup = node
        .as_role("pos", "till-1")
        .pickup(order_id, "000000")
        .await;
    Answers {
        own: seen(&alice, &path).await,
        admin: seen(&node.admin(), &path).await,
        other: seen(&bob, &path).await,
        listed: list.body,
        cancel: (cancel.status, cancel.body),
        pickup: (pickup.status, pickup.body),
        unknown: seen(&alice, "/v1/orders/01KNOWNNOTHING000000000000").await,
    }
}

fn assert_same(before: &Answers, after: &Answers, when: &str) {
    assert_eq!(after.own, before.own, "{when}: the owner's view");
    assert_eq!(after.admin, before.admin, "{when}: an admin's view");
    assert_eq!(after.other, before.other, "{when}: another customer");
    assert_eq!(after.listed, before.listed, "{when}: the owner's list");
    assert_eq!(after.cancel, before.cancel, "{when}: a cancel");
    assert_eq!(after.pickup, before.pickup, "{when}: a pickup at a till");
    assert_eq!(after.unknown, before.unknown, "{when}: an unknown id");
}

/// The dev config with every archived order moved out of sled into a run
/// file at once (`[orders] archive_flush_entries`), written into `dir`.
fn runs_config(dir: &Path) -> PathBuf {
    dev_config_with(
        dir,
        "archive-runs.toml",
        "[orders]\narchive_flush_entries = 1\n",
    )
}

fn runs(node: &Node) -> usize {
    count_files(&node.data_dir().join("log").join("orders-archive"), "run")
}

#[tokio::test]
async fn a_cancelled_order_leaves_memory_after_the_retention_and_is_served_as_before() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    leaves_memory_and_is_served_as_before(node, false).await;
}

#[tokio::test]
async fn an_archived_order_moved_into_a_run_file_is_served_as_before() {
    let configs = tempfile::tempdir().unwrap();
    let config = runs_config(configs.path());
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--demo",
        "--dev-clock",
    ];
    let node = Node::start(&args).await;
    leaves_memory_and_is_served_as_before(node, true).await;
}

/// The story of one cancelled order: answers before its archiving, after
/// it (from sled, or from a run file when `in_run`) and after a restart.
async fn leaves_memory_and_is_served_as_before(mut node: Node, in_run: bool) {
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice = node.as_role("customer", "alice");
    let placed = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let order_id = placed.body["order_id"].as_str().unwrap().to_string();
    let cancelled = alice.cancel(&order_id).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");

    let before = answers(&node, &order_id).await;
    assert_eq!(before.own.0, 200);
    assert_eq!(before.own.1["status"], "cancelled");
    assert_eq!(before.admin.1, before.own.1);
    assert_eq!(before.other.0, 404, "someone else's order is unknown");
    assert_eq!(before.listed["orders"][0]["order_id"], order_id.as_str());
    assert_eq!(before.cancel.0, 409, "{}", before.cancel.1);
    assert_eq!(before.cancel.1["error"]["code"], "wrong_status");
    assert_eq!(before.pickup.0, 409, "{}", before.pickup.1);
    assert_eq!(before.unknown.0, 404);
    assert_eq!(node.metric(IN_MEMORY).await, 1);

    node.advance_clock(7 * 24 * 3600 + 60).await;
    eventually(
        "the order to leave memory",
        Duration::from_secs(30),
        || async { node.metric(IN_MEMORY).await == 0 },
    )
    .await;
    if in_run {
        eventually("a run file", Duration::from_secs(30), || async {
            runs(&node) == 1 && node.metric("larder_archive_runs").await == 1
        })
        .await;
        assert_eq!(node.metric("larder_archive_in_sled").await, 0);
        assert_eq!(node.metric("larder_archive_failures_total").await, 0);
    }
    assert_same(&before, &answers(&node, &order_id).await, "archived");

    node.restart().await;
    assert_eq!(
        node.metric(IN_MEMORY).await,
        0,
        "the replay archives it too"
    );
    assert_same(&before, &answers(&node, &order_id).await, "after a restart");
    if in_run {
        assert_eq!(runs(&node), 1, "the run stays; nothing rewrote it");
    }
}
