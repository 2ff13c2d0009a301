//! Several payments instances on one request consumer, never charging
//! twice (issue 15).
//!
//! Each instance has its own book, which only remembers what that
//! instance answered; across instances the guard is the processor's
//! idempotency key, so they share one processor (`payments
//! sandbox-processor`, `--processor-url`), as they would a real one.
//! Requests are published straight on the request stream as a region
//! node's relay publishes them, and results are read back from the result
//! stream: the payments service is the only thing under test.

use std::time::Duration;

use larder_tests::payments_bus::{self, SandboxProcessor};
use larder_tests::*;
use protocol::payments::{PaymentKind, PaymentOutcome};

/// The request consumer's ack wait in the race: far shorter than the
/// processor's latency, so JetStream hands the request out again (to the
/// other instance in turn) while the first charge is still under way.
const RACE_ACK_WAIT_MS: &str = "300";
/// The processor's latency in the race.
const RACE_LATENCY_MS: &str = "3000";
/// Every request handed out, answered and acknowledged, with room for a
/// slow machine.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

async fn instance(nats: &Nats, processor: &SandboxProcessor, ack_wait_ms: &str) -> Payments {
    Payments::start(
        nats,
        &[
            "--processor-url",
            &processor.base,
            "--ack-wait-ms",
            ack_wait_ms,
        ],
    )
    .await
}

#[tokio::test]
async fn two_instances_racing_on_one_request_charge_it_once_and_answer_once() {
    let nats = Nats::start().await;
    let processor = SandboxProcessor::start(&["--latency-ms", RACE_LATENCY_MS]).await;
    let a = instance(&nats, &processor, RACE_ACK_WAIT_MS).await;
    let b = instance(&nats, &processor, RACE_ACK_WAIT_MS).await;
    let js = payments_bus::jetstream(&nats.url).await;
    payments_bus::await_consumers(&js, 2, START_DEADLINE).await;

    let order = "race-1";
    let charge = payments_bus::request(PaymentKind::Charge, order, 1250);
    payments_bus::publish_requests(&js, &[charge]).await;

    // Both instances get the request and decide it: each asks the shared
    // processor (its book does not know the other's answer).
    for (name, payments) in [("a", &a), ("b", &b)] {
        eventually(
            &format!("instance {name} deciding {order}"),
            SETTLE_DEADLINE,
            || async { payments.ledger(order).await["charge_outcome"]["status"] == "approved" },
        )
        .await;
        let seen = payments.ledger(order).await["charge_requests_seen"].clone();
        assert!(seen.as_u64() >= Some(1), "instance {name} saw it: {seen}");
    }
    payments_bus::await_requests_acked(&js, SETTLE_DEADLINE).await;

    // One capture at the processor, whatever both instances did.
    let entry = processor.entry(order).await;
    assert_eq!(entry["charges"], 1, "{entry}");
    assert_eq!(entry["amount"], 1250, "{entry}");
    // Both books hold the same answer, and the stream one result.
    let reference = a.ledger(order).await["charge_outcome"]["reference"].clone();
    assert_eq!(reference, format!("sbx_ch_{order}").as_str());
    assert_eq!(
        b.ledger(order).await["charge_outcome"]["reference"],
        reference
    );
    let results = payments_bus::results_by_order(&js).await;
    let answered = results.get(order).cloned().unwrap_or_default();
    assert_eq!(answered.len(), 1, "one result on the stream: {answered:?}");
    assert!(matches!(
        &answered[0].outcome,
        PaymentOutcome::Approved { reference: r } if r.as_str() == format!("sbx_ch_{order}")
    ));
}

#[tokio::test]
async fn many_requests_across_two_instances_are_each_answered_once() {
    const ORDERS: usize = 300;
    let nats = Nats::start().await;
    let processor = SandboxProcessor::start(&[]).await;
    let default_ack_wait = (bus::ACK_WAIT_SECS * 1000).to_string();
    let a = instance(&nats, &processor, &default_ack_wait).await;
    let b = instance(&nats, &processor, &default_ack_wait).await;
    let js = payments_bus::jetstream(&nats.url).await;
    payments_bus::await_consumers(&js, 2, START_DEADLINE).await;

    let orders: Vec<String> = (0..ORDERS).map(|i| format!("many-{i}")).collect();
    let charges: Vec<_> = orders
        .iter()
        .map(|o| payments_bus::request(PaymentKind::Charge, o, 500))
        .collect();
    payments_bus::publish_requests(&js, &charges).await;
    payments_bus::await_results(&js, ORDERS as u64, SETTLE_DEADLINE).await;
    payments_bus::await_requests_acked(&js, SETTLE_DEADLINE).await;

    // Refunds of a few, each answered by whichever instance gets it: one
    // that did not charge the order asks the processor what it captured.
    let refunded = &orders[..20];
    let refunds: Vec<_> = refunded
        .iter()
        .map(|o| payments_bus::request(PaymentKind::Refund, o, 500))
        .collect();
    payments_bus::publish_requests(&js, &refunds).await;
    let answers = (ORDERS + refunded.len()) as u64;
    payments_bus::await_results(&js, answers, SETTLE_DEADLINE).await;
    payments_bus::await_requests_acked(&js, SETTLE_DEADLINE).await;

    let results = payments_bus::results_by_order(&js).await;
    assert_eq!(results.len(), ORDERS, "a result for every order");
    for (i, order) in orders.iter().enumerate() {
        let answered = results.get(order).cloned().unwrap_or_default();
        let kinds: Vec<_> = answered.iter().map(|r| r.kind).collect();
        let expected = if i < refunded.len() {
            vec![PaymentKind::Charge, PaymentKind::Refund]
        } else {
            vec![PaymentKind::Charge]
        };
        assert_eq!(kinds, expected, "{order}: {answered:?}");
        assert!(
            answered
                .iter()
                .all(|r| matches!(r.outcome, PaymentOutcome::Approved { .. })),
            "{order}: {answered:?}"
        );
    }
    let totals = processor.totals().await;
    assert_eq!(totals["charges"], ORDERS, "{totals}");
    assert_eq!(totals["refunds"], refunded.len(), "{totals}");
    // Every request was delivered at least once, to one instance or the other.
    for order in &orders {
        let seen = |l: serde_json::Value| l["charge_requests_seen"].as_u64().unwrap_or(0);
        let times = seen(a.ledger(order).await) + seen(b.ledger(order).await);
        assert!(times >= 1, "{order} seen {times} times");
    }
}

/// The request consumer's ack wait while the processor is down: short, so
/// the batch message held back by its undecided requests comes back
/// several times within the test.
const OUTAGE_ACK_WAIT_MS: &str = "1000";
/// How long the processor stays down with the batch undecided.
const OUTAGE: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_batch_message_partly_undecided_is_redelivered_and_each_request_charged_once() {
    let nats = Nats::start().await;
    let mut processor = SandboxProcessor::start(&[]).await;
    let payments = instance(&nats, &processor, OUTAGE_ACK_WAIT_MS).await;
    let js = payments_bus::jetstream(&nats.url).await;
    payments_bus::await_consumers(&js, 1, START_DEADLINE).await;

    // One order decided before the outage, as a single (older node) request.
    let early = "early-1";
    payments_bus::publish_requests(
        &js,
        &[payments_bus::request(PaymentKind::Charge, early, 700)],
    )
    .await;
    payments_bus::await_results(&js, 1, SETTLE_DEADLINE).await;
    payments_bus::await_requests_acked(&js, SETTLE_DEADLINE).await;

    // The processor goes away; one batch message holds the decided order
    // again (the book answers it) and two the provider cannot decide now.
    processor.kill();
    let late = ["late-1", "late-2"];
    let batch: Vec<_> = std::iter::once(early)
        .chain(late)
        .map(|o| payments_bus::request(PaymentKind::Charge, o, 700))
        .collect();
    payments_bus::publish_request_batches(&js, &batch).await;
    tokio::time::sleep(OUTAGE).await;

    // Not acked: the message is held back and delivered again and again,
    // while the part with an outcome is answered each time.
    let (_, _, unacked) = payments_bus::consumer_state(&js)
        .await
        .expect("the consumer");
    assert_eq!(unacked, 1, "the batch message is not acked");
    for order in late {
        let seen = payments.ledger(order).await["charge_requests_seen"].as_u64();
        assert!(seen >= Some(2), "{order} redelivered: seen {seen:?}");
    }
    let results = payments_bus::results_by_order(&js).await;
    assert!(
        late.iter().all(|o| !results.contains_key(*o)),
        "{results:?}"
    );
    assert!(results[early].len() >= 2, "the decided one answered again");

    // The processor is back: the next redelivery decides the rest and the
    // message is acked.
    processor.restart(&[]).await;
    eventually("the late orders answered", SETTLE_DEADLINE, || async {
        let results = payments_bus::results_by_order(&js).await;
        late.iter().all(|o| results.contains_key(*o))
    })
    .await;
    payments_bus::await_requests_acked(&js, SETTLE_DEADLINE).await;

    // Each order captured once, however often its message came back, and
    // every result on the stream the same.
    for order in std::iter::once(early).chain(late) {
        let entry = processor.entry(order).await;
        assert_eq!(entry["charges"], 1, "{order}: {entry}");
        let results = payments_bus::results_by_order(&js).await;
        let reference = format!("sbx_ch_{order}");
        assert!(
            results[order].iter().all(|r| matches!(
                &r.outcome,
                PaymentOutcome::Approved { reference: r } if *r == reference
            )),
            "{order}: {:?}",
            results[order]
        );
    }
    let ledger = payments.ledger(early).await;
    assert_eq!(ledger["charge_outcome"]["status"], "approved", "{ledger}");
}
