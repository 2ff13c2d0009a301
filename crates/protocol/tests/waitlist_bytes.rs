//! `WaitlistEvent`s as postcard writes them since they were introduced: the
//! bytes pin the variant order (append-only) and the field order. The index
//! of `Event::Waitlist` itself is pinned in `golden.rs`.

use chrono::{TimeZone, Utc};
use protocol::waitlist::WaitlistEvent;
use protocol::{FridgeId, MealId, OrderId, WaitlistId};

fn samples() -> Vec<WaitlistEvent> {
    let entry_id = || WaitlistId::from_static("w");
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    vec![
        WaitlistEvent::Joined {
            entry_id: entry_id(),
            customer: "alice".into(),
            meal_id: MealId::from_static("m"),
            fridges: vec![FridgeId::from_static("f")],
            expires_at: at,
        },
        WaitlistEvent::Left {
            entry_id: entry_id(),
        },
        WaitlistEvent::Expired {
            entry_id: entry_id(),
        },
        WaitlistEvent::HoldOffered {
            entry_id: entry_id(),
            fridge_id: FridgeId::from_static("f"),
            meal_id: MealId::from_static("m"),
            until: at,
        },
        WaitlistEvent::HoldLapsed {
            entry_id: entry_id(),
        },
        WaitlistEvent::HoldUsed {
            entry_id: entry_id(),
            order_id: OrderId::from_static("o"),
        },
    ]
}

/// Exhaustive on purpose: a new variant must be given its index here.
fn index(e: &WaitlistEvent) -> usize {
    match e {
        WaitlistEvent::Joined { .. } => 0,
        WaitlistEvent::Left { .. } => 1,
        WaitlistEvent::Expired { .. } => 2,
        WaitlistEvent::HoldOffered { .. } => 3,
        WaitlistEvent::HoldLapsed { .. } => 4,
        WaitlistEvent::HoldUsed { .. } => 5,
    }
}

const GOLDEN_HEX: [&str; 6] = [
    "00017705616c696365016d01016614323032362d31322d30315431323a30303a30305a",
    "010177",
    "020177",
    "0301770166016d14323032362d31322d30315431323a30303a30305a",
    "040177",
    "050177016f",
];

#[test]
fn waitlist_event_bytes_are_stable() {
    let hex = |bytes: Vec<u8>| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    for (i, (event, golden)) in samples().into_iter().zip(GOLDEN_HEX).enumerate() {
        assert_eq!(index(&event), i, "{event:?} is not at its index");
        assert_eq!(
            hex(postcard::to_stdvec(&event).unwrap()),
            golden,
            "{event:?}: variant or field order changed; append instead"
        );
        assert_eq!(
            serde_json::from_str::<WaitlistEvent>(&serde_json::to_string(&event).unwrap()).unwrap(),
            event
        );
    }
}
