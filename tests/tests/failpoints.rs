//! Crashes at the exact steps where a crash is most likely to lose or
//! repeat something, then a restart, then the invariants: nothing
//! acknowledged lost, nothing charged twice, and the operation completes
//! (a retried order with the same idempotency key gives the same order).
//!
//! Each crash is a failpoint (the `fail` crate, cargo feature `failpoints`
//! of region-node and payments; `scripts/test` builds with it) armed with
//! `FAILPOINTS=<name>=return`, whose closure calls `std::process::abort()`:
//! no destructor, no flush, as in a crash. A binary built without the
//! feature refuses `FAILPOINTS` at start-up and says how to build, so these
//! tests cannot pass without crashing anything.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const UNITS: u32 = 5;
/// A crash follows the request that reaches the failpoint within this.
const CRASH_DEADLINE: Duration = Duration::from_secs(20);
/// Long enough for JetStream to redeliver an unacked message (its ack wait
/// is 30 s, `bus::ACK_WAIT_SECS`) and for the payment round trip after it.
const REDELIVERY_DEADLINE: Duration = Duration::from_secs(90);

struct System {
    _nats: Nats,
    payments: Payments,
    node: Node,
}

impl System {
    /// NATS, payments (with `payments_env`) and a demo node that charges
    /// POS orders at once, stocked with [`UNITS`], and one order paid
    /// before anything crashes.
    async fn start(payments_env: &[(&str, &str)]) -> (System, String) {
        // An aborting child must not leave a core file in the test's cwd.
        no_core_dumps();
        let nats = Nats::start().await;
        let payments = Payments::start_with_env(&nats, &[], payments_env, None).await;
        let node = Node::start_with_nats(&nats, &["--pos-grace-window-secs", "0"]).await;
        let r = node.admin().set_stock(FRIDGE, &[(MEAL, UNITS)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let sys = System {
            _nats: nats,
            payments,
            node,
        };
        let first = sys.order("first-order").await;
        let first = order_id(&first.expect("a node without failpoints answers"));
        if payments_env.is_empty() {
            sys.node
                .await_status(&first, "purchased", PAYMENT_DEADLINE)
                .await;
        }
        (sys, first)
    }

    /// Restarts the node with `failpoint` armed. The stop is graceful, so
    /// nothing from before (a buffered ack) reaches the failpoint later.
    async fn arm_node(&mut self, failpoint: &str) {
        let stopped = self.node.terminate(CRASH_DEADLINE).await;
        assert!(stopped.success(), "{stopped}");
        self.node
            .restart_with_env(&[("FAILPOINTS", &armed(failpoint))])
            .await;
    }

    /// One POS order under idempotency key `key`; `Err` when the node
    /// crashed before answering.
    async fn order(&self, key: &str) -> Result<Resp, reqwest::Error> {
        let body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"});
        self.node
            .as_role("pos", "pos-campus")
            .try_post_with_key("/v1/orders", body, Some(key))
            .await
    }

    /// After the restart: every order purchased once, charged once, the
    /// stock moved once per order, and a retry of `key` gives `expected`
    /// (when known) or the same order again.
    async fn assert_invariants(&self, orders: &[String], key: &str) -> String {
        let retried = order_id(&self.order(key).await.expect("the restarted node answers"));
        let again = order_id(&self.order(key).await.expect("the restarted node answers"));
        assert_eq!(retried, again, "one idempotency key, one order");
        let mut all = orders.to_vec();
        if !all.contains(&retried) {
            all.push(retried.clone());
        }
        for id in &all {
            let order = self
                .node
                .await_status(id, "purchased", REDELIVERY_DEADLINE)
                .await;
            assert!(order["pickup_code"].is_string(), "{order}");
            let ledger = self.payments.ledger(id).await;
            assert_eq!(
                ledger["ledger"]["charges"], 1,
                "{id} charged once: {ledger}"
            );
        }
        assert_eq!(
            self.node.available(FRIDGE, MEAL).await,
            u64::from(UNITS) - all.len() as u64,
            "one unit per order, reserved once"
        );
        retried
    }
}

fn order_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().expect("order_id").to_string()
}

fn armed(failpoint: &str) -> String {
    format!("{failpoint}=return")
}

fn assert_aborted(status: ExitStatus, failpoint: &str) {
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "expected the abort at {failpoint}, got {status}"
    );
}

/// The node crashes at `failpoint` while committing an order: the client
/// gets no answer, and after a restart the retried order is the one order.
async fn node_crashes_before_answering(failpoint: &str) -> (System, Vec<String>) {
    let (mut sys, first) = System::start(&[]).await;
    sys.arm_node(failpoint).await;
    let answer = sys.order("crash-me").await;
    assert!(
        answer.is_err(),
        "no answer may leave before {failpoint}: {answer:?}"
    );
    assert_aborted(sys.node.await_crash(CRASH_DEADLINE).await, failpoint);
    sys.node.restart().await;
    (sys, vec![first])
}

#[tokio::test]
async fn a_crash_after_append_before_sync_loses_nothing_acknowledged() {
    let (sys, acked) = node_crashes_before_answering("log-after-append-before-sync").await;
    sys.assert_invariants(&acked, "crash-me").await;
}

#[tokio::test]
async fn a_crash_after_sync_before_reply_keeps_the_order_and_its_key() {
    let (sys, acked) = node_crashes_before_answering("writer-after-sync-before-reply").await;
    // The batch was durable: the order is there before anyone retries.
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, u64::from(UNITS) - 2);
    sys.assert_invariants(&acked, "crash-me").await;
}

/// The node crashes at `failpoint` after acknowledging an order, on its
/// way to being paid; after a restart it is paid, once.
async fn node_crashes_after_answering(failpoint: &str) {
    let (mut sys, first) = System::start(&[]).await;
    sys.arm_node(failpoint).await;
    // The crash races the 201 out of the process (the relay starts on the
    // batch as the writer answers); usually the answer wins.
    let answered = sys
        .order("paid-across-a-crash")
        .await
        .ok()
        .map(|r| order_id(&r));
    assert_aborted(sys.node.await_crash(CRASH_DEADLINE).await, failpoint);
    sys.node.restart().await;
    let retried = sys.assert_invariants(&[first], "paid-across-a-crash").await;
    if let Some(id) = answered {
        assert_eq!(retried, id, "the acknowledged order, not a new one");
    }
}

#[tokio::test]
async fn a_crash_after_publish_before_marking_charges_once() {
    node_crashes_after_answering("relay-after-publish-before-mark").await;
}

#[tokio::test]
async fn a_crash_after_recording_a_result_before_its_ack_charges_once() {
    node_crashes_after_answering("results-after-record-before-ack").await;
}

/// The payments service crashes at `failpoint` with the node's order
/// acknowledged; after its restart the redelivered request is charged once.
async fn payments_crash(failpoint: &str) {
    let fp = armed(failpoint);
    let (mut sys, first) = System::start(&[("FAILPOINTS", &fp)]).await;
    assert_aborted(sys.payments.await_crash(CRASH_DEADLINE).await, failpoint);
    sys.payments.restart_plain().await;
    let status: Value = sys
        .node
        .await_status(&first, "purchased", REDELIVERY_DEADLINE)
        .await;
    assert_eq!(status["order_id"], first.as_str());
    sys.assert_invariants(&[first], "first-order").await;
}

#[tokio::test]
async fn a_payments_crash_after_charge_before_record_charges_once() {
    payments_crash("payments-after-charge-before-record").await;
}

#[tokio::test]
async fn a_payments_crash_after_record_before_ack_charges_once() {
    payments_crash("payments-after-record-before-ack").await;
}
