//! A full disk under the node: it stops acknowledging writes (503 naming
//! the cause, `/readyz` 503), keeps serving reads, loses nothing it
//! acknowledged, and resumes after a restart once space is back.
//!
//! The node's data dir is on a filesystem of its own (`SmallFs`: a
//! loop-mounted ext4 image, tmpfs where there are no loop devices), filled
//! with a ballast file while the node runs. The tests run as root.

use std::time::Duration;

use larder_tests::*;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Stock for the orders; more than the disk-full run can place.
const UNITS: u32 = 500;
/// A full disk refuses an order well within this many (each appends a few
/// hundred bytes to sled's file).
const MAX_ORDERS_BEFORE_REFUSAL: usize = 400;
/// No rate limit in the way of placing orders back to back.
const NO_WRITE_LIMIT: &[&str] = &[
    "--writes-per-sec-per-caller",
    "100000",
    "--write-burst-per-caller",
    "100000",
];

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_loses_nothing_acknowledged() {
    let fs = SmallFs::mount();
    let mut args = vec!["--demo"];
    args.extend_from_slice(NO_WRITE_LIMIT);
    let mut node = Node::start_at(fs.path().join("node"), &args).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, UNITS)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pos = pos_of(&node);
    let before_full = place(&pos, "before").await.expect("an order on free disk");

    let ballast = fs.fill();
    let mut acked = vec![before_full];
    let mut refusal = None;
    for i in 0..MAX_ORDERS_BEFORE_REFUSAL {
        match place(&pos, &format!("full-{i}")).await {
            Ok(id) => acked.push(id),
            Err(r) => {
                refusal = Some(r);
                break;
            }
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "{MAX_ORDERS_BEFORE_REFUSAL} orders acknowledged on a full {}",
            fs.kind
        )
    });
    assert_eq!(refusal.status, 503, "{}", refusal.body);
    assert_eq!(refusal.code(), "store_unavailable", "{}", refusal.body);
    // Every later write is refused with the cause, not a bare "stopped".
    let later = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!((later.status, later.code()), (503, "store_unavailable"));
    let message = later.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("os error 28") || message.contains("No space left"),
        "the refusal names the full disk: {message}"
    );
    let ready = node.anonymous().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);

    // Reads go on from memory: the catalog and every acknowledged order.
    let shown = node.available(FRIDGE, MEAL).await;
    assert_eq!(
        shown,
        u64::from(UNITS) - acked.len() as u64,
        "the catalog still answers"
    );
    assert_all_present(&node, &acked).await;

    std::fs::remove_file(&ballast).expect("remove ballast");
    node.restart().await;
    assert_all_present(&node, &acked).await;
    assert_eq!(node.available(FRIDGE, MEAL).await, shown);
    let ready = node.anonymous().get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    place(&pos_of(&node), "after")
        .await
        .expect("an order once space is back");
    eprintln!(
        "disk full on {}: {} orders acknowledged, then {}",
        fs.kind,
        acked.len(),
        refusal.body
    );
}

/// One POS order under idempotency key `key`: its id, or the refusal.
async fn place(pos: &Client, key: &str) -> Result<String, Resp> {
    let r = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", Some(key)).await;
    match (r.status, r.body["order_id"].as_str()) {
        (201, Some(id)) => Ok(id.to_string()),
        _ => Err(r),
    }
}

fn pos_of(node: &Node) -> Client {
    node.as_role("pos", "pos-campus")
}

async fn assert_all_present(node: &Node, ids: &[String]) {
    let admin = node.admin();
    for id in ids {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.body);
    }
}

/// JetStream redelivers an unacknowledged request after its ack wait
/// (30 s, `bus::ACK_WAIT_SECS`); then the payment round trip.
const REDELIVERY_DEADLINE: Duration = Duration::from_secs(90);
/// A payment on a free disk takes well under this; an order still unpaid
/// after it is taken as stuck on the full one (if it was only slow, the
/// checks after the restart hold all the same).
const UNPAID_AFTER: Duration = Duration::from_secs(5);
/// The book refuses an outcome within this many on a full disk.
const MAX_PAYMENTS_BEFORE_REFUSAL: usize = 40;

#[tokio::test]
async fn a_full_payments_disk_leaves_the_request_unacknowledged_and_charges_once_when_back() {
    let fs = SmallFs::mount();
    let nats = Nats::start().await;
    let mut payments = Payments::start_at(&nats, fs.path().join("payments")).await;
    let node = Node::start_with_nats(&nats, &["--pos-grace-window-secs", "0"]).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, UNITS)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pos = pos_of(&node);
    let mut orders = vec![place(&pos, "before").await.expect("an order")];
    assert!(paid_within(&node, &orders[0], PAYMENT_DEADLINE).await);

    // A few outcomes still fit in the last block of the book's file; the
    // first one that needs a new block cannot be recorded, so no result is
    // published and its request stays unacknowledged.
    let ballast = fs.fill();
    let stuck = loop {
        assert!(
            orders.len() <= MAX_PAYMENTS_BEFORE_REFUSAL,
            "{MAX_PAYMENTS_BEFORE_REFUSAL} payments recorded on a full {}",
            fs.kind
        );
        let id = place(&pos, &format!("full-{}", orders.len()))
            .await
            .expect("the node's own disk is not full");
        orders.push(id.clone());
        if !paid_within(&node, &id, UNPAID_AFTER).await {
            break id;
        }
    };
    let ledger = payments.ledger(&stuck).await;
    assert_ne!(ledger["charge_requests_seen"], 0, "{ledger}");

    std::fs::remove_file(&ballast).expect("remove ballast");
    payments.restart(None).await;
    for id in &orders {
        assert!(
            paid_within(&node, id, REDELIVERY_DEADLINE).await,
            "{id} never paid"
        );
        let ledger = payments.ledger(id).await;
        assert_eq!(
            ledger["ledger"]["charges"], 1,
            "{id} charged once: {ledger}"
        );
    }
    eprintln!(
        "payments disk full on {}: {} orders paid, then {stuck} waited for the restart",
        fs.kind,
        orders.len() - 1
    );
}

/// Whether the order is purchased within `deadline`.
async fn paid_within(node: &Node, id: &str, deadline: Duration) -> bool {
    let admin = node.admin();
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        if r.body["status"] == "purchased" {
            return true;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    false
}
