//! The vendor-neutral shape of a telemetry batch, the limits every dialect
//! enforces, and the parse errors both parsers answer with.
//!
//! Parsers own syntax; this module owns what a valid report *is*, so the two
//! dialects cannot drift apart on, say, the largest unit count they accept.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use protocol::{FridgeId, MealId};
use serde::{Deserialize, Serialize};

/// Largest request body accepted, in bytes. A full scan of a large fridge is
/// a few KiB; this leaves room for a day of buffered reports.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most reports in one batch. Firmware that has buffered more sends several
/// batches; the cursor puts them back in order.
pub const MAX_REPORTS_PER_BATCH: usize = 1000;
/// Longest line of a `coldline-lines` batch, in bytes (without the newline).
pub const MAX_LINE_BYTES: usize = 1024;
/// Most distinct meals in one scan or one door session list.
pub const MAX_MEALS_PER_REPORT: usize = 64;
/// Most units of one meal in one report. Fridges hold tens of units; a bigger
/// number is a firmware bug, not stock.
pub const MAX_UNITS_PER_MEAL: u32 = 999;
/// Most tagged items in one scan.
pub const MAX_ITEMS_PER_SCAN: usize = 2000;
/// Longest pickup code, staff badge or item tag, in bytes.
pub const MAX_CODE_LEN: usize = 32;
/// Coldest reading accepted, in milli-degrees Celsius. Below this the probe is
/// broken, and a broken probe must not look like a healthy fridge.
pub const TEMP_MIN_MILLI_C: i32 = -40_000;
/// Warmest reading accepted, in milli-degrees Celsius.
pub const TEMP_MAX_MILLI_C: i32 = 60_000;
/// Earliest timestamp accepted (2020-01-01T00:00:00Z), in Unix seconds. A
/// fridge whose RTC lost power reports 1970; that must be an error, not a
/// scan from half a century ago.
pub const MIN_TIMESTAMP_SECS: i64 = 1_577_836_800;
/// Latest timestamp accepted (2100-01-01T00:00:00Z), in Unix seconds.
pub const MAX_TIMESTAMP_SECS: i64 = 4_102_444_800;

/// One authenticated upload from one fridge, in neither vendor's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub fridge_id: FridgeId,
    /// When the fridge sent the batch, by the fridge's clock. Compared with
    /// the node's `now` it measures the fridge's clock offset.
    pub sent_at: DateTime<Utc>,
    pub reports: Vec<Report>,
}

/// One numbered observation by a fridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The fridge's own counter, starting at 1 and never reused.
    pub seq: u64,
    /// When it was observed, by the fridge's clock.
    pub at: DateTime<Utc>,
    pub body: ReportBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportBody {
    Scan(Scan),
    Door(DoorSession),
    Temperature {
        /// Thousandths of a degree Celsius, so no float reaches the domain.
        milli_c: i32,
    },
}

/// A full inventory: every meal in the fridge. A meal that is not listed is
/// not in the fridge (counted as 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub counts: BTreeMap<MealId, u32>,
    /// Units past their best-before, when the scan read item tags that carry
    /// one. Included in `counts`: they are still physically there.
    pub expired: BTreeMap<MealId, u32>,
}

/// The door was opened, some units left and some arrived, and it closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorSession {
    pub who: DoorActor,
    pub taken: BTreeMap<MealId, u32>,
    pub added: BTreeMap<MealId, u32>,
}

/// What unlocked the door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorActor {
    /// A customer typed or scanned the pickup code of an order.
    PickupCode(String),
    /// Kitchen or service staff with a badge.
    Staff(String),
    /// Opened without credentials (forced, left ajar, service key).
    Unknown,
}

/// Why a batch cannot be read. The node answers 400 (413 for `TooLarge`)
/// and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("batch is {len} bytes; the limit is {MAX_BATCH_BYTES}")]
    TooLarge { len: usize },
    #[error("batch is not valid UTF-8")]
    NotUtf8,
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the first line must be the header `H|<fridge_id>|<unix_ts>`")]
    MissingHeader,
    #[error("batch has more than {MAX_REPORTS_PER_BATCH} reports")]
    TooManyReports,
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: usize },
    #[error("batch: {0}")]
    Batch(Problem),
    /// `index` counts reports from 0 in the order they appear.
    #[error("report {index}: {problem}")]
    Report { index: usize, problem: Problem },
    /// `line` counts from 1, header included, like an editor.
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: Problem },
}

impl ParseError {
    /// The HTTP status the node answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ParseError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// What is wrong with one field or record, shared by both dialects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{field}: {reason}")]
    BadId {
        field: &'static str,
        reason: protocol::IdError,
    },
    #[error("seq must be at least 1")]
    ZeroSeq,
    #[error("{field}: not a valid timestamp")]
    BadTimestamp { field: &'static str },
    #[error("{field}: timestamp is outside 2020..2100 (is the fridge clock set?)")]
    TimestampOutOfRange { field: &'static str },
    #[error("unknown report kind {0:?}")]
    UnknownKind(String),
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {field} does not belong in a {kind} report")]
    UnexpectedField {
        field: &'static str,
        kind: &'static str,
    },
    #[error("{field}: {value:?} is not a number")]
    BadNumber { field: &'static str, value: String },
    #[error("expected {expected} fields separated by '|', found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("meal {0} is listed twice")]
    DuplicateMeal(MealId),
    #[error("more than {MAX_MEALS_PER_REPORT} meals in one list")]
    TooManyMeals,
    #[error("meal {meal_id}: {units} units is more than {MAX_UNITS_PER_MEAL}")]
    TooManyUnits { meal_id: MealId, units: u64 },
    #[error("meal {0}: a listed meal must have at least 1 unit")]
    ZeroUnits(MealId),
    #[error("more than {MAX_ITEMS_PER_SCAN} tagged items")]
    TooManyItems,
    #[error("item tag {0:?} is listed twice")]
    DuplicateTag(String),
    #[error(
        "{field} must be 1..={MAX_CODE_LEN} printable ASCII characters without '|', ',' or ':'"
    )]
    BadCode { field: &'static str },
    #[error("temperature {milli_c} m°C is outside {TEMP_MIN_MILLI_C}..={TEMP_MAX_MILLI_C}")]
    TemperatureOutOfRange { milli_c: i64 },
    #[error("a door session must take or add at least one unit")]
    EmptyDoorSession,
    #[error("a scan carries either counts or items, not both")]
    CountsAndItems,
    #[error("empty line")]
    EmptyLine,
    #[error("{0:?} is not `<meal_id>:<units>`")]
    BadMealEntry(String),
    #[error("only the first line may be a header")]
    HeaderNotFirst,
}

pub(crate) fn parse_meal_id(id: impl AsRef<str>) -> Result<MealId, Problem> {
    MealId::parse(id).map_err(|reason| Problem::BadId {
        field: "meal_id",
        reason,
    })
}

pub(crate) fn parse_fridge_id(id: impl AsRef<str>) -> Result<FridgeId, Problem> {
    FridgeId::parse(id).map_err(|reason| Problem::BadId {
        field: "fridge_id",
        reason,
    })
}

/// Codes travel inside both dialects' separators, so the separators are out.
pub(crate) fn check_code(field: &'static str, code: &str) -> Result<(), Problem> {
    let ok = !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'|' | b',' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Problem::BadCode { field })
    }
}

pub(crate) fn check_seq(seq: u64) -> Result<u64, Problem> {
    if seq == 0 {
        Err(Problem::ZeroSeq)
    } else {
        Ok(seq)
    }
}

pub(crate) fn check_units(meal_id: &MealId, units: u64) -> Result<u32, Problem> {
    if units == 0 {
        return Err(Problem::ZeroUnits(meal_id.clone()));
    }
    match u32::try_from(units) {
        Ok(u) if u <= MAX_UNITS_PER_MEAL => Ok(u),
        _ => Err(Problem::TooManyUnits {
            meal_id: meal_id.clone(),
            units,
        }),
    }
}

pub(crate) fn check_time(field: &'static str, t: DateTime<Utc>) -> Result<DateTime<Utc>, Problem> {
    if (MIN_TIMESTAMP_SECS..=MAX_TIMESTAMP_SECS).contains(&t.timestamp()) {
        Ok(t)
    } else {
        Err(Problem::TimestampOutOfRange { field })
    }
}

pub(crate) fn time_from_unix(field: &'static str, secs: i64) -> Result<DateTime<Utc>, Problem> {
    if !(MIN_TIMESTAMP_SECS..=MAX_TIMESTAMP_SECS).contains(&secs) {
        return Err(Problem::TimestampOutOfRange { field });
    }
    Utc.timestamp_opt(secs, 0)
        .single()
        .ok_or(Problem::BadTimestamp { field })
}

pub(crate) fn check_milli_c(milli_c: i64) -> Result<i32, Problem> {
    if (i64::from(TEMP_MIN_MILLI_C)..=i64::from(TEMP_MAX_MILLI_C)).contains(&milli_c) {
        i32::try_from(milli_c).map_err(|_| Problem::TemperatureOutOfRange { milli_c })
    } else {
        Err(Problem::TemperatureOutOfRange { milli_c })
    }
}

/// Whether a meal list may say "0 units". Scans may (firmware often lists
/// every slot, empty or not); door sessions may not (nothing moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Refused,
}

/// Builds a per-meal list, refusing the mistakes firmware makes: the same
/// meal twice, absurd counts, endless lists. Zero entries are dropped so
/// "listed with 0" and "not listed" mean the same downstream.
pub(crate) fn meal_list<I>(entries: I, zero: Zero) -> Result<BTreeMap<MealId, u32>, Problem>
where
    I: IntoIterator<Item = (String, u64)>,
{
    let mut out = BTreeMap::new();
    let mut listed = 0usize;
    for (meal_id, units) in entries {
        let meal_id = parse_meal_id(meal_id)?;
        listed += 1;
        if listed > MAX_MEALS_PER_REPORT {
            return Err(Problem::TooManyMeals);
        }
        if out.contains_key(&meal_id) {
            return Err(Problem::DuplicateMeal(meal_id));
        }
        if units == 0 && zero == Zero::Allowed {
            // Remember the name so a later duplicate is still caught.
            out.insert(meal_id, 0);
            continue;
        }
        let units = check_units(&meal_id, units)?;
        out.insert(meal_id, units);
    }
    out.retain(|_, units| *units > 0);
    Ok(out)
}
