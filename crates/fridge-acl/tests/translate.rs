//! Translation through the public API, with `now` passed in: what each kind
//! of report means for stock, orders and food safety.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fridge_acl::{
    check_silence, receive, sign, translate, AuthError, Batch, Dialect, DoorActor, DoorSession,
    FridgeCursor, FridgeFact, FridgeView, MealUnits, OpenOrder, Rejection, Report, ReportBody,
    Scan, SecretUsed, Secrets, SeqRange, ShrinkageReason, StockCause, Upload,
};
use protocol::{FridgeId, MealId, OrderId};

const T0: i64 = 1_741_089_600;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + secs, 0)
        .single()
        .expect("valid time")
}

fn units(pairs: &[(&'static str, u32)]) -> BTreeMap<MealId, u32> {
    pairs
        .iter()
        .map(|(m, n)| (MealId::from_static(m), *n))
        .collect()
}

fn scan(seq: u64, at: i64, counts: &[(&'static str, u32)]) -> Report {
    Report {
        seq,
        at: t(at),
        body: ReportBody::Scan(Scan {
            counts: units(counts),
            expired: BTreeMap::new(),
        }),
    }
}

fn door(
    seq: u64,
    at: i64,
    who: DoorActor,
    taken: &[(&'static str, u32)],
    added: &[(&'static str, u32)],
) -> Report {
    Report {
        seq,
        at: t(at),
        body: ReportBody::Door(DoorSession {
            who,
            taken: units(taken),
            added: units(added),
        }),
    }
}

fn temp(seq: u64, at: i64, milli_c: i32) -> Report {
    Report {
        seq,
        at: t(at),
        body: ReportBody::Temperature { milli_c },
    }
}

fn batch(sent_at: i64, reports: Vec<Report>) -> Batch {
    Batch {
        fridge_id: FridgeId::from_static("f-1"),
        sent_at: t(sent_at),
        reports,
    }
}

fn order(id: &'static str, code: Option<&str>, items: &[(&'static str, u32)]) -> OpenOrder {
    OpenOrder {
        order_id: OrderId::from_static(id),
        pickup_code: code.map(String::from),
        items: items
            .iter()
            .map(|(m, n)| MealUnits {
                meal_id: MealId::from_static(m),
                units: *n,
            })
            .collect(),
    }
}

fn counted(meal: &'static str, on_hand: u32, at: i64, cause: StockCause) -> FridgeFact {
    FridgeFact::StockCounted {
        meal_id: MealId::from_static(meal),
        on_hand,
        at: t(at),
        cause,
    }
}

#[test]
fn scan_sets_absolute_counts_where_they_differ() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 4), ("m-soup", 2), ("m-gone", 3)]),
        ..FridgeView::default()
    };
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![scan(1, 5, &[("m-kale", 4), ("m-soup", 5), ("m-new", 1)])],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            // Not listed in a full inventory: none left.
            counted("m-gone", 0, 5, StockCause::Scan),
            counted("m-new", 1, 5, StockCause::Scan),
            counted("m-soup", 5, 5, StockCause::Scan),
        ]
    );
    assert_eq!(out.outcome.applied, 1);
    assert_eq!(out.cursor.last_seen, Some(t(10)));
}

#[test]
fn a_short_scan_flags_the_orders_it_cannot_cover() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 4)]),
        reserved: units(&[("m-kale", 4)]),
        open_orders: vec![
            order("o-1", Some("111111"), &[("m-kale", 2)]),
            order("o-2", Some("222222"), &[("m-kale", 1)]),
            order("o-3", None, &[("m-kale", 1)]),
        ],
        ..FridgeView::default()
    };
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(10, vec![scan(1, 10, &[("m-kale", 1)])]),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            counted("m-kale", 1, 10, StockCause::Scan),
            FridgeFact::ShortageDetected {
                meal_id: MealId::from_static("m-kale"),
                on_hand: 1,
                committed: 4,
                // o-1 needs 2 of the 1 left; o-2 gets it; o-3 is short.
                orders: vec![OrderId::from_static("o-1"), OrderId::from_static("o-3")],
                at: t(10),
            },
        ]
    );
}

#[test]
fn pickup_code_completes_the_order_and_counts_extras_as_shrinkage() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 4), ("m-soup", 2)]),
        reserved: units(&[("m-kale", 1), ("m-soup", 1)]),
        open_orders: vec![order(
            "o-1",
            Some("482913"),
            &[("m-kale", 1), ("m-soup", 1)],
        )],
        ..FridgeView::default()
    };
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![door(
                1,
                10,
                DoorActor::PickupCode("482913".into()),
                &[("m-kale", 2)],
                &[],
            )],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            FridgeFact::PickedUp {
                order_id: OrderId::from_static("o-1"),
                pickup_code: "482913".into(),
                items: vec![MealUnits {
                    meal_id: MealId::from_static("m-kale"),
                    units: 1
                }],
                missing: vec![MealUnits {
                    meal_id: MealId::from_static("m-soup"),
                    units: 1
                }],
                at: t(10),
            },
            FridgeFact::Shrinkage {
                meal_id: MealId::from_static("m-kale"),
                units: 1,
                reason: ShrinkageReason::BeyondOrder {
                    order_id: OrderId::from_static("o-1")
                },
                at: t(10),
            },
            // The node's OrderPickedUp took 1 kale and 1 soup; the fridge
            // says 2 kale left and the soup is still there.
            counted("m-kale", 2, 10, StockCause::DoorSession),
            counted("m-soup", 2, 10, StockCause::DoorSession),
        ]
    );
}

#[test]
fn unknown_code_and_no_credentials_are_shrinkage() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 4)]),
        open_orders: vec![order("o-1", Some("482913"), &[("m-kale", 1)])],
        ..FridgeView::default()
    };
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![
                door(
                    1,
                    5,
                    DoorActor::PickupCode("000000".into()),
                    &[("m-kale", 1)],
                    &[],
                ),
                door(2, 6, DoorActor::Unknown, &[("m-kale", 1)], &[]),
            ],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            FridgeFact::Shrinkage {
                meal_id: MealId::from_static("m-kale"),
                units: 1,
                reason: ShrinkageReason::UnknownCode {
                    code: "000000".into()
                },
                at: t(5),
            },
            counted("m-kale", 3, 5, StockCause::DoorSession),
            FridgeFact::Shrinkage {
                meal_id: MealId::from_static("m-kale"),
                units: 1,
                reason: ShrinkageReason::NoCredentials,
                at: t(6),
            },
            counted("m-kale", 2, 6, StockCause::DoorSession),
        ]
    );
}

#[test]
fn opening_with_a_code_and_taking_nothing_keeps_the_order_open() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 1), ("m-soup", 1)]),
        open_orders: vec![order("o-1", Some("482913"), &[("m-kale", 1)])],
        ..FridgeView::default()
    };
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![door(
                1,
                10,
                DoorActor::PickupCode("482913".into()),
                &[("m-soup", 1)],
                &[],
            )],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            FridgeFact::PickupNothingTaken {
                order_id: OrderId::from_static("o-1"),
                pickup_code: "482913".into(),
                at: t(10),
            },
            FridgeFact::Shrinkage {
                meal_id: MealId::from_static("m-soup"),
                units: 1,
                reason: ShrinkageReason::BeyondOrder {
                    order_id: OrderId::from_static("o-1")
                },
                at: t(10),
            },
            counted("m-soup", 0, 10, StockCause::DoorSession),
        ]
    );
}

#[test]
fn staff_refills_and_withdrawals() {
    let view = FridgeView {
        on_hand: units(&[("m-kale", 1)]),
        ..FridgeView::default()
    };
    let badge = DoorActor::Staff("B-17".into());
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![door(
                1,
                10,
                badge.clone(),
                &[("m-kale", 1)],
                &[("m-soup", 6)],
            )],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            FridgeFact::Withdrawn {
                meal_id: MealId::from_static("m-kale"),
                units: 1,
                badge: "B-17".into(),
                at: t(10),
            },
            FridgeFact::Refilled {
                meal_id: MealId::from_static("m-soup"),
                units: 6,
                by: badge,
                at: t(10),
            },
            counted("m-kale", 0, 10, StockCause::DoorSession),
            counted("m-soup", 6, 10, StockCause::DoorSession),
        ]
    );
}

#[test]
fn duplicates_stale_scans_and_gaps() {
    let view = FridgeView::default();
    let first = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![scan(1, 1, &[("m-a", 1)]), scan(5, 5, &[("m-a", 5)])],
        ),
        t(10),
    );
    assert_eq!(first.outcome.applied, 2);
    assert_eq!(first.outcome.missing, vec![SeqRange { first: 2, last: 4 }]);
    assert_eq!(first.outcome.highest_seq, 5);

    let view = FridgeView {
        on_hand: units(&[("m-a", 5)]),
        ..FridgeView::default()
    };
    // A resend of 5, a late scan 3 (older than 5) and a late door 4.
    let second = translate(
        &first.cursor,
        &view,
        &batch(
            20,
            vec![
                scan(5, 5, &[("m-a", 5)]),
                scan(3, 3, &[("m-a", 3)]),
                door(4, 4, DoorActor::Unknown, &[("m-a", 1)], &[]),
            ],
        ),
        t(20),
    );
    assert_eq!(second.outcome.duplicate, 1);
    assert_eq!(second.outcome.stale, 1);
    assert_eq!(second.outcome.applied, 1);
    assert_eq!(second.outcome.missing, vec![SeqRange { first: 2, last: 2 }]);
    // Door 4 was already counted by scan 5: shrinkage, but no recount.
    assert_eq!(
        second.facts,
        vec![FridgeFact::Shrinkage {
            meal_id: MealId::from_static("m-a"),
            units: 1,
            reason: ShrinkageReason::NoCredentials,
            at: t(4),
        }]
    );
}

#[test]
fn temperature_excursion_needs_the_allowed_time_and_spans_batches() {
    let view = FridgeView::default();
    let limit = view.temperature.limit_milli_c;
    // A short spike during a refill: nothing.
    let a = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            300,
            vec![temp(1, 0, 4_000), temp(2, 60, 7_000), temp(3, 120, 4_500)],
        ),
        t(300),
    );
    assert!(a.facts.is_empty());
    // Warm from 600 s; still warm in the next upload at 600 + 14 min.
    let b = translate(
        &a.cursor,
        &view,
        &batch(700, vec![temp(4, 600, 6_000)]),
        t(700),
    );
    assert!(b.facts.is_empty());
    let c = translate(
        &b.cursor,
        &view,
        &batch(1_450, vec![temp(5, 1_440, 8_200)]),
        t(1_450),
    );
    assert!(c.facts.is_empty(), "14 min is within the allowed 15");
    let d = translate(
        &c.cursor,
        &view,
        &batch(1_510, vec![temp(6, 1_500, 7_000)]),
        t(1_510),
    );
    assert_eq!(
        d.facts,
        vec![FridgeFact::TemperatureExcursion {
            since: t(600),
            confirmed_at: t(1_500),
            max_milli_c: 8_200,
            limit_milli_c: limit,
        }]
    );
    // Still warm: no second alert. Then back in range.
    let e = translate(
        &d.cursor,
        &view,
        &batch(2_000, vec![temp(7, 1_800, 9_000), temp(8, 1_900, limit)]),
        t(2_000),
    );
    assert_eq!(
        e.facts,
        vec![FridgeFact::TemperatureRecovered {
            since: t(600),
            until: t(1_900),
            max_milli_c: 9_000,
        }]
    );
    // A sample older than the newest one is stale.
    let f = translate(
        &e.cursor,
        &view,
        &batch(2_100, vec![temp(9, 2_050, 3_000), temp(10, 2_060, 3_000)]),
        t(2_100),
    );
    assert_eq!(f.outcome.applied, 2);
    let mut cursor = f.cursor.clone();
    cursor.sequence = Default::default();
    let g = translate(
        &cursor,
        &view,
        &batch(2_200, vec![temp(9, 2_050, 20_000)]),
        t(2_200),
    );
    assert_eq!(g.outcome.stale, 1);
    assert!(g.facts.is_empty());
}

#[test]
fn fridge_times_are_moved_onto_the_node_clock() {
    let view = FridgeView::default();
    // The fridge clock is 2 minutes behind: it sent at t(-120) by its clock
    // what the node received at t(0).
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(-120, vec![scan(1, -130, &[("m-a", 1)])]),
        t(0),
    );
    assert_eq!(out.facts, vec![counted("m-a", 1, -10, StockCause::Scan)]);
    assert_eq!(out.outcome.clock_offset_secs, -120);
}

#[test]
fn an_offline_fridge_comes_back_and_silence_is_reported() {
    let view = FridgeView {
        offline: true,
        ..FridgeView::default()
    };
    let out = translate(&FridgeCursor::default(), &view, &batch(0, vec![]), t(0));
    assert_eq!(out.facts, vec![FridgeFact::FridgeOnline { at: t(0) }]);

    let allowed = Duration::minutes(10);
    assert_eq!(check_silence(None, t(10_000), allowed), None);
    assert_eq!(check_silence(out.cursor.last_seen, t(600), allowed), None);
    assert_eq!(
        check_silence(out.cursor.last_seen, t(601), allowed),
        Some(FridgeFact::FridgeOffline {
            last_seen: t(0),
            silent_for_secs: 601
        })
    );
}

#[test]
fn tagged_scans_report_expired_units() {
    let view = FridgeView::default();
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            10,
            vec![Report {
                seq: 1,
                at: t(10),
                body: ReportBody::Scan(Scan {
                    counts: units(&[("m-a", 3)]),
                    expired: units(&[("m-a", 1)]),
                }),
            }],
        ),
        t(10),
    );
    assert_eq!(
        out.facts,
        vec![
            counted("m-a", 3, 10, StockCause::Scan),
            FridgeFact::ExpiredOnShelf {
                meal_id: MealId::from_static("m-a"),
                units: 1,
                at: t(10),
            },
        ]
    );
}

#[test]
fn receive_authenticates_before_it_reads() {
    let body = format!("H|f-1|{}\nS|1|{}|m-a:2\n", T0, T0 - 5);
    let sig = sign(b"s3cret", T0, body.as_bytes());
    let ts = T0.to_string();
    let upload = Upload {
        fridge_id: "f-1",
        dialect: Dialect::ColdlineLines,
        body: body.as_bytes(),
        timestamp: &ts,
        signature: &sig,
    };
    let secrets = Secrets::new(b"s3cret");
    let cursor = FridgeCursor::default();
    let view = FridgeView::default();

    let ok = receive(&upload, &secrets, &cursor, &view, t(2)).expect("accepted");
    assert_eq!(ok.secret_used, SecretUsed::Current);
    assert_eq!(ok.translation.outcome.applied, 1);

    // Replayed inside the skew window: authenticated, but nothing applies.
    let again = receive(&upload, &secrets, &ok.translation.cursor, &view, t(3)).expect("accepted");
    assert_eq!(again.translation.outcome.duplicate, 1);
    assert!(again.translation.facts.is_empty());

    // Replayed after the window: refused.
    let late = receive(&upload, &secrets, &cursor, &view, t(301));
    assert!(matches!(late, Err(Rejection::Auth(AuthError::Skew { .. }))));

    let forged = receive(&upload, &Secrets::new(b"guess"), &cursor, &view, t(2));
    assert_eq!(
        forged.as_ref().map_err(Rejection::http_status).err(),
        Some(401)
    );

    let other = Upload {
        fridge_id: "f-2",
        ..upload
    };
    let wrong = receive(&other, &secrets, &cursor, &view, t(2));
    assert_eq!(
        wrong.as_ref().map_err(Rejection::http_status).err(),
        Some(403)
    );

    // Garbage with a valid signature is a 400, not a panic.
    let junk = b"H|f-1|nope";
    let junk_sig = sign(b"s3cret", T0, junk);
    let bad = Upload {
        body: junk,
        signature: &junk_sig,
        ..upload
    };
    let parsed = receive(&bad, &secrets, &cursor, &view, t(2));
    assert_eq!(
        parsed.as_ref().map_err(Rejection::http_status).err(),
        Some(400)
    );
}

#[test]
fn dialect_from_vendor_string() {
    assert_eq!("frostline-json".parse(), Ok(Dialect::FrostlineJson));
    assert_eq!("coldline-lines".parse(), Ok(Dialect::ColdlineLines));
    assert!("frostline".parse::<Dialect>().is_err());
    for d in Dialect::ALL {
        assert_eq!(d.to_string().parse(), Ok(d));
    }
}

#[test]
fn the_cursor_survives_serialization() {
    let view = FridgeView::default();
    let out = translate(
        &FridgeCursor::default(),
        &view,
        &batch(
            2_000,
            vec![
                scan(1, 0, &[("m-a", 2)]),
                door(3, 10, DoorActor::Unknown, &[("m-a", 1)], &[]),
                temp(4, 20, 9_000),
            ],
        ),
        t(2_000),
    );
    let json = serde_json::to_string(&out.cursor).expect("serializes");
    let back: FridgeCursor = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, out.cursor);
    assert_eq!(back.stock.on_hand("m-a"), 1);
    assert_eq!(back.sequence.missing(), &[SeqRange { first: 2, last: 2 }]);
}
