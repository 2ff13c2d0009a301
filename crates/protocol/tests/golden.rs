//! Records written by released schema versions must keep decoding to the same
//! events. If this fails, add an upcaster (see `protocol::codec`); never
//! regenerate these bytes.
//!
//! `golden/v1_events.hex` holds one schema-v1 log record per `Event`
//! variant, captured when the goldens were introduced; frozen since schema
//! 2 was released. `golden/v2_events.hex` holds the same for schema 2 (the
//! samples as version 2 writes them). The variant list is an exhaustive
//! `match` ([`variant`]), so a new variant does not compile until it is
//! given its index here; the test then prints the record to append to the
//! newest file. Appending a line for a new variant is the only edit the
//! newest file ever gets.

use chrono::{DateTime, TimeZone, Utc};
use protocol::catalog::{Fridge, FridgeStatus, Meal, MealSpec, Nutrition};
use protocol::codec::{decode_log_record, encode_log_record};
use protocol::events::{StockMovement, StockSource};
use protocol::geo::GeoPoint;
use protocol::money::Currency;
use protocol::notifications::NotificationEvent;
use protocol::orders::{Channel, OrderLine, RefundReason, RefusalReason};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentRequest, PaymentResult};
use protocol::promotions::{
    CampaignDiscount, CouponUse, LinePrice, OrderPrice, PointsSpend, PriceSplit, PromotionEvent,
    SubsidyShare,
};
use protocol::restock::RestockEvent;
use protocol::schedule::{ScheduleEvent, WithdrawReason};
use protocol::webhooks::{WebhookEvent, WebhookFamily};
use protocol::WebhookId;
use protocol::{CampaignId, CouponCode, SubsidyId};
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, KitchenId, MealId, OrderId, PlanId};

/// A `MealStockUpdated` written with schema version 1.
const V1_STOCK_UPDATED_HEX: &str = include_str!("golden/v1_stock_updated.hex");
/// `name hex` per line: one schema-v1 record per `Event` variant.
const V1_EVENTS: &str = include_str!("golden/v1_events.hex");
/// `name hex` per line: one schema-v2 record per `Event` variant.
const V2_EVENTS: &str = include_str!("golden/v2_events.hex");

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn schema_v1_stock_update_still_decodes() {
    let env = decode_log_record(&unhex(V1_STOCK_UPDATED_HEX)).unwrap();
    assert_eq!(env.seq, 4);
    assert_eq!(env.district_id, "detroit-downtown");
    match env.event {
        Event::MealStockUpdated {
            fridge_id,
            meal_id,
            on_hand,
            ..
        } => {
            assert_eq!(
                (fridge_id.as_str(), meal_id.as_str(), on_hand),
                ("f-campus", "m-teriyaki", 7)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Postcard's index of the variant and the name its golden is filed under.
/// Exhaustive on purpose (no `_` arm): a new variant must be listed, at the
/// next index, before this test compiles.
fn variant(event: &Event) -> (u32, &'static str) {
    match event {
        Event::MealDefined { .. } => (0, "MealDefined"),
        Event::MealDiscontinued { .. } => (1, "MealDiscontinued"),
        Event::FridgeRegistered { .. } => (2, "FridgeRegistered"),
        Event::MealStockUpdated { .. } => (3, "MealStockUpdated"),
        Event::OrderPlaced { .. } => (4, "OrderPlaced"),
        Event::MealStockReserved { .. } => (5, "MealStockReserved"),
        Event::MealStockReleased { .. } => (6, "MealStockReleased"),
        Event::OrderCancelled { .. } => (7, "OrderCancelled"),
        Event::PurchaseRequested { .. } => (8, "PurchaseRequested"),
        Event::OrderPurchaseConfirmed { .. } => (9, "OrderPurchaseConfirmed"),
        Event::OrderPurchased { .. } => (10, "OrderPurchased"),
        Event::OrderPurchaseRefused { .. } => (11, "OrderPurchaseRefused"),
        Event::RefundRequested { .. } => (12, "RefundRequested"),
        Event::OrderRefunded { .. } => (13, "OrderRefunded"),
        Event::PaymentResultRecorded { .. } => (14, "PaymentResultRecorded"),
        Event::OrderPickedUp { .. } => (15, "OrderPickedUp"),
        Event::OrderUnclaimed { .. } => (16, "OrderUnclaimed"),
        Event::FridgeTelemetryReceived { .. } => (17, "FridgeTelemetryReceived"),
        Event::FridgeStatusChanged { .. } => (18, "FridgeStatusChanged"),
        Event::FridgeQuarantined { .. } => (19, "FridgeQuarantined"),
        Event::FridgeQuarantineLifted { .. } => (20, "FridgeQuarantineLifted"),
        Event::MealUnitsExpired { .. } => (21, "MealUnitsExpired"),
        Event::StockMovementRecorded { .. } => (22, "StockMovementRecorded"),
        Event::OrderFlagged { .. } => (23, "OrderFlagged"),
        Event::Schedule(_) => (24, "Schedule"),
        Event::DoorPickupRefused { .. } => (25, "DoorPickupRefused"),
        Event::MealUnitPlacedForOrder { .. } => (26, "MealUnitPlacedForOrder"),
        Event::PickupNothingTaken { .. } => (27, "PickupNothingTaken"),
        Event::TemperatureRecovered { .. } => (28, "TemperatureRecovered"),
        Event::Promotion(_) => (29, "Promotion"),
        Event::Waitlist(_) => (30, "Waitlist"),
        Event::Notification(_) => (31, "Notification"),
        Event::Webhook(_) => (32, "Webhook"),
        Event::Restock(_) => (33, "Restock"),
        Event::OrdersArchived { .. } => (34, "OrdersArchived"),
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn usd() -> Currency {
    "USD".to_string().try_into().unwrap()
}

/// One sample per variant. Frozen: the goldens were written from these
/// values, so changing one is changing a golden.
fn samples() -> Vec<Event> {
    let order = || OrderId::from_static("01HF7YAT00000000000000000A");
    vec![
        Event::MealDefined {
            meal: Meal {
                meal_id: MealId::from_static("m-teriyaki"),
                spec: MealSpec {
                    name: "Teriyaki bowl".into(),
                    description: "Rice, salmon, greens".into(),
                    kitchen_id: KitchenId::from_static("k-midtown"),
                    price: 1295,
                    currency: usd(),
                    nutrition: Nutrition {
                        kcal: 640,
                        protein_mg: 32_000,
                        fat_mg: 18_000,
                        carbs_mg: 80_000,
                        sugar_mg: 9_000,
                        salt_mg: 2_100,
                    },
                    allergens: vec!["fish".into(), "soy".into()],
                    ingredients: vec!["rice".into(), "salmon".into()],
                    tags: vec!["high-protein".into()],
                    shelf_life_hours: 72,
                },
            },
        },
        Event::MealDiscontinued {
            meal_id: MealId::from_static("m-teriyaki"),
        },
        Event::FridgeRegistered {
            fridge: Fridge {
                fridge_id: FridgeId::from_static("f-campus"),
                name: "Campus Martius".into(),
                address: "800 Woodward Ave".into(),
                position: GeoPoint::new(42.3316, -83.0466).unwrap(),
                geohash: "dpsby4pr3".into(),
                vendor: "frostline-json".into(),
                status: FridgeStatus::Online,
            },
            secret: Some("0123456789abcdef".into()),
        },
        Event::MealStockUpdated {
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-teriyaki"),
            on_hand: 7,
            source: StockSource::Scan,
        },
        Event::OrderPlaced {
            order_id: order(),
            customer: "alice".into(),
            channel: Channel::Pos,
            fridge_id: FridgeId::from_static("f-campus"),
            lines: vec![OrderLine {
                meal_id: MealId::from_static("m-teriyaki"),
                name: "Teriyaki bowl".into(),
                qty: 2,
                unit_price: 1295,
            }],
            total: 2590,
            currency: usd(),
            payment_method: "tok_visa".into(),
            hold_until: at(),
            idempotency: Some(("key-1".into(), 0xdead_beef)),
            price: None,
        },
        Event::MealStockReserved {
            order_id: order(),
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-teriyaki"),
            qty: 2,
        },
        Event::MealStockReleased {
            order_id: order(),
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-teriyaki"),
            qty: 2,
        },
        Event::OrderCancelled { order_id: order() },
        Event::PurchaseRequested {
            order_id: order(),
            amount: 2590,
            currency: usd(),
            deadline: at(),
        },
        Event::OrderPurchaseConfirmed {
            order_id: order(),
            reference: "sbx-1".into(),
        },
        Event::OrderPurchased {
            order_id: order(),
            pickup_code: "123456".into(),
            pickup_deadline: at(),
        },
        Event::OrderPurchaseRefused {
            order_id: order(),
            reason: RefusalReason::Timeout,
        },
        Event::RefundRequested {
            order_id: order(),
            amount: 2590,
            currency: usd(),
            reason: RefundReason::LateConfirmation,
        },
        Event::OrderRefunded {
            order_id: order(),
            reference: "sbx-2".into(),
        },
        Event::PaymentResultRecorded {
            order_id: order(),
            kind: PaymentKind::Refund,
            approved: false,
        },
        Event::OrderPickedUp { order_id: order() },
        Event::OrderUnclaimed { order_id: order() },
        Event::FridgeTelemetryReceived {
            fridge_id: FridgeId::from_static("f-campus"),
            cursor_json: r#"{"seq":3}"#.into(),
            outcome_json: r#"{"accepted":3}"#.into(),
            forget_previous_secret: true,
        },
        Event::FridgeStatusChanged {
            fridge_id: FridgeId::from_static("f-campus"),
            status: FridgeStatus::Offline,
            reason: "silent for 300 s".into(),
        },
        Event::FridgeQuarantined {
            fridge_id: FridgeId::from_static("f-campus"),
            since: at(),
            max_milli_c: 9_500,
            limit_milli_c: 5_000,
            kitchens: vec![KitchenId::from_static("k-midtown")],
        },
        Event::FridgeQuarantineLifted {
            fridge_id: FridgeId::from_static("f-campus"),
        },
        Event::MealUnitsExpired {
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-teriyaki"),
            units: 3,
        },
        Event::StockMovementRecorded {
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: Some(MealId::from_static("m-teriyaki")),
            units: -2,
            movement: StockMovement::Shrinkage,
            detail: "door session 9".into(),
        },
        Event::OrderFlagged {
            order_id: order(),
            meal_id: MealId::from_static("m-teriyaki"),
            reason: "fridge holds 1 of 2".into(),
        },
        Event::Schedule(ScheduleEvent::OrderWithdrawn {
            order_id: OrderId::from_static("sub-p-2026-12-02"),
            plan_id: PlanId::from_static("p"),
            customer: "alice".into(),
            credit: 1000,
            reason: WithdrawReason::PlanCancelled,
        }),
        Event::DoorPickupRefused {
            fridge_id: FridgeId::from_static("f-campus"),
            order_id: order(),
            reason: "order 01HF7YAT00000000000000000A does not exist".into(),
        },
        Event::MealUnitPlacedForOrder {
            order_id: OrderId::from_static("sub-p-2026-12-02"),
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-bowl"),
        },
        Event::PickupNothingTaken {
            fridge_id: FridgeId::from_static("f-campus"),
            order_id: order(),
            at: at(),
        },
        Event::TemperatureRecovered {
            fridge_id: FridgeId::from_static("f-campus"),
            since: at(),
            until: at(),
            max_milli_c: 9_500,
        },
        Event::Promotion(PromotionEvent::OrderPriced {
            order_id: order(),
            local_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            split: std::sync::Arc::new(PriceSplit {
                list_minor: 2590,
                lines: vec![LinePrice {
                    meal_id: MealId::from_static("m-teriyaki"),
                    qty: 2,
                    list_minor: 2590,
                    discount_minor: 259,
                }],
                campaigns: vec![CampaignDiscount {
                    campaign_id: CampaignId::from_static("lunch"),
                    discount_minor: 259,
                }],
                coupon: Some(CouponUse {
                    code: CouponCode::from_static("WELCOME"),
                    discount_minor: 100,
                }),
                subsidy: Some(SubsidyShare {
                    subsidy_id: SubsidyId::from_static("acme"),
                    amount_minor: 500,
                }),
                points: Some(PointsSpend {
                    points: 200,
                    value_minor: 200,
                }),
                charged_minor: 1531,
            }),
        }),
        Event::Waitlist(protocol::waitlist::WaitlistEvent::Joined {
            entry_id: protocol::WaitlistId::from_static("01JWAIT"),
            customer: "alice".into(),
            meal_id: MealId::from_static("m-teriyaki"),
            fridges: vec![FridgeId::from_static("f-campus")],
            expires_at: at(),
        }),
        Event::Notification(NotificationEvent::PickupReminded {
            order_id: order(),
            customer: "alice".into(),
            pickup_deadline: at(),
        }),
        Event::Webhook(WebhookEvent::EndpointRegistered {
            endpoint_id: WebhookId::from_static("01JDQW0000000000000000HOOK"),
            url: "https://erp.example.com/larder".into(),
            families: vec![WebhookFamily::Orders, WebhookFamily::Kitchens],
            secret: "whsec-0123456789abcdef".into(),
        }),
        Event::Restock(RestockEvent::ParLevelSet {
            fridge_id: FridgeId::from_static("f-campus"),
            meal_id: MealId::from_static("m-teriyaki"),
            units: 6,
        }),
        Event::OrdersArchived {
            order_ids: vec![order(), OrderId::from_static("01JDQW00000000000000000002")],
        },
    ]
}

/// The samples as schema 2 writes them: `OrderPlaced` carries its price
/// (version 1 had no such field; its records decode with `price: None`).
fn samples_v2() -> Vec<Event> {
    let mut samples = samples();
    let split = samples.iter().find_map(|e| match e {
        Event::Promotion(PromotionEvent::OrderPriced { split, .. }) => Some(split.clone()),
        _ => None,
    });
    for event in &mut samples {
        if let Event::OrderPlaced { price, .. } = event {
            *price = split.clone().map(|split| OrderPrice {
                local_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                split,
            });
        }
    }
    samples
}

fn envelope(seq: u64, event: Event) -> EventEnvelope {
    envelope_v(1, seq, event)
}

fn envelope_v(schema_version: u16, seq: u64, event: Event) -> EventEnvelope {
    EventEnvelope {
        event_id: ulid::Ulid::from_parts(1_700_000_000_000, seq as u128),
        seq,
        stream_id: event.stream_id(),
        stream_version: 1,
        district_id: DistrictId::from_static("detroit-downtown"),
        recorded_at: at(),
        valid_from: at(),
        correlation_id: Some(ulid::Ulid::from_parts(1, 1)),
        causation_id: Some(ulid::Ulid::from_parts(1, 2)),
        schema_version,
        event,
    }
}

fn goldens(file: &'static str) -> Vec<(&'static str, Vec<u8>)> {
    file.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("`name hex` per line");
            (name, unhex(hex))
        })
        .collect()
}

/// The samples cover every variant once, in declaration order, so the
/// goldens do too.
fn check_variant_order(samples: &[Event]) -> usize {
    for (i, event) in samples.iter().enumerate() {
        let (index, name) = variant(event);
        assert_eq!(index as usize, i, "samples() must list {name} at its index");
        let event_bytes = postcard::to_stdvec(event).unwrap();
        assert_eq!(
            event_bytes[0] as usize, i,
            "{name}: postcard variant index moved; variants are append-only"
        );
    }
    let last = samples.last().map(variant).unwrap().0 as usize;
    assert_eq!(last + 1, samples.len());
    last
}

#[test]
fn every_event_variant_has_a_schema_v2_golden_that_decodes_and_reencodes_identically() {
    let goldens = goldens(V2_EVENTS);
    let samples = samples_v2();
    let last = check_variant_order(&samples);
    for (i, event) in samples.into_iter().enumerate() {
        let (_, name) = variant(&event);
        let env = envelope_v(2, i as u64 + 1, event);
        let written = encode_log_record(&env).unwrap();
        let Some((golden_name, golden)) = goldens.get(i) else {
            panic!(
                "no golden for {name}; append this line to tests/golden/v2_events.hex:\n{name} {}",
                hex(&written)
            );
        };
        assert_eq!(*golden_name, name, "golden line {} is not {name}", i + 1);
        let decoded = decode_log_record(golden)
            .unwrap_or_else(|e| panic!("{name}: golden no longer decodes ({e}); add an upcaster"));
        assert_eq!(
            decoded, env,
            "{name}: golden decodes to something else; add an upcaster"
        );
        assert_eq!(
            hex(&encode_log_record(&decoded).unwrap()),
            hex(golden),
            "{name}: re-encoding differs; variant or field order changed"
        );
    }
    assert_eq!(goldens.len(), last + 1, "a golden without a variant");
}

/// Version-1 records (frozen) decode to the same events, upcast: an
/// `OrderPlaced` of version 1 has no price (`OrderPriced` carried it).
#[test]
fn every_schema_v1_golden_still_decodes_to_its_event() {
    let goldens = goldens(V1_EVENTS);
    let samples = samples();
    check_variant_order(&samples);
    assert_eq!(goldens.len(), samples.len(), "v1 goldens are frozen");
    for (i, event) in samples.into_iter().enumerate() {
        let (_, name) = variant(&event);
        let (golden_name, golden) = &goldens[i];
        assert_eq!(*golden_name, name, "golden line {} is not {name}", i + 1);
        assert_eq!(u16::from_le_bytes([golden[0], golden[1]]), 1);
        let decoded = decode_log_record(golden)
            .unwrap_or_else(|e| panic!("{name}: golden no longer decodes ({e}); add an upcaster"));
        assert_eq!(
            decoded,
            envelope(i as u64 + 1, event),
            "{name}: golden decodes to something else; add an upcaster"
        );
    }
}

/// The appended field round-trips in version-2 records with and without a
/// price, and a record from a newer build is refused rather than misread.
#[test]
fn order_placed_price_is_read_only_from_schema_v2_records() {
    let placed = samples_v2()
        .into_iter()
        .find(|e| matches!(e, Event::OrderPlaced { price: Some(_), .. }))
        .unwrap();
    let env = envelope_v(2, 1, placed);
    let bytes = encode_log_record(&env).unwrap();
    assert_eq!(decode_log_record(&bytes).unwrap(), env);
    let mut unpriced = env.clone();
    if let Event::OrderPlaced { price, .. } = &mut unpriced.event {
        *price = None;
    }
    let bytes = encode_log_record(&unpriced).unwrap();
    assert_eq!(decode_log_record(&bytes).unwrap(), unpriced);
    // A version from the future is refused, not guessed at.
    let mut future = bytes.clone();
    future[..2].copy_from_slice(&3u16.to_le_bytes());
    assert!(decode_log_record(&future).is_err());
}

/// Unit enums nested in events: postcard writes their variant index, so
/// reordering one would silently change every stored record that uses it.
/// The matches are exhaustive for the same reason as [`variant`].
#[test]
fn nested_enum_indices_are_stable() {
    fn check<T: serde::Serialize + std::fmt::Debug>(values: &[T], index: impl Fn(&T) -> u8) {
        for v in values {
            assert_eq!(postcard::to_stdvec(v).unwrap(), [index(v)], "{v:?}");
        }
    }
    check(&[StockSource::Manual, StockSource::Scan], |v| match v {
        StockSource::Manual => 0,
        StockSource::Scan => 1,
    });
    check(
        &[
            FridgeStatus::Online,
            FridgeStatus::Offline,
            FridgeStatus::Quarantined,
        ],
        |v| match v {
            FridgeStatus::Online => 0,
            FridgeStatus::Offline => 1,
            FridgeStatus::Quarantined => 2,
        },
    );
    check(&[Channel::App, Channel::Pos], |v| match v {
        Channel::App => 0,
        Channel::Pos => 1,
    });
    check(
        &[RefusalReason::Declined, RefusalReason::Timeout],
        |v| match v {
            RefusalReason::Declined => 0,
            RefusalReason::Timeout => 1,
        },
    );
    check(
        &[
            RefundReason::Cancelled,
            RefundReason::LateConfirmation,
            RefundReason::NotDelivered,
        ],
        |v| match v {
            RefundReason::Cancelled => 0,
            RefundReason::LateConfirmation => 1,
            RefundReason::NotDelivered => 2,
        },
    );
    check(&[PaymentKind::Charge, PaymentKind::Refund], |v| match v {
        PaymentKind::Charge => 0,
        PaymentKind::Refund => 1,
    });
    check(
        &[
            StockMovement::Refill,
            StockMovement::Withdrawal,
            StockMovement::Shrinkage,
            StockMovement::Returned,
        ],
        |v| match v {
            StockMovement::Refill => 0,
            StockMovement::Withdrawal => 1,
            StockMovement::Shrinkage => 2,
            StockMovement::Returned => 3,
        },
    );
    check(
        &[
            WithdrawReason::PlanChanged,
            WithdrawReason::PlanCancelled,
            WithdrawReason::NonWorkingDay,
            WithdrawReason::NotDelivered,
            WithdrawReason::NotProduced,
            WithdrawReason::FridgeUnavailable,
        ],
        |v| match v {
            WithdrawReason::PlanChanged => 0,
            WithdrawReason::PlanCancelled => 1,
            WithdrawReason::NonWorkingDay => 2,
            WithdrawReason::NotDelivered => 3,
            WithdrawReason::NotProduced => 4,
            WithdrawReason::FridgeUnavailable => 5,
        },
    );
    check(
        &[
            WebhookFamily::Orders,
            WebhookFamily::Stock,
            WebhookFamily::Fridges,
            WebhookFamily::Plans,
            WebhookFamily::Kitchens,
        ],
        |v| match v {
            WebhookFamily::Orders => 0,
            WebhookFamily::Stock => 1,
            WebhookFamily::Fridges => 2,
            WebhookFamily::Plans => 3,
            WebhookFamily::Kitchens => 4,
        },
    );
}

/// The payment messages on JetStream: a node and the payments service of
/// different builds must still understand each other.
#[test]
fn payment_messages_are_stable() {
    let request = PaymentRequest {
        kind: PaymentKind::Charge,
        order_id: OrderId::from_static("o1"),
        district_id: DistrictId::from_static("detroit"),
        amount: 2590,
        currency: usd(),
        payment_method: "tok_visa".into(),
        deadline_unix_ms: 1_700_000_000_000,
    };
    let approved = PaymentResult {
        kind: PaymentKind::Refund,
        order_id: OrderId::from_static("o1"),
        district_id: DistrictId::from_static("detroit"),
        outcome: PaymentOutcome::Approved {
            reference: "r".into(),
        },
    };
    let declined = PaymentResult {
        outcome: PaymentOutcome::Declined {
            reason: "no".into(),
        },
        ..approved.clone()
    };
    fn pinned<T>(value: &T, golden: &str)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(
            hex(&postcard::to_stdvec(value).unwrap()),
            golden,
            "{value:?}"
        );
        assert_eq!(&postcard::from_bytes::<T>(&unhex(golden)).unwrap(), value);
    }
    pinned(
        &request,
        "00026f3107646574726f6974bc280355534408746f6b5f7669736180a0abfef962",
    );
    pinned(&approved, "01026f3107646574726f6974000172");
    pinned(&declined, "01026f3107646574726f697401026e6f");
}
