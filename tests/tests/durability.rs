//! A 201 promises the order survives a power cut; a published payment
//! result promises the charge is on record. Both promises need the store's
//! bytes on stable storage — `fdatasync`, not sled's `sync_file_range` —
//! before the answer leaves the process.
//!
//! How this is shown: the node and the payments service run under `strace`
//! (`tests/src/strace.rs`), which records every write to a file or socket
//! and every sync, with the descriptor's path and the bytes. For each
//! acknowledged order:
//! - the *record* is the first write of the order's bytes to sled's data
//!   file `…/db` (the node: the order id in its log record; payments: the
//!   start of the book's outcome record, kind + order id + district);
//! - the *sync* is the first `fdatasync` of that file to start after the
//!   record's write returned — any sync starting then covers the record,
//!   and the node's only `fdatasync`s are its writer's, one per batch;
//! - the *answer* is the first socket write carrying the order id (the
//!   node's HTTP 201, or its payment request; the service's result
//!   publish, which is a batch message whose payload holds the order id —
//!   its msg id names the batch, not the request).
//!
//! The test demands record < sync returned < answer starts, in trace order.
//! Trace order is causal (see the module docs of `strace`), so this holds
//! however slow the machine is: it compares happens-before, not timestamps,
//! and a loaded 2-core CI box only makes the trace longer. sled's own
//! `fsync`s (background flusher, truncation) do not count: it never calls
//! `fdatasync`.
//!
//! Skips, loudly, only where strace cannot ptrace a child (some
//! containers); `scripts/test` installs strace when it is missing.

use std::time::Duration;

use larder_tests::strace::{Call, StraceUnavailable};
use larder_tests::*;
use protocol::payments::PaymentKind;

const FRIDGE: &str = "f-campus-martius";
const MEAL: &str = "m-greek-salad";
const DISTRICT: &str = "detroit-downtown";
const SEQUENTIAL_ORDERS: usize = 8;
const CONCURRENT_ORDERS: usize = 12;
/// Tracing slows both services down severalfold.
const TRACED_DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_acknowledged_write_is_fdatasynced_before_the_answer() {
    match Strace::probe() {
        Ok(()) => {}
        Err(StraceUnavailable::Missing(why)) => {
            panic!("{why}: install strace (scripts/test does, with apt-get)")
        }
        Err(StraceUnavailable::NoPtrace(why)) => {
            eprintln!(
                "SKIPPED: strace cannot trace here ({why}); durability is unproven on this machine"
            );
            return;
        }
    }
    let traces = tempfile::tempdir().unwrap();
    let node_trace = Strace::new(traces.path().join("node.strace"));
    let payments_trace = Strace::new(traces.path().join("payments.strace"));

    let nats = Nats::start().await;
    let _payments = Payments::start_traced(&nats, &[], Some(&payments_trace)).await;
    let node = Node::start_traced(
        &[
            "--demo",
            "--nats-url",
            nats.url.as_str(),
            "--pos-grace-window-secs",
            "0",
        ],
        Some(&node_trace),
    )
    .await;
    let units = (SEQUENTIAL_ORDERS + CONCURRENT_ORDERS) as u32;
    let r = node.admin().set_stock(FRIDGE, &[(MEAL, units)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let pos = node.as_role("pos", "pos-campus");
    let mut ids = vec![];
    for _ in 0..SEQUENTIAL_ORDERS {
        ids.push(order(&pos).await);
    }
    // Concurrent ones share group commits: one sync per batch, not per order.
    let concurrent = (0..CONCURRENT_ORDERS).map(|_| order(&pos));
    ids.extend(futures::future::join_all(concurrent).await);
    for id in &ids {
        node.await_status(id, "purchased", TRACED_DEADLINE).await;
    }

    // strace prints a line when the call returns, which can be just after
    // the peer saw the bytes: wait until every answer is in the trace.
    let mut node_calls = vec![];
    let mut payment_calls = vec![];
    eventually("every answer in the traces", TRACED_DEADLINE, || {
        node_calls = node_trace.calls();
        payment_calls = payments_trace.calls();
        let done = ids.iter().all(|id| {
            first_answer(&node_calls, id.as_bytes()).is_some()
                && first_answer(&payment_calls, id.as_bytes()).is_some()
        });
        async move { done }
    })
    .await;

    for id in &ids {
        let reply = node_calls
            .iter()
            .find(|c| c.is_socket_write() && c.contains(id.as_bytes()) && c.contains(b" 201 "));
        assert!(
            reply.is_some(),
            "no 201 carrying order {id} in the node's trace"
        );
        assert_synced_before_answer("node", &node_calls, id.as_bytes(), id.as_bytes());
        let outcome =
            protocol::codec::to_postcard(&(PaymentKind::Charge, id.as_str(), DISTRICT)).unwrap();
        assert_synced_before_answer("payments", &payment_calls, &outcome, id.as_bytes());
    }

    let count = |calls: &[Call], name: &str| calls.iter().filter(|c| c.name == name).count();
    for (who, calls) in [("node", &node_calls), ("payments", &payment_calls)] {
        eprintln!(
            "{who}: {} orders, {} fdatasync, {} fsync, {} sync_file_range, {} writes to */db",
            ids.len(),
            count(calls, "fdatasync"),
            count(calls, "fsync"),
            count(calls, "sync_file_range"),
            calls
                .iter()
                .filter(|c| c.is_file_write() && c.target.ends_with("/db"))
                .count(),
        );
    }
    assert!(node.metric("larder_store_syncs_total").await >= 1);
}

async fn order(pos: &Client) -> String {
    let r = pos.order(FRIDGE, &[(MEAL, 1)], "tok_visa", None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_string()
}

fn first_answer<'a>(calls: &'a [Call], key: &[u8]) -> Option<&'a Call> {
    calls
        .iter()
        .filter(|c| c.is_socket_write() && c.contains(key))
        .min_by_key(|c| c.entry)
}

/// record (first write of `record` to `…/db`) < the first `fdatasync` of that
/// file starting after it < the first socket write carrying `key`.
fn assert_synced_before_answer(who: &str, calls: &[Call], record: &[u8], key: &[u8]) {
    let key_text = String::from_utf8_lossy(key);
    let answer = first_answer(calls, key)
        .unwrap_or_else(|| panic!("{who}: no answer carrying {key_text} in the trace"));
    let written = calls
        .iter()
        .filter(|c| c.is_file_write() && c.target.ends_with("/db") && c.contains(record))
        .min_by_key(|c| c.entry)
        .unwrap_or_else(|| panic!("{who}: the record of {key_text} never reached a */db file"));
    assert!(
        written.exit < answer.entry,
        "{who}: answered {key_text} (trace line {}) before its record was written (line {})",
        answer.entry + 1,
        written.exit + 1,
    );
    let sync = calls
        .iter()
        .filter(|c| c.name == "fdatasync" && c.target == written.target && c.entry > written.exit)
        .min_by_key(|c| c.entry)
        .unwrap_or_else(|| {
            panic!(
                "{who}: {key_text} was written to {} and never fdatasynced",
                written.target
            )
        });
    assert_eq!(sync.ret, Some(0), "{who}: fdatasync failed: {sync:?}");
    assert!(
        sync.exit < answer.entry,
        "{who}: answered {key_text} (trace line {}) before the fdatasync of its record returned (line {})",
        answer.entry + 1,
        sync.exit + 1,
    );
}
