//! Issue 11, the travelling customer: one token orders in two districts,
//! `GET /v1/me/orders` on either node gathers both through the customer
//! index (a JetStream KV bucket on a 3-node NATS cluster), and with one
//! node stopped the other answers with its own orders and marks the
//! stopped district `partial`.

use std::time::Duration;

use larder_tests::fleet::*;
use larder_tests::*;
use serde_json::Value;

/// The index is written off the request path: an order shows in the other
/// node's answer once its district's index task has put the key.
const INDEX_DEADLINE: Duration = Duration::from_secs(15);
/// After a NATS server is lost: stream leaders are elected again before the
/// index answers (as payments in `fleet.rs`); until then a node answers
/// with its own district and `index: "unavailable"`.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(45);

/// Orders one unit of `meal` at `fridge` as `customer`; its id.
async fn order(customer: &Client, fridge: &str, meal: &str) -> String {
    let r = customer
        .order(fridge, &[(meal, 1)], "tok_visa", Some(fridge))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().expect("order id").to_string()
}

/// `(order_id, district_id)` of every order in a `/v1/me/orders` answer, sorted.
fn gathered(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            (
                o["order_id"].as_str().unwrap_or_default().to_string(),
                o["district_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `district_id → status` of a `/v1/me/orders` answer.
fn statuses(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["districts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["district_id"].as_str().unwrap_or_default().to_string(),
                d["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Polls `/v1/me/orders` on `node` until it lists exactly `want`, for up
/// to `deadline`; the last answer.
async fn await_gathered(
    node: &Node,
    customer: &Client,
    want: &[(String, String)],
    deadline: Duration,
) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let r = customer.get("/v1/me/orders").await;
        assert_eq!(r.status, 200, "{}", r.body);
        if gathered(&r.body) == want {
            return r.body;
        }
        if start.elapsed() > deadline {
            panic!(
                "{} never gathered {want:?}: last answer {}",
                node.base, r.body
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two districts on a 3-node cluster with payments: downtown (demo data,
/// stock in `f-campus-martius`) and west (a fridge `f-west` with
/// `m-coney` registered here, since west has no demo data).
struct Travel {
    nats: NatsCluster,
    _payments: Payments,
    _configs: tempfile::TempDir,
    downtown: Node,
    west: Node,
}

impl Travel {
    async fn start() -> Travel {
        let TwoDistricts {
            nats,
            configs,
            downtown,
            west,
        } = TwoDistricts::start().await;
        let _payments = Payments::start_on(&nats.urls(), &["--nats-replicas", "3"]).await;

        // Stock on both sides: the demo fridge downtown, a fridge of our own
        // in the west (which has no demo data).
        let r = downtown
            .admin()
            .set_stock("f-campus-martius", &[("m-greek-salad", 5)])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        stock_west_fridge(&west).await;

        Travel {
            nats,
            _payments,
            _configs: configs,
            downtown,
            west,
        }
    }
}

#[tokio::test]
async fn a_travelling_customer_sees_every_districts_orders_and_a_stopped_one_is_partial() {
    // Every field bound: what is not would be dropped (and stopped) here.
    let Travel {
        nats: _nats,
        _payments,
        _configs,
        downtown,
        mut west,
    } = Travel::start().await;
    // One customer, one token (every node trusts the same issuer).
    let alice_downtown = downtown.as_role("customer", "alice");
    let alice_west = west.as_role("customer", "alice");
    let in_downtown = order(&alice_downtown, "f-campus-martius", "m-greek-salad").await;
    let in_west = order(&alice_west, "f-west", "m-coney").await;
    let mut want = vec![
        (in_downtown.clone(), "detroit-downtown".to_string()),
        (in_west.clone(), "detroit-west".to_string()),
    ];
    want.sort();

    for (node, alice) in [(&downtown, &alice_downtown), (&west, &alice_west)] {
        let body = await_gathered(node, alice, &want, INDEX_DEADLINE).await;
        assert_eq!(
            statuses(&body),
            vec![
                ("detroit-downtown".to_string(), "ok".to_string()),
                ("detroit-west".to_string(), "ok".to_string()),
            ],
            "{body}"
        );
        assert_eq!(body["index"], "ok", "{body}");
    }

    // Someone else sees none of it.
    let bob = downtown.as_role("customer", "bob");
    let r = bob.get("/v1/me/orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gathered(&r.body), vec![], "{}", r.body);

    // An admin asks for alice by name.
    let r = downtown.admin().get("/v1/me/orders?customer=alice").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gathered(&r.body), want, "{}", r.body);
    let r = downtown.admin().get("/v1/me/orders").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "missing_customer");
    // A customer may not name another.
    let r = bob.get("/v1/me/orders?customer=alice").await;
    assert_eq!(r.status, 403, "{}", r.body);

    // West stopped: downtown answers with its own order, west is partial.
    assert!(west.terminate(Duration::from_secs(10)).await.success());
    let r = alice_downtown.get("/v1/me/orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        gathered(&r.body),
        vec![(in_downtown.clone(), "detroit-downtown".to_string())],
        "{}",
        r.body
    );
    assert_eq!(
        statuses(&r.body),
        vec![
            ("detroit-downtown".to_string(), "ok".to_string()),
            ("detroit-west".to_string(), "partial".to_string()),
        ],
        "{}",
        r.body
    );
    let west_answer = r.body["districts"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["district_id"] == "detroit-west"))
        .cloned()
        .unwrap_or_default();
    assert!(
        west_answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a partial district says why: {}",
        r.body
    );
}

#[tokio::test]
async fn the_customer_index_keeps_working_without_one_nats_server() {
    let mut t = Travel::start().await;
    t.nats.kill(0);
    // A new customer after the loss: both districts index them on the R3
    // bucket, and either node still reads the index and gathers both.
    let carol_downtown = t.downtown.as_role("customer", "carol");
    let carol_west = t.west.as_role("customer", "carol");
    let in_downtown = order(&carol_downtown, "f-campus-martius", "m-greek-salad").await;
    let in_west = order(&carol_west, "f-west", "m-coney").await;
    let mut want = vec![
        (in_downtown, "detroit-downtown".to_string()),
        (in_west, "detroit-west".to_string()),
    ];
    want.sort();
    for (node, carol) in [(&t.downtown, &carol_downtown), (&t.west, &carol_west)] {
        let body = await_gathered(node, carol, &want, FAILOVER_DEADLINE).await;
        assert_eq!(body["index"], "ok", "{body}");
    }
}
