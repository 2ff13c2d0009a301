//! Issue 13, parts 1 and 2: the insight numbers of a scripted day of known
//! orders, exactly; a kitchen's slice; a restart rebuilding the same
//! numbers; and the fleet view of two districts on a NATS cluster.

use std::time::Duration;

use larder_tests::fleet::{district_config, NatsCluster, DOWNTOWN_PREFIXES, WEST_PREFIXES};
use larder_tests::*;
use serde_json::{json, Value};

const FRIDGE: &str = "f-campus-martius";
/// A meal of the script's own kitchen, so the demo's stock and its expiry
/// never mix into the numbers: $10.00, best before 6 hours after arrival.
const MEAL: &str = "m-insight-bowl";
const KITCHEN: &str = "k-insights";
const DEADLINE: Duration = Duration::from_secs(20);

struct Day {
    _nats: Nats,
    _payments: Payments,
    node: Node,
    date: String,
}

impl Day {
    /// A node on a fresh district-local day (no demo event on it), 10:00
    /// local, with 12 units of MEAL in FRIDGE.
    async fn start() -> Day {
        let nats = Nats::start().await;
        let payments = Payments::start(&nats, &[]).await;
        let node = Node::start_with_nats(&nats, &[]).await;
        node.advance_clock(2 * 24 * 3600).await;
        node.start_the_day().await;
        let mut spec = meal_spec("Insight bowl", 1000);
        spec["kitchen_id"] = json!(KITCHEN);
        spec["shelf_life_hours"] = json!(6);
        let r = node.admin().put_meal(MEAL, spec).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
        let r = node.admin().set_stock(FRIDGE, &[(MEAL, 12)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let date = node.admin().get("/v1/admin/insights").await.body["to"]
            .as_str()
            .expect("today")
            .to_string();
        Day {
            _nats: nats,
            _payments: payments,
            node,
            date,
        }
    }

    fn pos(&self) -> Client {
        self.node.as_role("pos", "pos-campus")
    }

    /// A POS order of `qty` units, paid at once; its pickup code.
    async fn bought(&self, qty: u32) -> (String, String) {
        let r = self
            .pos()
            .order(FRIDGE, &[(MEAL, qty)], "tok_visa", None)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["order_id"].as_str().unwrap().to_string();
        let order = self.node.await_status(&id, "purchased", DEADLINE).await;
        (id, order["pickup_code"].as_str().unwrap().to_string())
    }

    async fn pick_up(&self, (id, code): &(String, String)) {
        let r = self.pos().pickup(id, code).await;
        assert_eq!(r.body["status"], "picked_up", "{}", r.body);
    }

    /// The day's report once `cond` holds (the projection follows the
    /// writer; it never blocks it).
    async fn report_when(&self, query: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/v1/admin/insights?from={0}&to={0}{query}", self.date);
        let admin = self.node.admin();
        let mut last = Value::Null;
        let start = std::time::Instant::now();
        while start.elapsed() < DEADLINE {
            let r = admin.get(&path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            if cond(&r.body) {
                return r.body;
            }
            last = r.body;
            tokio::time::sleep(POLL_STEP).await;
        }
        panic!("the report never matched; last: {last}");
    }
}

/// Ten orders at 10:00, 11:00 and 12:00 local: seven bought (one of them
/// never collected), two cancelled in the grace window, one declined.
async fn scripted_day() -> Day {
    let day = Day::start().await;
    let customer = day.node.as_role("customer", "alice");
    let p1 = day.bought(2).await;
    let p2 = day.bought(1).await;
    for _ in 0..2 {
        let r = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let cancelled = customer.cancel(r.body["order_id"].as_str().unwrap()).await;
        assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    }
    let r = day
        .pos()
        .order(FRIDGE, &[(MEAL, 1)], "tok_decline", None)
        .await;
    day.node
        .await_status(r.body["order_id"].as_str().unwrap(), "refused", DEADLINE)
        .await;
    let r = customer.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    let a3_id = r.body["order_id"].as_str().unwrap().to_string();
    day.node.advance_clock(30).await; // past the app's grace window
    let a3 = day.node.await_status(&a3_id, "purchased", DEADLINE).await;
    let a3 = (a3_id, a3["pickup_code"].as_str().unwrap().to_string());
    for o in [&p1, &p2, &a3] {
        day.pick_up(o).await;
    }
    day.node.advance_clock(3600).await;
    let p4 = day.bought(1).await;
    let _p5_never_collected = day.bought(1).await;
    day.pick_up(&p4).await;
    day.node.advance_clock(3600).await;
    for _ in 0..2 {
        let p = day.bought(1).await;
        day.pick_up(&p).await;
    }
    // 17:00 local: p5's pickup window (4 h) is over, and the bowls stocked
    // at 10:00 are past their best-before (6 h).
    day.node.advance_clock(5 * 3600).await;
    day
}

/// A GET answered in CSV: status, content type, text.
async fn get_csv(c: &Client, path: &str) -> (u16, String, String) {
    let mut req = c.http.get(format!("{}{}", c.node_base, path));
    if let Some(t) = &c.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, r.text().await.expect("text"))
}

fn own_rows(report: &Value) -> Vec<Value> {
    report["waste"]["fridges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kitchen_id"] == KITCHEN)
        .cloned()
        .collect()
}

fn settled(r: &Value) -> bool {
    r["volumes"]["days"][0]["unclaimed"] == 1
        && own_rows(r).first().is_some_and(|w| w["expired"] == 5)
}

#[tokio::test]
async fn a_scripted_day_gives_exact_counts_rates_and_waste() {
    let day = scripted_day().await;
    let r = day.report_when("", settled).await;
    assert_eq!(r["district"], "detroit-downtown");
    assert_eq!(r["time_zone"], "UTC-05:00");
    assert_eq!(
        r["volumes"]["days"],
        json!([{"date": day.date, "placed": 10, "purchased": 7, "picked_up": 6,
            "cancelled": 2, "refused": 1, "timed_out": 0, "refunded": 0, "unclaimed": 1}])
    );
    let hours = r["volumes"]["hours"].as_array().unwrap();
    let placed: Vec<u64> = (10..=12)
        .map(|h| hours[h]["placed"].as_u64().unwrap())
        .collect();
    assert_eq!(placed, [6, 2, 2], "orders by local hour of placement");
    assert_eq!(
        r["rates"],
        json!({"fulfilment": 0.6, "cancellation": 0.2, "refusal": 0.1, "timeout": 0.0})
    );
    assert_eq!(r["failed_payments"], json!({"attempts": 1, "orders": 1}));
    assert_eq!(r["processing"]["confirm_to_purchased_ms"]["count"], 7);
    assert_eq!(r["processing"]["purchased_to_picked_up_secs"]["count"], 6);
    let meal = r["popularity"]["meals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meal_id"] == MEAL)
        .cloned();
    assert_eq!(
        meal,
        Some(json!({"meal_id": MEAL, "kitchen_id": KITCHEN, "units": 8, "orders": 7}))
    );
    let hour_of_week: Vec<(u64, u64)> = r["popularity"]["hour_of_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hour"].as_u64().unwrap(), h["orders"].as_u64().unwrap()))
        .collect();
    assert_eq!(hour_of_week, [(10, 3), (11, 2), (12, 2)]);
    assert_eq!(
        own_rows(&r),
        [
            json!({"fridge_id": FRIDGE, "kitchen_id": KITCHEN, "produced": 0, "placed": 12,
            "sold": 8, "picked_up": 7, "unclaimed": 1, "expired": 5, "shrinkage_units": 0,
            "shrinkage_cents": 0, "waste_units": 5, "waste_cents": 5000})
        ]
    );

    let (status, content_type, csv) = get_csv(
        &day.node.admin(),
        &format!("/v1/admin/insights?from={0}&to={0}&format=csv", day.date),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    assert_eq!(
        csv,
        format!(
            "date,placed,purchased,picked_up,cancelled,refused,timed_out,refunded,unclaimed\n\
             {},10,7,6,2,1,0,0,1\n",
            day.date
        )
    );
}

#[tokio::test]
async fn a_kitchen_sees_its_own_slice_and_no_other() {
    let day = scripted_day().await;
    day.report_when("", settled).await;
    let path = format!("/v1/kitchens/{KITCHEN}/insights?from={0}&to={0}", day.date);
    let own = day.node.kitchen(KITCHEN).get(&path).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["kitchen_id"], KITCHEN);
    assert_eq!(own.body["waste"]["kitchens"][0]["waste_cents"], 5000);
    assert_eq!(own.body["waste"]["fridges"].as_array().unwrap().len(), 1);
    assert_eq!(
        own.body["popularity"]["meals"],
        json!([{"meal_id": MEAL, "kitchen_id": KITCHEN, "units": 8, "orders": 7}])
    );
    let (status, _, csv) = get_csv(
        &day.node.kitchen(KITCHEN),
        &format!("{path}&format=csv&section=waste_kitchens"),
    )
    .await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(
        csv,
        "kitchen_id,produced,placed,sold,picked_up,unclaimed,expired,shrinkage_units,shrinkage_cents,waste_units,waste_cents\n\
         k-insights,0,12,8,7,1,5,0,0,5,5000\n"
    );

    let other = day.node.kitchen("k-midtown-greens").get(&path).await;
    assert_eq!(other.status, 403, "{}", other.body);
    let report = day.node.kitchen(KITCHEN).get("/v1/admin/insights").await;
    assert_eq!(report.status, 403, "the district's report is for admins");
}

#[tokio::test]
async fn a_restart_rebuilds_the_same_numbers_from_the_log() {
    let mut day = scripted_day().await;
    let mut before = day.report_when("", settled).await;
    day.node.restart().await;
    let after = day.report_when("", settled).await;
    let mut after = after.clone();
    for r in [&mut before, &mut after] {
        r.as_object_mut().unwrap().remove("applied_seq");
    }
    assert_eq!(after, before);
}

#[tokio::test]
async fn bad_ranges_and_dates_are_422_and_change_nothing() {
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let admin = node.admin();
    let seq = node.log_seq().await;
    for (query, code) in [
        ("from=2026-03-05&to=2026-03-01", "invalid_range"),
        ("from=2026-01-01&to=2026-04-04", "invalid_range"),
        ("from=2026-02-30", "invalid_date"),
        ("to=yesterday", "invalid_date"),
        ("format=xml", "invalid_format"),
        ("format=csv&section=secrets", "invalid_section"),
    ] {
        let r = admin.get(&format!("/v1/admin/insights?{query}")).await;
        assert_eq!((r.status, r.code()), (422, code), "{query}: {}", r.body);
    }
    let r = admin.get("/v1/admin/insights?since=2026-01-01").await;
    assert_eq!(r.status, 400, "unknown parameters are refused: {}", r.body);
    let r = admin
        .get("/v1/admin/insights?from=2026-01-01&to=2026-04-03")
        .await;
    assert_eq!(r.status, 200, "93 days is the longest range: {}", r.body);
    assert_eq!(r.body["volumes"]["days"].as_array().unwrap().len(), 93);
    let r = node
        .kitchen("k-midtown-greens")
        .get("/v1/kitchens/k-midtown-greens/insights?format=csv&section=volumes")
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid_section"), "{}", r.body);
    let r = admin.get("/v1/admin/fleet/insights").await;
    assert_eq!(
        (r.status, r.code()),
        (503, "fleet_unavailable"),
        "no NATS here"
    );
    assert_eq!(node.log_seq().await, seq, "nothing was written");
}

/// A district node on `nats` publishing its insights every second.
async fn publishing_node(
    nats: &NatsCluster,
    configs: &tempfile::TempDir,
    id: &str,
    prefixes: &[&str],
    demo: bool,
) -> Node {
    let config = district_config(configs.path(), id, prefixes);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[insights]\npublish_secs = 1\n");
    std::fs::write(&config, text).unwrap();
    let urls = nats.urls();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--nats-url",
        &urls,
        "--nats-replicas",
        "3",
        "--dev-clock",
    ];
    if demo {
        args.push("--demo");
    }
    Node::start(&args).await
}

#[tokio::test]
async fn the_fleet_view_shows_both_districts_side_by_side_from_any_node() {
    let nats = NatsCluster::start().await;
    let configs = tempfile::tempdir().unwrap();
    let downtown = publishing_node(
        &nats,
        &configs,
        "detroit-downtown",
        &DOWNTOWN_PREFIXES,
        true,
    )
    .await;
    let west = publishing_node(&nats, &configs, "detroit-west", &WEST_PREFIXES, false).await;
    // One POS order downtown (no payments service: it stays placed).
    let r = downtown
        .as_role("pos", "pos-campus")
        .order(FRIDGE, &[("m-greek-salad", 1)], "tok_visa", None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let date = downtown.admin().get("/v1/admin/insights").await.body["to"].clone();
    let date = date.as_str().unwrap().to_string();
    let path = format!("/v1/admin/fleet/insights?date={date}");
    // Asked of the west node: the board is global.
    let seen = west
        .admin()
        .await_get(&path, DEADLINE, |b| {
            b["districts"].as_array().map(Vec::len) == Some(2)
                && b["districts"][0]["days"]["placed"] == 1
        })
        .await;
    assert_eq!(seen["date"], date);
    assert_eq!(seen["districts"][0]["district"], "detroit-downtown");
    assert_eq!(seen["districts"][1]["district"], "detroit-west");
    assert_eq!(seen["districts"][1]["days"]["placed"], 0);
    assert_eq!(seen["districts"][0]["hours"].as_array().unwrap().len(), 24);
    assert_eq!(seen["stale"], json!([]));
    let keys: Vec<&str> = seen["districts"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        !keys
            .iter()
            .any(|k| ["waste", "popularity", "orders"].contains(k)),
        "only the daily aggregate leaves the district: {keys:?}"
    );
}
