//! Issue 3: orders end to end with a real nats-server and payments service.

use std::time::Duration;

use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";

/// The system with demo data, `units` of MEAL in FRIDGE, and tokens.
struct System {
    nats: Nats,
    payments: Payments,
    node: Node,
}

impl System {
    async fn start(units: u32, node_flags: &[&str], payment_flags: &[&str]) -> System {
        let nats = Nats::start().await;
        let payments = Payments::start(&nats, payment_flags).await;
        let node = Node::start_with_nats(&nats, node_flags).await;
        let r = node.admin().set_stock(FRIDGE, &[(MEAL, units)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        System {
            nats,
            payments,
            node,
        }
    }

    fn customer(&self, name: &str) -> Client {
        self.node.as_role("customer", name)
    }

    fn pos(&self) -> Client {
        self.node.as_role("pos", "pos-campus")
    }

    async fn pos_order(&self, key: Option<&str>) -> String {
        let r = self
            .pos()
            .order(FRIDGE, &[(MEAL, 1)], "tok_visa", key)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["order_id"].as_str().unwrap().to_string()
    }
}

fn order_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_paid_order_gets_a_pickup_code_and_stock_moves_exactly_once() {
    let sys = System::start(3, &[], &[]).await;
    let r = sys
        .pos()
        .order(FRIDGE, &[(MEAL, 1)], "tok_visa", None)
        .await;
    assert_eq!(r.body["status"], "held");
    assert_eq!(
        r.body["total"], 1045,
        "price from the catalog, not the client"
    );
    let id = order_id(&r);
    assert_eq!(
        sys.node.available(FRIDGE, MEAL).await,
        2,
        "reserved at once"
    );

    let order = sys
        .node
        .await_status(&id, "purchased", PAYMENT_DEADLINE)
        .await;
    let statuses: Vec<&str> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["held", "paying", "purchased"]);
    let code = order["pickup_code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 2);
    let ledger = sys.payments.ledger(&id).await;
    assert_eq!(ledger["ledger"]["charges"], 1);
    assert_eq!(ledger["ledger"]["amount"], 1045);

    assert_eq!(
        sys.pos().pickup(&id, "000000x").await.code(),
        "wrong_pickup_code"
    );
    let picked = sys.pos().pickup(&id, &code).await;
    assert_eq!(picked.body["status"], "picked_up", "{}", picked.body);
    assert_eq!(
        sys.node.available(FRIDGE, MEAL).await,
        2,
        "on hand and reserved both drop by one"
    );
    assert_eq!(
        sys.pos().pickup(&id, &code).await.status,
        409,
        "a second pickup is refused"
    );
}

#[tokio::test]
async fn cancelling_in_the_grace_window_never_reaches_payments() {
    let sys = System::start(3, &[], &[]).await;
    let customer = sys.customer("alice");
    let id = order_id(&customer.order(FRIDGE, &[(MEAL, 2)], "tok_visa", None).await);
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 1);
    let cancelled = customer.cancel(&id).await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 3);

    // Past the grace window; then a later order is paid. Timers fire in due
    // order and the outbox drains in order, so had the cancelled order asked
    // for money, payments would have seen it by now.
    sys.node.advance_clock(60).await;
    let later = sys.pos_order(None).await;
    sys.node
        .await_status(&later, "purchased", PAYMENT_DEADLINE)
        .await;
    let ledger = sys.payments.ledger(&id).await;
    assert_eq!(ledger["charge_requests_seen"], 0, "{ledger}");
    assert_eq!(ledger["ledger"]["charges"], 0);
    assert_eq!(
        sys.node.admin().get(&format!("/v1/orders/{id}")).await.body["status"],
        "cancelled"
    );
}

#[tokio::test]
async fn a_declined_card_refuses_the_order_and_releases_stock() {
    let sys = System::start(2, &[], &[]).await;
    let id = order_id(
        &sys.pos()
            .order(FRIDGE, &[(MEAL, 2)], "tok_decline", None)
            .await,
    );
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 0);
    let order = sys
        .node
        .await_status(&id, "refused", PAYMENT_DEADLINE)
        .await;
    assert_eq!(order["refusal_reason"], "declined");
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 2);
    assert_eq!(sys.payments.ledger(&id).await["ledger"]["charges"], 0);
}

#[tokio::test]
async fn with_payments_stopped_the_order_times_out_and_is_never_charged_later() {
    let mut sys = System::start(1, &["--payment-timeout-secs", "1"], &[]).await;
    sys.payments.kill();
    let id = sys.pos_order(None).await;
    let order = sys
        .node
        .await_status(&id, "refused", PAYMENT_DEADLINE)
        .await;
    assert_eq!(order["refusal_reason"], "timeout");
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 1);

    // Payments comes back and finds the stale request: past its deadline.
    sys.payments.restart(None).await;
    let payments = &sys.payments;
    eventually(
        "payments to answer the stale request",
        PAYMENT_DEADLINE,
        || async { payments.ledger(&id).await["charge_outcome"].is_object() },
    )
    .await;
    assert_eq!(
        payments.ledger(&id).await["charge_outcome"]["status"],
        "declined",
        "the outcome is JSON, not a Rust debug string"
    );
    assert_eq!(sys.payments.ledger(&id).await["ledger"]["charges"], 0);
    assert_eq!(
        sys.node.admin().get(&format!("/v1/orders/{id}")).await.body["status"],
        "refused"
    );
}

#[tokio::test]
async fn a_confirmation_after_the_timeout_is_refunded_automatically() {
    // The processor takes 2.5 s; the node gives up after 1 s.
    let sys = System::start(
        1,
        &["--payment-timeout-secs", "1"],
        &["--sandbox-latency-ms", "2500"],
    )
    .await;
    let id = sys.pos_order(None).await;
    sys.node
        .await_status(&id, "refused", PAYMENT_DEADLINE)
        .await;
    let order = sys
        .node
        .await_status(&id, "refunded", PAYMENT_DEADLINE)
        .await;
    assert_eq!(order["refusal_reason"], "timeout");
    let ledger = sys.payments.ledger(&id).await;
    assert_eq!(
        (
            ledger["ledger"]["charges"].clone(),
            ledger["ledger"]["refunds"].clone()
        ),
        (json!(1), json!(1)),
        "{ledger}"
    );
    assert_eq!(ledger["ledger"]["amount"], 0, "no money kept");
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 1);
}

#[tokio::test]
async fn cancelling_after_purchase_refunds() {
    let sys = System::start(1, &["--pos-grace-window-secs", "0"], &[]).await;
    let customer = sys.customer("bob");
    let id = order_id(&customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    sys.node.advance_clock(25).await; // past the app grace window
    sys.node
        .await_status(&id, "purchased", PAYMENT_DEADLINE)
        .await;
    let r = customer.cancel(&id).await;
    assert_eq!(r.body["status"], "cancelled", "{}", r.body);
    assert_eq!(r.body["refund_pending"], true);
    sys.node
        .await_status(&id, "refunded", PAYMENT_DEADLINE)
        .await;
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 1);
    assert_eq!(sys.payments.ledger(&id).await["ledger"]["refunds"], 1);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_one_order_and_one_charge() {
    let sys = System::start(5, &[], &[]).await;
    let pos = sys.pos();
    // Ten concurrent retries of one confirm, then one more after the fact.
    let tries =
        (0..10).map(|_| pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", Some("till-7-sale-42")));
    let answers = futures::future::join_all(tries).await;
    let ids: std::collections::BTreeSet<String> = answers.iter().map(order_id).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    sys.node
        .await_status(&id, "purchased", PAYMENT_DEADLINE)
        .await;
    let again = pos
        .order(FRIDGE, &[(MEAL, 1)], "tok_visa", Some("till-7-sale-42"))
        .await;
    assert_eq!(order_id(&again), id);
    assert_eq!(again.body, answers[0].body, "the first answer, unchanged");
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 4);
    assert_eq!(sys.payments.ledger(&id).await["ledger"]["charges"], 1);

    let other_body = pos
        .order(FRIDGE, &[(MEAL, 2)], "tok_visa", Some("till-7-sale-42"))
        .await;
    assert_eq!(
        (other_body.status, other_body.code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 4);
}

#[tokio::test]
async fn with_nats_down_orders_are_accepted_and_each_is_paid_once_when_it_returns() {
    let mut sys = System::start(20, &[], &[]).await;
    sys.nats.stop();
    let node = &sys.node;
    eventually(
        "the node to notice NATS is gone",
        PAYMENT_DEADLINE,
        || async { node.readyz().await["nats"] != "connected" },
    )
    .await;
    let mut ids = vec![];
    for _ in 0..10 {
        ids.push(sys.pos_order(None).await);
    }
    // Catalog still served; orders wait in the outbox.
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 10);
    let ready = sys.node.readyz().await;
    assert_eq!(
        ready["ready"], true,
        "NATS is reported, not required: {ready}"
    );
    let node = &sys.node;
    eventually(
        "all ten payment requests in the outbox",
        PAYMENT_DEADLINE,
        || async { node.readyz().await["outbox_pending"] == 10 },
    )
    .await;

    sys.nats.restart().await;
    for id in &ids {
        sys.node
            .await_status(id, "purchased", PAYMENT_DEADLINE)
            .await;
        assert_eq!(
            sys.payments.ledger(id).await["ledger"]["charges"],
            1,
            "order {id}"
        );
    }
    assert_eq!(sys.payments.totals().await["charges"], 10);
}

#[tokio::test]
async fn sigkill_mid_flow_resumes_timers_and_outbox_without_double_charges() {
    let mut sys = System::start(30, &[], &["--sandbox-latency-ms", "100"]).await;
    // Some orders in their grace window, some paying, when the node dies
    // (one customer each: a customer holds at most three at once).
    let mut ids = vec![];
    for i in 0..5 {
        let customer = sys.customer(&format!("carol-{i}"));
        ids.push(order_id(
            &customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await,
        ));
    }
    for _ in 0..10 {
        ids.push(sys.pos_order(None).await);
    }
    sys.node.kill();
    sys.node.restart().await;
    sys.node.advance_clock(25).await; // the app orders' grace windows end
    for id in &ids {
        sys.node
            .await_status(id, "purchased", PAYMENT_DEADLINE)
            .await;
    }
    for id in &ids {
        assert_eq!(
            sys.payments.ledger(id).await["ledger"]["charges"],
            1,
            "order {id}"
        );
    }
    assert_eq!(sys.payments.totals().await["charges"], 15);
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 15);
}

#[tokio::test]
async fn racing_for_the_last_units_never_sells_more_than_stocked() {
    let sys = System::start(5, &[], &[]).await;
    let racers = (0..40).map(|i| {
        let c = sys.customer(&format!("racer-{i}"));
        async move { c.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await }
    });
    let answers = futures::future::join_all(racers).await;
    let won = answers.iter().filter(|r| r.status == 201).count();
    let lost: Vec<&Resp> = answers.iter().filter(|r| r.status != 201).collect();
    assert_eq!(won, 5);
    assert!(lost
        .iter()
        .all(|r| r.status == 409 && r.code() == "insufficient_stock"));
    assert_eq!(
        lost[0].body["error"]["available"],
        json!([{"meal_id": MEAL, "available": 0}])
    );
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 0);
}

#[tokio::test]
async fn bad_orders_get_a_clear_4xx_and_change_nothing() {
    let sys = System::start(3, &[], &[]).await;
    let seq = sys.node.log_seq().await;
    let alice = sys.customer("alice");
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": "m-nope", "qty": 1}], "payment_method": "tok_visa"}),
            404,
            "unknown_meal",
        ),
        (
            json!({"fridge_id": "f-nope", "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"}),
            404,
            "unknown_fridge",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 0}], "payment_method": "tok_visa"}),
            422,
            "invalid",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 11}], "payment_method": "tok_visa"}),
            422,
            "invalid",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [], "payment_method": "tok_visa"}),
            422,
            "invalid",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}, {"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"}),
            422,
            "invalid",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 4}], "payment_method": "tok_visa"}),
            409,
            "insufficient_stock",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa", "tip": 5}),
            422,
            "invalid_body",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": -1}], "payment_method": "tok_visa"}),
            422,
            "invalid_body",
        ),
        (
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}]}),
            422,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let r = alice.order_body(body.clone(), None).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.body);
    }
    let r = alice.order_body(json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}], "payment_method": "tok_visa"}), Some(&"k".repeat(200))).await;
    assert_eq!((r.status, r.code()), (400, "invalid_idempotency_key"));
    let kitchen = sys.node.as_role("kitchen", "cook");
    assert_eq!(
        kitchen
            .order(FRIDGE, &[(MEAL, 1)], "tok_visa", None)
            .await
            .status,
        403
    );
    assert_eq!(
        sys.node
            .anonymous()
            .order(FRIDGE, &[(MEAL, 1)], "tok_visa", None)
            .await
            .status,
        401
    );
    assert_eq!(sys.node.log_seq().await, seq, "nothing was recorded");
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 3);

    // Someone else's order does not exist for you.
    let id = order_id(&alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await);
    let mallory = sys.customer("mallory");
    assert_eq!(mallory.get(&format!("/v1/orders/{id}")).await.status, 404);
    assert_eq!(mallory.cancel(&id).await.status, 404);
    assert_eq!(mallory.get("/v1/orders").await.body["orders"], json!([]));
    assert_eq!(
        alice.get("/v1/orders").await.body["orders"][0]["order_id"],
        id.as_str()
    );
    assert_eq!(
        alice.get(&format!("/v1/orders/{id}")).await.body["status"],
        "held"
    );
}

#[tokio::test]
async fn unclaimed_orders_give_their_units_back() {
    let sys = System::start(2, &["--pickup-window-secs", "60"], &[]).await;
    let id = sys.pos_order(None).await;
    sys.node
        .await_status(&id, "purchased", PAYMENT_DEADLINE)
        .await;
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 1);
    sys.node.advance_clock(61).await;
    sys.node
        .await_status(&id, "unclaimed", Duration::from_secs(10))
        .await;
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, 2);
}
