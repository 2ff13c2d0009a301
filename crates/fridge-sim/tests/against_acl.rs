//! The simulator against a stand-in node that mounts `fridge_acl::receive`
//! exactly as the telemetry contract describes (`docs/fridge-dialects.md`,
//! "Answers"): real HTTP, real signatures, real parsers and cursors — only
//! the event log is replaced by a map. Exercises the library and the
//! `fridge-sim` binary end to end without a region node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use fridge_acl::{FridgeCursor, FridgeFact, FridgeView, MealId, Secrets, Upload};
use fridge_sim::{
    flood, run, send, Demo, Dialect, DoorActor, FloodConfig, MealCounts, RunConfig, SimFridge,
};
use serde_json::{json, Value};
use tokio::sync::watch;

const DEMO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/demo/detroit.json"
);

struct Registered {
    dialect: Dialect,
    secret: Vec<u8>,
    cursor: FridgeCursor,
    view: FridgeView,
    facts: Vec<FridgeFact>,
}

type Fridges = Arc<Mutex<HashMap<String, Registered>>>;

struct MockNode {
    url: String,
    fridges: Fridges,
}

impl MockNode {
    /// A node that knows every demo fridge, listening on a free loopback port.
    async fn start() -> MockNode {
        let demo = Demo::load(std::path::Path::new(DEMO)).expect("demo file");
        let fridges: Fridges = Arc::new(Mutex::new(
            demo.fridges
                .into_iter()
                .map(|d| {
                    let view = FridgeView {
                        on_hand: d.stock.clone(),
                        ..FridgeView::default()
                    };
                    let f = Registered {
                        dialect: d.fridge.dialect,
                        secret: d.fridge.secret.clone(),
                        cursor: FridgeCursor::default(),
                        view,
                        facts: Vec::new(),
                    };
                    (d.fridge.id.into_string(), f)
                })
                .collect(),
        ));
        let app = Router::new()
            .route("/v1/fridges/{fridge_id}/telemetry", post(telemetry))
            .with_state(fridges.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        MockNode { url, fridges }
    }

    fn facts(&self, fridge_id: &str) -> Vec<FridgeFact> {
        self.fridges.lock().expect("lock")[fridge_id].facts.clone()
    }

    fn on_hand(&self, fridge_id: &str, meal_id: &str) -> u32 {
        let fridges = self.fridges.lock().expect("lock");
        fridges[fridge_id]
            .view
            .on_hand
            .get(meal_id)
            .copied()
            .unwrap_or(0)
    }
}

fn refusal(status: u16, code: &str, message: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"error": {"code": code, "message": message}})),
    )
}

async fn telemetry(
    State(fridges): State<Fridges>,
    Path(fridge_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut fridges = fridges.lock().expect("lock");
    let Some(f) = fridges.get_mut(&fridge_id) else {
        return refusal(404, "not_found", format!("no fridge {fridge_id}"));
    };
    let upload = Upload {
        fridge_id: &fridge_id,
        dialect: f.dialect,
        body: &body,
        timestamp: &header(fridge_acl::auth::TIMESTAMP_HEADER),
        signature: &header(fridge_acl::auth::SIGNATURE_HEADER),
    };
    let secrets = Secrets::new(&f.secret);
    match fridge_acl::receive(&upload, &secrets, &f.cursor, &f.view, Utc::now()) {
        Err(e) => refusal(e.http_status(), e.code(), e.to_string()),
        Ok(received) => {
            let t = received.translation;
            for fact in &t.facts {
                if let FridgeFact::StockCounted {
                    meal_id, on_hand, ..
                } = fact
                {
                    f.view.on_hand.insert(meal_id.clone(), *on_hand);
                }
            }
            f.cursor = t.cursor;
            f.facts.extend(t.facts);
            (
                StatusCode::ACCEPTED,
                Json(serde_json::to_value(&t.outcome).unwrap_or_default()),
            )
        }
    }
}

fn demo_fridge(id: &str) -> SimFridge {
    Demo::load(std::path::Path::new(DEMO))
        .expect("demo")
        .fridge(id)
        .expect("demo fridge")
        .fridge
        .clone()
}

fn counts(pairs: &[(&'static str, u32)]) -> MealCounts {
    pairs
        .iter()
        .map(|(m, u)| (MealId::from_static(m), *u))
        .collect()
}

/// f-campus-martius speaks coldline-lines, f-fox-theatre frostline-json.
const BOTH: [&str; 2] = ["f-campus-martius", "f-fox-theatre"];

#[tokio::test]
async fn library_scan_door_and_resend_in_both_dialects() {
    let node = MockNode::start().await;
    let http = reqwest::Client::new();
    for id in BOTH {
        let mut fridge = demo_fridge(id);
        let scan = fridge
            .scan(&counts(&[("m-kale-caesar", 5)]))
            .expect("scan builds");
        let a = send(&http, &node.url, &scan).await.expect("answer");
        assert_eq!(a.status, 202, "{id}: {}", a.body);
        assert_eq!(a.accepted().map(|a| a.applied), Some(1));
        assert_eq!(node.on_hand(id, "m-kale-caesar"), 5);

        let again = send(&http, &node.url, &scan).await.expect("answer");
        let again = again.accepted().expect("resend accepted");
        assert_eq!((again.applied, again.duplicate), (0, 1), "{id}");

        let door = fridge
            .door(
                DoorActor::Unknown,
                &counts(&[("m-kale-caesar", 2)]),
                &MealCounts::new(),
            )
            .expect("door builds");
        let a = send(&http, &node.url, &door).await.expect("answer");
        assert_eq!(a.accepted().map(|a| a.applied), Some(1), "{id}");
        assert_eq!(node.on_hand(id, "m-kale-caesar"), 3);
        assert!(node
            .facts(id)
            .iter()
            .any(|f| matches!(f, FridgeFact::Shrinkage { .. })));
    }
}

async fn sim(args: &[String]) -> (i32, Vec<Value>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fridge-sim"))
        .args(args)
        .env("FRIDGE_SIM_LOG", "warn")
        .output()
        .await
        .expect("fridge-sim runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

/// Sum of `applied` and `stale` over the answers printed.
fn settled(lines: &[Value]) -> u64 {
    let n = |l: &Value, k: &str| l["answer"][k].as_u64().unwrap_or(0);
    lines.iter().map(|l| n(l, "applied") + n(l, "stale")).sum()
}

#[tokio::test]
async fn cli_commands_and_misbehaviour() {
    let node = MockNode::start().await;
    for id in BOTH {
        // `fridge-sim SUB --node … --demo … --fridge ID EXTRA…`
        let cmd = |sub: &str, extra: &str| -> Vec<String> {
            let base = [sub, "--node", &node.url, "--demo", DEMO, "--fridge", id];
            base.into_iter()
                .chain(extra.split_whitespace())
                .map(String::from)
                .collect()
        };

        let (code, lines) = sim(&cmd(
            "scan",
            "--seq 1 --count m-kale-caesar=4 m-cornbread=2",
        ))
        .await;
        assert_eq!(code, 0, "{id}: {lines:?}");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["status"], 202);
        assert_eq!(lines[0]["seqs"], json!([1]));
        assert_eq!(lines[0]["answer"]["applied"], 1);
        assert_eq!(node.on_hand(id, "m-cornbread"), 2);

        let (code, lines) = sim(&cmd("refill", "--seq 2 --added m-cornbread=3 --duplicate")).await;
        assert_eq!(code, 0, "{id}: {lines:?}");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["answer"]["applied"], 1);
        assert_eq!(lines[1]["answer"]["duplicate"], 1);
        assert_eq!(node.on_hand(id, "m-cornbread"), 5);

        let (code, lines) = sim(&cmd("door", "--seq 3 --code 123456 --taken m-cornbread=1")).await;
        assert_eq!((code, &lines[0]["status"]), (0, &json!(202)), "{id}");

        // Five samples, each in its own batch, in a shuffled order: each
        // applied or stale, none lost, the node ends at seq 8.
        let shuffled = "--seq 4 --celsius 3.4 --samples 5 --every-secs 30 --shuffle --seed 7";
        let (code, lines) = sim(&cmd("temp", shuffled)).await;
        assert_eq!(code, 0, "{id}: {lines:?}");
        assert_eq!(lines.len(), 5);
        assert_eq!(settled(&lines), 5, "{lines:?}");
        let highest = lines
            .iter()
            .filter_map(|l| l["answer"]["highest_seq"].as_u64())
            .max();
        assert_eq!(highest, Some(8));

        // Refusals: exit 1 unless expected, the node's error code printed.
        for (extra, status, code_name) in [
            ("--wrong-secret", 401, "unauthenticated"),
            ("--stale-timestamp-secs 400", 401, "clock_skew"),
            ("--timestamp-skew-secs -400", 401, "clock_skew"),
            ("--fridge-in-body f-wsu", 403, "wrong_fridge"),
        ] {
            let (code, lines) = sim(&cmd("heartbeat", extra)).await;
            assert_eq!(code, 1, "{id} {extra}");
            assert_eq!(lines[0]["status"], status, "{id} {extra}");
            assert_eq!(lines[0]["answer"]["error"]["code"], code_name);
            let expected = format!("{extra} --expect {status}");
            assert_eq!(sim(&cmd("heartbeat", &expected)).await.0, 0, "{id} {extra}");
        }

        // A skewed but tolerable clock is accepted and measured.
        let (code, lines) = sim(&cmd("heartbeat", "--timestamp-skew-secs -120")).await;
        assert_eq!(code, 0);
        let offset = lines[0]["answer"]["clock_offset_secs"]
            .as_i64()
            .unwrap_or(0);
        assert!((-122..=-118).contains(&offset), "{offset}");

        // Invalid input is caught before sending unless asked for.
        let too_many = "--seq 9 --count m-kale-caesar=1000";
        let (code, lines) = sim(&cmd("scan", too_many)).await;
        assert_eq!((code, lines.len()), (2, 0), "refused locally");
        let sent = format!("{too_many} --send-invalid --expect 400");
        let (code, lines) = sim(&cmd("scan", &sent)).await;
        assert_eq!(code, 0);
        assert_eq!(lines[0]["answer"]["error"]["code"], "invalid_telemetry");
    }
}

#[tokio::test]
async fn run_plays_demo_fridges_until_stopped() {
    let node = MockNode::start().await;
    let demo = Demo::load(std::path::Path::new(DEMO)).expect("demo");
    let fridges: Vec<_> = demo.fridges.into_iter().take(3).collect();
    let ids: Vec<_> = fridges.iter().map(|d| d.fridge.id.clone()).collect();
    let (stop_tx, stop) = watch::channel(false);
    let config = RunConfig {
        node_url: node.url.clone(),
        interval: Duration::from_millis(50),
        scan_every_uploads: 2,
        refill_probability: 0.5,
        resume_from_node: true,
    };
    let running = tokio::spawn(run(fridges, config, stop));
    // Stop once every fridge has uploaded at least one report (a sample
    // applied; the start-up heartbeat alone moves only `last_seen`, and is
    // not an upload), within a deadline.
    let heard_from_all = || {
        let known = node.fridges.lock().unwrap();
        ids.iter().all(|id| {
            known
                .get(id.as_str())
                .is_some_and(|f| f.cursor.temperature.last_seq > 0)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !heard_from_all() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report from every fridge"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let totals = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops promptly")
        .expect("no panic");
    assert!(totals.accepted >= 3, "{totals:?}");
    assert_eq!((totals.refused, totals.failed), (0, 0), "{totals:?}");
    assert_eq!(totals.duplicate, 0, "{totals:?}");
    assert!(totals.applied > 0, "{totals:?}");
}

#[tokio::test]
async fn flood_counts_readings() {
    let node = MockNode::start().await;
    let fridges = BOTH.iter().map(|id| demo_fridge(id)).collect();
    let (_tx, stop) = watch::channel(false);
    let report = flood(
        fridges,
        FloodConfig {
            node_url: node.url.clone(),
            readings_per_batch: 100,
            duration: Duration::from_millis(300),
            resume_from_node: true,
        },
        stop,
    )
    .await;
    assert!(report.tally.accepted >= 2, "{report:?}");
    assert_eq!(report.tally.refused, 0, "{report:?}");
    assert_eq!(report.tally.reports_accepted, report.tally.accepted * 100);
    assert_eq!(report.tally.applied, report.tally.reports_accepted);
    assert!(report.readings_per_sec > 0.0);
}
