//! Issue 13, part 4: the capacity planner's prediction against a load run.
//!
//! A real system (nats-server, payments, a node with the demo district)
//! takes a known number of till orders the way `larder-load` places them
//! (POS tokens, one unit, every fridge and meal in turn, no idempotency
//! key) and pays them all. The log's growth over the run is read back
//! from `GET /v1/admin/log` (the records' bytes, as a backup copies them)
//! and from the sled directory; `region-node capacity --format json` is
//! asked for exactly that workload. Record bytes must agree within 20 %.

use std::path::Path;

use larder_tests::*;
use region_node::capacity::Plan;

/// Orders in the run: enough that per-order noise averages out, few
/// enough for a loaded two-core machine.
const ORDERS: usize = 240;
/// Concurrent tills.
const TILLS: usize = 8;
/// The planner's answer may differ from the measured growth by this much.
const TOLERANCE: f64 = 0.20;
/// For the sled directory's growth, predicted from the space factor the
/// planner measures in its own temporary log: a short run's growth moves
/// with how the writer happened to group commands into batches (one sync
/// each), so it is held to a looser bound.
const DISK_TOLERANCE: f64 = 0.35;

/// The records after `after` as `GET /v1/admin/log` serves them.
/// Returns (records, record bytes).
async fn log_growth(node: &Node, after: u64) -> (u64, u64) {
    let (mut records, mut bytes, mut after) = (0u64, 0u64, after);
    loop {
        let page = admin_log_page(node, after, 10_000).await;
        let Some((last_seq, _)) = page.last() else {
            return (records, bytes);
        };
        after = *last_seq;
        records += page.len() as u64;
        bytes += page.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    region_node::capacity::disk::dir_bytes(dir)
}

/// `larder-load`'s phase 1, for a fixed number of orders.
async fn till_orders(node: &Node, fridges: &[String], meals: &[String]) -> Vec<String> {
    let tasks: Vec<_> = (0..TILLS)
        .map(|c| {
            let pos = node.as_role("pos", &format!("pos-{c}"));
            let (fridges, meals) = (fridges.to_vec(), meals.to_vec());
            tokio::spawn(async move {
                let mut ids = vec![];
                for i in (c..ORDERS).step_by(TILLS) {
                    let fridge = &fridges[i % fridges.len()];
                    let meal = &meals[(i / fridges.len()) % meals.len()];
                    let r = pos.order(fridge, &[(meal, 1)], "tok_visa", None).await;
                    assert_eq!(r.status, 201, "{}", r.body);
                    ids.push(r.body["order_id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut ids = vec![];
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

async fn predicted(orders: usize) -> Plan {
    let args = [
        "capacity",
        "--format",
        "json",
        "--users",
        &orders.to_string(),
        "--orders-per-user-per-day",
        "1",
        "--app-share",
        "0",
        "--pickup-share",
        "0",
        "--subscribers",
        "0",
        "--fridges",
        "0",
        "--years",
        "1",
    ];
    let out = run_bin("region-node", args.iter().map(|s| s.to_string()).collect()).await;
    assert!(
        out.status.success(),
        "capacity failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("capacity --format json is a Plan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_planner_predicts_the_log_growth_of_a_run_of_paid_till_orders_within_20_percent() {
    let nats = Nats::start().await;
    let _payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &LOAD_NODE_FLAGS).await;
    let (fridges, meals) = node.stock_every_meal(1_000).await;
    let log_dir = node.data_dir().join("log");
    let seq_before = node.log_seq().await;
    let disk_before = dir_bytes(&log_dir);

    let ids = till_orders(&node, &fridges, &meals).await;
    assert_eq!(ids.len(), ORDERS);
    let admin = node.admin();
    for id in &ids {
        let paid = admin.get(&format!("/v1/orders/{id}")).await.body;
        if paid["status"] != "purchased" {
            node.await_status(id, "purchased", PAYMENT_DEADLINE).await;
        }
    }
    eventually("the outbox to drain", PAYMENT_DEADLINE, || async {
        node.readyz().await["outbox_pending"] == 0
    })
    .await;

    let (records, record_bytes) = log_growth(&node, seq_before).await;
    let disk_growth = dir_bytes(&log_dir).saturating_sub(disk_before);
    let plan = predicted(ORDERS).await;
    let year1 = &plan.years[0];
    let predicted_bytes = year1.log_record_bytes_per_day;
    let error = (predicted_bytes - record_bytes as f64) / record_bytes as f64;
    let disk_factor = plan.sizes.disk.map(|d| d.disk_bytes_per_record_byte);
    eprintln!(
        "capacity check: {ORDERS} paid till orders; measured {records} records, \
         {record_bytes} record bytes, {disk_growth} bytes of sled dir growth; \
         predicted {:.0} records, {predicted_bytes:.0} record bytes ({:+.1} %), \
         on disk {:.0} (sled factor {disk_factor:?})",
        year1.log_records_per_day,
        error * 100.0,
        predicted_bytes * disk_factor.unwrap_or(f64::NAN),
    );
    assert!(
        error.abs() <= TOLERANCE,
        "predicted {predicted_bytes:.0} record bytes, the run wrote {record_bytes} ({:+.1} %)",
        error * 100.0
    );
    let disk_factor = disk_factor.expect("capacity measures sled's space by default");
    let disk_error = (predicted_bytes * disk_factor - disk_growth as f64) / disk_growth as f64;
    assert!(
        disk_error.abs() <= DISK_TOLERANCE,
        "predicted {:.0} bytes on disk, the sled directory grew by {disk_growth} ({:+.1} %)",
        predicted_bytes * disk_factor,
        disk_error * 100.0
    );
    assert!(
        (year1.log_records_per_day - records as f64).abs() <= TOLERANCE * records as f64,
        "predicted {:.0} records, the run wrote {records}",
        year1.log_records_per_day
    );
}
