//! Why a spec or id was refused. One variant per condition, carrying the
//! field it is about, so adapters can map or inspect an error without
//! parsing its text. The `Display` texts are part of the HTTP API (they are
//! the `message` of a 422): keep them stable.

use crate::geo::{GeoError, FRIDGE_GEOHASH_PRECISION};
use crate::money::MAX_MEAL_PRICE_MINOR;
use crate::{MealId, MAX_ID_LEN};

/// What is wrong with an id (see [`crate::ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than `max` (the limit of that kind of id).
    #[error("id must be 1..={max} characters")]
    Length { max: usize },
    #[error("id may contain only ASCII letters, digits, '-' and '_'")]
    Characters,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field}: {problem}")]
    Id {
        field: &'static str,
        problem: IdError,
    },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max} bytes")]
    TooLong { field: &'static str, max: usize },
    /// A length with a lower bound too (payment tokens, secrets).
    #[error("{field} must be {min}..={max} bytes")]
    Length {
        field: &'static str,
        min: usize,
        max: usize,
    },
    #[error("{field} may have at most {max} entries")]
    TooManyEntries { field: &'static str, max: usize },
    #[error("{field} must be at most {max}")]
    TooLarge { field: &'static str, max: u32 },
    #[error("{field} must be between 1 and {max}")]
    NotBetweenOneAnd { field: &'static str, max: u32 },
    #[error("{field} must be between 1 and {MAX_MEAL_PRICE_MINOR} minor units")]
    Price { field: &'static str },
    #[error("nutrition.sugar_mg cannot exceed carbs_mg")]
    SugarExceedsCarbs,
    #[error(transparent)]
    Position(#[from] GeoError),
    #[error("currency must be a 3-letter ISO 4217 code like USD, got {value:?}")]
    Currency { value: String },
    #[error("counts must list at least one meal")]
    NoCounts,
    #[error("too many counts in one correction")]
    TooManyCounts,
    /// A stock correction lists a meal twice.
    #[error("meal {meal_id} is listed twice")]
    CountedTwice { meal_id: MealId },
    #[error("items must have 1..={max} lines")]
    LineCount { max: usize },
    /// An order lists a meal twice (instead of a larger `qty`).
    #[error("meal {meal_id} is listed twice; use qty")]
    OrderedTwice { meal_id: MealId },
    #[error("a district needs at least one geohash prefix")]
    NoGeohashPrefix,
    #[error("{prefix:?} is not a geohash prefix (base32, 1..={FRIDGE_GEOHASH_PRECISION} chars)")]
    GeohashPrefix { prefix: String },
    #[error("days must list 1..=7 weekdays")]
    DayCount,
    /// An amount of a promotion (a discount, budget, cap or minimum).
    #[error("{field} must be between 1 and {max} minor units")]
    Amount { field: &'static str, max: i64 },
    #[error("{field} must be later than the start")]
    EndsBeforeStart { field: &'static str },
    #[error("area.cells: {value:?} is not a geohash cell (1..=12 base-32 characters)")]
    Cell { value: String },
    #[error("weekday must be 1 (Monday) ..= 7 (Sunday), got {weekday}")]
    Weekday { weekday: u8 },
    #[error("weekday {weekday} is listed twice")]
    WeekdayTwice { weekday: u8 },
    #[error("end_date must not be before start_date")]
    EndBeforeStart,
    #[error("a plan may last at most {max_days} days")]
    PlanTooLong { max_days: i64 },
    #[error("nothing to change")]
    NothingToChange,
    #[error("order_ids must list 1..={max} orders")]
    OrderIdCount { max: usize },
    #[error("exactly one of {fields} must be given")]
    OneOf { fields: &'static str },
}

impl ValidationError {
    /// The id rule for a field that is not one of the id types (a fridge's
    /// `vendor` dialect name).
    pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
        crate::ids::check(id, MAX_ID_LEN).map_err(|problem| ValidationError::Id { field, problem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValidationError as V;

    /// The texts clients see; they were plain strings before this enum.
    #[test]
    fn messages_are_the_api_texts() {
        let cases = [
            (
                V::Id {
                    field: "kitchen_id",
                    problem: IdError::Length { max: MAX_ID_LEN },
                },
                "kitchen_id: id must be 1..=64 characters",
            ),
            (
                V::Id {
                    field: "meal_id",
                    problem: IdError::Characters,
                },
                "meal_id: id may contain only ASCII letters, digits, '-' and '_'",
            ),
            (V::Empty { field: "name" }, "name must not be empty"),
            (
                V::TooLong {
                    field: "note",
                    max: 200,
                },
                "note must be at most 200 bytes",
            ),
            (
                V::Length {
                    field: "secret",
                    min: 16,
                    max: 256,
                },
                "secret must be 16..=256 bytes",
            ),
            (
                V::TooManyEntries {
                    field: "tags",
                    max: 64,
                },
                "tags may have at most 64 entries",
            ),
            (
                V::TooLarge {
                    field: "nutrition.kcal",
                    max: 5000,
                },
                "nutrition.kcal must be at most 5000",
            ),
            (
                V::NotBetweenOneAnd {
                    field: "qty",
                    max: 10,
                },
                "qty must be between 1 and 10",
            ),
            (
                V::Price { field: "price" },
                "price must be between 1 and 1000000 minor units",
            ),
            (
                V::SugarExceedsCarbs,
                "nutrition.sugar_mg cannot exceed carbs_mg",
            ),
            (
                V::Position(GeoError::Latitude),
                "lat must be a number between -90 and 90",
            ),
            (
                V::Currency {
                    value: "usd".into(),
                },
                "currency must be a 3-letter ISO 4217 code like USD, got \"usd\"",
            ),
            (V::NoCounts, "counts must list at least one meal"),
            (V::TooManyCounts, "too many counts in one correction"),
            (
                V::CountedTwice {
                    meal_id: MealId::from_static("m-1"),
                },
                "meal m-1 is listed twice",
            ),
            (V::LineCount { max: 10 }, "items must have 1..=10 lines"),
            (
                V::OrderedTwice {
                    meal_id: MealId::from_static("m-1"),
                },
                "meal m-1 is listed twice; use qty",
            ),
            (
                V::NoGeohashPrefix,
                "a district needs at least one geohash prefix",
            ),
            (
                V::GeohashPrefix {
                    prefix: "DPS".into(),
                },
                "\"DPS\" is not a geohash prefix (base32, 1..=9 chars)",
            ),
            (V::DayCount, "days must list 1..=7 weekdays"),
            (
                V::Weekday { weekday: 8 },
                "weekday must be 1 (Monday) ..= 7 (Sunday), got 8",
            ),
            (V::WeekdayTwice { weekday: 3 }, "weekday 3 is listed twice"),
            (V::EndBeforeStart, "end_date must not be before start_date"),
            (
                V::PlanTooLong { max_days: 366 },
                "a plan may last at most 366 days",
            ),
            (V::NothingToChange, "nothing to change"),
            (
                V::OrderIdCount { max: 1000 },
                "order_ids must list 1..=1000 orders",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}

/// For an optional field of a JSON body that may be left out but not sent
/// as `null` (`#[serde(default, deserialize_with = "not_null")]`). serde
/// reads `null` into `None` on its own, which would accept what the API's
/// schema calls a type error, and turn `{"fridge_id": "f", "near": null}`
/// into a body the schema's "exactly one of" refuses. JSON bodies only: a
/// binary format would look for the `Option`'s tag, so a type using this
/// must not be written to the log.
pub fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod not_null_tests {
    use crate::waitlist::JoinWaitlist;

    /// Left out is `None`; sent as `null` is a type error, not `None`.
    #[test]
    fn an_optional_field_may_be_left_out_but_not_null() {
        let left_out: JoinWaitlist =
            serde_json::from_str(r#"{"meal_id":"m","fridge_id":"f"}"#).unwrap();
        assert!(left_out.near.is_none());
        let null =
            serde_json::from_str::<JoinWaitlist>(r#"{"meal_id":"m","fridge_id":"f","near":null}"#);
        assert!(null.is_err(), "{null:?}");
        let spec = serde_json::from_str::<crate::catalog::FridgeSpec>(
            r#"{"name":"F","lat":42.3,"lon":-83.0,"secret":null}"#,
        );
        assert!(spec.is_err(), "{spec:?}");
    }
}
