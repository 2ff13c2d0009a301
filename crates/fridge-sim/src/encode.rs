//! Serializers: a vendor-neutral [`fridge_acl::Batch`] written out in a
//! fridge's dialect, byte for byte what that vendor's firmware would send.
//!
//! `fridge_acl` only parses; this module owns the opposite direction. The
//! contract is the round trip: for every batch it encodes,
//! `dialect.parse(encode(dialect, batch)) == batch` (tested below, and the
//! reason times are whole seconds and temperatures whole tenths: that is all
//! the wire formats carry). Batches a dialect cannot express are refused
//! with an [`EncodeError`] rather than silently changed.
//!
//! Invalid *values* (a count of 0 in a door list, an id with a space, an
//! empty door session) are written as given: the simulator must be able to
//! send what a buggy fridge sends. [`crate::check`] is the local validator.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use fridge_acl::{Batch, Dialect, DoorActor, MealId, Report, ReportBody};

/// Milli-degrees per tenth of a degree: `coldline-lines` sends tenths.
pub const MILLI_C_PER_TENTH: i32 = 100;
/// Milli-degrees per degree Celsius.
pub const MILLI_C_PER_DEGREE: i32 = 1000;

/// A batch the dialect has no way to say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("report seq {seq}: expired units can only be sent as tagged items, which the simulator does not build")]
    ExpiredUnits { seq: u64 },
    #[error("report seq {seq}: {milli_c} m°C is not a whole tenth of a degree, which is all coldline-lines carries")]
    SubTenthTemperature { seq: u64, milli_c: i32 },
    #[error("{field} {at} has a fraction of a second; both dialects carry whole seconds")]
    SubSecondTime {
        field: &'static str,
        at: DateTime<Utc>,
    },
}

/// Writes `batch` in `dialect`.
pub fn encode(dialect: Dialect, batch: &Batch) -> Result<Vec<u8>, EncodeError> {
    check_whole_seconds("batch_ts", batch.sent_at)?;
    for r in &batch.reports {
        check_whole_seconds("at", r.at)?;
        if let ReportBody::Scan(scan) = &r.body {
            if !scan.expired.is_empty() {
                return Err(EncodeError::ExpiredUnits { seq: r.seq });
            }
        }
    }
    match dialect {
        Dialect::FrostlineJson => Ok(frostline(batch)),
        Dialect::ColdlineLines => coldline(batch),
    }
}

fn check_whole_seconds(field: &'static str, at: DateTime<Utc>) -> Result<(), EncodeError> {
    if at.nanosecond() == 0 {
        Ok(())
    } else {
        Err(EncodeError::SubSecondTime { field, at })
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Appends `s` as a JSON string literal, escaped as JSON requires.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"meal":units,…}`.
fn json_meals(out: &mut String, meals: &BTreeMap<MealId, u32>) {
    out.push('{');
    for (i, (meal, units)) in meals.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, meal);
        let _ = write!(out, ":{units}");
    }
    out.push('}');
}

/// `milli_c` as a decimal with three places ("-18.500"): read back as an
/// f64 and rounded to milli-degrees, it is exact.
fn celsius_decimal(milli_c: i32) -> String {
    let sign = if milli_c < 0 { "-" } else { "" };
    let abs = milli_c.unsigned_abs();
    let per_degree = MILLI_C_PER_DEGREE.unsigned_abs();
    format!("{sign}{}.{:03}", abs / per_degree, abs % per_degree)
}

/// Written by hand rather than through `serde_json::Value`: a flood builds
/// hundreds of thousands of reports a second, and the tree costs more than
/// the text. The round-trip tests hold it to what the parser reads.
fn frostline(batch: &Batch) -> Vec<u8> {
    let mut out = String::with_capacity(64 + batch.reports.len() * 72);
    out.push_str("{\"fridge_id\":");
    json_string(&mut out, &batch.fridge_id);
    let _ = write!(
        out,
        ",\"batch_ts\":\"{}\",\"reports\":[",
        rfc3339(batch.sent_at)
    );
    for (i, r) in batch.reports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        frostline_report(&mut out, r);
    }
    out.push_str("]}");
    out.into_bytes()
}

fn frostline_report(out: &mut String, r: &Report) {
    let _ = write!(out, "{{\"seq\":{},\"at\":\"{}\"", r.seq, rfc3339(r.at));
    match &r.body {
        ReportBody::Scan(scan) => {
            out.push_str(",\"kind\":\"scan\",\"counts\":");
            json_meals(out, &scan.counts);
        }
        ReportBody::Door(door) => {
            out.push_str(",\"kind\":\"door\",\"who\":");
            match &door.who {
                DoorActor::PickupCode(code) => {
                    out.push_str("\"pickup_code\",\"code\":");
                    json_string(out, code);
                }
                DoorActor::Staff(badge) => {
                    out.push_str("\"staff\",\"badge\":");
                    json_string(out, badge);
                }
                DoorActor::Unknown => out.push_str("\"unknown\""),
            }
            if !door.taken.is_empty() {
                out.push_str(",\"taken\":");
                json_meals(out, &door.taken);
            }
            if !door.added.is_empty() {
                out.push_str(",\"added\":");
                json_meals(out, &door.added);
            }
        }
        ReportBody::Temperature { milli_c } => {
            let _ = write!(
                out,
                ",\"kind\":\"temp\",\"celsius\":{}",
                celsius_decimal(*milli_c)
            );
        }
    }
    out.push('}');
}

fn coldline_list(out: &mut String, meals: &BTreeMap<MealId, u32>) {
    for (i, (meal, units)) in meals.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{meal}:{units}");
    }
}

fn coldline(batch: &Batch) -> Result<Vec<u8>, EncodeError> {
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(out, "H|{}|{}", batch.fridge_id, batch.sent_at.timestamp());
    for r in &batch.reports {
        let (seq, at) = (r.seq, r.at.timestamp());
        match &r.body {
            ReportBody::Scan(scan) => {
                let _ = write!(out, "S|{seq}|{at}|");
                coldline_list(&mut out, &scan.counts);
            }
            ReportBody::Door(door) => {
                let _ = write!(out, "D|{seq}|{at}|");
                match &door.who {
                    DoorActor::PickupCode(code) => {
                        let _ = write!(out, "P:{code}");
                    }
                    DoorActor::Staff(badge) => {
                        let _ = write!(out, "B:{badge}");
                    }
                    DoorActor::Unknown => out.push('U'),
                }
                out.push('|');
                coldline_list(&mut out, &door.taken);
                out.push('|');
                coldline_list(&mut out, &door.added);
            }
            ReportBody::Temperature { milli_c } => {
                if milli_c % MILLI_C_PER_TENTH != 0 {
                    return Err(EncodeError::SubTenthTemperature {
                        seq,
                        milli_c: *milli_c,
                    });
                }
                let _ = write!(out, "T|{seq}|{at}|{}", milli_c / MILLI_C_PER_TENTH);
            }
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use fridge_acl::FridgeId;
    use fridge_acl::{DoorSession, Scan};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
    }

    fn meals(pairs: &[(&'static str, u32)]) -> BTreeMap<MealId, u32> {
        pairs
            .iter()
            .map(|(m, u)| (MealId::from_static(m), *u))
            .collect()
    }

    /// Every kind, every actor, negative and positive temperatures, an
    /// empty scan: the shapes the simulator builds.
    fn every_kind(fridge_id: &'static str) -> Batch {
        let door =
            |seq, who, taken: &[(&'static str, u32)], added: &[(&'static str, u32)]| Report {
                seq,
                at: t(1_741_089_500 + seq as i64),
                body: ReportBody::Door(DoorSession {
                    who,
                    taken: meals(taken),
                    added: meals(added),
                }),
            };
        Batch {
            fridge_id: fridge_acl::FridgeId::from_static(fridge_id),
            sent_at: t(1_741_089_605),
            reports: vec![
                Report {
                    seq: 41,
                    at: t(1_741_089_480),
                    body: ReportBody::Scan(Scan {
                        counts: meals(&[("m-kale", 4), ("m-soup", 999)]),
                        expired: BTreeMap::new(),
                    }),
                },
                door(
                    42,
                    DoorActor::PickupCode("482913".into()),
                    &[("m-kale", 1)],
                    &[],
                ),
                door(
                    43,
                    DoorActor::Staff("B-17".into()),
                    &[("m-kale", 1)],
                    &[("m-soup", 6), ("m-tea", 2)],
                ),
                door(44, DoorActor::Unknown, &[], &[("m-soup", 1)]),
                Report {
                    seq: 45,
                    at: t(1_741_089_600),
                    body: ReportBody::Temperature { milli_c: 4700 },
                },
                Report {
                    seq: 46,
                    at: t(1_741_089_660),
                    body: ReportBody::Temperature { milli_c: -18_500 },
                },
                Report {
                    seq: 47,
                    at: t(1_741_089_661),
                    body: ReportBody::Temperature { milli_c: -400 },
                },
                Report {
                    seq: 48,
                    at: t(1_741_089_700),
                    body: ReportBody::Scan(Scan::default()),
                },
            ],
        }
    }

    #[test]
    fn every_kind_round_trips_in_both_dialects() {
        for dialect in Dialect::ALL {
            let batch = every_kind("f-gym-2");
            let body = encode(dialect, &batch).unwrap_or_default();
            assert_eq!(
                dialect.parse(&body),
                Ok(batch),
                "{dialect}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn heartbeat_round_trips() {
        for dialect in Dialect::ALL {
            let batch = Batch {
                fridge_id: FridgeId::from_static("f-1"),
                sent_at: t(1_741_089_605),
                reports: vec![],
            };
            let body = encode(dialect, &batch).unwrap_or_default();
            assert_eq!(dialect.parse(&body), Ok(batch), "{dialect}");
        }
    }

    #[test]
    fn coldline_matches_the_documented_layout() {
        let batch = every_kind("f-gym-2");
        let body = encode(Dialect::ColdlineLines, &batch).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "H|f-gym-2|1741089605");
        assert_eq!(lines[1], "S|41|1741089480|m-kale:4,m-soup:999");
        assert_eq!(lines[2], "D|42|1741089542|P:482913|m-kale:1|");
        assert_eq!(lines[4], "D|44|1741089544|U||m-soup:1");
        assert_eq!(lines[6], "T|46|1741089660|-185");
        assert_eq!(lines[7], "T|47|1741089661|-4");
        assert_eq!(lines[8], "S|48|1741089700|");
    }

    #[test]
    fn frostline_temperatures_are_three_place_decimals() {
        assert_eq!(celsius_decimal(4700), "4.700");
        assert_eq!(celsius_decimal(-18_500), "-18.500");
        assert_eq!(celsius_decimal(-5), "-0.005");
        assert_eq!(celsius_decimal(60_000), "60.000");
    }

    #[test]
    fn frostline_is_valid_json_with_escaped_strings() {
        // Quotes, backslashes and control characters are not valid codes,
        // but a misbehaving fridge may send them: the body must still be
        // JSON, so the node answers with the right 400.
        let mut batch = every_kind("f-1");
        let odd = "a\"b\\c\n\u{1}é";
        batch.reports[1].body = ReportBody::Door(fridge_acl::DoorSession {
            who: DoorActor::PickupCode(odd.into()),
            taken: meals(&[("m-kale", 1)]),
            added: BTreeMap::new(),
        });
        let body = encode(Dialect::FrostlineJson, &batch).unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value["reports"][1]["code"], odd);
        assert!(matches!(
            Dialect::FrostlineJson.parse(&body),
            Err(fridge_acl::ParseError::Report { index: 1, .. })
        ));
    }

    #[test]
    fn refuses_what_a_dialect_cannot_say() {
        let mut batch = every_kind("f-1");
        batch.reports[4].body = ReportBody::Temperature { milli_c: 4750 };
        assert_eq!(
            encode(Dialect::ColdlineLines, &batch),
            Err(EncodeError::SubTenthTemperature {
                seq: 45,
                milli_c: 4750
            })
        );
        // Frostline reads to a milli-degree.
        let body = encode(Dialect::FrostlineJson, &batch).unwrap_or_default();
        assert_eq!(Dialect::FrostlineJson.parse(&body), Ok(batch));

        let mut expired = every_kind("f-1");
        expired.reports[0].body = ReportBody::Scan(Scan {
            counts: meals(&[("m-kale", 2)]),
            expired: meals(&[("m-kale", 1)]),
        });
        assert_eq!(
            encode(Dialect::FrostlineJson, &expired),
            Err(EncodeError::ExpiredUnits { seq: 41 })
        );

        let mut fraction = every_kind("f-1");
        fraction.sent_at += chrono::Duration::milliseconds(500);
        assert!(matches!(
            encode(Dialect::ColdlineLines, &fraction),
            Err(EncodeError::SubSecondTime {
                field: "batch_ts",
                ..
            })
        ));
    }
}
