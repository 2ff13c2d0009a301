//! Security hardening, as an outside tester would try it: every error is
//! the JSON shape in our words, roles stay in their lane, WebSocket order
//! streams end with their token, and abusive callers meet limits (429 with
//! `Retry-After`) while everyone else carries on.

use std::time::Duration;

use larder_tests::ws::WsClient;
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";

/// A raw GET with extra headers, for what `Client` never sends.
async fn raw_get(node: &Node, path: &str, headers: &[(String, String)]) -> Resp {
    raw_request(node, reqwest::Method::GET, path, headers, None).await
}

/// A raw request with extra headers and an optional body, sent with no
/// `content-type` unless `headers` give one.
async fn raw_request(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Resp {
    let mut req = node.http.request(method, node.url(path));
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    Resp {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn assert_json_error(r: &Resp, status: u16, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    let ctype = r.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(ctype, Some("application/json"), "{code}");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{code} has a message");
}

#[tokio::test]
async fn every_layer_answers_errors_as_json() {
    let node = Node::start_demo().await;
    let r = raw_get(&node, "/v1/meals/%FF%FE", &[]).await;
    assert_json_error(&r, 400, "invalid_path");

    let long = format!("/v1/meals/{}", "a".repeat(9 * 1024));
    assert_json_error(&raw_get(&node, &long, &[]).await, 414, "uri_too_long");

    let many: Vec<(String, String)> = (0..120)
        .map(|i| (format!("x-filler-{i}"), "1".to_string()))
        .collect();
    let r = raw_get(&node, "/v1/meals/m-greek-salad", &many).await;
    assert_json_error(&r, 431, "headers_too_large");
    let big = vec![("x-big".to_string(), "y".repeat(40 * 1024))];
    let r = raw_get(&node, "/v1/meals/m-greek-salad", &big).await;
    assert_json_error(&r, 431, "headers_too_large");

    let admin = node.admin();
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    let r = admin.put_raw("/v1/admin/meals/m-kale-caesar", &huge).await;
    assert_json_error(&r, 413, "payload_too_large");
    let r = admin
        .post("/v1/admin/fridges/f-lafayette/quarantine/lift", json!({}))
        .await;
    assert_ne!(r.status, 413);

    // Routing, before any handler or token check: one code per condition,
    // whichever route and depth.
    for path in ["/v1/nope", "/v2/catalog", "/v1/subscriptions/p-1/nope"] {
        assert_json_error(&raw_get(&node, path, &[]).await, 404, "not_found");
    }
    use reqwest::Method as M;
    for (method, path, allow) in [
        (M::DELETE, "/v1/catalog", "GET,HEAD"),
        (M::GET, "/v1/orders/o-1/pickup", "POST"),
        (M::PUT, "/v1/subscriptions", "POST,GET,HEAD"),
        (M::POST, "/v1/subscriptions/p-1", "GET,HEAD,PATCH,DELETE"),
    ] {
        let r = raw_request(&node, method, path, &[], None).await;
        assert_json_error(&r, 405, "method_not_allowed");
        // The methods the route takes, in any order.
        let mut allowed: Vec<&str> = r
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        let mut expected: Vec<&str> = allow.split(',').collect();
        allowed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(allowed, expected, "{path}");
    }

    // A JSON body sent as another media type, or as none, to a route the
    // caller may use: 415, whichever route.
    let bearer = |role: &str, sub: &str| {
        (
            "authorization".to_string(),
            format!("Bearer {}", token(role, sub, &[])),
        )
    };
    let customer = bearer("customer", "alice");
    let operator = bearer("admin", "ops-1");
    for (method, path, caller) in [
        (M::POST, "/v1/orders", &customer),
        (M::POST, "/v1/subscriptions", &customer),
        (M::PATCH, "/v1/subscriptions/p-1", &customer),
        (M::PUT, "/v1/admin/meals/m-kale-caesar", &operator),
    ] {
        for ctype in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let mut headers = vec![caller.clone()];
            headers.extend(ctype.map(|c| ("content-type".to_string(), c.to_string())));
            let r = raw_request(&node, method.clone(), path, &headers, Some("{}")).await;
            assert_json_error(&r, 415, "unsupported_media_type");
        }
    }
}

#[tokio::test]
async fn error_messages_name_no_library_internals_and_echo_no_long_inputs() {
    let node = Node::start_demo().await;
    let customer = node.as_role("customer", "alice");
    let r = customer
        .order_body(
            json!({"fridge_id": FRIDGE, "items": [{"meal_id": MEAL, "qty": "two"}], "payment_method": "tok_visa"}),
            None,
        )
        .await;
    assert_json_error(&r, 422, "invalid_body");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("qty"), "names the field: {message}");
    assert!(
        !message.contains("line")
            && !message.contains("column")
            && !message.contains("deserialize"),
        "{message}"
    );

    // A token with another algorithm: our words, not jsonwebtoken's list.
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "role": "customer", "exp": unix_now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .expect("hs256");
    let r = node.anonymous().with_token(&hs256).get("/v1/orders").await;
    assert_json_error(&r, 401, "invalid_token");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(message, "invalid token: token must be signed with EdDSA");

    let id = "m".repeat(6000);
    let r = node.anonymous().get(&format!("/v1/meals/{id}")).await;
    assert!(r.status == 400 || r.status == 404, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.chars().count() <= 201, "{} chars", message.len());
}

/// JSON has one number type: `4.0` is the integer 4, as the OpenAPI
/// description's `integer` (JSON Schema) says, so a body that is valid by
/// the description is accepted; a fraction is still refused.
#[tokio::test]
async fn integral_floats_are_integers() {
    let node = Node::start_demo().await;
    let admin = node.admin();
    let path = format!("/v1/admin/fridges/{FRIDGE}/stock");
    let body = |units: &str| format!(r#"{{"counts":[{{"meal_id":"{MEAL}","units":{units}}}]}}"#);
    let r = admin.put_raw(&path, &body("4.0")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["meals"][0]["on_hand"], 4);
    let r = admin.put_raw(&path, &body("4.5")).await;
    assert_json_error(&r, 422, "invalid_body");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("units"), "names the field: {message}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let node = Node::start_demo().await;
    let token = token("customer", "alice", &[]);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = vec![("authorization".to_string(), format!("{scheme} {token}"))];
        let r = raw_get(&node, "/v1/orders", &auth).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    let auth = vec![("authorization".to_string(), format!("Basic {token}"))];
    assert_json_error(
        &raw_get(&node, "/v1/orders", &auth).await,
        401,
        "unauthenticated",
    );
}

#[tokio::test]
async fn a_kitchen_token_stays_in_its_kitchen() {
    let node = Node::start_demo().await;
    let unscoped = node.as_role("kitchen", "staff-somewhere");
    let r = unscoped.set_stock(FRIDGE, &[(MEAL, 9)]).await;
    assert_json_error(&r, 403, "forbidden");
    let other = node.kitchen("k-corktown-smoke");
    let r = other.set_stock(FRIDGE, &[(MEAL, 9)]).await;
    assert_json_error(&r, 403, "forbidden");
    let own = node.kitchen("k-midtown-greens");
    let r = own.set_stock(FRIDGE, &[(MEAL, 9)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Lifting a quarantine is the operator's call, whichever kitchen asks.
    let lift = "/v1/admin/fridges/f-lafayette/quarantine/lift";
    assert_json_error(&own.post(lift, json!({})).await, 403, "forbidden");
    let r = node.admin().post(lift, json!({})).await;
    assert_json_error(&r, 409, "not_quarantined");
    assert_eq!(node.available(FRIDGE, MEAL).await, 9);
}

#[tokio::test]
async fn only_a_customer_follows_orders_and_only_their_own() {
    let node = Node::start_demo().await;
    let pos_as_alice = token("pos", "alice", &[]);
    let mut ws = WsClient::connect(&node, Some(&pos_as_alice)).await;
    ws.send_json(json!({"type": "subscribe", "orders": true}))
        .await;
    let refused = ws.expect("a refusal", |m| m["type"] == "error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // Alice's order is not pushed to that connection.
    let alice = node.as_role("customer", "alice");
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    ws.send_json(json!({"type": "ping"})).await;
    ws.expect("pong", |m| m["type"] == "pong").await;
    assert!(ws.seen_matching(|m| m["type"] == "order").is_empty());
}

#[tokio::test]
async fn an_order_stream_ends_with_its_token_unless_renewed() {
    let node = Node::start(&["--demo", "--dev-clock", "--ws-ping-interval-secs", "1"]).await;
    let now = node.clock_now().await.timestamp() as u64;
    let short = token_with_claims(&json!({"sub": "alice", "role": "customer", "exp": now + 60}));
    let fresh = token_with_claims(&json!({"sub": "alice", "role": "customer", "exp": now + 7200}));
    let bob = token_with_claims(&json!({"sub": "bob", "role": "customer", "exp": now + 7200}));

    let mut lapsing = WsClient::connect(&node, Some(&short)).await;
    lapsing.subscribe(json!({"orders": true})).await;
    let mut renewed = WsClient::connect(&node, Some(&short)).await;
    renewed.subscribe(json!({"orders": true})).await;
    renewed
        .send_json(json!({"type": "reauth", "token": bob}))
        .await;
    let refused = renewed
        .expect("another subject refused", |m| m["type"] == "error")
        .await;
    assert_eq!(refused["code"], "token_mismatch", "{refused}");
    renewed
        .send_json(json!({"type": "reauth", "token": fresh}))
        .await;
    renewed.send_json(json!({"type": "ping"})).await;
    renewed.expect("pong", |m| m["type"] == "pong").await;

    // Past exp and the 30 s leeway, by the node's clock.
    node.advance_clock(120).await;
    let ended = lapsing.ended(Duration::from_secs(10)).await;
    assert_eq!(
        ended,
        Some(ws::Ended::Closed {
            code: 4001,
            reason: "token expired".into()
        })
    );
    renewed.send_json(json!({"type": "ping"})).await;
    let before = renewed.seen.len();
    renewed.expect("still open", |m| m["type"] == "pong").await;
    assert!(renewed.seen.len() > before);
}

#[tokio::test]
async fn one_caller_may_hold_only_so_many_websockets() {
    let node = Node::start(&["--demo", "--ws-max-connections-per-caller", "2"]).await;
    let alice = token("customer", "alice", &[]);
    let _one = WsClient::connect(&node, Some(&alice)).await;
    let _two = WsClient::connect(&node, Some(&alice)).await;
    match WsClient::try_connect(&node, Some(&alice)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        Err(e) => panic!("expected a 429 refusal, got {e}"),
        Ok(_) => panic!("a third connection for alice was accepted"),
    }
    // Another caller, and anonymous connections, are not affected.
    let bob = token("customer", "bob", &[]);
    let _bob = WsClient::connect(&node, Some(&bob)).await;
    let _anon = WsClient::connect(&node, None).await;
}

#[tokio::test]
async fn a_fast_writer_is_limited_and_told_when_to_come_back() {
    let node = Node::start(&[
        "--demo",
        "--writes-per-sec-per-caller",
        "1",
        "--write-burst-per-caller",
        "3",
    ])
    .await;
    let mallory = node.as_role("customer", "mallory");
    let mut statuses = vec![];
    let mut limited = None;
    for _ in 0..10 {
        let r = mallory.cancel("01JDZZZZZZZZZZZZZZZZZZZZZZ").await;
        statuses.push(r.status);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert_json_error(&limited, 429, "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    // Another customer is not slowed by mallory.
    let alice = node.as_role("customer", "alice");
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(node.metric("larder_rate_limited_total").await >= 1);
}

#[tokio::test]
async fn catalog_reads_are_limited_per_address() {
    let node = Node::start(&[
        "--demo",
        "--catalog-reads-per-sec-per-ip",
        "1",
        "--catalog-burst-per-ip",
        "2",
    ])
    .await;
    let anon = node.anonymous();
    let mut statuses = vec![];
    for _ in 0..10 {
        let r = anon.get("/v1/meals/m-greek-salad").await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_customer_cannot_hoard_a_fridge_by_holding_orders() {
    let node = Node::start_demo().await;
    let alice = node.as_role("customer", "alice");
    for _ in 0..3 {
        let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let before = node.available(FRIDGE, MEAL).await;
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_json_error(&r, 429, "too_many_held_orders");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        node.available(FRIDGE, MEAL).await,
        before,
        "nothing reserved"
    );
    // Bob is not affected.
    let bob = node.as_role("customer", "bob");
    let r = bob.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn cancelling_the_same_meal_again_and_again_earns_a_cooldown() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let alice = node.as_role("customer", "alice");
    for _ in 0..3 {
        let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let order_id = r.body["order_id"].as_str().expect("id").to_string();
        let r = alice.cancel(&order_id).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_json_error(&r, 429, "cancel_cooldown");
    let retry = r.body["error"]["retry_after_secs"].as_u64().expect("secs");
    assert!((1..=600).contains(&retry), "{retry}");
    // Other meals are fine, and the meal comes back after the cooldown.
    let r = alice
        .order(FRIDGE, &[("m-salmon-poke", 1)], "tok_visa", None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    node.advance_clock(601).await;
    let r = alice.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
}
