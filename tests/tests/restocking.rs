//! Restocking (issue 13, part 3): par levels set by an admin, the kitchen's
//! pick list (the prep report plus what brings each shelf back to par) and
//! suggestions from a scripted week of sales, against the real binaries
//! (node, payments, nats-server) and the node's dev clock.

use chrono::{Datelike, NaiveDate};
use larder_tests::*;
use serde_json::{json, Value};

const DAY_SECS: i64 = 24 * 3600;
/// Past the app's grace window (20 s), so the charge is requested.
const PAST_GRACE_SECS: i64 = 25;
const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const KITCHEN: &str = "k-midtown-greens";

struct System {
    _nats: Nats,
    _payments: Payments,
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
            _payments: payments,
            node,
        }
    }

    async fn today(&self) -> NaiveDate {
        let plans = self.node.as_role("customer", "anyone").plans().await;
        serde_json::from_value(plans.body["today"].clone()).unwrap()
    }

    /// A POS customer buys `qty` salads and picks them up with the code.
    async fn sell(&self, qty: u32) {
        let pos = self.node.as_role("pos", "pos-campus");
        let r = pos.order(FRIDGE, &[(MEAL, qty)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["order_id"].as_str().unwrap().to_string();
        let order = self
            .node
            .await_status(&id, "purchased", PAYMENT_DEADLINE)
            .await;
        let code = order["pickup_code"].as_str().unwrap();
        let picked = pos.pickup(&id, code).await;
        assert_eq!(picked.body["status"], "picked_up", "{}", picked.body);
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

fn par_path(fridge: &str, meal: &str) -> String {
    format!("/v1/admin/fridges/{fridge}/par/{meal}")
}

/// The pick list's deliver line for FRIDGE and MEAL.
fn salad_line(list: &Value) -> Value {
    list["deliver"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["fridge_id"] == FRIDGE && l["meal_id"] == MEAL)
        .cloned()
        .unwrap_or_else(|| panic!("no deliver line for the salad: {list}"))
}

#[tokio::test]
async fn the_kitchen_picks_the_order_ahead_and_what_brings_the_shelf_back_to_par() {
    let sys = System::start().await;
    let admin = sys.node.admin();
    let day = next_working_day(sys.today().await);
    let r = admin.set_stock(FRIDGE, &[(MEAL, 2)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = admin
        .put(&par_path(FRIDGE, MEAL), json!({"units": 6}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"fridge_id": FRIDGE, "meal_id": MEAL, "units": 6})
    );

    // One salad ahead for the day, paid: cooked for its customer.
    let erin = sys.node.as_role("customer", "erin");
    let body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": 1}],
                      "payment_method": "tok_visa", "pickup_date": day});
    let r = erin.order_body(body, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ahead = r.body["order_id"].as_str().unwrap().to_string();
    sys.node.advance_clock(PAST_GRACE_SECS).await;
    sys.node
        .await_status(&ahead, "scheduled", PAYMENT_DEADLINE)
        .await;

    let kitchen = sys.node.kitchen(KITCHEN);
    let r = kitchen
        .get(&format!("/v1/kitchens/{KITCHEN}/picklist?date={day}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["kitchen_id"], KITCHEN);
    assert_eq!(r.body["date"], json!(day));
    let line = salad_line(&r.body);
    let numbers: Vec<&Value> = [
        "par",
        "available",
        "arriving",
        "for_plans",
        "for_orders_ahead",
        "for_restock",
        "units",
    ]
    .iter()
    .map(|k| &line[*k])
    .collect();
    assert_eq!(
        numbers,
        [
            &json!(6),
            &json!(2),
            &json!(1),
            &json!(0),
            &json!(1),
            &json!(4),
            &json!(5)
        ],
        "restock = par 6 − available 2 (the arriving unit is set aside): {line}"
    );
    assert_eq!(
        r.body["cook"],
        json!([{"meal_id": MEAL, "meal_name": "Greek Salad", "units": 5, "for_plans": 0,
                "for_orders_ahead": 1, "for_forecast": 0, "for_restock": 4}]),
        "one meal to cook: {}",
        r.body
    );

    let csv = kitchen
        .http
        .get(sys.node.url(&format!(
            "/v1/kitchens/{KITCHEN}/picklist?date={day}&format=csv"
        )))
        .bearer_auth(kitchen.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2, "a header and one deliver line: {text}");
    assert_eq!(
        rows[1],
        format!("{day},{KITCHEN},{FRIDGE},{MEAL},5,0,1,0,4,6,2,1")
    );

    // Another kitchen's token, or a customer's, reads nothing.
    let other = sys.node.kitchen("k-eastern-spice");
    let path = format!("/v1/kitchens/{KITCHEN}/picklist?date={day}");
    assert_eq!(other.get(&path).await.status, 403);
    assert_eq!(erin.get(&path).await.status, 403);
    let r = admin.get("/v1/kitchens/k-nowhere/picklist").await;
    assert_eq!((r.status, r.code()), (404, "unknown_kitchen"));
}

#[tokio::test]
async fn bad_par_levels_change_nothing_and_a_restart_keeps_the_good_ones() {
    let mut node = Node::start(&["--demo", "--dev-clock"]).await;
    let admin = node.admin();
    let r = admin
        .put(&par_path(FRIDGE, MEAL), json!({"units": 8}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seq = node.log_seq().await;

    let refused = [
        (
            par_path("f-nowhere", MEAL),
            json!({"units": 3}),
            404,
            "unknown_fridge",
        ),
        (
            par_path(FRIDGE, "m-nothing"),
            json!({"units": 3}),
            404,
            "unknown_meal",
        ),
        (
            par_path(FRIDGE, MEAL),
            json!({"units": 501}),
            422,
            "invalid_units",
        ),
        (
            par_path(FRIDGE, MEAL),
            json!({"units": -1}),
            422,
            "invalid_units",
        ),
    ];
    for (path, body, status, code) in refused {
        let r = admin.put(&path, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{path} {body}: {}",
            r.body
        );
    }
    let kitchen = node.kitchen(KITCHEN);
    let r = kitchen
        .put(&par_path(FRIDGE, MEAL), json!({"units": 1}))
        .await;
    assert_eq!(r.status, 403, "only admins set par levels");
    let r = admin.get("/v1/admin/par/suggested?days=6").await;
    assert_eq!((r.status, r.code()), (422, "invalid_days"));
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");

    let levels = |body: &Value| body["levels"].clone();
    let expected = json!([{"fridge_id": FRIDGE, "meal_id": MEAL, "units": 8, "suggested": 0}]);
    let r = admin
        .get(&format!("/v1/admin/par?fridge_id={FRIDGE}"))
        .await;
    assert_eq!(levels(&r.body), expected, "{}", r.body);
    node.restart().await;
    let r = node.admin().get("/v1/admin/par").await;
    assert_eq!(
        levels(&r.body),
        expected,
        "kept across a restart: {}",
        r.body
    );
    let r = node.admin().get("/v1/admin/par?fridge_id=f-nowhere").await;
    assert_eq!((r.status, r.code()), (404, "unknown_fridge"));

    // Zero clears it.
    let r = node
        .admin()
        .put(&par_path(FRIDGE, MEAL), json!({"units": 0}))
        .await;
    assert_eq!(r.body["units"], 0, "{}", r.body);
    let r = node.admin().get("/v1/admin/par").await;
    assert_eq!(levels(&r.body), json!([]));

    let openapi = node.anonymous().get("/v1/openapi.json").await;
    for path in [
        "/v1/admin/fridges/{fridge_id}/par/{meal_id}",
        "/v1/admin/par",
        "/v1/admin/par/suggested",
        "/v1/admin/par/suggested/apply",
        "/v1/kitchens/{kitchen_id}/picklist",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} undocumented"
        );
    }
}

#[tokio::test]
async fn a_week_of_sales_suggests_a_par_level_an_admin_can_apply() {
    let sys = System::start().await;
    let admin = sys.node.admin();
    // Nothing left over to expire: each morning the shelf gets two fresh
    // salads, and both are sold and picked up.
    let r = admin.set_stock(FRIDGE, &[(MEAL, 0)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..7 {
        let r = admin.set_stock(FRIDGE, &[(MEAL, 2)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        sys.sell(2).await;
        sys.node.advance_clock(DAY_SECS).await;
    }

    let r = admin.get("/v1/admin/par/suggested?days=7").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["days"], 7);
    let salad: Vec<&Value> = r.body["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["fridge_id"] == FRIDGE && s["meal_id"] == MEAL)
        .collect();
    assert_eq!(
        salad,
        [&json!({"fridge_id": FRIDGE, "meal_id": MEAL, "units": 4,
                 "sold": 14, "expired": 0, "unclaimed": 0})],
        "mean 2 a day plus a cushion of √2, rounded up"
    );

    let r = admin
        .send(
            reqwest::Method::POST,
            "/v1/admin/par/suggested/apply?days=7",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = admin
        .get(&format!("/v1/admin/par?fridge_id={FRIDGE}"))
        .await;
    let units: Vec<&Value> = r.body["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["meal_id"] == MEAL)
        .map(|l| &l["units"])
        .collect();
    assert_eq!(units, [&json!(4)], "{}", r.body);
}
