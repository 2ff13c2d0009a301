//! The `frostline-json` dialect: one JSON object per batch, as Frostline's
//! Wi-Fi/LTE fridges send it. See `docs/fridge-dialects.md` for examples.
//!
//! This module owns JSON syntax and the mapping of Frostline's field names to
//! [`Report`]; what counts as a valid report lives in [`crate::report`].
//! Unknown fields are refused: a firmware update that renames a field must
//! fail loudly at the first upload, not silently drop the data.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use protocol::MealId;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::report::{
    check_code, check_milli_c, check_seq, check_time, meal_list, parse_fridge_id, parse_meal_id,
    Batch, DoorActor, DoorSession, ParseError, Problem, Report, ReportBody, Scan, Zero,
    MAX_BATCH_BYTES, MAX_ITEMS_PER_SCAN, MAX_REPORTS_PER_BATCH,
};

/// The vendor string a fridge registers with to speak this dialect.
pub const VENDOR: &str = "frostline-json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    fridge_id: String,
    batch_ts: String,
    reports: Vec<RawReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    seq: u64,
    at: String,
    kind: String,
    counts: Option<Pairs>,
    items: Option<Vec<RawItem>>,
    who: Option<String>,
    code: Option<String>,
    badge: Option<String>,
    taken: Option<Pairs>,
    added: Option<Pairs>,
    celsius: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    tag: String,
    meal_id: String,
    best_before: Option<String>,
}

/// A JSON object read as an ordered list of pairs, because a map type would
/// silently keep the last of two equal keys and `{"m-kale":1,"m-kale":4}` is
/// a firmware bug worth reporting.
struct Pairs(Vec<(String, u64)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of meal id to unit count")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, u64>()? {
                    // Bound memory before the per-report limit check runs.
                    if out.len() > crate::report::MAX_MEALS_PER_REPORT {
                        return Err(serde::de::Error::custom("too many meals in one list"));
                    }
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// Parses one `frostline-json` batch.
pub fn parse(body: &[u8]) -> Result<Batch, ParseError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(ParseError::TooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    let raw: RawBatch = serde_json::from_str(text).map_err(|e| ParseError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let fridge_id = parse_fridge_id(raw.fridge_id).map_err(ParseError::Batch)?;
    let sent_at = timestamp("batch_ts", &raw.batch_ts).map_err(ParseError::Batch)?;
    if raw.reports.len() > MAX_REPORTS_PER_BATCH {
        return Err(ParseError::TooManyReports);
    }
    let reports = raw
        .reports
        .into_iter()
        .enumerate()
        .map(|(index, r)| report(r).map_err(|problem| ParseError::Report { index, problem }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        fridge_id,
        sent_at,
        reports,
    })
}

fn timestamp(field: &'static str, s: &str) -> Result<DateTime<Utc>, Problem> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| Problem::BadTimestamp { field })?
        .with_timezone(&Utc);
    check_time(field, t)
}

fn report(r: RawReport) -> Result<Report, Problem> {
    let seq = check_seq(r.seq)?;
    let at = timestamp("at", &r.at)?;
    let body = match r.kind.as_str() {
        "scan" => {
            refuse(
                "scan",
                &[
                    ("who", r.who.is_some()),
                    ("code", r.code.is_some()),
                    ("badge", r.badge.is_some()),
                    ("taken", r.taken.is_some()),
                    ("added", r.added.is_some()),
                    ("celsius", r.celsius.is_some()),
                ],
            )?;
            ReportBody::Scan(scan(r.counts, r.items, at)?)
        }
        "door" => {
            refuse(
                "door",
                &[
                    ("counts", r.counts.is_some()),
                    ("items", r.items.is_some()),
                    ("celsius", r.celsius.is_some()),
                ],
            )?;
            let who = match r.who.as_deref() {
                None => return Err(Problem::MissingField("who")),
                Some("pickup_code") => {
                    refuse("pickup_code door", &[("badge", r.badge.is_some())])?;
                    let code = r.code.ok_or(Problem::MissingField("code"))?;
                    check_code("code", &code)?;
                    DoorActor::PickupCode(code)
                }
                Some("staff") => {
                    refuse("staff door", &[("code", r.code.is_some())])?;
                    let badge = r.badge.ok_or(Problem::MissingField("badge"))?;
                    check_code("badge", &badge)?;
                    DoorActor::Staff(badge)
                }
                Some("unknown") => {
                    refuse(
                        "unknown door",
                        &[("code", r.code.is_some()), ("badge", r.badge.is_some())],
                    )?;
                    DoorActor::Unknown
                }
                Some(other) => return Err(Problem::UnknownKind(format!("who={other}"))),
            };
            let taken = meal_list(r.taken.map(|p| p.0).unwrap_or_default(), Zero::Refused)?;
            let added = meal_list(r.added.map(|p| p.0).unwrap_or_default(), Zero::Refused)?;
            if taken.is_empty() && added.is_empty() {
                return Err(Problem::EmptyDoorSession);
            }
            ReportBody::Door(DoorSession { who, taken, added })
        }
        "temp" => {
            refuse(
                "temp",
                &[
                    ("counts", r.counts.is_some()),
                    ("items", r.items.is_some()),
                    ("who", r.who.is_some()),
                    ("code", r.code.is_some()),
                    ("badge", r.badge.is_some()),
                    ("taken", r.taken.is_some()),
                    ("added", r.added.is_some()),
                ],
            )?;
            let celsius = r.celsius.ok_or(Problem::MissingField("celsius"))?;
            ReportBody::Temperature {
                milli_c: celsius_to_milli(celsius)?,
            }
        }
        other => return Err(Problem::UnknownKind(other.to_string())),
    };
    Ok(Report { seq, at, body })
}

fn refuse(kind: &'static str, fields: &[(&'static str, bool)]) -> Result<(), Problem> {
    match fields.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(Problem::UnexpectedField { field, kind }),
        None => Ok(()),
    }
}

fn celsius_to_milli(celsius: f64) -> Result<i32, Problem> {
    let milli = (celsius * 1000.0).round();
    // Range-check as a float first: `as` would saturate a huge value into
    // something that looks plausible.
    if !milli.is_finite() || milli.abs() > 1.0e9 {
        return Err(Problem::TemperatureOutOfRange {
            milli_c: if milli.is_sign_negative() {
                i64::MIN
            } else {
                i64::MAX
            },
        });
    }
    check_milli_c(milli as i64)
}

fn scan(
    counts: Option<Pairs>,
    items: Option<Vec<RawItem>>,
    at: DateTime<Utc>,
) -> Result<Scan, Problem> {
    match (counts, items) {
        (Some(_), Some(_)) => Err(Problem::CountsAndItems),
        (None, None) => Err(Problem::MissingField("counts")),
        (Some(counts), None) => Ok(Scan {
            counts: meal_list(counts.0, Zero::Allowed)?,
            expired: BTreeMap::new(),
        }),
        (None, Some(items)) => tagged_scan(items, at),
    }
}

/// RFID-tagged fridges report each unit; counting tags per meal gives the
/// same absolute counts as a counting fridge, plus what has expired.
fn tagged_scan(items: Vec<RawItem>, at: DateTime<Utc>) -> Result<Scan, Problem> {
    if items.len() > MAX_ITEMS_PER_SCAN {
        return Err(Problem::TooManyItems);
    }
    let mut tags = std::collections::BTreeSet::new();
    let mut counts: BTreeMap<MealId, u64> = BTreeMap::new();
    let mut expired: BTreeMap<MealId, u64> = BTreeMap::new();
    for item in items {
        check_code("tag", &item.tag)?;
        let meal_id = parse_meal_id(item.meal_id)?;
        if let Some(bb) = item.best_before.as_deref() {
            if timestamp("best_before", bb)? <= at {
                *expired.entry(meal_id.clone()).or_default() += 1;
            }
        }
        *counts.entry(meal_id).or_default() += 1;
        if !tags.insert(item.tag.clone()) {
            return Err(Problem::DuplicateTag(item.tag));
        }
    }
    Ok(Scan {
        // `meal_list` takes the wire's strings (the other lists are
        // parsed there); these are valid ids already, so it only re-checks.
        counts: meal_list(
            counts.into_iter().map(|(m, n)| (m.into_string(), n)),
            Zero::Refused,
        )?,
        expired: expired
            .into_iter()
            .map(|(m, n)| (m, u32::try_from(n).unwrap_or(u32::MAX)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Batch, ParseError> {
        parse(s.as_bytes())
    }

    const GOOD: &str = r#"{
      "fridge_id": "f-lobby",
      "batch_ts": "2025-03-04T12:00:05Z",
      "reports": [
        {"seq": 41, "at": "2025-03-04T11:58:00Z", "kind": "scan",
         "counts": {"m-kale": 4, "m-soup": 2, "m-empty": 0}},
        {"seq": 42, "at": "2025-03-04T11:59:10Z", "kind": "door",
         "who": "pickup_code", "code": "482913", "taken": {"m-kale": 1}},
        {"seq": 43, "at": "2025-03-04T11:59:40Z", "kind": "door",
         "who": "staff", "badge": "B-17", "added": {"m-soup": 6}, "taken": {"m-kale": 1}},
        {"seq": 44, "at": "2025-03-04T12:00:00Z", "kind": "temp", "celsius": 4.7},
        {"seq": 45, "at": "2025-03-04T12:00:01Z", "kind": "door", "who": "unknown",
         "taken": {"m-soup": 1}}
      ]
    }"#;

    #[test]
    fn parses_every_kind() {
        let b = parse_str(GOOD).expect("valid batch");
        assert_eq!(b.fridge_id, "f-lobby");
        assert_eq!(b.reports.len(), 5);
        let ReportBody::Scan(scan) = &b.reports[0].body else {
            panic!("not a scan")
        };
        assert_eq!(scan.counts.get("m-kale"), Some(&4));
        assert!(!scan.counts.contains_key("m-empty"), "zero counts dropped");
        assert_eq!(
            b.reports[1].body,
            ReportBody::Door(DoorSession {
                who: DoorActor::PickupCode("482913".into()),
                taken: [(MealId::from_static("m-kale"), 1)].into(),
                added: BTreeMap::new(),
            })
        );
        let ReportBody::Door(staff) = &b.reports[2].body else {
            panic!("not a door")
        };
        assert_eq!(staff.who, DoorActor::Staff("B-17".into()));
        assert_eq!(b.reports[3].body, ReportBody::Temperature { milli_c: 4700 });
        let ReportBody::Door(unknown) = &b.reports[4].body else {
            panic!("not a door")
        };
        assert_eq!(unknown.who, DoorActor::Unknown);
    }

    #[test]
    fn tagged_scan_counts_and_expiry() {
        let b = parse_str(
            r#"{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[
              {"seq":1,"at":"2025-03-04T12:00:00Z","kind":"scan","items":[
                {"tag":"E200-01","meal_id":"m-kale","best_before":"2025-03-05T00:00:00Z"},
                {"tag":"E200-02","meal_id":"m-kale","best_before":"2025-03-04T06:00:00Z"},
                {"tag":"E200-03","meal_id":"m-soup"}]}]}"#,
        )
        .expect("valid");
        let ReportBody::Scan(scan) = &b.reports[0].body else {
            panic!("not a scan")
        };
        assert_eq!(scan.counts.get("m-kale"), Some(&2));
        assert_eq!(scan.counts.get("m-soup"), Some(&1));
        assert_eq!(scan.expired.get("m-kale"), Some(&1));
        assert!(!scan.expired.contains_key("m-soup"));
    }

    #[test]
    fn empty_batch_is_a_heartbeat() {
        let b = parse_str(r#"{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[]}"#)
            .expect("valid");
        assert!(b.reports.is_empty());
    }

    fn report_problem(report: &str) -> Problem {
        let body = format!(
            r#"{{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[{report}]}}"#
        );
        match parse_str(&body) {
            Err(ParseError::Report { index: 0, problem }) => problem,
            other => panic!("expected a report error, got {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_reports() {
        let at = r#""at":"2025-03-04T12:00:00Z""#;
        assert_eq!(
            report_problem(&format!(r#"{{"seq":0,{at},"kind":"temp","celsius":4}}"#)),
            Problem::ZeroSeq
        );
        assert_eq!(
            report_problem(&format!(r#"{{"seq":1,{at},"kind":"fog"}}"#)),
            Problem::UnknownKind("fog".into())
        );
        assert_eq!(
            report_problem(&format!(r#"{{"seq":1,{at},"kind":"temp","celsius":99.5}}"#)),
            Problem::TemperatureOutOfRange { milli_c: 99_500 }
        );
        assert_eq!(
            report_problem(&format!(r#"{{"seq":1,{at},"kind":"temp"}}"#)),
            Problem::MissingField("celsius")
        );
        assert_eq!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"scan","counts":{{"m-a":1,"m-a":2}}}}"#
            )),
            Problem::DuplicateMeal(MealId::from_static("m-a"))
        );
        assert_eq!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"scan","counts":{{"m-a":1000}}}}"#
            )),
            Problem::TooManyUnits {
                meal_id: MealId::from_static("m-a"),
                units: 1000
            }
        );
        assert_eq!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"scan","counts":{{"m-a":1}},"celsius":3}}"#
            )),
            Problem::UnexpectedField {
                field: "celsius",
                kind: "scan"
            }
        );
        assert_eq!(
            report_problem(&format!(r#"{{"seq":1,{at},"kind":"door","who":"staff"}}"#)),
            Problem::MissingField("badge")
        );
        assert_eq!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"door","who":"staff","badge":"B-1"}}"#
            )),
            Problem::EmptyDoorSession
        );
        assert_eq!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"door","who":"pickup_code","code":"12|34","taken":{{"m-a":1}}}}"#
            )),
            Problem::BadCode { field: "code" }
        );
        assert_eq!(
            report_problem(r#"{"seq":1,"at":"1970-01-01T00:00:10Z","kind":"temp","celsius":4}"#),
            Problem::TimestampOutOfRange { field: "at" }
        );
        assert!(matches!(
            report_problem(&format!(
                r#"{{"seq":1,{at},"kind":"scan","counts":{{"M A":1}}}}"#
            )),
            Problem::BadId { .. }
        ));
    }

    #[test]
    fn refuses_bad_batches() {
        assert!(matches!(
            parse_str(
                r#"{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[],"x":1}"#
            ),
            Err(ParseError::Json { .. })
        ));
        assert!(matches!(
            parse_str(r#"{"fridge_id":"f 1","batch_ts":"2025-03-04T12:00:00Z","reports":[]}"#),
            Err(ParseError::Batch(Problem::BadId { .. }))
        ));
        assert_eq!(
            parse_str(r#"{"fridge_id":"f-1","batch_ts":"yesterday","reports":[]}"#),
            Err(ParseError::Batch(Problem::BadTimestamp {
                field: "batch_ts"
            }))
        );
        assert_eq!(parse(&[0xff, 0xfe]), Err(ParseError::NotUtf8));
        let big = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(
            parse(&big),
            Err(ParseError::TooLarge {
                len: MAX_BATCH_BYTES + 1
            })
        );
        let many = (1..=MAX_REPORTS_PER_BATCH + 1)
            .map(|i| {
                format!(r#"{{"seq":{i},"at":"2025-03-04T12:00:00Z","kind":"temp","celsius":4}}"#)
            })
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            parse_str(&format!(
                r#"{{"fridge_id":"f-1","batch_ts":"2025-03-04T12:00:00Z","reports":[{many}]}}"#
            )),
            Err(ParseError::TooManyReports)
        );
    }
}
