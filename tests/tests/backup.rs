//! Issue 10, part 3: backup, restore and export with real processes. A node
//! with NATS and payments is backed up while a load of orders keeps
//! running; a node started on the restored directory replays to the
//! original's state at the backup's seq.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Concurrent order clients while the backup runs.
const CLIENTS: usize = 4;
/// Orders acknowledged before the backup starts.
const ACKED_BEFORE_BACKUP: usize = 100;
/// Orders acknowledged after the backup returned, before the load stops.
const ACKED_AFTER_BACKUP: usize = 20;
const DEADLINE: Duration = Duration::from_secs(60);
/// The dev clock's offset lives in the data dir (dev only, not in the log):
/// the restored node gets the original's, so both judge time alike.
const DEV_CLOCK_FILE: &str = "dev-clock-offset-ms";

fn cli_args(node: &Node, command: &str, rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [command, "--url", &node.base, "--token", admin_token()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

/// Runs `region-node {args}`, asserting it succeeded; returns stdout.
async fn region_node(args: Vec<String>) -> String {
    succeeds("region-node", args).await
}

/// Runs binary `name` with `args`, asserting it succeeded; returns stdout.
async fn succeeds(name: &str, args: Vec<String>) -> String {
    let out = run_bin(name, args.clone()).await;
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs binary `name` with `args`, asserting it failed saying `says`.
async fn fails(name: &str, args: Vec<String>, says: &str) {
    let out = run_bin(name, args.clone()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name} {args:?} succeeded");
    assert!(stderr.contains(says), "{name} {args:?}: {stderr}");
}

/// `{command} --{dir_flag} {dir} --data-dir {data_dir}` (backup and restore
/// of both binaries).
fn dir_args(command: &str, dir_flag: &str, dir: &Path, data_dir: &Path) -> Vec<String> {
    vec![
        command.into(),
        format!("--{dir_flag}"),
        dir.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

/// Restores `backup` into a fresh directory and starts a node on it, with
/// the original's dev clock and without NATS (the original still consumes
/// the district's payment results).
async fn restored_node(original: &Node, backup: &Path) -> Node {
    let data = tempfile::tempdir().expect("tempdir");
    let target = node_data_dir(data.path());
    region_node(dir_args("restore", "from", backup, &target)).await;
    let clock = original.data_dir().join(DEV_CLOCK_FILE);
    if clock.exists() {
        std::fs::copy(&clock, target.join(DEV_CLOCK_FILE)).expect("copy clock");
    }
    Node::start_in(data, &["--dev-clock"]).await
}

fn manifest(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

/// Orders in several states: purchased, picked up, cancelled in the grace
/// window, refused by the card. Returns their ids.
async fn orders_in_several_states(node: &Node) -> Vec<String> {
    let pos = node.as_role("pos", "pos-campus");
    let id = |r: &Resp| r.body["order_id"].as_str().expect("order id").to_string();
    let purchased = id(&pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    let picked = id(&pos.order(FRIDGE, &[(MEAL, 2)], "tok_visa", None).await);
    let refused = id(&pos.order(FRIDGE, &[(MEAL, 1)], "tok_decline", None).await);
    let app = node.as_role("customer", "c-backup");
    let cancelled = id(&app.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    assert_eq!(app.cancel(&cancelled).await.body["status"], "cancelled");
    node.await_status(&purchased, "purchased", PAYMENT_DEADLINE)
        .await;
    node.await_status(&refused, "refused", PAYMENT_DEADLINE)
        .await;
    let order = node
        .await_status(&picked, "purchased", PAYMENT_DEADLINE)
        .await;
    let code = order["pickup_code"].as_str().expect("pickup code");
    assert_eq!(pos.pickup(&picked, code).await.body["status"], "picked_up");
    vec![purchased, picked, refused, cancelled]
}

/// A weekly plan, paid, its first days ordered: returns its id.
async fn paid_plan(node: &Node) -> String {
    let customer = node.as_role("customer", "c-plan");
    let start = customer.earliest_change_date().await;
    let days: Vec<Value> = (1..=5)
        .map(|w| json!({"weekday": w, "meal_id": MEAL}))
        .collect();
    let r = customer
        .create_plan(json!({
            "fridge_id": FRIDGE,
            "days": days,
            "start_date": start,
            "end_date": start + chrono::Duration::days(13),
            "payment_method": "tok_visa",
        }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let plan = r.body["plan_id"].as_str().expect("plan id").to_string();
    // The schedule tick asks for the charge after the create's commit, and
    // makes the week's first orders once it is paid (in one batch).
    let path = format!("/v1/subscriptions/{plan}");
    eventually(
        "the plan's first week paid and ordered",
        PAYMENT_DEADLINE,
        || async {
            let view = node.admin().get(&path).await.body;
            view["paid_through"].is_string()
                && view["orders"].as_array().is_some_and(|o| !o.is_empty())
        },
    )
    .await;
    plan
}

/// Until the outbox is empty: every payment answered, nothing in flight.
async fn settled(node: &Node) {
    eventually("every payment settled", DEADLINE, || async {
        node.readyz().await["outbox_pending"] == 0
    })
    .await;
}

/// What an operator would compare: the catalog, every order, the plans.
async fn answers(node: &Node, orders: &[String], plan: &str) -> Vec<Value> {
    let admin = node.admin();
    let mut out = vec![node.catalog(42.3314, -83.0458, 5_000).await];
    for id in orders {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        out.push(json!({"status": r.status, "body": r.body}));
    }
    out.push(admin.get(&format!("/v1/subscriptions/{plan}")).await.body);
    out.push(node.as_role("customer", "c-plan").plans().await.body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_online_backup_answers_as_the_original_did() {
    let nats = Nats::start().await;
    let _payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &[]).await;
    node.start_the_day().await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 10_000)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let orders = orders_in_several_states(&node).await;
    let plan = paid_plan(&node).await;
    settled(&node).await;

    // A quiet backup: the restored node must answer exactly as the original.
    let root = tempfile::tempdir().expect("tempdir");
    let quiet = root.path().join("quiet");
    region_node(cli_args(
        &node,
        "backup",
        &["--to", &quiet.display().to_string()],
    ))
    .await;
    let restored = restored_node(&node, &quiet).await;
    assert_eq!(restored.log_seq().await, node.log_seq().await);
    assert_eq!(
        answers(&restored, &orders, &plan).await,
        answers(&node, &orders, &plan).await
    );
    drop(restored);

    // An online backup under load.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"});
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = node.as_role("pos", "pos-campus");
            tokio::spawn(order_loop(
                client,
                body.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    let count = || acked.lock().expect("acked").len();
    eventually("orders before the backup", DEADLINE, || {
        let n = count();
        async move { n >= ACKED_BEFORE_BACKUP }
    })
    .await;
    let before = count();
    let online = root.path().join("online");
    region_node(cli_args(
        &node,
        "backup",
        &["--to", &online.display().to_string()],
    ))
    .await;
    let after = count();
    eventually("orders after the backup", DEADLINE, || {
        let n = count();
        async move { n >= after + ACKED_AFTER_BACKUP }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("acked").clone();
    let seq = manifest(&online)["last_seq"].as_u64().expect("last_seq");
    assert!(
        seq < node.log_seq().await,
        "the load went on past the backup"
    );

    let restored = restored_node(&node, &online).await;
    // Before its own timers add anything, the restored log ends at the seq.
    assert!(restored.log_seq().await >= seq);
    let admin = restored.admin();
    for (i, id) in acked.iter().enumerate() {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        match i {
            i if i < before => assert_eq!(r.status, 200, "order {id}, acked before: {}", r.body),
            i if i >= after => assert_eq!(r.status, 404, "order {id}, acked after: {}", r.body),
            _ => assert!([200, 404].contains(&r.status), "order {id}: {}", r.body),
        }
        if r.status == 200 {
            assert_eq!(r.body["order_id"], id.as_str());
        }
    }
    // The restored log is the original's, byte for byte, up to the seq.
    let original = region_node(cli_args(&node, "export", &[])).await;
    let copy = region_node(cli_args(&restored, "export", &[])).await;
    let prefix: Vec<&str> = original.lines().take(seq as usize).collect();
    assert_eq!(copy.lines().take(seq as usize).collect::<Vec<_>>(), prefix);
    assert_eq!(prefix.len() as u64, seq);
}

#[tokio::test]
async fn export_writes_json_lines_since_a_seq_and_restore_refuses_bad_backups() {
    let node = Node::start_demo().await;
    let total = node.log_seq().await;
    let root = tempfile::tempdir().expect("tempdir");
    let out = root.path().join("events.jsonl");
    let since = (total - 5).to_string();
    region_node(cli_args(
        &node,
        "export",
        &["--since", &since, "--out", &out.display().to_string()],
    ))
    .await;
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON envelope per line"))
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, ((total - 4)..=total).collect::<Vec<_>>());
    assert!(
        lines[0]["event_id"].is_string() && lines[0]["event"].is_object(),
        "{}",
        lines[0]
    );

    let backup = root.path().join("b");
    region_node(cli_args(
        &node,
        "backup",
        &["--to", &backup.display().to_string()],
    ))
    .await;
    let m = manifest(&backup);
    assert_eq!(
        (m["first_seq"].as_u64(), m["last_seq"].as_u64()),
        (Some(1), Some(total))
    );
    assert_eq!(m["record_count"].as_u64(), Some(total));
    assert_eq!(m["district_id"], "detroit-downtown");
    assert_eq!(m["log_schema_version"], 2);

    // A second backup to the same place is refused; the first stays whole.
    let again = cli_args(&node, "backup", &["--to", &backup.display().to_string()]);
    fails("region-node", again, "not empty").await;

    // Into a non-empty data dir: refused, nothing changed.
    let busy = dir_args("restore", "from", &backup, &node.data_dir());
    fails("region-node", busy, "not empty").await;

    // A flipped byte: the checksum says so, and nothing is written.
    let records = backup.join("log-records.bin");
    let mut bytes = std::fs::read(&records).expect("records");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&records, bytes).expect("write");
    let target = root.path().join("restored");
    let corrupt = dir_args("restore", "from", &backup, &target);
    fails("region-node", corrupt, "checksum mismatch").await;
    assert!(!target.join("log").exists());
}

#[tokio::test]
async fn the_log_route_is_admin_only_and_refuses_bad_pages() {
    let node = Node::start_demo().await;
    let total = node.log_seq().await;
    let r = node.admin().get("/v1/admin/log?after=0&limit=3").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.headers["larder-durable-seq"], total.to_string().as_str());
    assert_eq!(r.headers["larder-log-schema-version"], "2");
    for role in ["customer", "pos", "fridge", "kitchen"] {
        let r = node.as_role(role, "x").get("/v1/admin/log").await;
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden"),
            "{role}: {}",
            r.body
        );
    }
    assert_eq!(node.anonymous().get("/v1/admin/log").await.status, 401);
    for (query, status, code) in [
        ("limit=0", 422, "invalid"),
        ("limit=10001", 422, "invalid"),
        ("after=-1", 400, "invalid_query"),
        ("after=x", 400, "invalid_query"),
        ("limit=1.5", 400, "invalid_query"),
    ] {
        let r = node.admin().get(&format!("/v1/admin/log?{query}")).await;
        assert_eq!((r.status, r.code()), (status, code), "{query}: {}", r.body);
    }
    let past = node
        .admin()
        .get(&format!("/v1/admin/log?after={}", total + 10))
        .await;
    assert_eq!(past.status, 200);
    assert_eq!(node.log_seq().await, total, "reading changed nothing");
}

/// The sandbox's totals and, per order, its ledger entry and the book's
/// outcomes (not the delivery counters, which a backup leaves out).
async fn book_answers(payments: &Payments, orders: &[String]) -> Vec<Value> {
    let mut out = vec![payments.totals().await];
    for id in orders {
        let l = payments.ledger(id).await;
        out.push(json!([
            l["ledger"],
            l["charge_outcome"],
            l["refund_outcome"]
        ]));
    }
    out
}

#[tokio::test]
async fn a_restored_payments_book_answers_the_same_ledger() {
    let nats = Nats::start().await;
    let mut payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &[]).await;
    let orders = orders_in_several_states(&node).await;
    let before = book_answers(&payments, &orders).await;
    payments.kill();
    let root = tempfile::tempdir().expect("tempdir");
    let backup = root.path().join("book");
    let data = payments.data_dir();
    succeeds("payments", dir_args("backup", "to", &backup, &data)).await;
    let restore = dir_args("restore", "from", &backup, &data);
    fails("payments", restore.clone(), "not empty").await;
    std::fs::remove_dir_all(&data).expect("wipe the book");
    succeeds("payments", restore).await;
    payments.restart(None).await;
    assert_eq!(book_answers(&payments, &orders).await, before);
    assert!(before[0]["charges"].as_u64() >= Some(2), "{}", before[0]);
}
