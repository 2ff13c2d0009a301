//! Subscriptions and kitchens as pure logic: time is an input.
//!
//! This crate owns the rules of DESIGN §4 "Subscriptions and kitchens":
//! - [`plan`]: a weekly plan's terms over time, the change cutoff (which date
//!   a change or cancellation takes effect from) and the district's local date;
//! - [`calendar`]: working and non-working days per district and per kitchen;
//! - [`billing`]: billing periods (ISO weeks) and their deterministic charge ids;
//! - [`state`]: [`ScheduleState`], folded from [`protocol::schedule::ScheduleEvent`]s;
//! - [`decide`]: what a plan change, a calendar change, a kitchen event, a
//!   payment result or a scheduler tick means, as events (materialisation with
//!   deterministic order ids, so running it twice gives the same orders);
//! - [`prep`]: the kitchen prep report (JSON struct and CSV) and the one-off
//!   demand forecast.
//!
//! No IO, no clock, no async: every function takes `now` (or dates) as
//! arguments, so a test can drive a month of plans with a handful of clock
//! values. The region node persists the events and serves the results.

pub mod billing;
pub mod calendar;
pub mod decide;
pub mod plan;
pub mod prep;
pub mod state;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use protocol::money::Money;
use protocol::orders::OrderStatus;
use protocol::{FridgeId, KitchenId, MealId, OrderId, PlanId};

pub use calendar::Calendar;
pub use decide::{
    cancel_plan, change_plan, create_plan, kitchen_event, record_charge, record_refund,
    refund_credit, set_calendar_day, tick,
};
pub use state::{ScheduleState, Stage};

/// Orders are materialised this many days ahead by default (the kitchen
/// cooks 1–3 days ahead).
pub const MATERIALISE_DAYS_AHEAD_DEFAULT: u32 = 3;
/// Most days ahead a district may materialise.
pub const MATERIALISE_DAYS_AHEAD_MAX: u32 = 14;
/// Changes made before this local hour take effect from the next business
/// day; later ones from the business day after that.
pub const CHANGE_CUTOFF_DEFAULT_HOUR: u32 = 18;
/// The district's offset from UTC, in minutes, for its local dates.
pub const UTC_OFFSET_DEFAULT_MINUTES: i32 = 0;
/// A plan charge must be made within this many hours of being requested.
pub const CHARGE_DEADLINE_DEFAULT_HOURS: i64 = 24;
/// A plan meal may be picked up until this local hour of its delivery day.
pub const PICKUP_UNTIL_DEFAULT_HOUR: u32 = 21;

/// The district's subscription rules (from the node's `[subscriptions]` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub days_ahead: u32,
    /// Local hour (0..=23) after which a change counts as made the next day.
    pub cutoff_hour: u32,
    pub utc_offset_minutes: i32,
    pub charge_deadline: Duration,
    /// Local hour (1..=23) of the delivery day until which a plan meal
    /// placed in the fridge stays reserved for its subscriber.
    pub pickup_until_hour: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            days_ahead: MATERIALISE_DAYS_AHEAD_DEFAULT,
            cutoff_hour: CHANGE_CUTOFF_DEFAULT_HOUR,
            utc_offset_minutes: UTC_OFFSET_DEFAULT_MINUTES,
            charge_deadline: Duration::hours(CHARGE_DEADLINE_DEFAULT_HOURS),
            pickup_until_hour: PICKUP_UNTIL_DEFAULT_HOUR,
        }
    }
}

/// What the scheduler needs to know about a meal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MealInfo {
    pub name: String,
    pub kitchen_id: KitchenId,
    pub price: Money,
}

/// The district as the scheduler sees it: its catalog and its orders'
/// lifecycles (the district implements it over its state, tests over maps).
pub trait Catalog {
    fn meal(&self, meal_id: &str) -> Option<MealInfo>;
    fn has_fridge(&self, fridge_id: &str) -> bool;
    /// Whether the fridge takes meals now: registered and online (not
    /// offline, not quarantined).
    fn fridge_takes_orders(&self, fridge_id: &str) -> bool;
    fn has_kitchen(&self, kitchen_id: &str) -> bool;
    /// An order's status in the district's order book (`None`: unknown).
    /// The scheduler keeps no copy of an order's lifecycle: how far one of
    /// its orders got ([`Stage::of`]) is read from here, so pickups,
    /// unclaimed timers and withdrawals all count as the district saw them.
    fn order_status(&self, order_id: &str) -> Option<OrderStatus>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Invalid(String),
    /// The spec breaks a shape rule of `protocol` (before any state is read).
    #[error(transparent)]
    Spec(#[from] protocol::ValidationError),
    #[error("plan {0} does not exist")]
    UnknownPlan(PlanId),
    #[error("meal {0} does not exist")]
    UnknownMeal(MealId),
    #[error("fridge {0} does not exist")]
    UnknownFridge(FridgeId),
    #[error("kitchen {0} does not exist")]
    UnknownKitchen(KitchenId),
    #[error("fridge {0} is quarantined or offline and takes no plan meals right now")]
    FridgeUnavailable(FridgeId),
    #[error("meals for {date} may be placed in the fridge from {first} until the pickup window closes at {closes}")]
    OutsidePlacementWindow {
        date: NaiveDate,
        first: NaiveDate,
        closes: DateTime<Utc>,
    },
    #[error("plan {existing} already delivers at fridge {fridge_id} on some of these days")]
    OverlappingPlan {
        existing: PlanId,
        fridge_id: FridgeId,
    },
    #[error("order {0} is not one of this kitchen's scheduled orders")]
    UnknownOrder(OrderId),
    #[error(
        "the change cutoff has passed: the earliest date a change can take effect is {earliest}"
    )]
    AfterCutoff { earliest: NaiveDate },
    #[error("{0}")]
    WrongState(String),
    #[error("this Idempotency-Key was used for a different plan")]
    IdempotencyKeyReused,
}

/// The district's local date and hour at `now`.
pub fn local_date(now: DateTime<Utc>, policy: &Policy) -> NaiveDate {
    (now + Duration::minutes(i64::from(policy.utc_offset_minutes))).date_naive()
}

/// The instant a local hour of `date` begins (hours past 23 run into the
/// next day).
pub fn local_instant(date: NaiveDate, hour: u32, policy: &Policy) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN).and_utc();
    midnight + Duration::hours(i64::from(hour))
        - Duration::minutes(i64::from(policy.utc_offset_minutes))
}

/// When a plan meal for `date` stops being reserved for its subscriber:
/// the end of the delivery day's pickup window.
pub fn pickup_deadline(date: NaiveDate, policy: &Policy) -> DateTime<Utc> {
    local_instant(date, policy.pickup_until_hour, policy)
}
