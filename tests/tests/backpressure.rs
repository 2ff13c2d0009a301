//! Issue 15: backpressure from the payments path. With the payments service
//! not running the outbox fills; once it holds `[payments] max_backlog`
//! requests, a new order is answered 503 `payments_backlog` with
//! `Retry-After` and changes nothing, while cancels, retries of orders
//! already placed and reads go on. Once payments drains the backlog, orders
//! are taken again.

use std::time::Duration;

use larder_tests::*;
use serde_json::Value;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// The node's `[payments] max_backlog` in this test.
const MAX_BACKLOG: u64 = 3;
/// How long a committed order may take to show up in the outbox.
const OUTBOX_DEADLINE: Duration = Duration::from_secs(10);

fn order_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_string()
}

/// Awaits `/readyz` reporting exactly `pending` payment requests.
async fn await_outbox(node: &Node, pending: u64) {
    eventually(
        &format!("{pending} payment requests in the outbox"),
        OUTBOX_DEADLINE.max(PAYMENT_DEADLINE),
        || async { node.readyz().await["outbox_pending"] == pending },
    )
    .await;
}

/// What a refused order must not change: the fridge's stock and every
/// order (as an admin lists them).
async fn observable(node: &Node) -> (u64, Value) {
    let orders = node.admin().get("/v1/orders").await;
    assert_eq!(orders.status, 200, "{}", orders.body);
    (node.available(FRIDGE, MEAL).await, orders.body)
}

fn assert_backlog_refusal(r: &Resp) {
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.code(), "payments_backlog", "{}", r.body);
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in whole seconds");
    assert!(retry_after >= 1);
    assert_eq!(r.body["error"]["retry_after_secs"], retry_after);
}

#[tokio::test]
async fn at_the_backlog_limit_new_orders_get_503_and_change_nothing_until_payments_catch_up() {
    let nats = Nats::start().await;
    let max = MAX_BACKLOG.to_string();
    // Orders must not time out while payments is away (this is about the
    // backlog, not the payment timeout), and the app order below stays in
    // its grace window (the longest there is) until it is cancelled.
    let flags = [
        "--max-payments-backlog",
        &max,
        "--payment-timeout-secs",
        "600",
        "--grace-window-secs",
        "30",
    ];
    let node = Node::start_with_nats(&nats, &flags).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 10)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pos = node.as_role("pos", "pos-campus");
    let alice = node.as_role("customer", "alice");

    // An app order in its grace window asks for no payment yet.
    let held = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    // Till orders have no grace window: each asks for its payment at once,
    // and with payments not running none gets a result.
    let mut unpaid = vec![];
    for n in 1..=MAX_BACKLOG {
        let key = format!("till-{n}");
        let r = pos
            .order(FRIDGE, &[(MEAL, 1)], "tok_visa", Some(&key))
            .await;
        unpaid.push(order_id(&r));
        await_outbox(&node, n).await;
    }

    let before = observable(&node).await;
    assert_eq!(before.0, 10 - 1 - MAX_BACKLOG);
    assert_backlog_refusal(&pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    assert_backlog_refusal(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    assert_eq!(
        observable(&node).await,
        before,
        "a refused order changed something"
    );
    let ready = node.anonymous().get("/readyz").await;
    assert_eq!(ready.status, 200, "still ready: {}", ready.body);
    let backlog = &ready.body["payments_backlog"];
    assert_eq!(backlog["pending"], MAX_BACKLOG, "{backlog}");
    assert_eq!(backlog["max"], MAX_BACKLOG, "{backlog}");
    assert_eq!(backlog["taking_orders"], false, "{backlog}");
    assert_eq!(node.metric("larder_payments_backlog").await, MAX_BACKLOG);
    assert_eq!(
        node.metric("larder_payments_max_backlog").await,
        MAX_BACKLOG
    );
    assert_eq!(
        node.metric("larder_payments_backlog_refusals_total").await,
        2
    );

    // What was taken already goes on: a retry of a placed order gets its
    // first answer, a cancel in the grace window gives the unit back, and
    // reads answer.
    let again = pos
        .order(FRIDGE, &[(MEAL, 1)], "tok_visa", Some("till-1"))
        .await;
    assert_eq!(order_id(&again), unpaid[0], "the first answer");
    let cancelled = alice.cancel(&held).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(node.available(FRIDGE, MEAL).await, before.0 + 1);
    let mine = alice.get(&format!("/v1/orders/{held}")).await;
    assert_eq!(mine.status, 200, "{}", mine.body);

    // Payments comes up and works through the backlog: orders are taken again.
    let _payments = Payments::start(&nats, &[]).await;
    for id in &unpaid {
        node.await_status(id, "purchased", PAYMENT_DEADLINE).await;
    }
    await_outbox(&node, 0).await;
    let taken = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    let id = order_id(&taken);
    node.await_status(&id, "purchased", PAYMENT_DEADLINE).await;
    assert_eq!(
        node.readyz().await["payments_backlog"]["taking_orders"],
        true
    );
    // The backlog's orders and the last one, each at least once.
    let paid = MAX_BACKLOG + 1;
    assert!(node.metric("larder_payments_published_total").await >= paid);
    assert!(node.metric("larder_payment_results_recorded_total").await >= paid);
}
