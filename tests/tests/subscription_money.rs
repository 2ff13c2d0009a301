//! Issue 17: subscriptions whose money always reconciles and whose food is
//! never resold past its date. Each story reproduces one finding of the
//! issue against the real binaries (node, payments, nats-server), moving
//! the node's dev clock a day at a time.

use chrono::NaiveDate;
use larder_tests::*;
use serde_json::{json, Value};

const DAY_SECS: i64 = 24 * 3600;
/// A fridge, a meal stocked there and the meal's kitchen.
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

/// Two fridges of one kitchen (its dal soup keeps 96 h).
const DAL_LAFAYETTE: Spot = Spot {
    fridge: "f-lafayette",
    meal: "m-dal-soup",
    kitchen: "k-eastern-spice",
    price: 745,
};
const DAL_MARKET: Spot = Spot {
    fridge: "f-eastern-market",
    ..DAL_LAFAYETTE
};

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
}

async fn plans(customer: &Client) -> Value {
    let r = customer.plans().await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn today(customer: &Client) -> NaiveDate {
    serde_json::from_value(plans(customer).await["today"].clone()).unwrap()
}

/// The first Monday to Friday on or after `date` (weekends do not work).
fn weekday_on_or_after(mut date: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    while date.weekday().number_from_monday() > 5 {
        date = date.succ_opt().unwrap();
    }
    date
}

/// `spot.meal` every day of the week at `spot.fridge` from `start` for
/// three weeks.
fn plan_body(spot: Spot, start: NaiveDate) -> Value {
    let days: Vec<Value> = (1..=7)
        .map(|w| json!({"weekday": w, "meal_id": spot.meal}))
        .collect();
    json!({
        "fridge_id": spot.fridge,
        "days": days,
        "start_date": start,
        "end_date": start + chrono::Duration::days(20),
        "payment_method": "tok_visa",
    })
}

async fn create_plan(customer: &Client, spot: Spot, start: NaiveDate) -> String {
    let r = customer.create_plan(plan_body(spot, start)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["plan_id"].as_str().unwrap().to_string()
}

/// Moves the node's clock a day at a time until the district's local date
/// is `date`.
async fn advance_to(node: &Node, customer: &Client, date: NaiveDate) {
    loop {
        let today = today(customer).await;
        assert!(today <= date, "already past {date} (today is {today})");
        if today == date {
            return;
        }
        node.advance_clock(DAY_SECS).await;
    }
}

/// Moves the node's clock a day at a time until the order for `date` of
/// the plan exists (`date` is within the days made ahead).
async fn await_day_order(node: &Node, customer: &Client, plan: &str, date: NaiveDate) -> String {
    loop {
        let today = today(customer).await;
        if date <= today + chrono::Duration::days(3) {
            break;
        }
        node.advance_clock(DAY_SECS).await;
    }
    let order_id = format!("sub-{plan}-{date}");
    await_order(customer, &order_id, "scheduled").await;
    order_id
}

async fn credit(customer: &Client) -> i64 {
    plans(customer).await["credit"].as_i64().unwrap()
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

/// Finding 1: the kitchen placed a fresh unit for Carol's plan day in a
/// fridge whose other units of that meal have passed their best-before.
/// Her pickup takes the unit placed for her, so the expired ones stay
/// withheld: nothing is for sale, and a new order for the meal is refused.
#[tokio::test]
async fn a_plan_pickup_takes_the_unit_placed_for_it_and_never_puts_an_expired_one_on_sale() {
    let sys = System::start().await;
    let spot = SALAD;
    let admin = sys.node.admin();
    let r = admin.set_stock(spot.fridge, &[(spot.meal, 3)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A plan day three days out: by then the three units (48 h) expired.
    let carol = sys.node.as_role("customer", "carol");
    let start = carol.earliest_change_date().await;
    let day = weekday_on_or_after(start + chrono::Duration::days(3));
    let plan = create_plan(&carol, spot, start).await;
    let order_id = await_day_order(&sys.node, &carol, &plan, day).await;
    advance_to(&sys.node, &carol, day).await;
    eventually("the stocked units expired", PAYMENT_DEADLINE, || async {
        sys.node.available(spot.fridge, spot.meal).await == 0
    })
    .await;

    let kitchen = sys.node.kitchen(spot.kitchen);
    let r = kitchen
        .kitchen_event(spot.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&carol, &order_id, "available").await;
    assert_eq!(sys.node.available(spot.fridge, spot.meal).await, 0);
    assert!(order.get("hold_until").is_none(), "prepaid: {order}");

    let pos = sys.node.as_role("pos", "pos-1");
    let code = order["pickup_code"].as_str().unwrap();
    let r = pos.pickup(&order_id, code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    await_order(&carol, &order_id, "picked_up").await;

    assert_eq!(
        sys.node.available(spot.fridge, spot.meal).await,
        0,
        "an expired unit is back on sale"
    );
    let r = pos
        .order(spot.fridge, &[(spot.meal, 1)], "tok_visa", None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "insufficient_stock"),
        "{}",
        r.body
    );
}

/// Finding 2: the kitchen prepared Dan's meal but never placed it in the
/// fridge. Once its day is over the order is withdrawn with a reason and
/// its price credited; it no longer counts on the prep report.
#[tokio::test]
async fn a_paid_plan_meal_not_produced_by_its_day_is_withdrawn_and_credited() {
    let sys = System::start().await;
    let spot = SALAD;
    let dan = sys.node.as_role("customer", "dan");
    let start = dan.earliest_change_date().await;
    let day = weekday_on_or_after(start);
    let plan = create_plan(&dan, spot, start).await;
    let order_id = await_day_order(&sys.node, &dan, &plan, day).await;
    let kitchen = sys.node.kitchen(spot.kitchen);
    let r = kitchen
        .kitchen_event(spot.kitchen, "prepared", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    await_order(&dan, &order_id, "prepared").await;
    assert_eq!(credit(&dan).await, 0);

    advance_to(&sys.node, &dan, day.succ_opt().unwrap()).await;
    let order = await_order(&dan, &order_id, "cancelled").await;
    assert_eq!(
        order["withdrawn"],
        json!({"reason": "not_produced", "credited": spot.price}),
        "{order}"
    );
    assert_eq!(credit(&dan).await, spot.price);
    let prep = kitchen.prep(spot.kitchen, &day.to_string()).await;
    assert_eq!(prep.body["total_subscription_units"], 0, "{}", prep.body);
    // Nothing left to move: the kitchen's late event changes nothing.
    let r = kitchen
        .kitchen_event(spot.kitchen, "dispatched", &day.to_string())
        .await;
    assert_eq!(r.body["orders"], json!([]), "{}", r.body);
}

/// Six units scanned, then twenty minutes at 9.5 °C up to the node's now:
/// the fridge is quarantined.
async fn quarantine(node: &Node, fridge_id: &str) {
    let mut fridge = demo_fridge(fridge_id);
    let now = node.clock_now().await;
    let counts: fridge_sim::MealCounts = [(protocol::MealId::from_static("m-kale-caesar"), 6)]
        .into_iter()
        .collect();
    let mut reports = vec![fridge.scan_report(now - chrono::TimeDelta::minutes(21), &counts)];
    for i in 0..20 {
        reports.push(fridge.temperature_report(now - chrono::TimeDelta::minutes(19 - i), 9_500));
    }
    let batch = fridge
        .sign(reports, now, &fridge_sim::SignOptions::default())
        .unwrap();
    let r = node.telemetry(&batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    eventually("quarantine", PAYMENT_DEADLINE, || async {
        let catalog = node.catalog(42.3314, -83.0458, 20_000).await;
        catalog["fridges"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["fridge_id"] == fridge_id && f["status"] == "quarantined")
    })
    .await;
}

/// Finding 3: Erin's fridge is quarantined the day before her meal, Finn's
/// (same kitchen) is fine. A new plan for Erin's fridge is refused with a
/// 409; the kitchen's placement serves Finn and passes Erin's order by; on
/// the day Erin's order is withdrawn and credited.
#[tokio::test]
async fn a_quarantined_fridge_takes_no_plans_and_does_not_block_the_kitchens_other_fridges() {
    let sys = System::start().await;
    let erin = sys.node.as_role("customer", "erin");
    let finn = sys.node.as_role("customer", "finn");
    let start = erin.earliest_change_date().await;
    let day = weekday_on_or_after(start);
    let erin_plan = create_plan(&erin, DAL_LAFAYETTE, start).await;
    let finn_plan = create_plan(&finn, DAL_MARKET, start).await;
    let erin_order = await_day_order(&sys.node, &erin, &erin_plan, day).await;
    let finn_order = format!("sub-{finn_plan}-{day}");
    await_order(&finn, &finn_order, "scheduled").await;
    advance_to(
        &sys.node,
        &erin,
        day.pred_opt().unwrap().max(today(&erin).await),
    )
    .await;

    quarantine(&sys.node, DAL_LAFAYETTE.fridge).await;
    let gina = sys.node.as_role("customer", "gina");
    let seq = sys.node.log_seq().await;
    let r = gina
        .create_plan(plan_body(DAL_LAFAYETTE, gina.earliest_change_date().await))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "fridge_unavailable"),
        "{}",
        r.body
    );
    assert_eq!(sys.node.log_seq().await, seq, "nothing was recorded");

    let kitchen = sys.node.kitchen(DAL_LAFAYETTE.kitchen);
    let r = kitchen
        .kitchen_event(DAL_LAFAYETTE.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["passed_by"][0]["order_id"],
        erin_order.as_str(),
        "{}",
        r.body
    );
    await_order(&finn, &finn_order, "available").await;
    // The prep report tells the kitchen which fridge cannot take meals.
    let prep = kitchen.prep(DAL_LAFAYETTE.kitchen, &day.to_string()).await;
    assert_eq!(
        prep.body["unavailable_fridges"],
        json!([{"fridge_id": DAL_LAFAYETTE.fridge, "status": "quarantined"}]),
        "{}",
        prep.body
    );
    let order = await_order(&erin, &erin_order, "scheduled").await;
    assert!(order.get("pickup_code").is_none(), "{order}");
    // Only Erin's fridge asked for: refused, nothing changes.
    let r = kitchen
        .post(
            &format!("/v1/kitchens/{}/events", DAL_LAFAYETTE.kitchen),
            json!({"stage": "placed_in_fridge", "date": day, "fridge_id": DAL_LAFAYETTE.fridge}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "fridge_unavailable"),
        "{}",
        r.body
    );

    // Still quarantined on the day: withdrawn and credited.
    advance_to(&sys.node, &erin, day).await;
    let order = await_order(&erin, &erin_order, "cancelled").await;
    assert_eq!(
        order["withdrawn"],
        json!({"reason": "fridge_unavailable", "credited": DAL_LAFAYETTE.price}),
        "{order}"
    );
    assert_eq!(credit(&erin).await, DAL_LAFAYETTE.price);
    assert_eq!(credit(&finn).await, 0);
}

/// Finding 4: a meal may be placed only from the eve of its day, and it is
/// reserved until the end of that day's pickup window (21:00 local, UTC−5
/// in the dev config), not for four hours from placement.
#[tokio::test]
async fn plan_meals_are_placed_on_their_eve_or_day_and_wait_until_the_pickup_window_closes() {
    let sys = System::start().await;
    let spot = SALAD;
    let hana = sys.node.as_role("customer", "hana");
    let start = hana.earliest_change_date().await;
    let plan = create_plan(&hana, spot, start).await;
    // A day at least two days after the day its order is made.
    let mut day = weekday_on_or_after(start + chrono::Duration::days(2));
    let order_id = loop {
        let order_id = await_day_order(&sys.node, &hana, &plan, day).await;
        if today(&hana).await + chrono::Duration::days(2) <= day {
            break order_id;
        }
        day = weekday_on_or_after(day.succ_opt().unwrap());
    };
    let kitchen = sys.node.kitchen(spot.kitchen);
    let seq = sys.node.log_seq().await;
    let r = kitchen
        .kitchen_event(spot.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "outside_placement_window"),
        "{}",
        r.body
    );
    assert_eq!(sys.node.log_seq().await, seq, "nothing was recorded");

    advance_to(&sys.node, &hana, day.pred_opt().unwrap()).await;
    let r = kitchen
        .kitchen_event(spot.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&hana, &order_id, "available").await;
    let closes = day
        .succ_opt()
        .unwrap()
        .and_hms_opt(2, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(order["pickup_deadline"], json!(closes), "{order}");

    // Past the window: unclaimed.
    let now = sys.node.clock_now().await;
    sys.node
        .advance_clock((closes - now).num_seconds() + 60)
        .await;
    let order = await_order(&hana, &order_id, "unclaimed").await;
    assert!(order.get("pickup_code").is_none(), "{order}");
}

/// Finding 10, small ones: a week with nothing to charge is not shown as
/// `paid`, and restarting a `--dev-clock` node keeps its clock (the plan
/// does not flip back in time).
#[tokio::test]
async fn a_week_with_nothing_due_is_not_paid_and_a_dev_clock_survives_a_restart() {
    let mut node = Node::start(&["--demo", "--dev-clock"]).await;
    node.start_the_day().await;
    let ivy = node.as_role("customer", "ivy");
    // Weekend meals only: weekends do not work, so nothing is due.
    let mut saturday = ivy.earliest_change_date().await;
    while chrono::Datelike::weekday(&saturday) != chrono::Weekday::Sat {
        saturday = saturday.succ_opt().unwrap();
    }
    let body = json!({
        "fridge_id": SALAD.fridge,
        "days": [{"weekday": 6, "meal_id": SALAD.meal}, {"weekday": 7, "meal_id": SALAD.meal}],
        "start_date": saturday,
        "end_date": saturday.succ_opt().unwrap(),
        "payment_method": "tok_visa",
    });
    let r = ivy.create_plan(body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let eve = (saturday - chrono::Duration::days(3)).max(today(&ivy).await);
    advance_to(&node, &ivy, eve).await;
    eventually("the week's charge", PAYMENT_DEADLINE, || async {
        plans(&ivy).await["plans"][0]["charges"][0]["status"] == "nothing_due"
    })
    .await;

    let before = node.clock_now().await;
    node.restart().await;
    assert!(node.clock_now().await >= before, "the dev clock went back");
    let ivy = node.as_role("customer", "ivy");
    assert_eq!(today(&ivy).await, eve);
}

/// Finding 10, small ones: a role that may not do something is told so in
/// words (`a pos token may not do this`), not in Rust's debug text
/// (`role Pos may not do this`).
#[tokio::test]
async fn a_refused_role_is_named_in_words() {
    let node = Node::start_demo().await;
    let refused = [
        ("pos", node.as_role("pos", "till-1")),
        ("kitchen", node.kitchen(SALAD.kitchen)),
        ("fridge", node.as_role("fridge", SALAD.fridge)),
    ];
    for (role, caller) in refused {
        for r in [
            caller.plans().await,
            caller
                .get("/v1/admin/calendar?from=2030-01-07&to=2030-01-13")
                .await,
        ] {
            assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert_eq!(message, format!("a {role} token may not do this"));
        }
    }
    let r = node.as_role("customer", "ivy").get("/v1/admin/log").await;
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        (r.status, message),
        (403, "a customer token may not do this"),
        "{}",
        r.body
    );
}

/// Finding 10, small ones: the README's run command takes the README's
/// clock step. `region-node dev --dev-clock` starts NATS, payments and a
/// node whose clock an admin moves; Ctrl-C (SIGTERM) stops all three.
#[tokio::test]
async fn region_node_dev_runs_with_a_dev_clock() {
    let mut dev = Dev::start(&["--dev-clock", "--no-fridges"]).await;
    let admin = dev.admin();
    let r = admin.get("/v1/dev/clock").await;
    assert_eq!(r.body["adjustable"], true, "{}", r.body);
    let before: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(r.body["now"].clone()).expect("now");
    let r = admin
        .send(
            reqwest::Method::POST,
            "/v1/dev/clock",
            Some(RawBody::Json(json!({"seconds": DAY_SECS}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(r.body["now"].clone()).expect("now");
    assert!(after - before >= chrono::Duration::seconds(DAY_SECS));
    // The demo district is loaded, and the node reaches the NATS it started.
    assert_eq!(admin.get("/v1/meals/m-greek-salad").await.status, 200);
    eventually("the node connected to NATS", PAYMENT_DEADLINE, || async {
        admin.get("/readyz").await.body["nats"] == "connected"
    })
    .await;

    let (status, survived) = dev.terminate(std::time::Duration::from_secs(30)).await;
    assert!(status.success(), "region-node dev exited with {status}");
    assert!(!survived, "NATS or payments outlived region-node dev");
}

/// Finding 7: the same plan twice (say, a double tap without an
/// Idempotency-Key) is refused, as is any plan that shares a delivery day
/// at the same fridge: it would charge twice for one lunch. A plan at
/// another fridge is fine.
#[tokio::test]
async fn an_overlapping_plan_at_the_same_fridge_is_refused() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    node.start_the_day().await;
    let jo = node.as_role("customer", "jo");
    let start = jo.earliest_change_date().await;
    let first = create_plan(&jo, SALAD, start).await;
    let seq = node.log_seq().await;
    let r = jo.create_plan(plan_body(SALAD, start)).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "overlapping_plan"),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["plan_id"], first.as_str(), "{}", r.body);
    let later = plan_body(SALAD, start + chrono::Duration::days(10));
    assert_eq!(jo.create_plan(later).await.code(), "overlapping_plan");
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");

    create_plan(&jo, DAL_MARKET, start).await;
    // Mondays only: still a day the first plan delivers.
    let mut other_days = plan_body(SALAD, start);
    other_days["days"] = json!([{"weekday": 1, "meal_id": SALAD.meal}]);
    let r = jo.create_plan(other_days).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "overlapping_plan"),
        "{}",
        r.body
    );
    // Someone else's plan at the same fridge is theirs.
    let kim = node.as_role("customer", "kim");
    create_plan(&kim, SALAD, start).await;

    // Finding 9: weekend days and a discontinued meal are not skipped
    // silently: the plan says so.
    let view = jo.get(&format!("/v1/subscriptions/{first}")).await.body;
    let notes = view["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "Saturday and Sunday: {view}");
    let r = node
        .admin()
        .delete(&format!("/v1/admin/meals/{}", SALAD.meal))
        .await;
    assert!(r.status < 300, "{}", r.body);
    let view = jo.get(&format!("/v1/subscriptions/{first}")).await.body;
    assert!(
        view["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("no longer offered")),
        "{view}"
    );
}

const KALE: Spot = Spot {
    fridge: "f-campus-martius",
    meal: "m-kale-caesar",
    kitchen: "k-midtown-greens",
    price: 1095,
};
const OATS_PRICE: i64 = 595;

fn weekday_number(date: NaiveDate) -> u32 {
    chrono::Datelike::weekday(&date).number_from_monday()
}

/// Finding 5: Lou swaps one day of a week already paid, before that day's
/// order is made, from kale caesar (1,095) to overnight oats (595). The
/// price is the new meal's, and the difference is credited — as it would
/// be if she swapped after the order was made.
#[tokio::test]
async fn a_swap_costs_the_new_price_whenever_it_is_made() {
    let sys = System::start().await;
    let lou = sys.node.as_role("customer", "lou");
    let start = lou.earliest_change_date().await;
    let plan = create_plan(&lou, KALE, start).await;
    // A weekday in a paid week, past the days already made (three ahead):
    // the day after the horizon when the horizon is Monday to Thursday.
    let day = loop {
        let horizon = today(&lou).await + chrono::Duration::days(3);
        if horizon >= start && weekday_number(horizon) <= 4 {
            let order = format!("sub-{plan}-{horizon}");
            await_order(&lou, &order, "scheduled").await;
            break horizon.succ_opt().unwrap();
        }
        sys.node.advance_clock(DAY_SECS).await;
    };
    let swapped: Vec<Value> = (1..=7)
        .map(|w| {
            let meal = if w == weekday_number(day) {
                "m-overnight-oats"
            } else {
                KALE.meal
            };
            json!({"weekday": w, "meal_id": meal})
        })
        .collect();
    let r = lou
        .change_plan(&plan, json!({"days": swapped, "from": day}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    sys.node.advance_clock(DAY_SECS).await;
    let order = await_order(&lou, &format!("sub-{plan}-{day}"), "scheduled").await;
    assert_eq!(order["total"], OATS_PRICE, "{order}");
    assert_eq!(credit(&lou).await, KALE.price - OATS_PRICE);
}

/// Finding 6: Mo adds a day to a week already paid; it is made from her
/// credit, which goes negative. Her plan then ends: the debt is collected
/// with a final charge instead of staying on the books forever.
#[tokio::test]
async fn a_debt_left_when_a_plan_ends_is_collected_with_a_final_charge() {
    let sys = System::start().await;
    let mo = sys.node.as_role("customer", "mo");
    // A one-day plan on a Monday to Thursday, so the next day is a working
    // day of the same (paid) week.
    let mut start = mo.earliest_change_date().await;
    while weekday_number(start) > 4 {
        start = start.succ_opt().unwrap();
    }
    let mut body = plan_body(KALE, start);
    body["end_date"] = json!(start);
    let r = mo.create_plan(body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let plan = r.body["plan_id"].as_str().unwrap().to_string();
    await_day_order(&sys.node, &mo, &plan, start).await;

    let next = start.succ_opt().unwrap();
    let r = mo.change_plan(&plan, json!({"end_date": next})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    await_day_order(&sys.node, &mo, &plan, next).await;
    assert_eq!(credit(&mo).await, -KALE.price, "made from the credit");
    // Both meals are delivered (an order not produced would be credited).
    advance_to(&sys.node, &mo, start).await;
    let kitchen = sys.node.kitchen(KALE.kitchen);
    for date in [start, next] {
        let r = kitchen
            .kitchen_event(KALE.kitchen, "placed_in_fridge", &date.to_string())
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        await_order(&mo, &format!("sub-{plan}-{date}"), "available").await;
    }

    // The plan ends; nothing will charge again: the debt is collected.
    advance_to(&sys.node, &mo, next.succ_opt().unwrap()).await;
    eventually("the debt collected", PAYMENT_DEADLINE, || async {
        let plans = plans(&mo).await;
        let charges = plans["plans"][0]["charges"].as_array().cloned();
        charges
            .and_then(|c| c.last().cloned())
            .is_some_and(|c| c["status"] == "paid" && c["debt_collected"] != 0)
    })
    .await;
    assert_eq!(credit(&mo).await, 0);
    let plans = plans(&mo).await;
    let charges = plans["plans"][0]["charges"].as_array().unwrap();
    let last = charges.last().unwrap();
    assert_eq!(
        (&last["debt_collected"], &last["amount"], &last["status"]),
        (&json!(KALE.price), &json!(KALE.price), &json!("paid")),
        "{plans}"
    );
}

/// Finding 9: what operators see. One plan by id (its owner or an admin),
/// the admin list with customer, status, paid-through date and balance,
/// withdrawn orders with their reason, what a cancellation credited, the
/// calendar over a range, and closed days marked in the prep report.
#[tokio::test]
async fn operators_see_plans_balances_reasons_and_the_calendar() {
    let sys = System::start().await;
    let spot = SALAD;
    let admin = sys.node.admin();
    let nia = sys.node.as_role("customer", "nia");
    let start = nia.earliest_change_date().await;
    let day = weekday_on_or_after(start);
    let plan = create_plan(&nia, spot, start).await;
    let order_id = await_day_order(&sys.node, &nia, &plan, day).await;

    let mine = nia.get(&format!("/v1/subscriptions/{plan}")).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["customer"], "nia");
    assert_eq!(mine.body["balance"], 0);
    let paid_through: NaiveDate =
        serde_json::from_value(mine.body["paid_through"].clone()).unwrap();
    assert!(paid_through >= day, "{}", mine.body);
    let other = sys.node.as_role("customer", "oz");
    let r = other.get(&format!("/v1/subscriptions/{plan}")).await;
    assert_eq!((r.status, r.code()), (404, "unknown_plan"), "{}", r.body);
    let r = admin.get(&format!("/v1/subscriptions/{plan}")).await;
    assert_eq!(r.body["plan_id"], plan.as_str(), "{}", r.body);
    let list = admin.get("/v1/subscriptions").await;
    let row = list.body["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plan_id"] == plan.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        (&row["customer"], &row["status"], &row["balance"]),
        (&json!("nia"), &json!("active"), &json!(0)),
        "{row}"
    );

    // A holiday: the calendar and the prep report say so, the order shows why
    // it was withdrawn.
    let r = admin.set_day(&day.to_string(), false, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&nia, &order_id, "cancelled").await;
    assert_eq!(
        order["withdrawn"],
        json!({"reason": "non_working_day", "credited": spot.price}),
        "{order}"
    );
    let cal = admin
        .get(&format!(
            "/v1/admin/calendar?from={start}&to={}",
            day + chrono::Duration::days(1)
        ))
        .await;
    assert_eq!(cal.status, 200, "{}", cal.body);
    let entry = cal.body["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == json!(day))
        .cloned()
        .unwrap();
    assert_eq!(
        (&entry["working"], &entry["set"]),
        (&json!(false), &json!(true))
    );
    for bad in [
        format!(
            "/v1/admin/calendar?from={day}&to={start}",
            day = day + chrono::Duration::days(1)
        ),
        format!(
            "/v1/admin/calendar?from={start}&to={}",
            start + chrono::Duration::days(400)
        ),
    ] {
        assert_eq!(admin.get(&bad).await.status, 422, "{bad}");
    }
    assert_eq!(
        nia.get(&format!("/v1/admin/calendar?from={start}&to={day}"))
            .await
            .status,
        403
    );
    let prep = sys
        .node
        .kitchen(spot.kitchen)
        .prep(spot.kitchen, &day.to_string())
        .await;
    assert_eq!(prep.body["working_day"], false, "{}", prep.body);

    // Cancelling says what it credited; the balance shows it.
    let before = credit(&nia).await;
    let r = nia.cancel_plan(&plan, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let credited = r.body["credited"].as_i64().unwrap();
    assert!(credited > 0, "{}", r.body);
    assert_eq!(credit(&nia).await, before + credited);
    assert_eq!(r.body["balance"], before + credited);

    let openapi = sys.node.anonymous().get("/v1/openapi.json").await;
    assert!(openapi.body["paths"]["/v1/subscriptions/{plan_id}"]
        .get("get")
        .is_some());
    assert!(openapi.body["paths"]["/v1/admin/calendar"]
        .get("get")
        .is_some());
}

/// Finding 8: Pat's card is declined. The plan says so, nothing is made, her
/// app is told each time; the week is retried after a backoff, and at once
/// when she changes the payment method, which pays it.
#[tokio::test]
async fn a_declined_card_is_retried_told_and_can_be_replaced() {
    let sys = System::start().await;
    let pat = sys.node.as_role("customer", "pat");
    let token = pat.token.clone().unwrap();
    let mut ws = larder_tests::ws::WsClient::connect(&sys.node, Some(&token)).await;
    ws.subscribe(json!({"orders": true})).await;
    let start = pat.earliest_change_date().await;
    let mut body = plan_body(SALAD, start);
    body["payment_method"] = json!("tok_decline");
    let r = pat.create_plan(body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let plan = r.body["plan_id"].as_str().unwrap().to_string();
    loop {
        if today(&pat).await + chrono::Duration::days(3) >= start {
            break;
        }
        sys.node.advance_clock(DAY_SECS).await;
    }
    let told = ws
        .expect("the decline", |m| {
            m["type"] == "plan_charge" && m["plan_id"] == plan.as_str() && m["status"] == "declined"
        })
        .await;
    let first = told["charge_id"].as_str().unwrap().to_string();
    eventually("the plan shows the decline", PAYMENT_DEADLINE, || async {
        pat.get(&format!("/v1/subscriptions/{plan}")).await.body["status"] == "payment_declined"
    })
    .await;
    let r = pat.get(&format!("/v1/orders/sub-{plan}-{start}")).await;
    assert_eq!(r.status, 404, "nothing is made while unpaid: {}", r.body);

    // An hour later the week is tried again (and declined again: same card).
    sys.node.advance_clock(3600).await;
    let again = ws
        .expect("the retry's decline", |m| {
            m["type"] == "plan_charge"
                && m["status"] == "declined"
                && m["charge_id"] != first.as_str()
        })
        .await;
    assert_eq!(again["charge_id"], format!("{first}-2"), "{again}");

    // A new card: retried at once, paid, and the days are made.
    let r = pat
        .change_plan(&plan, json!({"payment_method": "tok_visa"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    ws.expect("the payment", |m| {
        m["type"] == "plan_charge" && m["plan_id"] == plan.as_str() && m["status"] == "paid"
    })
    .await;
    await_order(&pat, &format!("sub-{plan}-{start}"), "scheduled").await;
    let view = pat.get(&format!("/v1/subscriptions/{plan}")).await;
    assert_eq!(view.body["status"], "active", "{}", view.body);
    let r = pat.change_plan(&plan, json!({"payment_method": ""})).await;
    assert_eq!(r.status, 422, "{}", r.body);
}

/// A signed batch of `reports` from the demo fridge, sent at the node's now.
async fn send(node: &Node, fridge: &mut fridge_sim::SimFridge, reports: Vec<fridge_acl::Report>) {
    let now = node.clock_now().await;
    let batch = fridge
        .sign(reports, now, &fridge_sim::SignOptions::default())
        .unwrap();
    let r = node.telemetry(&batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

fn units(meal: &'static str, n: u32) -> fridge_sim::MealCounts {
    [(protocol::MealId::from_static(meal), n)]
        .into_iter()
        .collect()
}

async fn fridge_view(node: &Node, fridge_id: &str) -> Value {
    let r = node
        .admin()
        .get(&format!("/v1/admin/fridges/{fridge_id}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn level(view: &Value, meal: &str) -> Value {
    view["stock"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["meal_id"] == meal)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The kitchen places Quinn's meal before the fridge ever scanned it: the
/// fridge's first scan counts the same unit, not a second one. A door
/// session with her code that takes none of her meal is recorded for
/// operators, and
/// the order stays open until she takes it.
#[tokio::test]
async fn a_meal_placed_before_the_first_scan_is_counted_once_and_an_empty_pickup_is_recorded() {
    let sys = System::start().await;
    let spot = SALAD;
    let quinn = sys.node.as_role("customer", "quinn");
    let start = quinn.earliest_change_date().await;
    let day = weekday_on_or_after(start);
    let plan = create_plan(&quinn, spot, start).await;
    let order_id = await_day_order(&sys.node, &quinn, &plan, day).await;
    advance_to(&sys.node, &quinn, day).await;
    let r = sys
        .node
        .admin()
        .set_stock(spot.fridge, &[(spot.meal, 0)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = sys
        .node
        .kitchen(spot.kitchen)
        .kitchen_event(spot.kitchen, "placed_in_fridge", &day.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = await_order(&quinn, &order_id, "available").await;
    let code = order["pickup_code"].as_str().unwrap().to_string();

    // The fridge's first scan sees the one unit the kitchen put in.
    let mut fridge = demo_fridge(spot.fridge);
    let now = sys.node.clock_now().await;
    let scan = fridge.scan_report(now, &units(spot.meal, 1));
    send(&sys.node, &mut fridge, vec![scan]).await;
    let view = fridge_view(&sys.node, spot.fridge).await;
    assert_eq!(
        (
            &level(&view, spot.meal)["on_hand"],
            &level(&view, spot.meal)["available"]
        ),
        (&json!(1), &json!(0)),
        "{view}"
    );

    // Her code opens the door; none of her meal is taken (another meal
    // is, which the fridge records as shrinkage).
    let now = sys.node.clock_now().await;
    let none = fridge_sim::MealCounts::new();
    let door = fridge.door_report(
        now,
        fridge_sim::DoorActor::PickupCode(code.clone()),
        &units(KALE.meal, 1),
        &none,
    );
    send(&sys.node, &mut fridge, vec![door]).await;
    let view = fridge_view(&sys.node, spot.fridge).await;
    let notice = view["notices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "pickup_nothing_taken")
        .cloned();
    assert_eq!(
        notice.map(|n| n["order_id"].clone()),
        Some(json!(order_id)),
        "{view}"
    );
    await_order(&quinn, &order_id, "available").await;

    // Then she takes it: the shelf is empty, nothing was ever for sale.
    let now = sys.node.clock_now().await;
    let door = fridge.door_report(
        now,
        fridge_sim::DoorActor::PickupCode(code),
        &units(spot.meal, 1),
        &none,
    );
    send(&sys.node, &mut fridge, vec![door]).await;
    await_order(&quinn, &order_id, "picked_up").await;
    let view = fridge_view(&sys.node, spot.fridge).await;
    assert_eq!(level(&view, spot.meal)["on_hand"], 0, "{view}");
    assert_eq!(sys.node.available(spot.fridge, spot.meal).await, 0);
}

/// A fridge back in range after an excursion is recorded for operators; it
/// stays quarantined until one lifts it.
#[tokio::test]
async fn a_fridge_back_in_range_is_recorded() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let fridge_id = DAL_LAFAYETTE.fridge;
    let mut fridge = demo_fridge(fridge_id);
    let now = node.clock_now().await;
    let minutes = |m: i64| chrono::TimeDelta::minutes(m);
    let mut reports = vec![];
    for i in 0..20 {
        reports.push(fridge.temperature_report(now - minutes(40 - i), 9_500));
    }
    for i in 0..10 {
        reports.push(fridge.temperature_report(now - minutes(10 - i), 3_500));
    }
    send(&node, &mut fridge, reports).await;
    eventually("the recovery recorded", PAYMENT_DEADLINE, || async {
        let view = fridge_view(&node, fridge_id).await;
        view["status"] == "quarantined"
            && view["notices"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["kind"] == "temperature_recovered"))
    })
    .await;
    let r = node
        .anonymous()
        .get(&format!("/v1/admin/fridges/{fridge_id}"))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// Finding 9 / credit and refunds: Rae cancels and asks for her money back
/// instead of credit. What the cancellation credits goes back to the card
/// against the week's charge; her balance stays at zero.
#[tokio::test]
async fn a_cancellation_can_refund_to_the_card_instead_of_crediting() {
    let sys = System::start().await;
    let rae = sys.node.as_role("customer", "rae");
    let start = rae.earliest_change_date().await;
    let day = weekday_on_or_after(start);
    let plan = create_plan(&rae, SALAD, start).await;
    await_day_order(&sys.node, &rae, &plan, day).await;
    let view = rae.get(&format!("/v1/subscriptions/{plan}")).await.body;
    let charge_id = view["charges"][0]["charge_id"]
        .as_str()
        .unwrap()
        .to_string();

    let r = rae
        .delete(&format!("/v1/subscriptions/{plan}?refund=true"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let credited = r.body["credited"].as_i64().unwrap();
    assert!(credited > 0, "{}", r.body);
    assert_eq!(r.body["refunded"], credited, "{}", r.body);
    assert_eq!(r.body["balance"], 0, "{}", r.body);
    let payments = &sys.payments;
    eventually("the refund at the card", PAYMENT_DEADLINE, || async {
        payments.ledger(&charge_id).await["refund_outcome"]["status"] == "approved"
    })
    .await;
    assert_eq!(credit(&rae).await, 0);
    let r = rae
        .delete(&format!("/v1/subscriptions/{plan}?refund=maybe"))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Finding 3, offline: a fridge nobody has heard from for longer than
/// allowed takes no new plan (nor a plan moved to it) until it reports
/// again.
#[tokio::test]
async fn an_offline_fridge_takes_no_new_plan_until_it_reports_again() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    node.start_the_day().await;
    let spot = Spot {
        fridge: "f-fox-theatre",
        ..SALAD
    };
    let fridge = demo_fridge(spot.fridge);
    let hello = fridge
        .sign(
            vec![],
            node.clock_now().await,
            &fridge_sim::SignOptions::default(),
        )
        .unwrap();
    assert_eq!(node.telemetry(&hello).await.status, 202);
    let sal = node.as_role("customer", "sal");
    let elsewhere = create_plan(&sal, SALAD, sal.earliest_change_date().await).await;
    node.advance_clock(11 * 60).await;
    eventually("offline", PAYMENT_DEADLINE, || async {
        fridge_view(&node, spot.fridge).await["status"] == "offline"
    })
    .await;

    let seq = node.log_seq().await;
    let start = sal.earliest_change_date().await;
    let mut body = plan_body(spot, start);
    body["days"] = json!([{"weekday": 1, "meal_id": spot.meal}]);
    let r = sal.create_plan(body.clone()).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "fridge_unavailable"),
        "{}",
        r.body
    );
    let r = sal
        .change_plan(&elsewhere, json!({"fridge_id": spot.fridge}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "fridge_unavailable"),
        "{}",
        r.body
    );
    assert_eq!(node.log_seq().await, seq, "nothing was recorded");

    let again = fridge
        .sign(
            vec![],
            node.clock_now().await,
            &fridge_sim::SignOptions::default(),
        )
        .unwrap();
    assert_eq!(node.telemetry(&again).await.status, 202);
    let r = sal.create_plan(body).await;
    assert_eq!(r.status, 201, "{}", r.body);
}
