//! The `coldline-lines` dialect: a compact, line-oriented text format for
//! fridges on metered 2G/NB-IoT links, where every byte costs. One header
//! line, then one report per line:
//!
//! ```text
//! H|f-gym-2|1741089605
//! S|41|1741089480|m-kale:4,m-soup:2
//! D|42|1741089550|P:482913|m-kale:1|
//! D|43|1741089580|B:B-17|m-kale:1|m-soup:6
//! T|44|1741089600|47
//! ```
//!
//! This module owns the line syntax only; validation rules are shared with
//! the JSON dialect through [`crate::report`]. Full grammar in
//! `docs/fridge-dialects.md`.

use std::collections::BTreeMap;

use crate::report::{
    check_code, check_milli_c, check_seq, meal_list, parse_fridge_id, time_from_unix, Batch,
    DoorActor, DoorSession, ParseError, Problem, Report, ReportBody, Scan, Zero, MAX_BATCH_BYTES,
    MAX_LINE_BYTES, MAX_MEALS_PER_REPORT, MAX_REPORTS_PER_BATCH,
};

/// The vendor string a fridge registers with to speak this dialect.
pub const VENDOR: &str = "coldline-lines";

/// Longest decimal number accepted in a numeric field. Stops "000…0001"
/// padding games and keeps every value far inside `u64`/`i64`.
const MAX_NUMBER_DIGITS: usize = 19;

/// Parses one `coldline-lines` batch.
pub fn parse(body: &[u8]) -> Result<Batch, ParseError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(ParseError::TooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    // A final newline ends the last line rather than starting an empty one.
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = text.split('\n').enumerate().map(|(i, l)| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        (i + 1, l)
    });

    let (fridge_id, sent_at) = match lines.next() {
        Some((1, header)) if header.starts_with("H|") => {
            check_len(1, header)?;
            let f = fields(header, 3).map_err(|problem| ParseError::Line { line: 1, problem })?;
            let at = |problem| ParseError::Line { line: 1, problem };
            let fridge_id = parse_fridge_id(f[1]).map_err(at)?;
            let sent_at = number("batch_ts", f[2])
                .and_then(|ts| time_from_unix("batch_ts", ts))
                .map_err(at)?;
            (fridge_id, sent_at)
        }
        _ => return Err(ParseError::MissingHeader),
    };

    let mut reports = Vec::new();
    for (line, text) in lines {
        check_len(line, text)?;
        if reports.len() >= MAX_REPORTS_PER_BATCH {
            return Err(ParseError::TooManyReports);
        }
        reports.push(report(text).map_err(|problem| ParseError::Line { line, problem })?);
    }
    Ok(Batch {
        fridge_id,
        sent_at,
        reports,
    })
}

fn check_len(line: usize, text: &str) -> Result<(), ParseError> {
    if text.len() > MAX_LINE_BYTES {
        Err(ParseError::LineTooLong { line })
    } else {
        Ok(())
    }
}

/// Splits a line into exactly `n` fields.
fn fields(line: &str, n: usize) -> Result<Vec<&str>, Problem> {
    let f: Vec<&str> = line.splitn(n + 1, '|').collect();
    if f.len() == n {
        Ok(f)
    } else {
        // Count them all for the message; the line is already length-bounded.
        Err(Problem::FieldCount {
            expected: n,
            found: line.split('|').count(),
        })
    }
}

fn report(line: &str) -> Result<Report, Problem> {
    let kind = line.split('|').next().unwrap_or_default();
    let expected = match kind {
        "" if line.is_empty() => return Err(Problem::EmptyLine),
        "S" | "T" => 4,
        "D" => 6,
        "H" => return Err(Problem::HeaderNotFirst),
        other => return Err(Problem::UnknownKind(other.to_string())),
    };
    let f = fields(line, expected)?;
    let seq = check_seq(unsigned("seq", f[1])?)?;
    let at = time_from_unix("at", number("at", f[2])?)?;
    let body = match kind {
        "S" => ReportBody::Scan(Scan {
            counts: meal_list(entries(f[3])?, Zero::Allowed)?,
            expired: BTreeMap::new(),
        }),
        "T" => {
            // Tenths of a degree: what the Coldline probe resolves, and no
            // decimal point to parse on an 8-bit controller.
            let tenths = number("temp", f[3])?;
            ReportBody::Temperature {
                milli_c: check_milli_c(tenths.saturating_mul(100))?,
            }
        }
        _ => {
            let who = actor(f[3])?;
            let taken = meal_list(entries(f[4])?, Zero::Refused)?;
            let added = meal_list(entries(f[5])?, Zero::Refused)?;
            if taken.is_empty() && added.is_empty() {
                return Err(Problem::EmptyDoorSession);
            }
            ReportBody::Door(DoorSession { who, taken, added })
        }
    };
    Ok(Report { seq, at, body })
}

fn actor(field: &str) -> Result<DoorActor, Problem> {
    if field == "U" {
        return Ok(DoorActor::Unknown);
    }
    if let Some(code) = field.strip_prefix("P:") {
        check_code("code", code)?;
        return Ok(DoorActor::PickupCode(code.to_string()));
    }
    if let Some(badge) = field.strip_prefix("B:") {
        check_code("badge", badge)?;
        return Ok(DoorActor::Staff(badge.to_string()));
    }
    Err(Problem::UnknownKind(format!("who={field}")))
}

/// `m-kale:4,m-soup:2`; an empty field is an empty list.
fn entries(field: &str) -> Result<Vec<(String, u64)>, Problem> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in field.split(',') {
        if out.len() > MAX_MEALS_PER_REPORT {
            return Err(Problem::TooManyMeals);
        }
        let (meal, units) = entry
            .split_once(':')
            .ok_or_else(|| Problem::BadMealEntry(entry.to_string()))?;
        out.push((meal.to_string(), unsigned("units", units)?));
    }
    Ok(out)
}

fn unsigned(field: &'static str, s: &str) -> Result<u64, Problem> {
    if s.is_empty() || s.len() > MAX_NUMBER_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::BadNumber {
            field,
            value: s.to_string(),
        });
    }
    s.parse().map_err(|_| Problem::BadNumber {
        field,
        value: s.to_string(),
    })
}

/// A signed decimal: optional '-', then digits. No '+', no spaces.
fn number(field: &'static str, s: &str) -> Result<i64, Problem> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let bad = || Problem::BadNumber {
        field,
        value: s.to_string(),
    };
    let n = i64::try_from(unsigned(field, digits).map_err(|_| bad())?).map_err(|_| bad())?;
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use protocol::MealId;

    const GOOD: &str = "H|f-gym-2|1741089605\n\
        S|41|1741089480|m-kale:4,m-soup:2,m-none:0\n\
        D|42|1741089550|P:482913|m-kale:1|\n\
        D|43|1741089580|B:B-17|m-kale:1|m-soup:6\r\n\
        D|44|1741089590|U|m-soup:1|\n\
        T|45|1741089600|47\n\
        T|46|1741089601|-185\n\
        S|47|1741089602|\n";

    #[test]
    fn parses_every_kind() {
        let b = parse(GOOD.as_bytes()).expect("valid batch");
        assert_eq!(b.fridge_id, "f-gym-2");
        assert_eq!(
            b.sent_at,
            Utc.timestamp_opt(1_741_089_605, 0).single().expect("ts")
        );
        assert_eq!(b.reports.len(), 7);
        assert_eq!(b.reports[0].seq, 41);
        let ReportBody::Scan(scan) = &b.reports[0].body else {
            panic!("not a scan")
        };
        assert_eq!(
            scan.counts,
            [
                (MealId::from_static("m-kale"), 4),
                (MealId::from_static("m-soup"), 2)
            ]
            .into()
        );
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
        assert_eq!(staff.added.get("m-soup"), Some(&6));
        let ReportBody::Door(unknown) = &b.reports[3].body else {
            panic!("not a door")
        };
        assert_eq!(unknown.who, DoorActor::Unknown);
        assert_eq!(b.reports[4].body, ReportBody::Temperature { milli_c: 4700 });
        assert_eq!(
            b.reports[5].body,
            ReportBody::Temperature { milli_c: -18_500 }
        );
        assert_eq!(b.reports[6].body, ReportBody::Scan(Scan::default()));
    }

    #[test]
    fn header_only_is_a_heartbeat() {
        let b = parse(b"H|f-1|1741089605").expect("valid");
        assert!(b.reports.is_empty());
    }

    fn line_problem(line: &str) -> (usize, Problem) {
        match parse(format!("H|f-1|1741089605\n{line}\n").as_bytes()) {
            Err(ParseError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_lines() {
        let ts = "1741089600";
        assert_eq!(line_problem("").1, Problem::EmptyLine);
        assert_eq!(line_problem("").0, 2);
        assert_eq!(
            line_problem(&format!("X|1|{ts}|")).1,
            Problem::UnknownKind("X".into())
        );
        assert_eq!(line_problem(&format!("S|0|{ts}|m-a:1")).1, Problem::ZeroSeq);
        assert_eq!(
            line_problem(&format!("S|1|{ts}")).1,
            Problem::FieldCount {
                expected: 4,
                found: 3
            }
        );
        assert_eq!(
            line_problem(&format!("S|1|{ts}|m-a:1|extra")).1,
            Problem::FieldCount {
                expected: 4,
                found: 5
            }
        );
        assert_eq!(
            line_problem(&format!("S|+1|{ts}|m-a:1")).1,
            Problem::BadNumber {
                field: "seq",
                value: "+1".into()
            }
        );
        assert_eq!(
            line_problem(&format!("S|1|{ts}|m-a")).1,
            Problem::BadMealEntry("m-a".into())
        );
        assert_eq!(
            line_problem(&format!("S|1|{ts}|m-a:1,m-a:2")).1,
            Problem::DuplicateMeal(MealId::from_static("m-a"))
        );
        assert_eq!(
            line_problem(&format!("T|1|{ts}|601")).1,
            Problem::TemperatureOutOfRange { milli_c: 60_100 }
        );
        assert_eq!(
            line_problem(&format!("T|1|{ts}|4.7")).1,
            Problem::BadNumber {
                field: "temp",
                value: "4.7".into()
            }
        );
        assert_eq!(
            line_problem(&format!("D|1|{ts}|X:1|m-a:1|")).1,
            Problem::UnknownKind("who=X:1".into())
        );
        assert_eq!(
            line_problem(&format!("D|1|{ts}|U||")).1,
            Problem::EmptyDoorSession
        );
        assert_eq!(
            line_problem(&format!("D|1|{ts}|U|m-a:0|")).1,
            Problem::ZeroUnits(MealId::from_static("m-a"))
        );
        assert_eq!(
            line_problem("T|1|12|40").1,
            Problem::TimestampOutOfRange { field: "at" }
        );
        assert_eq!(line_problem("H|f-1|1741089605").1, Problem::HeaderNotFirst);
    }

    #[test]
    fn refuses_bad_batches() {
        assert_eq!(parse(b""), Err(ParseError::MissingHeader));
        assert_eq!(
            parse(b"S|1|1741089600|m-a:1"),
            Err(ParseError::MissingHeader)
        );
        assert!(matches!(
            parse(b"H|f 1|1741089600"),
            Err(ParseError::Line { line: 1, .. })
        ));
        let long = format!("H|f-1|1741089605\nS|1|1741089600|{}", "m-a:1,".repeat(200));
        assert_eq!(
            parse(long.as_bytes()),
            Err(ParseError::LineTooLong { line: 2 })
        );
        let many: String = (1..=MAX_REPORTS_PER_BATCH + 1)
            .map(|i| format!("T|{i}|1741089600|40\n"))
            .collect();
        assert_eq!(
            parse(format!("H|f-1|1741089605\n{many}").as_bytes()),
            Err(ParseError::TooManyReports)
        );
    }
}
