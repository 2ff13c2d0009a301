//! Issue 10, snapshots, seen from outside: a busy node writes state
//! snapshots on its own; a restart loads the newest and replays only the
//! log after it; with every snapshot damaged, it replays the whole log and
//! still answers the same.

use std::path::PathBuf;
use std::time::Duration;

use larder_tests::*;
use serde_json::Value;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Snapshot cadence for the test: a few orders' worth of events.
const EVERY_EVENTS: &str = "20";
const DEADLINE: Duration = Duration::from_secs(20);

fn snapshots(node: &Node) -> Vec<PathBuf> {
    let dir = node.data.path().join("node").join("snapshots");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "snap"));
    files.sort();
    files
}

async fn orders(pos: &Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["order_id"].as_str().unwrap().to_string());
    }
    ids
}

async fn answers(node: &Node, ids: &[String]) -> Vec<Value> {
    let admin = node.admin();
    let mut out = vec![
        admin
            .get("/v1/catalog?lat=42.3314&lon=-83.0458&radius_m=5000")
            .await
            .body,
    ];
    for id in ids {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(r.status, 200, "order {id}: {}", r.body);
        out.push(r.body);
    }
    out
}

#[tokio::test]
async fn a_restart_starts_from_the_newest_snapshot_and_falls_back_to_the_log() {
    let mut node = Node::start(&["--demo", "--snapshot-every-events", EVERY_EVENTS]).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 500)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pos = node.as_role("pos", "pos-campus");
    let mut ids = orders(&pos, 12).await;
    eventually("a snapshot written", DEADLINE, || {
        let written = !snapshots(&node).is_empty();
        async move { written }
    })
    .await;
    ids.extend(orders(&pos, 3).await);
    // Let every grace window end (POS: at once), so nothing moves while
    // the answers are compared (without NATS, orders wait in `paying`).
    for id in &ids {
        node.await_status(id, "paying", DEADLINE).await;
    }
    let before = answers(&node, &ids).await;
    let last_seq = node.log_seq().await;

    node.restart().await;
    let from = node.metric("larder_recovered_from_snapshot_seq").await;
    let replayed = node.metric("larder_recovery_replayed_events").await;
    assert!(from > 0, "start-up loaded no snapshot");
    assert_eq!(from + replayed, last_seq, "snapshot + tail = the whole log");
    assert!(
        answers(&node, &ids).await == before,
        "answers differ after a restart from the snapshot"
    );

    // Damage every snapshot: the node replays the whole log instead.
    node.kill();
    for file in snapshots(&node) {
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        std::fs::write(&file, bytes).unwrap();
    }
    node.restart().await;
    assert_eq!(node.metric("larder_recovered_from_snapshot_seq").await, 0);
    assert_eq!(
        node.metric("larder_recovery_replayed_events").await,
        last_seq
    );
    assert!(
        answers(&node, &ids).await == before,
        "answers differ after a full replay"
    );
}
