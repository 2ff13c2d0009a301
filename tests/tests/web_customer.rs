//! The customer app (`/`, issue 13) in a real headless Chromium at phone
//! size: finding a fridge on the plan, live stock, nutrition facts, ordering
//! with an undo window, the pickup code, errors in plain words, keyboard use
//! and the first render's time.

use larder_tests::browser::{Browser, PHONE};
use larder_tests::*;
use serde_json::Value;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// A fridge near Campus Martius, the alternative offered when it runs short.
const NEARBY: &str = "f-greektown";
/// The longest grace window a district may have: room for the story's Undo
/// on a loaded machine. The second order's window is ended with the node's
/// dev clock, not waited for.
const GRACE_SECS: i64 = 30;

/// The whole system (NATS, payments, a node with the demo district and a
/// dev clock) with `units` of MEAL in FRIDGE.
struct System {
    _nats: Nats,
    _payments: Payments,
    node: Node,
}

async fn system(units: u32) -> System {
    let nats = Nats::start().await;
    let payments = Payments::start(&nats, &[]).await;
    let grace = GRACE_SECS.to_string();
    let node = Node::start_with_nats(&nats, &["--grace-window-secs", &grace]).await;
    stock(&node, FRIDGE, units).await;
    System {
        _nats: nats,
        _payments: payments,
        node,
    }
}

async fn stock(node: &Node, fridge: &str, units: u32) {
    let r = node.admin().set_stock(fridge, &[(MEAL, units)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn count(fridge: &str, meal: &str) -> String {
    format!("#meals .count[data-fridge-id='{fridge}'][data-meal-id='{meal}']")
}

fn order_button(meal: &str) -> String {
    format!("#meals button.order[data-meal-id='{meal}']")
}

/// Opens the page (signed in when `token` is given) and waits for the
/// fridges and the live socket.
async fn open_page(node: &Node, token: Option<&str>) -> Browser {
    let browser = Browser::start(PHONE).await;
    let url = match token {
        Some(t) => node.url(&format!("/#token={t}")),
        None => node.url("/"),
    };
    browser.open(&url).await;
    browser.find("body[data-catalog='loaded']").await;
    browser.find("body[data-live='subscribed']").await;
    browser
}

async fn card_order_id(browser: &Browser) -> String {
    browser.find("#order-card[data-order-id]").await;
    let id = browser
        .execute("return document.getElementById('order-card').dataset.orderId;")
        .await;
    id.as_str().expect("an order id on the card").to_owned()
}

#[tokio::test]
async fn a_customer_orders_undoes_orders_again_and_gets_the_pickup_code_while_another_window_sees_the_stock_fall(
) {
    let sys = system(5).await;
    let node = &sys.node;
    let alice = token("customer", "alice", &[]);
    let customer = open_page(node, Some(&alice)).await;
    customer.screenshot("customer-plan").await;
    customer
        .click(&format!("#plan a.pin[data-fridge-id='{FRIDGE}']"))
        .await;
    assert_eq!(customer.text(&count(FRIDGE, MEAL)).await, "5");

    let watcher = open_page(node, None).await;
    watcher
        .click(&format!("button.fridge-choice[data-fridge-id='{FRIDGE}']"))
        .await;
    assert_eq!(watcher.text(&count(FRIDGE, MEAL)).await, "5");

    // Order one unit: the countdown and Undo show; both windows see 4.
    customer.click(&order_button(MEAL)).await;
    customer
        .await_text("#countdown", "the undo countdown", |t| {
            t.starts_with("Undo possible for 0:")
        })
        .await;
    assert!(customer.find("#undo").await.is_displayed().await.unwrap());
    customer.scroll_to("#order").await;
    customer.screenshot("customer-order-countdown").await;
    let first = card_order_id(&customer).await;
    watcher
        .await_text(&count(FRIDGE, MEAL), "the other window's count", |t| {
            t == "4"
        })
        .await;

    // Undo: cancelled, and the unit is back on sale in both windows.
    customer.click("#undo").await;
    customer
        .await_text("#order-card .status", "the undone order", |t| {
            t == "cancelled"
        })
        .await;
    customer
        .await_text(&count(FRIDGE, MEAL), "the count after Undo", |t| t == "5")
        .await;
    watcher
        .await_text(&count(FRIDGE, MEAL), "the other window after Undo", |t| {
            t == "5"
        })
        .await;
    let undone = node.admin().get(&format!("/v1/orders/{first}")).await;
    assert_eq!(undone.body["status"], "cancelled", "{}", undone.body);

    // Order again and let the grace window end on the node's clock.
    customer.click(&order_button(MEAL)).await;
    customer
        .await_text("#order-card .status", "the second order", |t| t == "held")
        .await;
    let second = card_order_id(&customer).await;
    assert_ne!(second, first);
    watcher
        .await_text(
            &count(FRIDGE, MEAL),
            "the other window, second order",
            |t| t == "4",
        )
        .await;
    node.advance_clock(GRACE_SECS + 1).await;
    customer
        .await_text("#order-card .status", "the paid order", |t| {
            t == "purchased"
        })
        .await;
    let code = customer.text("#order-card .pickup-code").await;
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "a six-digit pickup code, shown: {code:?}"
    );
    let as_alice = node.anonymous().with_token(&alice);
    let order = as_alice.get(&format!("/v1/orders/{second}")).await;
    assert_eq!(order.body["pickup_code"], code.as_str(), "{}", order.body);
    customer.scroll_to("#order").await;
    customer.screenshot("customer-pickup-code").await;

    let in_history = format!("#orders li[data-order-id='{second}'] .status");
    customer
        .await_text(&in_history, "the order history", |t| t == "purchased")
        .await;
    let history_code = customer
        .text(&format!(
            "#orders li[data-order-id='{second}'] .pickup-code"
        ))
        .await;
    assert_eq!(history_code, code);
    customer
        .await_text(
            &format!("#orders li[data-order-id='{first}'] .status"),
            "the undone order in the history",
            |t| t == "cancelled",
        )
        .await;
    customer.scroll_to("#history").await;
    customer.screenshot("customer-orders").await;

    assert_eq!(customer.page_errors().await, Vec::<String>::new());
    assert_eq!(watcher.page_errors().await, Vec::<String>::new());
}

fn demo_meal(meal_id: &str) -> Value {
    let demo: Value =
        serde_json::from_str(&std::fs::read_to_string(demo_file()).expect("demo file"))
            .expect("demo JSON");
    demo["meals"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["meal_id"] == meal_id)
        .cloned()
        .expect("the demo meal")
}

#[tokio::test]
async fn a_meal_shows_its_nutrition_facts_and_ordering_more_than_is_left_offers_other_fridges() {
    let node = Node::start_demo().await;
    stock(&node, FRIDGE, 2).await;
    stock(&node, NEARBY, 6).await;
    let bob = token("customer", "bob", &[]);
    let page = open_page(&node, Some(&bob)).await;
    page.click(&format!("button.fridge-choice[data-fridge-id='{FRIDGE}']"))
        .await;

    let meal = demo_meal(MEAL);
    let facts = format!("#meals details[data-meal-id='{MEAL}']");
    page.click(&format!("{facts} summary")).await;
    let kcal = format!("{} kcal", meal["nutrition"]["kcal"]);
    page.await_text(
        &format!("{facts} .nutrition-facts"),
        "the nutrition facts",
        |t| t.contains(&kcal) && t.contains("Protein"),
    )
    .await;
    let allergens = page
        .text(&format!("#meals .allergens[data-meal-id='{MEAL}']"))
        .await;
    for a in meal["allergens"].as_array().unwrap() {
        assert!(allergens.contains(a.as_str().unwrap()), "{allergens}");
    }
    page.scroll_to(&format!("#meals li[data-meal-id='{MEAL}']"))
        .await;
    page.screenshot("customer-meal-nutrition").await;

    // Three where two are left: the node's 409, in words, with the
    // nearby fridge that has it; nothing is ordered.
    let qty = page.find(&format!("#qty-{MEAL}")).await;
    qty.clear().await.unwrap();
    qty.send_keys("3").await.unwrap();
    page.click(&order_button(MEAL)).await;
    page.await_text("#status", "the refusal", |t| t.contains("Not enough left"))
        .await;
    page.find(&format!(
        "#alternatives button.alternative[data-fridge-id='{NEARBY}']"
    ))
    .await;
    let orders = node.as_role("customer", "bob").get("/v1/orders").await;
    assert_eq!(
        orders.body["orders"],
        serde_json::json!([]),
        "{}",
        orders.body
    );
    assert_eq!(page.text(&count(FRIDGE, MEAL)).await, "2");
    assert_eq!(page.page_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn with_the_keyboard_alone_a_customer_opens_a_fridge_and_orders() {
    use fantoccini::key::Key;
    let node = Node::start_demo().await;
    stock(&node, FRIDGE, 3).await;
    let carol = token("customer", "carol", &[]);
    let page = open_page(&node, Some(&carol)).await;

    page.tab_to(&format!("#plan a.pin[data-fridge-id='{FRIDGE}']"), 10)
        .await;
    assert!(page.focus_is_visible().await, "the focused fridge shows it");
    page.press(Key::Enter).await;
    page.find("#fridge:not([hidden]) #meals li").await;
    page.tab_to(&order_button(MEAL), 60).await;
    assert!(
        page.focus_is_visible().await,
        "the order button shows focus"
    );
    page.press(Key::Enter).await;

    page.await_text("#order-card .status", "the order placed", |t| t == "held")
        .await;
    let id = card_order_id(&page).await;
    let order = node.admin().get(&format!("/v1/orders/{id}")).await;
    assert_eq!(order.body["lines"][0]["meal_id"], MEAL, "{}", order.body);
    assert_eq!(page.page_errors().await, Vec::<String>::new());
}

/// Navigation timing of one load: DOMContentLoaded, and the fridges drawn
/// (the page's `fridges-shown` mark), in ms from the start of navigation.
async fn load_times(page: &Browser) -> (f64, f64) {
    page.find("body[data-catalog='loaded']").await;
    let t = page
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             const shown = performance.getEntriesByName('fridges-shown')[0];
             return [nav.domContentLoadedEventEnd, shown.startTime];",
        )
        .await;
    (t[0].as_f64().unwrap(), t[1].as_f64().unwrap())
}

#[tokio::test]
async fn the_page_renders_within_a_second_on_loopback() {
    let node = Node::start_demo().await;
    let page = Browser::start(PHONE).await;
    let mut times = Vec::new();
    for _ in 0..5 {
        page.open(&node.url("/")).await;
        times.push(load_times(&page).await);
    }
    eprintln!("first render (DOMContentLoaded ms, fridges shown ms): {times:?}");
    for (dom_ready, fridges_shown) in times {
        assert!(dom_ready < 1000.0, "DOMContentLoaded after {dom_ready} ms");
        assert!(
            fridges_shown < 1000.0,
            "fridges shown after {fridges_shown} ms"
        );
    }
}
