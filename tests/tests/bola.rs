//! Broken object-level authorization, route by route: for every route that
//! takes an id, and the operator's reads of the whole district (calendar,
//! event log), another customer's token and every wrong role get 403 or
//! 404, and the district's log does not move (nothing changed).

use chrono::NaiveDate;
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";

/// One attempt: who, what, where, with which body.
struct Attempt {
    who: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

/// The callers who own nothing here. Each must be refused on every
/// route below; `bob` is a customer too, just not the owner.
fn intruders(node: &Node) -> Vec<(&'static str, Client)> {
    vec![
        ("bob (another customer)", node.as_role("customer", "bob")),
        ("pos", node.as_role("pos", "pos-1")),
        (
            "kitchen of another kitchen",
            node.kitchen("k-corktown-smoke"),
        ),
        (
            "fridge of another fridge",
            node.anonymous().with_token(&token(
                "fridge",
                "f-fox",
                &["--fridge-id", "f-fox-theatre"],
            )),
        ),
        ("anonymous", node.anonymous()),
    ]
}

/// Alice's order, plan and waitlist entry, and the other ids the routes take.
async fn alices_things(node: &Node) -> (String, String, String) {
    let alice = node.as_role("customer", "alice");
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order_id = r.body["order_id"].as_str().expect("order id").to_string();
    let earliest: NaiveDate = alice.earliest_change_date().await;
    // Two weeks out: beyond the materialisation horizon, so the schedule
    // makes no charge or order of its own while the test watches the log.
    let start = earliest + chrono::Duration::days(14);
    let days: Vec<Value> = (1..=5)
        .map(|w| json!({"weekday": w, "meal_id": MEAL}))
        .collect();
    let r = alice
        .create_plan(json!({
            "fridge_id": FRIDGE, "days": days, "start_date": start,
            "end_date": start + chrono::Duration::days(13), "payment_method": "tok_visa",
        }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let plan_id = r.body["plan_id"].as_str().expect("plan id").to_string();
    let r = node.admin().set_stock("f-corktown", &[(MEAL, 0)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = alice
        .post(
            "/v1/waitlist",
            json!({"meal_id": MEAL, "fridge_id": "f-corktown"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entry_id = r.body["entry_id"].as_str().expect("entry id").to_string();
    (order_id, plan_id, entry_id)
}

fn routes(
    order_id: &str,
    plan_id: &str,
    entry_id: &str,
) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method as M;
    let meal = meal_spec("Stolen salad", 100);
    let fridge = fridge_spec("Hijacked", 42.3316, -83.0466);
    vec![
        (M::GET, format!("/v1/orders/{order_id}"), None),
        (M::POST, format!("/v1/orders/{order_id}/cancel"), None),
        (M::GET, format!("/v1/subscriptions/{plan_id}"), None),
        (
            M::PATCH,
            format!("/v1/subscriptions/{plan_id}"),
            Some(json!({"paused": true})),
        ),
        (
            M::PATCH,
            format!("/v1/subscriptions/{plan_id}"),
            Some(json!({"payment_method": "tok_thief"})),
        ),
        (M::DELETE, format!("/v1/subscriptions/{plan_id}"), None),
        (M::GET, format!("/v1/waitlist/{entry_id}"), None),
        (M::DELETE, format!("/v1/waitlist/{entry_id}"), None),
        (
            M::DELETE,
            format!("/v1/subscriptions/{plan_id}?refund=true"),
            None,
        ),
        (M::PUT, format!("/v1/admin/meals/{MEAL}"), Some(meal)),
        (M::DELETE, format!("/v1/admin/meals/{MEAL}"), None),
        (M::GET, format!("/v1/admin/fridges/{FRIDGE}"), None),
        (M::PUT, format!("/v1/admin/fridges/{FRIDGE}"), Some(fridge)),
        (
            M::PUT,
            format!("/v1/admin/fridges/{FRIDGE}/stock"),
            Some(json!({"counts": [{"meal_id": MEAL, "units": 0}]})),
        ),
        (
            M::POST,
            format!("/v1/admin/fridges/{FRIDGE}/quarantine/lift"),
            Some(json!({})),
        ),
        (
            M::PUT,
            "/v1/admin/calendar/2030-01-07".to_string(),
            Some(json!({"working": false})),
        ),
        (
            M::GET,
            "/v1/admin/calendar?from=2030-01-07&to=2030-01-13".to_string(),
            None,
        ),
        // The whole event log: every customer's orders and plans.
        (M::GET, "/v1/admin/log?after=0".to_string(), None),
        (
            M::GET,
            "/v1/kitchens/k-midtown-greens/prep?date=2030-01-07".to_string(),
            None,
        ),
        (
            M::POST,
            "/v1/kitchens/k-midtown-greens/events".to_string(),
            Some(json!({"stage": "prepared", "date": "2030-01-07"})),
        ),
        // Issue 13: the fleet of fridges, par levels, a kitchen's pick list
        // and insights, the district's and the fleet's.
        (M::GET, "/v1/admin/fridges".to_string(), None),
        (
            M::PUT,
            format!("/v1/admin/fridges/{FRIDGE}/par/{MEAL}"),
            Some(json!({"units": 9})),
        ),
        (M::GET, format!("/v1/admin/par?fridge_id={FRIDGE}"), None),
        (M::GET, "/v1/admin/par/suggested?days=7".to_string(), None),
        (
            M::POST,
            "/v1/admin/par/suggested/apply?days=7".to_string(),
            Some(json!({})),
        ),
        (
            M::GET,
            "/v1/kitchens/k-midtown-greens/picklist?date=2030-01-07".to_string(),
            None,
        ),
        (M::GET, "/v1/admin/insights".to_string(), None),
        (
            M::GET,
            "/v1/kitchens/k-midtown-greens/insights".to_string(),
            None,
        ),
        (
            M::GET,
            "/v1/admin/fleet/insights?date=2030-01-07".to_string(),
            None,
        ),
    ]
}

#[tokio::test]
async fn no_one_but_the_owner_or_an_operator_reaches_an_object() {
    let node = Node::start(&["--demo", "--grace-window-secs", "30"]).await;
    let (order_id, plan_id, entry_id) = alices_things(&node).await;
    let seq = node.log_seq().await;
    let mut wrong: Vec<String> = vec![];
    let mut tried = 0;
    for (method, path, body) in routes(&order_id, &plan_id, &entry_id) {
        for (who, client) in intruders(&node) {
            let attempt = Attempt {
                who,
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            };
            let r = client
                .send(
                    attempt.method.clone(),
                    &attempt.path,
                    attempt.body.clone().map(RawBody::Json),
                )
                .await;
            tried += 1;
            // `not_found` is the router's own answer: a path that names no
            // route would test nothing.
            if ![401, 403, 404].contains(&r.status)
                || r.code() == "<no error code>"
                || r.code() == "not_found"
            {
                wrong.push(format!(
                    "{} {} {} → {} {}",
                    attempt.who, attempt.method, attempt.path, r.status, r.body
                ));
            }
            if attempt.who == "anonymous" && r.status != 401 {
                wrong.push(format!("anonymous {} {} → {}", method, path, r.status));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {tried} reached:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        node.log_seq().await,
        seq,
        "a refused request changed the log"
    );

    // Pickup: customers never confirm a pickup, and a fridge token only at its fridge.
    let alice = node.as_role("customer", "alice");
    let pickup = format!("/v1/orders/{order_id}/pickup");
    for client in [
        alice,
        node.as_role("customer", "bob"),
        node.anonymous()
            .with_token(&token("fridge", "f-fox", &["--fridge-id", "f-fox-theatre"])),
    ] {
        let r = client.post(&pickup, json!({"pickup_code": "123456"})).await;
        assert!(
            [401, 403].contains(&r.status),
            "{pickup} → {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(node.log_seq().await, seq);

    // Bob's view of Alice's things: not even their existence.
    let bob = node.as_role("customer", "bob");
    let r = bob.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!((r.status, r.code()), (404, "unknown_order"), "{}", r.body);
    let r = bob.get(&format!("/v1/subscriptions/{plan_id}")).await;
    assert_eq!((r.status, r.code()), (404, "unknown_plan"), "{}", r.body);
    let r = bob.plans().await;
    assert_eq!(r.status, 200);
    let plans = r.body["plans"].as_array().cloned().unwrap_or_default();
    assert!(plans.iter().all(|p| p["plan_id"] != plan_id.as_str()));
}
