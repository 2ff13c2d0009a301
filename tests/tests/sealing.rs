//! Issue 15, part 5: the log's old records leave sled. After each snapshot
//! the node seals the records it covers into segment files
//! (`[snapshots] seal_segment_records`), and keeps serving all of it: the
//! export from the first record, every order, and a restart from its
//! snapshot or from the log alone gives the same answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use larder_tests::*;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const ORDERS: usize = 30;

/// The dev config with snapshots every 40 events (or every second) and
/// segments of 16 records, written into `dir`.
fn sealing_config(dir: &Path) -> PathBuf {
    let extra = "[snapshots]\nevery_events = 40\nevery_secs = 1\nseal_segment_records = 16\n";
    dev_config_with(dir, "sealing.toml", extra)
}

fn segments(node: &Node) -> usize {
    count_files(&node.data_dir().join("log").join("sealed"), "seg")
}

/// Every record as `GET /v1/admin/log` exports it, in pages of 7.
async fn exported(node: &Node) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = vec![];
    loop {
        let after = out.last().map_or(0, |r| r.0);
        let page = admin_log_page(node, after, 7).await;
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test]
async fn a_node_seals_its_log_behind_snapshots_and_still_serves_all_of_it() {
    let configs = tempfile::tempdir().unwrap();
    let config = sealing_config(configs.path());
    let mut node = Node::start(&["--config", config.to_str().unwrap(), "--demo"]).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut orders = vec![];
    for n in 0..ORDERS {
        // One customer each: cancelling is rate-limited per customer.
        let customer = node.as_role("customer", &format!("c-{n}"));
        let placed = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        let id = placed.body["order_id"].as_str().unwrap().to_string();
        assert_eq!(customer.cancel(&id).await.status, 200);
        orders.push(id);
    }
    // The files appear on the snapshot thread, the metric once it answers.
    eventually(
        "segments behind a snapshot, and the metric showing them",
        Duration::from_secs(30),
        || async { segments(&node) >= 2 && node.metric("larder_log_sealed_seq").await > 0 },
    )
    .await;
    let sealed = node.metric("larder_log_sealed_seq").await;
    let before = exported(&node).await;
    let seqs: Vec<u64> = before.iter().map(|r| r.0).collect();
    assert_eq!(
        seqs,
        (1..=before.len() as u64).collect::<Vec<_>>(),
        "dense from 1"
    );
    let views = |node: &Node| {
        let admin = node.admin();
        let orders = orders.clone();
        async move {
            let mut out = vec![];
            for id in &orders {
                let r = admin.get(&format!("/v1/orders/{id}")).await;
                assert_eq!(r.status, 200, "{}", r.body);
                out.push(r.body);
            }
            out
        }
    };
    let seen = views(&node).await;
    assert!(seen.iter().all(|v| v["status"] == "cancelled"));

    // From the newest snapshot and the tail, then from the log alone.
    node.restart().await;
    assert_eq!(exported(&node).await[..before.len()], before[..]);
    assert_eq!(views(&node).await, seen);
    assert!(node.metric("larder_log_sealed_seq").await >= sealed);
    node.kill();
    std::fs::remove_dir_all(node.data_dir().join("snapshots")).unwrap();
    node.restart().await;
    assert_eq!(exported(&node).await[..before.len()], before[..]);
    assert_eq!(views(&node).await, seen);
}
