//! Orders ahead (issue 14): a one-off order for a future day, against the
//! real binaries (node, payments, nats-server), moving the node's dev clock
//! a day at a time.

use chrono::{Datelike, NaiveDate};
use larder_tests::*;
use serde_json::{json, Value};

const DAY_SECS: i64 = 24 * 3600;
/// Past the app's grace window (20 s), so the charge is requested.
const PAST_GRACE_SECS: i64 = 25;

/// A fridge, a meal sold there and the kitchen that makes it.
#[derive(Clone, Copy)]
struct Spot {
    fridge: &'static str,
    meal: &'static str,
    kitchen: &'static str,
    price: i64,
}

const SALAD: Spot = Spot {
    fridge: "f-campus-martius",
    meal: "m-greek-salad",
    kitchen: "k-midtown-greens",
    price: 1045,
};
const DAL: Spot = Spot {
    fridge: "f-lafayette",
    meal: "m-dal-soup",
    kitchen: "k-eastern-spice",
    price: 745,
};

struct System {
    _nats: Nats,
    payments: Payments,
    node: Node,
}

impl System {
    /// The whole system at 10:00 district time, before the change cutoff.
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

    async fn today(&self) -> NaiveDate {
        let plans = self.node.as_role("customer", "anyone").plans().await;
        serde_json::from_value(plans.body["today"].clone()).unwrap()
    }

    /// Moves the node's clock a day at a time until it is `date`.
    async fn advance_to(&self, date: NaiveDate) {
        while self.today().await < date {
            self.node.advance_clock(DAY_SECS).await;
        }
        assert_eq!(self.today().await, date);
    }
}

/// The first Monday to Friday after `date` (kitchens rest at weekends).
fn next_working_day(date: NaiveDate) -> NaiveDate {
    let mut d = date.succ_opt().unwrap();
    while d.weekday().number_from_monday() > 5 {
        d = d.succ_opt().unwrap();
    }
    d
}

fn ahead(spot: Spot, date: NaiveDate) -> Value {
    json!({
        "fridge_id": spot.fridge,
        "items": [{"meal_id": spot.meal, "qty": 1}],
        "payment_method": "tok_visa",
        "pickup_date": date,
    })
}

async fn order_ahead(customer: &Client, spot: Spot, date: NaiveDate) -> String {
    let r = customer.order_body(ahead(spot, date), None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "held", "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_order_ahead_is_cooked_for_its_day_and_one_never_placed_is_refunded() {
    let sys = System::start().await;
    let erin = sys.node.as_role("customer", "erin");
    let day = next_working_day(sys.today().await);
    let on_shelf = sys.node.available(SALAD.fridge, SALAD.meal).await;
    let salad = order_ahead(&erin, SALAD, day).await;
    let dal = order_ahead(&erin, DAL, day).await;
    assert_eq!(
        sys.node.available(SALAD.fridge, SALAD.meal).await,
        on_shelf,
        "today's shelf is not touched"
    );

    sys.node.advance_clock(PAST_GRACE_SECS).await;
    let order = sys
        .node
        .await_status(&salad, "scheduled", PAYMENT_DEADLINE)
        .await;
    assert_eq!(order["delivery_date"], json!(day), "{order}");
    assert!(order["cancel_until"].is_string(), "{order}");
    assert!(order.get("pickup_code").is_none(), "not made yet: {order}");
    sys.node
        .await_status(&dal, "scheduled", PAYMENT_DEADLINE)
        .await;
    let kitchen = sys.node.kitchen(SALAD.kitchen);
    let prep = kitchen.prep(SALAD.kitchen, &day.to_string()).await;
    assert_eq!(prep.body["total_preorder_units"], 1, "{}", prep.body);
    assert_eq!(prep.body["total_subscription_units"], 0, "{}", prep.body);

    sys.advance_to(day).await;
    let r = kitchen
        .kitchen_event(SALAD.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = sys
        .node
        .await_status(&salad, "available", PAYMENT_DEADLINE)
        .await;
    let mine = erin.get(&format!("/v1/orders/{salad}")).await;
    let code = mine.body["pickup_code"].as_str().expect("a pickup code");
    let pos = sys.node.as_role("pos", "pos-1");
    let r = pos.pickup(&salad, code).await;
    assert_eq!(r.status, 200, "{} / {order}", r.body);
    assert_eq!(
        sys.payments.ledger(&salad).await["ledger"]["amount"],
        SALAD.price
    );

    // The eastern-spice kitchen never placed the dal: refunded after its day.
    sys.node.advance_clock(DAY_SECS).await;
    let order = sys
        .node
        .await_status(&dal, "refunded", PAYMENT_DEADLINE)
        .await;
    assert_eq!(order["withdrawn"]["reason"], "not_produced", "{order}");
    let ledger = sys.payments.ledger(&dal).await;
    assert_eq!(
        (
            ledger["ledger"]["charges"].clone(),
            ledger["ledger"]["refunds"].clone()
        ),
        (json!(1), json!(1)),
        "{ledger}"
    );
    assert_eq!(ledger["ledger"]["amount"], 0, "no money kept: {ledger}");
    assert_eq!(order["total"], DAL.price, "refunded what it cost: {order}");
}

#[tokio::test]
async fn a_paid_order_ahead_is_cancelled_for_a_full_refund_before_the_cutoff() {
    let sys = System::start().await;
    let erin = sys.node.as_role("customer", "erin");
    let day = next_working_day(next_working_day(sys.today().await));
    let id = order_ahead(&erin, SALAD, day).await;
    sys.node.advance_clock(PAST_GRACE_SECS).await;
    sys.node
        .await_status(&id, "scheduled", PAYMENT_DEADLINE)
        .await;
    let r = erin.cancel(&id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["refund_pending"], true, "{}", r.body);
    sys.node
        .await_status(&id, "refunded", PAYMENT_DEADLINE)
        .await;
    let prep = sys
        .node
        .kitchen(SALAD.kitchen)
        .prep(SALAD.kitchen, &day.to_string())
        .await;
    assert_eq!(prep.body["total_preorder_units"], 0, "{}", prep.body);
}

#[tokio::test]
async fn orders_ahead_outside_the_rules_get_a_422_and_change_nothing() {
    let sys = System::start().await;
    let erin = sys.node.as_role("customer", "erin");
    let today = sys.today().await;
    let seq = sys.node.log_seq().await;
    let far = today + chrono::Duration::days(30);
    let mut two = ahead(SALAD, next_working_day(today));
    two["items"][0]["qty"] = json!(2);
    for body in [ahead(SALAD, today), ahead(SALAD, far), two] {
        let r = erin.order_body(body.clone(), None).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.body["error"]["message"].is_string(), "{}", r.body);
    }
    let pos = sys.node.as_role("pos", "pos-1");
    let r = pos
        .order_body(ahead(SALAD, next_working_day(today)), None)
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = erin
        .order_body(
            json!({"fridge_id": SALAD.fridge, "items": [{"meal_id": SALAD.meal, "qty": 1}],
                   "payment_method": "tok_visa", "pickup_date": "tomorrow"}),
            None,
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(sys.node.log_seq().await, seq, "nothing was written");
}
