//! Every event survives both encodings unchanged.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use protocol::catalog::{Fridge, FridgeStatus, Meal, MealSpec, Nutrition};
use protocol::codec::{decode_log_record, encode_log_record};
use protocol::events::StockSource;
use protocol::geo::GeoPoint;
use protocol::{DistrictId, Event, EventEnvelope, FridgeId, KitchenId, MealId};

pub fn sample_meal(id: &'static str, price: i64) -> Meal {
    Meal {
        meal_id: MealId::from_static(id),
        spec: MealSpec {
            name: "Teriyaki bowl".into(),
            description: "Rice, salmon, greens".into(),
            kitchen_id: KitchenId::from_static("k-midtown"),
            price,
            currency: "USD".to_string().try_into().unwrap(),
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
    }
}

fn envelope(seq: u64, event: Event) -> EventEnvelope {
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    EventEnvelope {
        event_id: ulid::Ulid::from_parts(1_700_000_000_000, seq as u128),
        seq,
        stream_id: event.stream_id(),
        stream_version: 1,
        district_id: DistrictId::from_static("detroit-downtown"),
        recorded_at: at,
        valid_from: at,
        correlation_id: None,
        causation_id: Some(ulid::Ulid::from_parts(1, 2)),
        schema_version: protocol::codec::LOG_SCHEMA_VERSION,
        event,
    }
}

fn all_kinds() -> Vec<Event> {
    vec![
        Event::MealDefined {
            meal: sample_meal("m-teriyaki", 1295),
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
            source: StockSource::Manual,
        },
    ]
}

#[test]
fn every_event_kind_roundtrips_through_the_log_codec() {
    for (i, event) in all_kinds().into_iter().enumerate() {
        let env = envelope(i as u64 + 1, event);
        let bytes = encode_log_record(&env).unwrap();
        assert_eq!(decode_log_record(&bytes).unwrap(), env);
    }
}

#[test]
fn every_event_kind_roundtrips_through_json() {
    for (i, event) in all_kinds().into_iter().enumerate() {
        let env = envelope(i as u64 + 1, event);
        let json = serde_json::to_string(&env).unwrap();
        let back: EventEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
    }
}

#[test]
fn unknown_schema_version_is_an_error_not_a_panic() {
    let env = envelope(1, all_kinds().remove(1));
    let mut bytes = encode_log_record(&env).unwrap();
    bytes[0] = 99;
    assert!(decode_log_record(&bytes).is_err());
    assert!(decode_log_record(&[1]).is_err());
}

proptest! {
    #[test]
    fn stock_updates_roundtrip(on_hand in any::<u32>(), fridge in "[a-z0-9-]{1,64}", meal in "[a-z0-9_]{1,64}") {
        let env = envelope(3, Event::MealStockUpdated { fridge_id: FridgeId::parse(fridge).unwrap(), meal_id: MealId::parse(meal).unwrap(), on_hand, source: StockSource::Scan });
        let bytes = encode_log_record(&env).unwrap();
        prop_assert_eq!(decode_log_record(&bytes).unwrap(), env);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_log_record(&bytes);
    }
}
