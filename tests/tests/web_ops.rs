//! Issue 13, part 5: the operations dashboard (`/ops`) and the kitchen view
//! (`/kitchen`) in a real headless Chromium against a real node: an admin
//! lifts a quarantine, a kitchen places a subscriber's lunch in the fridge,
//! and every button can be named by a screen reader.

use std::time::Duration;

use chrono::NaiveDate;
use fridge_sim::{MealCounts, SignOptions};
use larder_tests::browser::{self, Browser, DESKTOP, PHONE};
use larder_tests::*;
use protocol::MealId;
use serde_json::{json, Value};

const WARM_FRIDGE: &str = "f-fox-theatre";
const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const KITCHEN: &str = "k-midtown-greens";
const DAY_SECS: i64 = 24 * 3600;

#[tokio::test]
async fn the_fleet_route_lists_every_fridge_for_admins_only() {
    let node = Node::start_demo().await;
    let r = node.admin().get("/v1/admin/fridges").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed: Vec<&str> = r.body["fridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fridge_id"].as_str().unwrap())
        .collect();
    let demo: Value = serde_json::from_slice(&std::fs::read(demo_file()).unwrap()).unwrap();
    let mut expected: Vec<&str> = demo["fridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fridge_id"].as_str().unwrap())
        .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "every demo fridge, by id");
    let one = &r.body["fridges"][0];
    assert_eq!(one["status"], "online", "{one}");
    assert!(one["lat"].is_f64() && one["lon"].is_f64(), "{one}");
    assert_eq!(
        (&one["excursion"], &one["notices"]),
        (&Value::Null, &json!([]))
    );

    let r = node
        .as_role("customer", "carol")
        .get("/v1/admin/fridges")
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.body);
    let r = node.anonymous().get("/v1/admin/fridges").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn an_admin_lifts_a_quarantine_on_the_dashboard_once_the_fridge_is_cold() {
    let node = Node::start_demo().await;
    let mut fridge = demo_fridge(WARM_FRIDGE);
    overheat(&node, &mut fridge).await;
    let admin = node.admin();
    let lift_path = format!("/v1/admin/fridges/{WARM_FRIDGE}/quarantine/lift");
    let refused = admin.post(&lift_path, json!({})).await;
    assert_eq!(refused.code(), "fridge_out_of_range", "{}", refused.body);
    let still_warm = refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();

    // Meanwhile a till sells at another fridge: the order flow shows it.
    let till = node.as_role("pos", "pos-campus");
    let sold = till.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(sold.status, 201, "{}", sold.body);
    let sold_id = sold.body["order_id"].as_str().unwrap().to_owned();

    let browser = Browser::start(DESKTOP).await;
    let admin_token = admin.token.clone().unwrap();
    browser
        .open(&node.url(&format!("/ops#token={admin_token}")))
        .await;
    browser
        .find(&format!("#order-flow [data-order-id=\"{sold_id}\"]"))
        .await;
    let row = format!("#fridges tr[data-fridge-id=\"{WARM_FRIDGE}\"]");
    browser
        .await_text(&format!("{row} .status"), "the table", |t| {
            t.contains("quarantined")
        })
        .await;
    let marker =
        format!("#fleet-map g[data-fridge-id=\"{WARM_FRIDGE}\"][data-status=\"quarantined\"]");
    browser.find(&marker).await;
    let label = browser
        .client
        .execute(
            "return document.querySelector(arguments[0]).textContent;",
            vec![json!(marker)],
        )
        .await
        .unwrap();
    assert!(
        label.as_str().is_some_and(|l| l.contains("quarantined")),
        "the marker says so in words, not colour alone: {label}"
    );
    browser.screenshot("ops-quarantined").await;

    // Still warm: the node refuses, and the page says why.
    browser.click(&format!("{row} button.lift")).await;
    browser
        .await_text("#status", "the refusal", |t| t.contains(&still_warm))
        .await;
    assert_eq!(fleet_status(&node).await, "quarantined");

    // Back in range: the lift goes through and the page shows it online.
    let sample = fridge.temperature_report(chrono::Utc::now(), 4_000);
    let cool = fridge
        .sign(vec![sample], chrono::Utc::now(), &SignOptions::default())
        .expect("sign");
    assert_eq!(node.telemetry(&cool).await.status, 202);
    browser.click(&format!("{row} button.lift")).await;
    browser
        .await_text(&format!("{row} .status"), "the lift", |t| {
            t.contains("online")
        })
        .await;
    browser
        .find(&format!(
            "#fleet-map g[data-fridge-id=\"{WARM_FRIDGE}\"][data-status=\"online\"]"
        ))
        .await;
    let r = admin.get(&format!("/v1/admin/fridges/{WARM_FRIDGE}")).await;
    assert_eq!(r.body["status"], "online", "{}", r.body);
    browser
        .client
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap();
    // The whole dashboard in one picture: map, order flow, fridges, charts.
    browser.client.set_window_size(1280, 2200).await.unwrap();
    browser.screenshot("ops-overview").await;
    assert_eq!(browser.page_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_kitchen_places_a_subscribers_lunch_and_the_customer_can_pick_it_up() {
    let nats = Nats::start().await;
    let _payments = Payments::start(&nats, &[]).await;
    let node = Node::start_with_nats(&nats, &[]).await;
    node.start_the_day().await;
    let (alice, date, order_id) = subscriber(&node, "alice").await;
    // Alice has her page open on her phone while the kitchen works.
    let phone = customer_page(&node, &alice, &order_id).await;

    let browser = Browser::start(DESKTOP).await;
    let kitchen = node.kitchen(KITCHEN).token.unwrap();
    browser
        .open(&node.url(&format!("/kitchen#token={kitchen}")))
        .await;
    browser
        .click(&format!("#days button[data-date=\"{date}\"]"))
        .await;
    let row = format!("#stages tr[data-fridge-id=\"{FRIDGE}\"]");
    for (stage, shown) in [
        ("prepared", "Prepared"),
        ("dispatched", "Dispatched"),
        ("placed_in_fridge", "Placed in fridge"),
    ] {
        browser
            .click(&format!(
                "{row} button[data-stage=\"{stage}\"]:not([disabled])"
            ))
            .await;
        browser
            .await_text(&format!("{row} .badge.stage"), stage, |t| t == shown)
            .await;
        browser
            .await_text(&format!("{row} .answer"), "the answer", |t| {
                t.contains(&order_id)
            })
            .await;
    }
    // Every stage is behind it now: no button of the row is enabled.
    let enabled = browser
        .client
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(format!("{row} button:not([disabled])"))],
        )
        .await
        .unwrap();
    assert_eq!(enabled, json!(0));
    browser.screenshot("kitchen-day").await;
    assert_eq!(browser.page_errors().await, Vec::<String>::new());

    let order = alice.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(order.body["status"], "available", "{}", order.body);
    // Her open page turns the order available without a reload.
    phone
        .await_text(
            &format!("#orders li[data-order-id=\"{order_id}\"] .status"),
            "alice's order on her open page",
            |t| t == "available",
        )
        .await;
    assert_eq!(phone.page_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn every_button_on_both_pages_has_a_name_and_every_field_a_label() {
    let node = Node::start_demo().await;
    let mut fridge = demo_fridge(WARM_FRIDGE);
    overheat(&node, &mut fridge).await;
    let admin = node.admin().token.unwrap();
    let kitchen = node.kitchen(KITCHEN).token.unwrap();
    let browser = Browser::start(DESKTOP).await;
    for (url, ready) in [
        (format!("/ops#token={admin}"), "button.lift"),
        (format!("/kitchen#token={kitchen}"), "#days button"),
    ] {
        browser.open(&node.url(&url)).await;
        browser.find(ready).await;
        // Named without the token.
        let url = url.split('#').next().unwrap_or_default();
        let unnamed = browser
            .client
            .execute(
                "const b = [...document.querySelectorAll('button')];
                 const f = [...document.querySelectorAll('input, select')];
                 return {buttons: b.length,
                   unnamed: b.filter(x => !(x.getAttribute('aria-label') || x.textContent).trim())
                     .map(x => x.outerHTML),
                   unlabelled: f.filter(x => x.labels.length === 0 && !x.getAttribute('aria-label'))
                     .map(x => x.outerHTML)};",
                vec![],
            )
            .await
            .unwrap();
        assert!(unnamed["buttons"].as_u64().unwrap() > 0, "{url}: {unnamed}");
        assert_eq!(unnamed["unnamed"], json!([]), "{url}");
        assert_eq!(unnamed["unlabelled"], json!([]), "{url}");
        // Fast: drawn (every first API answer in) within a second.
        let drawn_ms = first_render_ms(&browser).await;
        eprintln!("{url}: first render after {drawn_ms:.0} ms");
        assert!(drawn_ms < 1000.0, "{url}: first render after {drawn_ms} ms");
        // Keyboard: Tab reaches a button.
        let tabbed = tab_until_button(&browser).await;
        assert!(tabbed, "{url}: no button reachable with Tab");
        assert_eq!(browser.page_errors().await, Vec::<String>::new(), "{url}");
    }
}

// ---- the stories' steps ----

/// Twenty minutes at 7.5 °C ending now (15 are allowed above 5 °C): the
/// fridge is quarantined, as the fleet route says.
async fn overheat(node: &Node, fridge: &mut fridge_sim::SimFridge) {
    let scan: MealCounts = [(MealId::from_static("m-kale-caesar"), 6)]
        .into_iter()
        .collect();
    let r = node.telemetry(&fridge.scan(&scan).expect("scan")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let now = chrono::Utc::now();
    let samples = (0..20)
        .map(|i| fridge.temperature_report(now - chrono::TimeDelta::minutes(19 - i), 7_500))
        .collect();
    let warm = fridge
        .sign(samples, now, &SignOptions::default())
        .expect("sign");
    assert_eq!(node.telemetry(&warm).await.status, 202);
    eventually("quarantine", Duration::from_secs(5), || async {
        fleet_status(node).await == "quarantined"
    })
    .await;
}

/// WARM_FRIDGE's status in `GET /v1/admin/fridges`.
async fn fleet_status(node: &Node) -> String {
    let r = node.admin().get("/v1/admin/fridges").await;
    r.body["fridges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["fridge_id"] == WARM_FRIDGE)
        .and_then(|f| f["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A customer with a daily salad plan from the earliest date, the clock on
/// the eve of its first day and that day's order scheduled (paid with the
/// week): `(customer, first day, order id)`.
async fn subscriber(node: &Node, name: &str) -> (Client, NaiveDate, String) {
    let customer = node.as_role("customer", name);
    let start = customer.earliest_change_date().await;
    let days: Vec<Value> = (1..=7)
        .map(|w| json!({"weekday": w, "meal_id": MEAL}))
        .collect();
    let r = customer
        .create_plan(json!({
            "fridge_id": FRIDGE,
            "days": days,
            "start_date": start,
            "end_date": start + chrono::Duration::days(20),
            "payment_method": "tok_visa",
        }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let plan = r.body["plan_id"].as_str().unwrap().to_owned();
    // A day at a time to the eve of the first day: the kitchen may place a
    // plan meal from the day before.
    loop {
        let today: NaiveDate =
            serde_json::from_value(customer.plans().await.body["today"].clone()).unwrap();
        if today + chrono::Duration::days(1) >= start {
            break;
        }
        node.advance_clock(DAY_SECS).await;
    }
    let order_id = format!("sub-{plan}-{start}");
    eventually("the plan's first order", PAYMENT_DEADLINE, || async {
        customer.get(&format!("/v1/orders/{order_id}")).await.body["status"] == "scheduled"
    })
    .await;
    (customer, start, order_id)
}

/// The customer's page open on a phone, listing the order (not yet
/// available) and following it live.
async fn customer_page(node: &Node, customer: &Client, order_id: &str) -> Browser {
    let phone = Browser::start(PHONE).await;
    let token = customer.token.clone().unwrap();
    phone.open(&node.url(&format!("/#token={token}"))).await;
    phone
        .await_text(
            &format!("#orders li[data-order-id=\"{order_id}\"] .status"),
            "alice's order in her history",
            |t| !t.is_empty() && t != "available",
        )
        .await;
    phone.find("body[data-live=\"subscribed\"]").await;
    phone
}

/// When the page marked its first render (`larder-first-render`), in ms
/// after navigation started.
async fn first_render_ms(browser: &Browser) -> f64 {
    let deadline = std::time::Instant::now() + browser::PAGE_DEADLINE;
    while std::time::Instant::now() < deadline {
        let mark = browser
            .client
            .execute(
                "const m = performance.getEntriesByName('larder-first-render');
                 return m.length ? m[0].startTime : null;",
                vec![],
            )
            .await
            .unwrap();
        if let Some(ms) = mark.as_f64() {
            return ms;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page never marked its first render");
}

/// Presses Tab until a button has the focus (at most 40 times).
async fn tab_until_button(browser: &Browser) -> bool {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    use fantoccini::key::Key;
    for _ in 0..40 {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: char::from(Key::Tab),
            })
            .then(KeyAction::Up {
                value: char::from(Key::Tab),
            });
        browser.client.perform_actions(tab).await.unwrap();
        let tag = browser
            .client
            .execute("return document.activeElement.tagName;", vec![])
            .await
            .unwrap();
        if tag == "BUTTON" {
            return true;
        }
    }
    false
}

/// At 8 p.m. in Detroit it is already tomorrow in UTC: the kitchen's
/// "today" and the dashboard's insight range are the district's date.
#[tokio::test]
async fn the_pages_count_days_in_the_districts_time_zone() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    node.start_the_day().await; // 10:00 in Detroit, 15:00 UTC
    let local_today = node.clock_now().await.date_naive();
    node.advance_clock(10 * 3600).await; // 20:00 in Detroit, 01:00 UTC
    assert_eq!(
        node.clock_now().await.date_naive(),
        local_today.succ_opt().unwrap(),
        "UTC has moved on to tomorrow"
    );
    let local_today = local_today.to_string();
    let browser = Browser::start(DESKTOP).await;
    let kitchen = node.kitchen(KITCHEN).token.unwrap();
    browser
        .open(&node.url(&format!("/kitchen#token={kitchen}")))
        .await;
    let first_day = browser.find("#days button").await;
    assert_eq!(
        first_day.attr("data-date").await.unwrap().as_deref(),
        Some(local_today.as_str())
    );
    let admin = node.admin().token.unwrap();
    browser
        .open(&node.url(&format!("/ops#token={admin}")))
        .await;
    eventually(
        "the insight range is filled in",
        browser::PAGE_DEADLINE,
        || {
            let client = browser.client.clone();
            async move {
                let value = client
                    .execute(
                        "const i = document.getElementById('insights-to');
                     return i ? i.value : '';",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                value != json!("")
            }
        },
    )
    .await;
    let to = browser
        .client
        .execute(
            "return document.getElementById('insights-to').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(to, json!(local_today));
    assert_eq!(browser.page_errors().await, Vec::<String>::new());
}
