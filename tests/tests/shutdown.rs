//! Issue 4, item 6: task lifetimes, seen from outside. SIGTERM stops a
//! node that is busy: everything it acknowledged is there after a restart,
//! sockets are told it is going away, and it exits 0 in bounded time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder_tests::ws::Ended;
use larder_tests::*;
use serde_json::json;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
/// Concurrent order clients in the burst.
const CLIENTS: usize = 8;
/// Orders acknowledged before the signal is sent.
const ACKED_BEFORE_SIGTERM: usize = 200;
/// From SIGTERM to exit: the node's SHUTDOWN_GRACE_MS (10 s) and
/// WRITER_CLOSE_MS (2 s), and slack for a slow machine.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_of_orders_keeps_every_acknowledged_order_and_exits_0() {
    // With NATS and payments, so the relay and the result consumer are busy
    // too (POS orders have no grace window: each is charged at once).
    let nats = Nats::start().await;
    let _payments = Payments::start(&nats, &[]).await;
    let mut node = Node::start_with_nats(&nats, &[]).await;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, 10_000)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut ws = WsClient::connect(&node, None).await;
    ws.subscribe(json!({"fridges": [FRIDGE]})).await;
    // Read the socket throughout, so the client answers the close frame.
    let socket = tokio::spawn(async move { ws.ended(EXIT_DEADLINE).await });

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(order_loop(
                node.as_role("pos", "pos-campus"),
                json!({
                    "fridge_id": FRIDGE,
                    "items": [{"meal_id": MEAL, "qty": 1}],
                    "payment_method": "tok_visa",
                }),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    eventually("a burst of acknowledged orders", EXIT_DEADLINE, || {
        let n = acked.lock().unwrap().len();
        async move { n >= ACKED_BEFORE_SIGTERM }
    })
    .await;

    let status = node.terminate(EXIT_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert_eq!(
        socket.await.unwrap(),
        Some(Ended::Closed {
            code: 1001,
            reason: "server shutting down".into()
        })
    );
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKED_BEFORE_SIGTERM);

    node.restart().await;
    let admin = node.admin();
    for id in &acked {
        let r = admin.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.body);
    }
}

#[tokio::test]
async fn sigterm_on_an_idle_node_exits_0_at_once() {
    let mut node = Node::start_demo().await;
    let started = std::time::Instant::now();
    let status = node.terminate(EXIT_DEADLINE).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}: some task waited for a tick or a deadline",
        started.elapsed()
    );
}
