//! Issue 11: districts find each other in the region directory (a
//! JetStream KV bucket on a 3-node NATS cluster), route what is not
//! theirs, refuse overlapping prefixes, and keep routing when NATS fails.

use std::time::Duration;

use larder_tests::fleet::*;
use larder_tests::*;
use serde_json::{json, Value};

const PAYMENT_DEADLINE: Duration = Duration::from_secs(30);
/// After a server is lost: a stream leader is elected again and a pull
/// that died is noticed (two 2 s heartbeats) before payment flows again.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(45);

/// Two districts on one cluster: downtown (with the demo data) and west.
use larder_tests::fleet::TwoDistricts as Fleet;

async fn locate(node: &Node, (lat, lon): (f64, f64)) -> Resp {
    node.anonymous()
        .get(&format!("/v1/locate?lat={lat}&lon={lon}"))
        .await
}

fn located(district_id: &str, url: &str) -> Value {
    json!({"district_id": district_id, "url": url})
}

#[tokio::test]
async fn two_districts_find_each_other_and_either_answers_for_both() {
    let f = Fleet::start().await;
    for node in [&f.downtown, &f.west] {
        let r = locate(node, DOWNTOWN).await;
        assert_eq!(
            (r.status, &r.body),
            (200, &located("detroit-downtown", &f.downtown.base))
        );
        let r = locate(node, WEST).await;
        assert_eq!(
            (r.status, &r.body),
            (200, &located("detroit-west", &f.west.base))
        );
        let r = locate(node, NOWHERE).await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "not_served");
    }
}

#[tokio::test]
async fn a_catalog_request_for_another_districts_point_is_sent_on() {
    let f = Fleet::start().await;
    let (lat, lon) = WEST;
    let path = format!("/v1/catalog?lat={lat}&lon={lon}&radius_m=1000");
    let r = f.downtown.anonymous().get(&path).await;
    assert_eq!(r.status, 421, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "misdirected");
    assert_eq!(r.body["error"]["district_id"], "detroit-west");
    assert_eq!(r.body["error"]["url"], f.west.base.as_str());
    // Following it works: the west node answers for its own point.
    let r = f.west.anonymous().get(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn an_overlapping_district_is_refused_until_the_other_leaves() {
    let mut f = Fleet::start().await;
    let corktown = district_config(f.configs.path(), "detroit-corktown", &["dpsbv1"]);
    let urls = f.nats.urls();
    let (status, stderr) = serve_until_exit(&corktown, &["--nats-url", &urls]).await;
    assert!(!status.success(), "an overlapping district must not start");
    assert!(
        stderr.contains("detroit-downtown") && stderr.contains("overlaps"),
        "the error names the other district: {stderr}"
    );
    // Downtown leaves on SIGTERM: its entry goes at once, not after the TTL.
    assert!(f
        .downtown
        .terminate(Duration::from_secs(10))
        .await
        .success());
    await_directory(&f.west, &["detroit-west"], DIRECTORY_DEADLINE).await;
    let r = locate(&f.west, DOWNTOWN).await;
    assert_eq!(r.status, 404, "nobody serves downtown now: {}", r.body);
    let corktown = corktown.to_str().expect("utf-8 path");
    let node = Node::start(&["--config", corktown, "--nats-url", &urls]).await;
    await_directory(
        &node,
        &["detroit-corktown", "detroit-west"],
        DIRECTORY_DEADLINE,
    )
    .await;
}

#[tokio::test]
async fn losing_a_nats_server_loses_nothing_and_losing_all_keeps_routing() {
    let mut f = Fleet::start().await;
    let payments = Payments::start_on(&f.nats.urls(), &["--nats-replicas", "3"]).await;
    let pos = f.downtown.as_role("pos", "pos-campus");
    let r = f
        .downtown
        .admin()
        .set_stock("f-campus-martius", &[("m-greek-salad", 5)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = |key: &'static str| {
        let pos = pos.clone();
        async move {
            let r = pos
                .order(
                    "f-campus-martius",
                    &[("m-greek-salad", 1)],
                    "tok_visa",
                    Some(key),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["order_id"].as_str().expect("order id").to_string()
        }
    };
    let first = order("before").await;
    f.downtown
        .await_status(&first, "purchased", PAYMENT_DEADLINE)
        .await;

    f.nats.kill(0);
    // Payments (R3 streams) still flow.
    let second = order("after").await;
    f.downtown
        .await_status(&second, "purchased", FAILOVER_DEADLINE)
        .await;
    // The directory (an R3 bucket) still takes heartbeats and registrations:
    // west restarts on a new port and downtown learns its new URL.
    f.west.restart().await;
    let learned = async {
        loop {
            let r = locate(&f.downtown, WEST).await;
            if r.body["url"] == f.west.base.as_str() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(DIRECTORY_DEADLINE, learned)
        .await
        .is_err()
    {
        panic!(
            "downtown never learned west's new URL {}: locate {}, readyz {}",
            f.west.base,
            locate(&f.downtown, WEST).await.body,
            f.downtown.readyz().await
        );
    }
    for id in [&first, &second] {
        assert_eq!(
            payments.ledger(id).await["ledger"]["charges"],
            1,
            "charged once"
        );
    }

    // Every server gone: each node routes from its copy and says so.
    f.nats.kill_all();
    eventually(
        "downtown's copy to turn stale",
        DIRECTORY_DEADLINE,
        || async { f.downtown.readyz().await["directory"]["state"] == "stale" },
    )
    .await;
    let r = locate(&f.downtown, WEST).await;
    assert_eq!(
        (r.status, &r.body),
        (200, &located("detroit-west", &f.west.base))
    );
    let ready = f.downtown.readyz().await;
    assert_eq!(
        ready["ready"], true,
        "a district sells with NATS down: {ready}"
    );
}

#[tokio::test]
async fn an_area_across_the_border_names_the_node_serving_the_rest() {
    let f = Fleet::start().await;
    let mut across = WsClient::connect(&f.downtown, None).await;
    // On the downtown (dpsbv) / west (dpsbu) border, 2 km around.
    let border = json!({"lat": 42.3413, "lon": -83.1006, "radius_m": 2000});
    across.subscribe(json!({"areas": [border]})).await;
    let is_elsewhere = |m: &Value| m["type"] == "elsewhere";
    let elsewhere = match across.seen_matching(is_elsewhere).pop() {
        Some(m) => m,
        None => across.expect("elsewhere", is_elsewhere).await,
    };
    assert_eq!(
        elsewhere["districts"],
        json!([{"district_id": "detroit-west", "url": f.west.base}])
    );
    // An area well inside downtown names nobody: its answer comes before
    // the pong that follows it.
    let mut inside = WsClient::connect(&f.downtown, None).await;
    let campus = json!({"lat": 42.3316, "lon": -83.0466, "radius_m": 300});
    inside.subscribe(json!({"areas": [campus]})).await;
    inside.send_json(json!({"type": "ping"})).await;
    inside.expect("pong", |m| m["type"] == "pong").await;
    assert!(inside.seen_matching(is_elsewhere).is_empty());
}
