//! Issue 14, part 4: webhooks for integrators. A real `region-node` and a
//! real HTTP receiver in this process (port 0) that answers as told.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder_tests::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FRIDGE: &str = "f-campus-martius";
const SALAD: &str = "m-greek-salad";
const SECRET: &str = "whsec-test-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(60);

/// One POST the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

/// A minimal HTTP/1.1 server: answers 500 to its first `fail_first`
/// requests and 200 after, and records every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        Receiver::start_on(0, fail_first).await
    }

    async fn start_on(port: u16, fail_first: usize) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("http://{}/hooks/larder", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, seen.clone(), fail_first));
            }
        });
        Receiver { url, got, task }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// What was answered 2xx: the deliveries the integrator took.
    fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, got: Arc<Mutex<Vec<Received>>>, fail_first: usize) {
    let mut buf = Vec::new();
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let answered = {
            let mut got = got.lock().unwrap();
            let answered = if got.len() < fail_first { 500 } else { 200 };
            got.push(Received {
                headers,
                body,
                answered,
            });
            answered
        };
        let reason = if answered == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let reply = format!("HTTP/1.1 {answered} {reason}\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Checks `Larder-Signature: t=<unix>,v1=<hex>` as docs/webhooks.md tells
/// integrators to.
fn signature_is_valid(r: &Received) -> bool {
    let Some(header) = r.headers.get("larder-signature") else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    fridge_acl::auth::sign(SECRET.as_bytes(), t, &r.body) == v1
}

async fn register(node: &Node, url: &str, families: &[&str]) -> String {
    let r = node
        .admin()
        .post(
            "/v1/admin/webhooks",
            json!({"url": url, "families": families, "secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["secret_hint"], "…cdef");
    assert!(
        !r.body.to_string().contains(SECRET),
        "the secret is never echoed"
    );
    r.body["endpoint_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_endpoint_that_fails_three_times_then_recovers_gets_every_event_once_in_order_signed() {
    let receiver = Receiver::start(3).await;
    let node = Node::start(&["--demo", "--dev-clock"]).await;
    let endpoint = register(&node, &receiver.url, &["orders", "stock"]).await;
    let admin = node.admin();

    // Three counts on one fridge's stock stream, then an order placed and
    // cancelled (its own stream, plus reserve/release on the stock stream).
    for units in [5, 7, 9] {
        let r = admin.set_stock(FRIDGE, &[(SALAD, units)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let customer = node.as_role("customer", "c-hooks");
    let placed = customer
        .order(FRIDGE, &[(SALAD, 2)], "tok_visa", None)
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let order_id = placed.body["order_id"].as_str().unwrap().to_string();
    let r = customer.cancel(&order_id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = [
        "stock.counted",
        "stock.counted",
        "stock.counted",
        "order.placed",
        "stock.reserved",
        "order.cancelled",
        "stock.released",
    ];

    eventually("every delivery accepted", DEADLINE, || async {
        receiver.accepted().len() >= expected.len()
    })
    .await;
    // The delivery log agrees: all delivered, and the failures are in it.
    let log = admin
        .await_get(
            &format!("/v1/admin/webhooks/{endpoint}/deliveries"),
            DEADLINE,
            |b| {
                let list = b["deliveries"].as_array().unwrap();
                list.len() == expected.len() && list.iter().all(|d| d["state"] == "delivered")
            },
        )
        .await;

    let all = receiver.received();
    assert_eq!(
        all.iter().filter(|r| r.answered == 500).count(),
        3,
        "three failures"
    );
    assert!(
        all.iter().all(signature_is_valid),
        "every attempt is signed"
    );
    let accepted = receiver.accepted();
    assert_eq!(
        accepted.len(),
        expected.len(),
        "each event once: {accepted:#?}"
    );
    let bodies: Vec<Value> = accepted
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    // Once: distinct delivery ids and seqs.
    let mut ids: Vec<&str> = accepted
        .iter()
        .map(|r| r.headers["larder-delivery"].as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected.len());
    // Every event: the same types as committed, by seq.
    let by_seq: BTreeMap<u64, &Value> = bodies
        .iter()
        .map(|b| (b["seq"].as_u64().unwrap(), b))
        .collect();
    let types: Vec<&str> = by_seq
        .values()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, expected);
    for (r, b) in accepted.iter().zip(&bodies) {
        assert_eq!(r.headers["larder-event"], b["type"].as_str().unwrap());
        assert_eq!(r.headers["content-type"], "application/json");
    }
    // In order per stream, as received.
    let mut last_per_stream: HashMap<String, u64> = HashMap::new();
    for b in &bodies {
        let stream = b["stream"].as_str().unwrap().to_string();
        let seq = b["seq"].as_u64().unwrap();
        if let Some(prev) = last_per_stream.insert(stream.clone(), seq) {
            assert!(prev < seq, "{stream}: {seq} arrived after {prev}");
        }
    }
    let counts: Vec<u64> = bodies
        .iter()
        .filter(|b| b["type"] == "stock.counted")
        .map(|b| b["data"]["on_hand"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![5, 7, 9]);
    assert_eq!(
        by_seq.values().nth(3).unwrap()["data"]["order_id"],
        order_id
    );
    // The failed attempts are in the log with their status codes.
    let statuses: Vec<Value> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["last_attempts"].as_array().unwrap().clone())
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == json!(500)).count(), 3);
    assert_eq!(
        statuses.iter().filter(|s| **s == json!(200)).count(),
        expected.len()
    );
    assert!(node.metric("larder_webhook_deliveries_total").await >= expected.len() as u64);

    // A manual redelivery sends the same body again, signed anew.
    let first = &log["deliveries"].as_array().unwrap().last().unwrap()["delivery_id"];
    let r = admin
        .post(
            &format!("/v1/admin/webhooks/{endpoint}/deliveries/{first}/redeliver"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["state"], "pending");
    eventually("the redelivery", DEADLINE, || async {
        receiver.accepted().len() == expected.len() + 1
    })
    .await;
    let again = receiver.accepted().pop().unwrap();
    assert!(signature_is_valid(&again));
    let before = accepted
        .iter()
        .find(|r| r.headers["larder-delivery"] == again.headers["larder-delivery"])
        .expect("the same Larder-Delivery id as the first time");
    assert_eq!(again.body, before.body, "the same body");
    assert_eq!(
        again.headers["larder-delivery"],
        format!("{endpoint}-{first}")
    );
}

#[tokio::test]
async fn deliveries_pending_at_a_crash_arrive_after_the_restart_once_and_in_order() {
    // The receiver's port is taken and freed: until the receiver listens
    // there (after the node's restart), every attempt is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hooks/larder");
    let mut node = Node::start(&["--demo", "--dev-clock"]).await;
    let endpoint = register(&node, &url, &["stock"]).await;
    let admin = node.admin();
    for units in [1, 2, 3] {
        assert_eq!(admin.set_stock(FRIDGE, &[(SALAD, units)]).await.status, 200);
    }
    let path = format!("/v1/admin/webhooks/{endpoint}/deliveries");
    admin
        .await_get(&path, DEADLINE, |b| {
            let list = b["deliveries"].as_array().unwrap();
            list.len() == 3
                && list.iter().any(|d| {
                    d["attempts"].as_u64() > Some(0) && d["last_attempts"][0]["status"].is_null()
                })
        })
        .await;
    node.kill();
    node.restart().await;
    let admin = node.admin();
    assert_eq!(admin.set_stock(FRIDGE, &[(SALAD, 4)]).await.status, 200);
    let receiver = Receiver::start_on(port, 0).await;
    // Past any backoff the refused attempts left.
    node.advance_clock(120).await;
    eventually("four counts", DEADLINE, || async {
        receiver.accepted().len() >= 4
    })
    .await;
    let bodies: Vec<Value> = receiver
        .accepted()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let on_hand: Vec<u64> = bodies
        .iter()
        .map(|b| b["data"]["on_hand"].as_u64().unwrap())
        .collect();
    assert_eq!(
        on_hand,
        vec![1, 2, 3, 4],
        "each once, in order (one stream)"
    );
    assert!(receiver.accepted().iter().all(signature_is_valid));
    admin
        .await_get(&path, DEADLINE, |b| {
            b["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] == "delivered")
        })
        .await;
}

#[tokio::test]
async fn bad_registrations_are_refused_with_json_errors_and_register_nothing() {
    let node = Node::start(&["--demo"]).await;
    let admin = node.admin();
    let good =
        json!({"url": "https://erp.example.com/hook", "families": ["orders"], "secret": SECRET});
    let cases = [
        (
            json!({"url": "not a url", "families": ["orders"], "secret": SECRET}),
            422,
            "invalid_webhook",
        ),
        (
            json!({"url": "ftp://example.com/x", "families": ["orders"], "secret": SECRET}),
            422,
            "invalid_webhook",
        ),
        (
            json!({"url": "https://erp.example.com/hook", "families": ["orders"]}),
            422,
            "invalid_body",
        ),
        (
            json!({"url": "https://erp.example.com/hook", "families": ["orders"], "secret": "short"}),
            422,
            "invalid_webhook",
        ),
        (
            json!({"url": "https://erp.example.com/hook", "families": [], "secret": SECRET}),
            422,
            "invalid_webhook",
        ),
        (
            json!({"url": "https://erp.example.com/hook", "families": ["weather"], "secret": SECRET}),
            422,
            "invalid_body",
        ),
    ];
    let before = node.log_seq().await;
    for (body, status, code) in cases {
        let r = admin.post("/v1/admin/webhooks", body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some());
    }
    let r = admin
        .send(
            reqwest::Method::POST,
            "/v1/admin/webhooks",
            Some(RawBody::Text("{".into())),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    let r = node
        .as_role("customer", "c-1")
        .post("/v1/admin/webhooks", good)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(node.log_seq().await, before, "nothing was recorded");
    let r = admin.get("/v1/admin/webhooks").await;
    assert_eq!(r.body, json!({"endpoints": []}));
    let r = admin.get("/v1/admin/webhooks/nope").await;
    assert_eq!((r.status, r.code()), (404, "unknown_webhook"));
    let r = admin.delete("/v1/admin/webhooks/nope").await;
    assert_eq!((r.status, r.code()), (404, "unknown_webhook"));
    let r = admin.get("/v1/admin/webhooks/nope/deliveries").await;
    assert_eq!((r.status, r.code()), (404, "unknown_webhook"));
}
