//! The phone-push task in process: pushes go out in order per customer, a
//! failing provider is retried (a customer's later pushes wait behind the
//! failed one, others do not), and quiet hours hold a customer's pushes
//! until they end by the node's clock.

use std::path::Path;
use std::time::Duration;

use chrono::Timelike;
use district::notifications::{Notification, NotificationKind};
use district::{Command, NotificationCommand};
use protocol::notifications::QuietHours;
use protocol::OrderId;
use region_node::clock::Clock;
use region_node::config::{NotificationsConfig, PushAdapter};
use region_node::lifecycle::Lifecycle;
use region_node::store::EventLog;
use serde_json::Value;

mod support;

/// How long a push may take to reach the file (held pushes are looked at
/// every second).
const PUSH_DEADLINE: Duration = Duration::from_secs(10);

fn note(id: u64, customer: &str, order: &str) -> Notification {
    Notification {
        id,
        customer: customer.into(),
        at: chrono::Utc::now(),
        kind: NotificationKind::OrderCancelled {
            order_id: OrderId::parse(order).unwrap(),
        },
    }
}

/// `(customer, order_id)` of every push written so far.
fn written(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["customer"].as_str().unwrap().to_string(),
                v["notification"]["order_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn await_written(path: &Path, what: &str, cond: impl Fn(&[(String, String)]) -> bool) {
    let until = tokio::time::Instant::now() + PUSH_DEADLINE;
    while !cond(&written(path)) {
        assert!(
            tokio::time::Instant::now() < until,
            "no {what}; written: {:?}",
            written(path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pair(c: &str, o: &str) -> (String, String) {
    (c.to_string(), o.to_string())
}

#[tokio::test]
async fn pushes_are_retried_in_order_and_held_through_quiet_hours() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::adjustable();
    let district = support::writer(
        EventLog::open(&dir.path().join("log")).unwrap(),
        clock.clone(),
    );
    // Ann is quiet from a minute ago for an hour (district at UTC).
    let now = clock.now();
    let minute = |t: chrono::DateTime<chrono::Utc>| (t.hour() * 60 + t.minute()) as u16;
    let quiet = QuietHours {
        start_minute: minute(now - chrono::Duration::minutes(1)),
        end_minute: minute(now + chrono::Duration::minutes(60)),
    };
    district
        .submit(Command::Notification(NotificationCommand::SetQuietHours {
            customer: "ann".into(),
            quiet_hours: Some(quiet),
        }))
        .await
        .unwrap();

    // The file's directory does not exist yet: every push fails at first.
    let out = dir.path().join("out");
    let file = out.join("pushes.jsonl");
    let config = NotificationsConfig {
        push: PushAdapter::File,
        push_file: Some(file.clone()),
        ..NotificationsConfig::default()
    };
    let tasks = Lifecycle::new();
    let metrics = std::sync::Arc::new(region_node::metrics::Metrics::default());
    let queue = region_node::notify::start(
        &config,
        district.clone(),
        clock.clone(),
        0,
        metrics.clone(),
        &tasks,
    );
    queue.send(note(1, "ann", "a-1")).await.unwrap();
    queue.send(note(2, "bob", "b-1")).await.unwrap();
    queue.send(note(3, "bob", "b-2")).await.unwrap();

    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let until = tokio::time::Instant::now() + PUSH_DEADLINE;
    while count(&metrics.push_failures) == 0 {
        assert!(tokio::time::Instant::now() < until, "no failed push");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The provider recovers: bob's go out, in order; ann's stays held.
    std::fs::create_dir_all(&out).unwrap();
    await_written(&file, "bob's two pushes", |w| w.len() >= 2).await;
    assert_eq!(written(&file), [pair("bob", "b-1"), pair("bob", "b-2")]);

    // Her quiet hours end: her push goes out.
    clock.advance(chrono::Duration::minutes(61)).unwrap();
    await_written(&file, "ann's push", |w| w.len() >= 3).await;
    assert_eq!(written(&file)[2], pair("ann", "a-1"));
    assert_eq!(count(&metrics.pushes_sent), 3);
    assert_eq!(count(&metrics.pushes_dropped), 0);

    tasks.trigger();
    tasks
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}
