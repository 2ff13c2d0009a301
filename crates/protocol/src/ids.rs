//! Identifiers: one newtype per kind of id, valid by construction.
//!
//! Ids are short ASCII slugs (letters, digits, `-`, `_`) so they can be used
//! in URLs, NATS subjects, sled keys and the ids derived from them without
//! escaping. A value of one of these types has passed that check once, where
//! it entered (an HTTP path or body, a fridge report, a NATS message, a log
//! record); code behind the boundary never checks again, and a meal id cannot
//! be passed where a fridge id is expected.
//!
//! On the wire an id is exactly its string: serialisation writes the `str`
//! (byte-identical to the `String` fields they replaced, in JSON and
//! postcard) and deserialisation parses, so a bad id in a request body or a
//! message fails to decode with the field's name and the [`IdError`].
//!
//! An id holds an `Arc<str>`, not a `String`: the same id is kept in many
//! places at once (an order's id is the key of the book, of its timers, of
//! the open-orders and finished sets, of the outbox and of the events that
//! name it), and each of those copies was an allocation and a free. A copy
//! is now a count. Measured in `promo/decide_evolve/list`: 7.2–7.5 µs per
//! order before, 6.4–6.5 µs after.
//!
//! Literals (tests, fixed ids) use `from_static`, which panics on an invalid
//! literal like `http::HeaderValue::from_static`; input goes through
//! [`FromStr`], `TryFrom<String>` or `parse`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::IdError;

/// Longest id accepted anywhere (meal, fridge, kitchen, district, order ids).
pub const MAX_ID_LEN: usize = 64;
/// Longest plan id. Shorter than [`MAX_ID_LEN`] because order and charge ids
/// are derived from it (`sub-{plan}-{date}-{n}`, `plan-{plan}-{monday}`) and
/// must fit too; the node makes ULIDs (26) or keyed ids (17).
pub const MAX_PLAN_ID_LEN: usize = 32;

/// The id rule, with the length limit of the kind of id.
pub(crate) fn check(id: &str, max: usize) -> Result<(), IdError> {
    if id.is_empty() || id.len() > max {
        return Err(IdError::Length { max });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::Characters);
    }
    Ok(())
}

thread_local! {
    /// While [`interning`] runs on this thread: the ids decoded so far.
    static INTERNED: std::cell::RefCell<Option<std::collections::HashSet<std::sync::Arc<str>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `decode` with equal ids decoded to one shared text. For decoding a
/// whole state (a snapshot), where one order's id is in the book, its
/// indexes, its timers and its loyalty entry: apart, each copy was an
/// allocation of its own, ~200 bytes per order in memory (BENCHMARKS.md,
/// "Bounded memory"). A state built by replay shares them already (the
/// events' ids are cloned into it). The set of texts lives only for the
/// call.
pub fn interning<T>(decode: impl FnOnce() -> T) -> T {
    struct Restore(Option<std::collections::HashSet<std::sync::Arc<str>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            INTERNED.with(|i| *i.borrow_mut() = previous);
        }
    }
    let previous = INTERNED.with(|i| i.replace(Some(std::collections::HashSet::new())));
    let _restore = Restore(previous);
    decode()
}

/// `id` as a shared text: the one already decoded under [`interning`], if
/// any.
fn shared_text(id: &str) -> std::sync::Arc<str> {
    INTERNED.with(|i| match i.borrow_mut().as_mut() {
        Some(seen) => {
            if let Some(text) = seen.get(id) {
                return text.clone();
            }
            let text: std::sync::Arc<str> = id.into();
            seen.insert(text.clone());
            text
        }
        None => id.into(),
    })
}

/// Reads an id's text where the format lends it (a log record, a request
/// body) and checks it before copying it once into the shared `Arc<str>`:
/// going through a `String` first would allocate twice per id decoded,
/// on replay and on every request.
struct IdText {
    max: usize,
}

impl serde::de::Visitor<'_> for IdText {
    type Value = std::sync::Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `String` says it, so a wrong type is refused in the same words.
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Self::Value, E> {
        check(id, self.max).map_err(E::custom)?;
        Ok(shared_text(id))
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, max_len = $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Longest accepted id of this kind, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Checks `id` and wraps it (one allocation: the shared text).
            pub fn parse(id: impl AsRef<str>) -> Result<Self, IdError> {
                let id = id.as_ref();
                check(id, $max)?;
                Ok($name(id.into()))
            }

            /// For literals only: panics if `id` is not a valid id, as
            /// `http::HeaderValue::from_static` does. Input must be parsed.
            pub fn from_static(id: &'static str) -> Self {
                match Self::parse(id) {
                    Ok(id) => id,
                    Err(e) => panic!("{id:?} is not a valid {}: {e}", stringify!($name)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0.to_string()
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                Self::parse(id)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::parse(id)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(id: &str) -> Result<Self, IdError> {
                Self::parse(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Sound because `Eq`, `Ord` and `Hash` are the string's: maps keyed
        /// by the id answer `get(&str)`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Like the string's, so logs and error texts read as they did.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &*self.0 == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == &*other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == &*other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == &*other.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdText { max: $max }).map($name)
            }
        }
    };
}

id_type!(
    /// Identifier of a meal (chosen by the admin, e.g. `m-bowl-teriyaki`).
    MealId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of a fridge.
    FridgeId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of a kitchen.
    KitchenId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of a district (one region node serves one district).
    DistrictId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of an order: a ULID for app and POS orders,
    /// `sub-{plan}-{date}` ([`OrderId::for_plan_day`]) for subscription
    /// orders. On the payments wire it also carries plan charge ids
    /// (`From<ChargeId>`).
    OrderId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of a weekly plan: a ULID, or `k{hash}` when derived from
    /// an `Idempotency-Key`. At most [`MAX_PLAN_ID_LEN`] bytes.
    PlanId,
    max_len = MAX_PLAN_ID_LEN
);
id_type!(
    /// Identifier of a plan's weekly charge, `plan-{plan}-{monday}`
    /// ([`ChargeId::for_period`]); the payment's idempotency key.
    ChargeId,
    max_len = MAX_ID_LEN
);

id_type!(
    /// Identifier of a campaign (chosen by the admin, e.g. `lunch-week-49`).
    CampaignId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// A coupon code as customers type it. Codes are case-insensitive:
    /// input goes through [`CouponCode::from_input`], which upper-cases it,
    /// so the log holds one spelling. At most 32 bytes.
    CouponCode,
    max_len = 32
);
id_type!(
    /// Identifier of an employer subsidy (one sponsor may have several).
    SubsidyId,
    max_len = MAX_ID_LEN
);
id_type!(
    /// Identifier of a back-in-stock waitlist entry (a ULID from the node).
    WaitlistId,
    max_len = MAX_ID_LEN
);

impl CouponCode {
    /// Parses a code as a customer or an admin typed it (`summer10` and
    /// `SUMMER10` are the same code).
    pub fn from_input(code: &str) -> Result<CouponCode, IdError> {
        CouponCode::parse(code.trim().to_ascii_uppercase())
    }
}

/// A date in id form: chrono's `YYYY-MM-DD` for years 0..=9999, which is
/// every date a district will see. Outside that range the year keeps its
/// digits (and a `-` sign) but not chrono's `+`, which is no id character.
struct IdDate(NaiveDate);

impl fmt::Display for IdDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    }
}

impl OrderId {
    /// The order made for a plan day: `sub-{plan}-{date}`, and
    /// `sub-{plan}-{date}-{n}` for the `n`-th (2, 3, …) made after
    /// withdrawals (`earlier` = how many were made before). Deterministic,
    /// so materialising twice finds the first run's orders.
    ///
    /// Total: a plan id is at most [`MAX_PLAN_ID_LEN`] id characters and
    /// the date at most 13, so the result is an id of at most 61 bytes.
    pub fn for_plan_day(plan_id: &PlanId, date: NaiveDate, earlier: u32) -> OrderId {
        let date = IdDate(date);
        OrderId(
            if earlier == 0 {
                format!("sub-{plan_id}-{date}")
            } else {
                format!("sub-{plan_id}-{date}-{}", u64::from(earlier) + 1)
            }
            .into(),
        )
    }
}

impl ChargeId {
    /// The charge of a plan for the period starting on `period_start`:
    /// asking twice names the same charge, so it is never made twice.
    /// Total for the same reason as [`OrderId::for_plan_day`].
    pub fn for_period(plan_id: &PlanId, period_start: NaiveDate) -> ChargeId {
        ChargeId(format!("plan-{plan_id}-{}", IdDate(period_start)).into())
    }

    /// The `attempt`-th charge of a plan for a period (0: the first, named
    /// as [`ChargeId::for_period`]; then `-2`, `-3`, … for the retries of a
    /// declined one, each a new payment). Total as above (at most 11 more
    /// bytes).
    pub fn for_attempt(plan_id: &PlanId, period_start: NaiveDate, attempt: u32) -> ChargeId {
        let first = ChargeId::for_period(plan_id, period_start);
        if attempt == 0 {
            first
        } else {
            ChargeId(format!("{first}-{}", u64::from(attempt) + 1).into())
        }
    }

    /// The one charge that collects what a customer still owes once none
    /// of their plans will charge again, filed under the plan that ends
    /// last: `plan-{plan}-settle`. Its own name, because the week after a
    /// plan's last day may already have a weekly charge of that plan (an
    /// empty one, asked for before the plan was cut short), and a debt
    /// charge named after that week would be taken for it and never made.
    pub fn for_settlement(plan_id: &PlanId) -> ChargeId {
        ChargeId(format!("plan-{plan_id}-settle").into())
    }
}

impl PlanId {
    /// The plan named by a 64-bit hash (of a customer and their
    /// `Idempotency-Key`): `k` and 16 hex digits.
    pub fn keyed(hash: u64) -> PlanId {
        PlanId(format!("k{hash:016x}").into())
    }
}

id_type!(
    /// Identifier of a webhook endpoint: a ULID the node draws at
    /// registration.
    WebhookId,
    max_len = MAX_ID_LEN
);

/// Webhook endpoints are named by a ULID.
impl From<ulid::Ulid> for WebhookId {
    fn from(id: ulid::Ulid) -> WebhookId {
        WebhookId(id.to_string().into())
    }
}

/// App and POS orders are named by a ULID: 26 letters and digits.
impl From<ulid::Ulid> for OrderId {
    fn from(id: ulid::Ulid) -> OrderId {
        OrderId(id.to_string().into())
    }
}

/// Plans made without an `Idempotency-Key` are named by a ULID (26 bytes,
/// within [`MAX_PLAN_ID_LEN`]).
impl From<ulid::Ulid> for PlanId {
    fn from(id: ulid::Ulid) -> PlanId {
        PlanId(id.to_string().into())
    }
}

/// Waitlist entries are named by a ULID.
impl From<ulid::Ulid> for WaitlistId {
    fn from(id: ulid::Ulid) -> WaitlistId {
        WaitlistId(id.to_string().into())
    }
}

/// A plan charge is requested from the payments service under its id (the
/// message's `order_id` field); both kinds follow the same rule.
impl From<ChargeId> for OrderId {
    fn from(id: ChargeId) -> OrderId {
        OrderId(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_slug_rule() {
        for good in ["m-1", "F_2", "01HF7YAT00000000000000000A", &"x".repeat(64)] {
            assert!(MealId::parse(good).is_ok(), "{good}");
        }
        assert_eq!(MealId::parse(""), Err(IdError::Length { max: 64 }));
        assert_eq!(
            FridgeId::parse("x".repeat(65)),
            Err(IdError::Length { max: 64 })
        );
        for bad in ["bad id!", "m/1", "é", "m.1", "a b"] {
            assert_eq!(OrderId::parse(bad), Err(IdError::Characters), "{bad}");
        }
        assert_eq!(
            PlanId::parse("p".repeat(33)),
            Err(IdError::Length { max: 32 })
        );
    }

    #[test]
    fn ids_decoded_while_interning_share_one_text() {
        let bytes = postcard::to_allocvec(&(
            OrderId::from_static("01HF7YAT00000000000000000A"),
            OrderId::from_static("01HF7YAT00000000000000000A"),
        ))
        .unwrap();
        let apart: (OrderId, OrderId) = postcard::from_bytes(&bytes).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&apart.0 .0, &apart.1 .0));
        let shared: (OrderId, OrderId) = interning(|| postcard::from_bytes(&bytes)).unwrap();
        assert_eq!(shared, apart);
        assert!(std::sync::Arc::ptr_eq(&shared.0 .0, &shared.1 .0));
        // Only for the call: afterwards ids are apart again.
        let after: (OrderId, OrderId) = postcard::from_bytes(&bytes).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&after.0 .0, &after.1 .0));
    }

    #[test]
    fn wire_form_is_the_string() {
        let id = MealId::from_static("m-teriyaki");
        let as_string = "m-teriyaki".to_string();
        assert_eq!(
            postcard::to_stdvec(&id).unwrap(),
            postcard::to_stdvec(&as_string).unwrap()
        );
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"m-teriyaki\"");
        assert_eq!(
            serde_json::from_str::<MealId>("\"m-teriyaki\"").unwrap(),
            id
        );
        let err = serde_json::from_str::<MealId>("\"bad id!\"").unwrap_err();
        assert!(err.to_string().contains("may contain only"), "{err}");
        assert!(postcard::from_bytes::<MealId>(&postcard::to_stdvec("").unwrap()).is_err());
    }

    #[test]
    fn ids_compare_and_look_up_as_strings() {
        let id = FridgeId::from_static("f-1");
        assert_eq!(id, "f-1");
        assert_eq!("f-1", id);
        assert_eq!(format!("{id} {id:?}"), "f-1 \"f-1\"");
        let map: std::collections::BTreeMap<FridgeId, u32> = [(id.clone(), 1)].into();
        assert_eq!(map.get("f-1"), Some(&1));
        let set: std::collections::HashSet<FridgeId> = [id].into();
        assert!(set.contains("f-1"));
    }

    #[test]
    fn derived_ids_keep_their_released_shapes() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let plan = PlanId::from_static("p1");
        assert_eq!(OrderId::for_plan_day(&plan, date, 0), "sub-p1-2026-12-02");
        assert_eq!(OrderId::for_plan_day(&plan, date, 1), "sub-p1-2026-12-02-2");
        assert_eq!(ChargeId::for_period(&plan, date), "plan-p1-2026-12-02");
        assert_eq!(PlanId::keyed(0xabc), "k0000000000000abc");
        let far = NaiveDate::from_ymd_opt(12_345, 1, 1).unwrap();
        assert_eq!(ChargeId::for_period(&plan, far), "plan-p1-12345-01-01");
    }

    #[test]
    fn ulids_are_ids() {
        for id in [
            ulid::Ulid::nil(),
            ulid::Ulid::from_parts(u64::MAX, u128::MAX),
        ] {
            assert_eq!(OrderId::from(id), OrderId::parse(id.to_string()).unwrap());
            assert_eq!(PlanId::from(id), PlanId::parse(id.to_string()).unwrap());
        }
    }

    #[test]
    fn derived_ids_are_valid_at_the_limits() {
        let plan = PlanId::parse("p".repeat(MAX_PLAN_ID_LEN)).unwrap();
        for date in [NaiveDate::MIN, NaiveDate::MAX] {
            let order = OrderId::for_plan_day(&plan, date, u32::MAX);
            assert!(check(&order, MAX_ID_LEN).is_ok(), "{order}");
            let charge = ChargeId::for_period(&plan, date);
            assert!(check(&charge, MAX_ID_LEN).is_ok(), "{charge}");
        }
    }
}
