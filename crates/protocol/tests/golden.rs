//! Records written by released schema versions must keep decoding to the same
//! events. If this fails, add an upcaster (see `protocol::codec`); never
//! regenerate these bytes.

use protocol::codec::decode_log_record;
use protocol::Event;

/// A `MealStockUpdated` written with schema version 1.
const V1_STOCK_UPDATED_HEX: &str = include_str!("golden/v1_stock_updated.hex");

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
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
