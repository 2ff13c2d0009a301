//! Issue 6: subscriptions and kitchens end to end — weekly plans prepaid
//! through the real payments service, materialised by the node's own clock,
//! cooked from the prep report, placed in the fridge and picked up.

use chrono::NaiveDate;
use larder_tests::ws::WsClient;
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const MEAL_PRICE: i64 = 1045;
const KITCHEN: &str = "k-midtown-greens";
const DAY_SECS: i64 = 24 * 3600;

struct System {
    _nats: Nats,
    payments: Payments,
    node: Node,
}

impl System {
    async fn start() -> System {
        let nats = Nats::start().await;
        let payments = Payments::start(&nats, &[]).await;
        let node = Node::start_with_nats(&nats, &[]).await;
        node.start_the_day().await;
        System {
            _nats: nats,
            payments,
            node,
        }
    }

    /// A customer with a plan from the earliest possible date whose first
    /// day is already an order: `(customer, start, plan_id, first order id)`.
    async fn subscriber(&self, name: &str) -> (Client, NaiveDate, String, String) {
        let customer = self.node.as_role("customer", name);
        let start = customer.earliest_change_date().await;
        let plan = create_plan(&customer, start).await;
        bring_into_horizon(&self.node, &customer, start).await;
        let first = format!("sub-{plan}-{start}");
        await_order(&customer, &first, "scheduled").await;
        (customer, start, plan, first)
    }
}

/// Salad every day of the week from `start` for three weeks (weekends do
/// not work by default, so only weekdays become orders).
fn plan_body(start: NaiveDate) -> Value {
    let days: Vec<Value> = (1..=7)
        .map(|w| json!({"weekday": w, "meal_id": MEAL}))
        .collect();
    json!({
        "fridge_id": FRIDGE,
        "days": days,
        "start_date": start,
        "end_date": start + chrono::Duration::days(20),
        "payment_method": "tok_visa",
    })
}

async fn create_plan(customer: &Client, start: NaiveDate) -> String {
    let r = customer.create_plan(plan_body(start)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "active");
    r.body["plan_id"].as_str().unwrap().to_string()
}

/// Moves the node's clock a day at a time until `date` is within the
/// default three days ahead (after Thursday's cutoff the earliest start is
/// Monday, four days away), so the test does not depend on today's weekday.
async fn bring_into_horizon(node: &Node, customer: &Client, date: NaiveDate) {
    loop {
        let today: NaiveDate =
            serde_json::from_value(customer.plans().await.body["today"].clone()).unwrap();
        if date <= today + chrono::Duration::days(3) {
            return;
        }
        node.advance_clock(DAY_SECS).await;
    }
}

/// Moves the node's clock a day at a time until it is the eve of `date`
/// (or later): the kitchen may place a plan meal from the day before its
/// delivery date.
async fn bring_to_eve(node: &Node, customer: &Client, date: NaiveDate) {
    loop {
        let today: NaiveDate =
            serde_json::from_value(customer.plans().await.body["today"].clone()).unwrap();
        if today + chrono::Duration::days(1) >= date {
            return;
        }
        node.advance_clock(DAY_SECS).await;
    }
}

/// `units` fresh units of MEAL at FRIDGE, none of the demo's (which expire
/// while the clock moves days ahead).
async fn fresh_stock(node: &Node, units: u32) {
    let admin = node.admin();
    for n in [0, units] {
        let r = admin.set_stock(FRIDGE, &[(MEAL, n)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(node.available(FRIDGE, MEAL).await, u64::from(units));
}

/// Awaits an order of the customer's with this id and status.
async fn await_order(customer: &Client, order_id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..(PAYMENT_DEADLINE.as_millis() / POLL_STEP.as_millis()) {
        let r = customer.get(&format!("/v1/orders/{order_id}")).await;
        if r.body["status"] == status {
            return r.body;
        }
        last = r.body;
        tokio::time::sleep(POLL_STEP).await;
    }
    panic!("order {order_id} never reached {status}; last: {last}");
}

async fn credit(customer: &Client) -> i64 {
    customer.plans().await.body["credit"].as_i64().unwrap()
}

/// The prep report's row for MEAL at FRIDGE on `date`, as `kitchen` reads it.
async fn prep_row(kitchen: &Client, date: &str) -> Value {
    let prep = kitchen.prep(KITCHEN, date).await;
    assert_eq!(prep.status, 200, "{}", prep.body);
    prep.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["meal_id"] == MEAL && r["fridge_id"] == FRIDGE)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {MEAL} at {FRIDGE}: {}", prep.body))
}

fn statuses(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_subscriber_gets_lunch_from_plan_to_pickup_week_after_week() {
    let sys = System::start().await;
    // The week is charged once through payments, then the first day becomes
    // an order the subscriber can see.
    let (alice, start, plan, first) = sys.subscriber("alice").await;
    let order = await_order(&alice, &first, "scheduled").await;
    assert_eq!(order["total"], MEAL_PRICE);
    assert_eq!(order["delivery_date"], json!(start));
    let plans = alice.plans().await.body;
    let charge = &plans["plans"][0]["charges"][0];
    assert_eq!(charge["status"], "paid", "{plans}");
    let ledger = sys
        .payments
        .ledger(charge["charge_id"].as_str().unwrap())
        .await;
    assert_eq!(ledger["ledger"]["charges"], 1, "{ledger}");
    assert_eq!(ledger["ledger"]["amount"], charge["amount"]);

    // The kitchen reads what to cook, as JSON and as CSV.
    let kitchen = sys.node.kitchen(KITCHEN);
    let date = start.to_string();
    let row = prep_row(&kitchen, &date).await;
    assert_eq!(row["subscription_units"], 1, "{row}");
    let (status, ctype, csv) = kitchen.prep_csv(KITCHEN, &date).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    assert!(
        csv.contains(&format!(",{MEAL},Greek Salad,{FRIDGE},1,")),
        "{csv}"
    );

    // Cooked, on its way, in the fridge: the unit arrives reserved for Alice,
    // and her app hears of it over the WebSocket.
    bring_to_eve(&sys.node, &alice, start).await;
    fresh_stock(&sys.node, 2).await;
    let alice_token = alice.token.clone().unwrap();
    let mut ws = WsClient::connect(&sys.node, Some(&alice_token)).await;
    ws.subscribe(json!({"orders": true})).await;
    let available_before = sys.node.available(FRIDGE, MEAL).await;
    for stage in ["prepared", "dispatched", "placed_in_fridge"] {
        let r = kitchen.kitchen_event(KITCHEN, stage, &date).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["orders"].as_array().unwrap().len(), 1, "{}", r.body);
    }
    let again = kitchen
        .kitchen_event(KITCHEN, "placed_in_fridge", &date)
        .await;
    assert_eq!(
        again.body["orders"],
        json!([]),
        "a repeated event moves nothing"
    );
    let order = await_order(&alice, &first, "available").await;
    let code = order["pickup_code"].as_str().unwrap().to_string();
    let pushed = ws
        .expect("the order available for picking", |m| {
            m["type"] == "order" && m["order_id"] == first.as_str() && m["status"] == "available"
        })
        .await;
    assert_eq!(pushed["pickup_code"], code.as_str(), "{pushed}");
    assert_eq!(
        sys.node.available(FRIDGE, MEAL).await,
        available_before,
        "not for sale to anyone else"
    );

    // Picked up at the fridge with the code.
    let pos = sys.node.as_role("pos", "pos-campus");
    let picked = pos.pickup(&first, &code).await;
    assert_eq!(picked.status, 200, "{}", picked.body);
    let order = await_order(&alice, &first, "picked_up").await;
    assert_eq!(
        statuses(&order),
        [
            "scheduled",
            "prepared",
            "dispatched",
            "available",
            "picked_up"
        ]
    );
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, available_before);

    // A week later (the node's clock moves), the same weekday is ordered
    // again, paid by the next week's charge.
    sys.node.advance_clock(7 * DAY_SECS).await;
    let next = format!("sub-{plan}-{}", start + chrono::Duration::days(7));
    await_order(&alice, &next, "scheduled").await;
    let plans = alice.plans().await.body;
    let charges = plans["plans"][0]["charges"].as_array().unwrap();
    assert!(charges.len() >= 2, "{plans}");
    assert!(charges.iter().all(|c| c["status"] == "paid"), "{plans}");
}

#[tokio::test]
async fn unpicked_meals_go_back_to_general_stock() {
    let sys = System::start().await;
    let (bob, start, _, first) = sys.subscriber("bob").await;
    let kitchen = sys.node.kitchen(KITCHEN);
    bring_to_eve(&sys.node, &bob, start).await;
    fresh_stock(&sys.node, 0).await;
    let before = sys.node.available(FRIDGE, MEAL).await;
    let r = kitchen
        .kitchen_event(KITCHEN, "placed_in_fridge", &start.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&bob, &first, "available").await;
    assert_eq!(sys.node.available(FRIDGE, MEAL).await, before);

    // Past the pickup window (the delivery day's, 21:00 local): unclaimed,
    // and the unit is for sale.
    let deadline: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(order["pickup_deadline"].clone()).unwrap();
    let now = sys.node.clock_now().await;
    sys.node
        .advance_clock((deadline - now).num_seconds() + 60)
        .await;
    let order = await_order(&bob, &first, "unclaimed").await;
    assert_eq!(
        statuses(&order),
        [
            "scheduled",
            "prepared",
            "dispatched",
            "available",
            "unclaimed"
        ]
    );
    eventually("the unit in general stock", PAYMENT_DEADLINE, || async {
        sys.node.available(FRIDGE, MEAL).await == before + 1
    })
    .await;
}

#[tokio::test]
async fn holidays_pauses_and_cancellations_credit_unproduced_days_and_reopening_makes_them_again() {
    let sys = System::start().await;
    let admin = sys.node.admin();
    let (carol, start, plan, first) = sys.subscriber("carol").await;
    let date = start.to_string();

    // The day becomes a holiday: the order is withdrawn and credited.
    let r = admin.set_day(&date, false, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["orders_withdrawn"], 1, "{}", r.body);
    await_order(&carol, &first, "cancelled").await;
    assert_eq!(credit(&carol).await, MEAL_PRICE);
    let prep = sys.node.kitchen(KITCHEN).prep(KITCHEN, &date).await;
    assert_eq!(prep.body["total_subscription_units"], 0, "{}", prep.body);

    // Still before the cutoff: working again means made again, from the credit.
    let r = admin.set_day(&date, true, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let again = format!("sub-{plan}-{start}-2");
    await_order(&carol, &again, "scheduled").await;
    assert_eq!(credit(&carol).await, 0);

    // Carol pauses from the earliest date: every unproduced order and every
    // prepaid day from then on is credited — here all that was charged.
    let plans = carol.plans().await.body;
    let charged: i64 = plans["plans"][0]["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .sum();
    let r = carol.change_plan(&plan, json!({"paused": true})).await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("paused")),
        "{}",
        r.body
    );
    await_order(&carol, &again, "cancelled").await;
    assert_eq!(credit(&carol).await, charged);

    // Resuming makes the day once more, paid from the credit.
    let r = carol.change_plan(&plan, json!({"paused": false})).await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("active")),
        "{}",
        r.body
    );
    let third = format!("sub-{plan}-{start}-3");
    await_order(&carol, &third, "scheduled").await;
    assert!(credit(&carol).await <= charged - MEAL_PRICE);

    // Carol cancels: the same rule credits everything back.
    let r = carol.cancel_plan(&plan, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    await_order(&carol, &third, "cancelled").await;
    assert_eq!(credit(&carol).await, charged);
    assert_eq!(
        carol.cancel_plan(&plan, None).await.code(),
        "wrong_state",
        "cancelling twice"
    );
}

#[tokio::test]
async fn bad_plans_and_late_changes_get_a_clear_4xx_and_change_nothing() {
    // No NATS: nothing is charged, so nothing materialises behind our back.
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    node.start_the_day().await;
    let dave = node.as_role("customer", "dave");
    let start = dave.earliest_change_date().await;
    let seq = node.log_seq().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = plan_body(start);
        f(&mut b);
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(&|b| b["end_date"] = json!(start - chrono::Duration::days(1))),
            422,
            "invalid",
        ),
        (
            with(&|b| b["days"][0]["meal_id"] = json!("m-nope")),
            404,
            "unknown_meal",
        ),
        (
            with(&|b| b["fridge_id"] = json!("f-nope")),
            404,
            "unknown_fridge",
        ),
        (
            with(&|b| b["days"][0]["weekday"] = json!(8)),
            422,
            "invalid",
        ),
        (
            with(&|b| b["days"][0]["weekday"] = json!(0)),
            422,
            "invalid",
        ),
        (
            with(&|b| b["start_date"] = json!(start - chrono::Duration::days(1))),
            422,
            "after_cutoff",
        ),
        (with(&|b| b["surprise"] = json!(1)), 422, "invalid_body"),
        (
            with(&|b| b["start_date"] = json!("next tuesday")),
            422,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let r = dave.create_plan(body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body} → {}", r.body);
    }
    let r = dave
        .send(
            reqwest::Method::POST,
            "/v1/subscriptions",
            Some(RawBody::Text("{not json".into())),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let pos = node.as_role("pos", "pos-1");
    assert_eq!(pos.create_plan(plan_body(start)).await.status, 403);
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");
    assert_eq!(dave.plans().await.body["plans"], json!([]));

    // A retried create with the same Idempotency-Key is the same plan; the
    // key with another plan is refused.
    let first = dave.create_plan_with_key(plan_body(start), "plan-1").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let seq_after_first = node.log_seq().await;
    let retry = dave.create_plan_with_key(plan_body(start), "plan-1").await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.body["plan_id"], first.body["plan_id"]);
    let other = with(&|b| b["payment_method"] = json!("tok_other"));
    let r = dave.create_plan_with_key(other, "plan-1").await;
    assert_eq!(
        (r.status, r.code()),
        (422, "idempotency_key_reused"),
        "{}",
        r.body
    );
    assert_eq!(node.log_seq().await, seq_after_first);
    assert_eq!(
        dave.plans().await.body["plans"].as_array().unwrap().len(),
        1
    );
    let plan = first.body["plan_id"].as_str().unwrap().to_string();

    // Then a change for a date the cutoff has passed.
    let seq = node.log_seq().await;
    let before = dave.plans().await.body["plans"].clone();
    let too_late = json!({"from": start - chrono::Duration::days(1), "paused": true});
    let r = dave.change_plan(&plan, too_late).await;
    assert_eq!((r.status, r.code()), (422, "after_cutoff"), "{}", r.body);
    assert_eq!(r.body["error"]["earliest"], json!(start));
    for (body, status, code) in [
        (json!({}), 422, "invalid"),
        (
            json!({"days": [{"weekday": 9, "meal_id": MEAL}]}),
            422,
            "invalid",
        ),
        (
            json!({"days": [{"weekday": 1, "meal_id": "m-nope"}]}),
            404,
            "unknown_meal",
        ),
        // An end before the change would take effect.
        (
            json!({"end_date": start - chrono::Duration::days(3)}),
            422,
            "invalid",
        ),
    ] {
        let r = dave.change_plan(&plan, body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body} → {}", r.body);
    }
    let r = dave
        .cancel_plan(
            &plan,
            Some(&(start - chrono::Duration::days(1)).to_string()),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "after_cutoff"), "{}", r.body);
    let erin = node.as_role("customer", "erin");
    assert_eq!(erin.cancel_plan(&plan, None).await.code(), "unknown_plan");
    assert_eq!(
        erin.change_plan(&plan, json!({"paused": true}))
            .await
            .status,
        404
    );
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");
    assert_eq!(dave.plans().await.body["plans"], before);

    // Kitchens and the calendar.
    let other = node.kitchen("k-corktown-smoke");
    let date = start.to_string();
    assert_eq!(other.prep(KITCHEN, &date).await.status, 403);
    assert_eq!(
        other.kitchen_event(KITCHEN, "prepared", &date).await.status,
        403
    );
    assert_eq!(dave.prep(KITCHEN, &date).await.status, 403);
    let kitchen = node.kitchen(KITCHEN);
    assert_eq!(
        kitchen
            .get(&format!("/v1/kitchens/{KITCHEN}/prep"))
            .await
            .code(),
        "invalid_query"
    );
    let r = kitchen
        .post(
            &format!("/v1/kitchens/{KITCHEN}/events"),
            json!({"stage": "eaten", "date": date}),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_body"));
    let r = kitchen
        .post(
            &format!("/v1/kitchens/{KITCHEN}/events"),
            json!({"stage": "prepared", "date": date, "order_ids": ["sub-nope"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "unknown_order"));
    let admin = node.admin();
    assert_eq!(
        admin
            .kitchen_event("k-nope", "prepared", &date)
            .await
            .code(),
        "unknown_kitchen"
    );
    assert_eq!(admin.prep("k-nope", &date).await.code(), "unknown_kitchen");
    assert_eq!(
        admin.set_day("2020-01-01", false, None).await.code(),
        "invalid"
    );
    assert_eq!(
        admin.set_day("31-12-2026", false, None).await.code(),
        "invalid_date"
    );
    assert_eq!(
        admin.set_day(&date, false, Some("k-nope")).await.code(),
        "unknown_kitchen"
    );
    assert_eq!(dave.set_day(&date, false, None).await.status, 403);
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");

    let openapi = node.anonymous().get("/v1/openapi.json").await;
    for path in [
        "/v1/subscriptions",
        "/v1/subscriptions/{plan_id}",
        "/v1/admin/calendar/{date}",
        "/v1/kitchens/{kitchen_id}/prep",
        "/v1/kitchens/{kitchen_id}/events",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} undocumented"
        );
    }
}

#[tokio::test]
async fn a_restart_mid_run_makes_nothing_twice() {
    let mut sys = System::start().await;
    let (alice, _, _, _) = sys.subscriber("alice").await;
    let before = alice.plans().await.body["plans"].clone();
    let charge_id = before[0]["charges"][0]["charge_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Power cut; the node replays its log and its job runs again.
    sys.node.restart().await;
    // Another plan made after the restart proves the job has run since.
    sys.subscriber("zoe").await;
    let alice = sys.node.as_role("customer", "alice");
    assert_eq!(alice.plans().await.body["plans"], before);
    let ledger = sys.payments.ledger(&charge_id).await;
    assert_eq!(ledger["ledger"]["charges"], 1, "{ledger}");
}

#[tokio::test]
async fn the_prep_report_forecasts_one_off_demand_from_the_same_weekday() {
    let sys = System::start().await;
    let r = sys.node.admin().set_stock(FRIDGE, &[(MEAL, 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pos = sys.node.as_role("pos", "pos-campus");
    let r = pos.order(FRIDGE, &[(MEAL, 2)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["order_id"].as_str().unwrap().to_string();
    sys.node
        .await_status(&id, "purchased", PAYMENT_DEADLINE)
        .await;

    // Two units sold today: a week from today the kitchen is told to expect
    // ceil(2 / 4 weeks) = 1 one-off unit next to its subscriptions.
    let today: NaiveDate =
        serde_json::from_value(sys.node.admin().plans().await.body["today"].clone()).unwrap();
    let kitchen = sys.node.kitchen(KITCHEN);
    let next_week = (today + chrono::Duration::days(7)).to_string();
    let row = prep_row(&kitchen, &next_week).await;
    assert_eq!(row["forecast_one_off_units"], 1);
    assert_eq!(row["subscription_units"], 0);
    let tomorrow = (today + chrono::Duration::days(1)).to_string();
    let prep = kitchen.prep(KITCHEN, &tomorrow).await;
    assert_eq!(
        prep.body["total_forecast_one_off_units"], 0,
        "another weekday"
    );
}

#[tokio::test]
async fn the_fridge_door_with_the_pickup_code_completes_a_subscription_order() {
    let sys = System::start().await;
    let (frank, start, _, first) = sys.subscriber("frank").await;
    bring_to_eve(&sys.node, &frank, start).await;
    let r = sys
        .node
        .kitchen(KITCHEN)
        .kitchen_event(KITCHEN, "placed_in_fridge", &start.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&frank, &first, "available").await;
    let code = order["pickup_code"].as_str().unwrap().to_string();

    // Frank types the code at the fridge; its firmware reports the session
    // (stamped with the node's clock, which tests may have moved).
    let mut fridge = demo_fridge(FRIDGE);
    let now = sys.node.clock_now().await;
    let taken: fridge_sim::MealCounts = [(protocol::MealId::from_static(MEAL), 1)]
        .into_iter()
        .collect();
    let report = fridge.door_report(
        now,
        fridge_sim::DoorActor::PickupCode(code),
        &taken,
        &fridge_sim::MealCounts::new(),
    );
    let batch = fridge
        .sign(vec![report], now, &fridge_sim::SignOptions::default())
        .unwrap();
    let r = sys.node.telemetry(&batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    await_order(&frank, &first, "picked_up").await;
}
