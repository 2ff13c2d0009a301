//! Issue 12: promotions end to end — campaigns visible in the catalog and
//! applied at confirm, coupons with limits that a cancel gives back, and a
//! sponsor paying part of every order at its fridges. Real node, real
//! nats-server, real payments service (its ledger says what was charged).

use chrono::{Duration as Span, Timelike};
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
/// 10.45, shelf life 48 h.
const SALAD: &str = "m-greek-salad";
/// 14.95, shelf life 36 h.
const POKE: &str = "m-salmon-poke";
/// The node's timer looks for turned campaign hours every second.
const TURN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// The dev config's district is UTC-5.
const UTC_OFFSET_MINUTES: i64 = -300;

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
        System {
            _nats: nats,
            payments,
            node,
        }
    }

    async fn stock(&self, meal: &str, units: u32) {
        let r = self.node.admin().set_stock(FRIDGE, &[(meal, units)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    async fn define(&self, path: &str, body: Value) -> Value {
        let r = self.node.admin().put(path, body).await;
        assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
        r.body
    }

    /// The district's wall clock now.
    async fn local_now(&self) -> chrono::NaiveDateTime {
        (self.node.clock_now().await + Span::minutes(UTC_OFFSET_MINUTES)).naive_utc()
    }

    /// The catalog entry of `meal` at FRIDGE.
    async fn shelf(&self, meal: &str) -> Value {
        let catalog = self.node.catalog(DOWNTOWN.0, DOWNTOWN.1, 20_000).await;
        catalog["fridges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["fridge_id"] == FRIDGE)
            .flat_map(|f| f["meals"].as_array().cloned().unwrap_or_default())
            .find(|m| m["meal_id"] == meal)
            .unwrap_or_else(|| panic!("{meal} is not on sale at {FRIDGE}: {catalog}"))
    }

    /// A POS order of `qty` × `meal` with `extra` body fields, paid at once.
    async fn pos_order(&self, meal: &str, qty: u32, extra: Value) -> Resp {
        let mut body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": meal, "qty": qty}],
                              "payment_method": "tok_visa"});
        merge(&mut body, extra);
        self.node
            .as_role("pos", "pos-campus")
            .order_body(body, None)
            .await
    }

    async fn app_order(&self, customer: &str, meal: &str, extra: Value) -> Resp {
        let mut body = json!({"fridge_id": FRIDGE, "items": [{"meal_id": meal, "qty": 1}],
                              "payment_method": "tok_visa"});
        merge(&mut body, extra);
        self.node
            .as_role("customer", customer)
            .order_body(body, None)
            .await
    }

    /// What the payments service charged for an order once it is paid.
    async fn charged(&self, order_id: &str) -> Value {
        self.node
            .await_status(order_id, "purchased", PAYMENT_DEADLINE)
            .await;
        self.payments.ledger(order_id).await["ledger"]["amount"].clone()
    }
}

fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}

fn created(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap_or_default().to_string()
}

fn campaign(rule: Value, target_meal: &str) -> Value {
    json!({
        "name": "test campaign",
        "starts": "2020-01-01T00:00:00",
        "ends": "2099-01-01T00:00:00",
        "target": {"meals": [target_meal]},
        "rule": rule,
    })
}

#[tokio::test]
async fn a_happy_hour_shows_in_the_catalog_is_charged_at_confirm_and_ends_on_time() {
    let sys = System::start().await;
    sys.stock(SALAD, 5).await;
    let now = sys.local_now().await;
    // An hour either side of now; every day, so midnight cannot trip it.
    let (from, until) = (
        (now - Span::hours(1))
            .time()
            .with_second(0)
            .unwrap_or_default(),
        (now + Span::hours(1))
            .time()
            .with_second(0)
            .unwrap_or_default(),
    );
    let view = sys
        .define(
            "/v1/admin/campaigns/happy",
            campaign(
                json!({"kind": "happy_hour", "from": from, "until": until, "percent": 20}),
                SALAD,
            ),
        )
        .await;
    assert_eq!(view["live"], true, "{view}");

    let shelf = sys.shelf(SALAD).await;
    assert_eq!(shelf["price"], 1045, "the list price stays: {shelf}");
    assert_eq!(
        shelf["price_now"], 836,
        "20 % off 10.45, rounded for the customer"
    );
    assert_eq!(shelf["campaigns"], json!(["happy"]));

    let mut ws = WsClient::connect(&sys.node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    let r = sys.pos_order(SALAD, 1, json!({})).await;
    let id = created(&r);
    assert_eq!(r.body["total"], 836, "{}", r.body);
    let pushed = ws.expect_stock(FRIDGE, SALAD, 4).await;
    assert_eq!(
        pushed["price_now"], 836,
        "the push shows the price too: {pushed}"
    );
    assert_eq!(r.body["pricing"]["list_minor"], 1045);
    assert_eq!(r.body["pricing"]["campaigns"][0]["discount_minor"], 209);
    assert_eq!(
        sys.charged(&id).await,
        836,
        "the card pays the discounted price"
    );

    sys.node.advance_clock(2 * 3600).await;
    let shelf = sys.shelf(SALAD).await;
    assert!(
        shelf.get("price_now").is_none(),
        "happy hour is over: {shelf}"
    );
    let r = sys.pos_order(SALAD, 1, json!({})).await;
    created(&r);
    assert_eq!(r.body["total"], 1045, "{}", r.body);
    assert!(r.body.get("pricing").is_none(), "{}", r.body);

    let today = now.date();
    let report = sys
        .node
        .admin()
        .get(&format!(
            "/v1/admin/promotions/report?from={}&to={}",
            today - Span::days(1),
            today + Span::days(1)
        ))
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    let line = &report.body["campaigns"][0];
    assert_eq!(line["id"], "happy", "{}", report.body);
    assert_eq!(line["orders"], 1);
    assert_eq!(line["discount_minor"], 209);
    assert_eq!(line["revenue_minor"], 836);
}

/// Nothing is written when a happy hour opens or closes; the node's timer
/// records the turn once it has passed, and apps watching the fridge are
/// told to fetch the catalog again (with a new catalog version).
#[tokio::test]
async fn a_happy_hour_opening_and_closing_by_the_clock_is_pushed_to_apps() {
    let sys = System::start().await;
    sys.stock(SALAD, 5).await;
    let mut ws = WsClient::connect(&sys.node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    let now = sys.local_now().await;
    let minute = |t: chrono::NaiveDateTime| t.time().with_second(0).unwrap_or_default();
    let (from, until) = (
        minute(now + Span::minutes(10)),
        minute(now + Span::minutes(70)),
    );
    sys.define(
        "/v1/admin/campaigns/later",
        campaign(
            json!({"kind": "happy_hour", "from": from, "until": until, "percent": 20}),
            SALAD,
        ),
    )
    .await;
    let defined = catalog_updated(&mut ws, "for the new campaign").await;
    assert!(sys.shelf(SALAD).await.get("price_now").is_none(), "not yet");

    sys.node.advance_clock(11 * 60).await;
    let opened = catalog_updated(&mut ws, "when the happy hour opens").await;
    assert!(
        opened["catalog_version"].as_u64() > defined["catalog_version"].as_u64(),
        "{defined} then {opened}"
    );
    assert_eq!(sys.shelf(SALAD).await["price_now"], 836);

    sys.node.advance_clock(60 * 60).await;
    let closed = catalog_updated(&mut ws, "when the happy hour closes").await;
    assert!(closed["catalog_version"].as_u64() > opened["catalog_version"].as_u64());
    assert!(sys.shelf(SALAD).await.get("price_now").is_none(), "over");
}

/// The next `catalog_updated` (within the timer's deadline).
async fn catalog_updated(ws: &mut WsClient, when: &str) -> Value {
    ws.expect_within(&format!("catalog_updated {when}"), TURN_DEADLINE, |m| {
        m["type"] == "catalog_updated"
    })
    .await
}

#[tokio::test]
async fn a_shelf_life_markdown_applies_only_once_units_near_their_best_before() {
    let sys = System::start().await;
    sys.stock(POKE, 3).await;
    sys.define(
        "/v1/admin/campaigns/last-call",
        campaign(
            json!({"kind": "shelf_life", "within_hours": 6, "percent": 50}),
            POKE,
        ),
    )
    .await;
    let shelf = sys.shelf(POKE).await;
    assert!(
        shelf.get("price_now").is_none(),
        "fresh units sell at list: {shelf}"
    );

    // 31 of the 36 hours later the units are within 6 h of their best-before.
    sys.node.advance_clock(31 * 3600).await;
    let shelf = sys.shelf(POKE).await;
    assert_eq!(shelf["price_now"], 748, "half off 14.95: {shelf}");
    assert_eq!(shelf["campaigns"], json!(["last-call"]));
    let r = sys.pos_order(POKE, 2, json!({})).await;
    let id = created(&r);
    assert_eq!(r.body["total"], 2 * 748, "{}", r.body);
    assert_eq!(sys.charged(&id).await, 2 * 748);
}

#[tokio::test]
async fn a_coupon_with_a_per_customer_limit_is_refused_the_second_time() {
    let sys = System::start().await;
    sys.stock(SALAD, 5).await;
    sys.define(
        "/v1/admin/coupons/welcome",
        json!({"discount": {"kind": "amount_off", "amount_minor": 200},
               "valid_from": "2020-01-01T00:00:00", "valid_until": "2099-01-01T00:00:00",
               "max_uses_per_customer": 1}),
    )
    .await;
    let r = sys
        .app_order("ann", SALAD, json!({"coupon": "Welcome"}))
        .await;
    created(&r);
    assert_eq!(r.body["total"], 845, "{}", r.body);
    assert_eq!(
        r.body["pricing"]["coupon"]["code"], "WELCOME",
        "codes are case-insensitive"
    );

    let seq = sys.node.log_seq().await;
    let r = sys
        .app_order("ann", SALAD, json!({"coupon_code": "WELCOME"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "coupon_refused");
    assert_eq!(r.body["error"]["reason"], "limit_reached");
    assert_eq!(
        sys.node.log_seq().await,
        seq,
        "a refused order changes nothing"
    );
    assert_eq!(sys.node.available(FRIDGE, SALAD).await, 4);

    let r = sys
        .app_order("bob", SALAD, json!({"coupon": "WELCOME"}))
        .await;
    assert_eq!(r.status, 201, "another customer still may: {}", r.body);
    let r = sys.app_order("bob", SALAD, json!({"coupon": "NOPE"})).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["reason"], "unknown");
}

#[tokio::test]
async fn a_coupon_use_comes_back_when_the_order_is_cancelled_in_its_grace_window() {
    let sys = System::start().await;
    sys.stock(SALAD, 5).await;
    sys.define(
        "/v1/admin/coupons/one-off",
        json!({"discount": {"kind": "percent_off", "percent": 10},
               "valid_from": "2020-01-01T00:00:00", "valid_until": "2099-01-01T00:00:00",
               "max_uses": 1}),
    )
    .await;
    let r = sys
        .app_order("ann", SALAD, json!({"coupon": "ONE-OFF"}))
        .await;
    let id = created(&r);
    assert_eq!(r.body["total"], 941, "10 % off 10.45 is 1.04 off");
    let r = sys
        .app_order("bob", SALAD, json!({"coupon": "ONE-OFF"}))
        .await;
    assert_eq!(r.body["error"]["reason"], "limit_reached", "{}", r.body);

    let r = sys.node.as_role("customer", "ann").cancel(&id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let coupon = sys.node.admin().get("/v1/admin/coupons/one-off").await;
    assert_eq!(coupon.body["uses"], 0, "{}", coupon.body);
    let r = sys
        .app_order("bob", SALAD, json!({"coupon": "ONE-OFF"}))
        .await;
    assert_eq!(r.status, 201, "the use came back: {}", r.body);
}

#[tokio::test]
async fn a_subsidised_fridge_charges_only_the_customers_share_up_to_the_daily_cap() {
    let sys = System::start().await;
    sys.stock(SALAD, 5).await;
    sys.define(
        "/v1/admin/subsidies/acme",
        json!({"sponsor": "ACME Corp", "fridges": [FRIDGE], "percent": 50,
               "cap_per_customer_day_minor": 600}),
    )
    .await;
    let r = sys.pos_order(SALAD, 1, json!({})).await;
    let first = created(&r);
    assert_eq!(r.body["total"], 523, "the sponsor pays 5.22: {}", r.body);
    assert_eq!(r.body["pricing"]["subsidy"]["amount_minor"], 522);
    assert_eq!(sys.charged(&first).await, 523);

    // The same customer (the till's) the same day: 0.78 of cap left.
    let r = sys.pos_order(SALAD, 1, json!({})).await;
    let second = created(&r);
    assert_eq!(r.body["total"], 1045 - 78, "{}", r.body);
    assert_eq!(sys.charged(&second).await, 1045 - 78);

    let month = sys.local_now().await.format("%Y-%m").to_string();
    let statement = sys
        .node
        .admin()
        .get(&format!("/v1/admin/subsidies/acme/statement?month={month}"))
        .await;
    assert_eq!(statement.status, 200, "{}", statement.body);
    assert_eq!(statement.body["sponsor"], "ACME Corp");
    assert_eq!(statement.body["total_minor"], 600, "{}", statement.body);
    assert_eq!(statement.body["orders"].as_array().map(Vec::len), Some(2));

    // The first is refunded (the card's 5.23, `Order::charged`) and the
    // sponsor no longer pays its 5.22.
    let r = sys.node.admin().cancel(&first).await;
    assert_eq!(r.status, 200, "{}", r.body);
    sys.node
        .await_status(&first, "refunded", PAYMENT_DEADLINE)
        .await;
    let refund = sys.payments.ledger(&first).await;
    assert_eq!(refund["ledger"]["refunds"], 1, "{refund}");
    let statement = sys
        .node
        .admin()
        .get(&format!("/v1/admin/subsidies/acme/statement?month={month}"))
        .await;
    assert_eq!(statement.body["total_minor"], 78, "{}", statement.body);
}

#[tokio::test]
async fn bad_promotions_are_refused_and_change_nothing() {
    let node = Node::start(&["--demo"]).await;
    let seq = node.log_seq().await;
    let admin = node.admin();
    let r = admin
        .put(
            "/v1/admin/campaigns/zero",
            campaign(json!({"kind": "percent_off", "percent": 0}), SALAD),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid");
    assert!(r.code().contains("invalid"));
    let r = admin
        .put(
            "/v1/admin/subsidies/ghost",
            json!({"sponsor": "x", "fridges": ["f-nowhere"],
            "percent": 10, "cap_per_customer_day_minor": 100}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = node
        .as_role("customer", "ann")
        .put(
            "/v1/admin/coupons/free",
            json!({"discount": {"kind": "percent_off", "percent": 100},
            "valid_from": "2020-01-01T00:00:00", "valid_until": "2099-01-01T00:00:00"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // serde would read a struct from an array; the API takes objects only.
    let mut arrayed = campaign(json!({"kind": "percent_off", "percent": 10}), SALAD);
    arrayed["budget"] = json!([null, null]);
    let r = admin.put("/v1/admin/campaigns/arrayed", arrayed).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_body");
    let r = admin
        .put("/v1/admin/calendar/2099-01-05", json!([true]))
        .await;
    assert_eq!(r.status, 422, "a whole body as an array too: {}", r.body);
    let r = admin.delete("/v1/admin/campaigns/never-was").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(node.log_seq().await, seq);
}
