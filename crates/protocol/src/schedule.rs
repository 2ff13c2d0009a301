//! Subscriptions and kitchens: the wire shapes of weekly plans, the working-day
//! calendar and kitchen events, and [`ScheduleEvent`], the facts the
//! scheduler records in a region's log.
//!
//! Owns shapes and their input validation only; the rules (cutoff, billing,
//! materialisation, credits) live in the `larder-scheduler` crate.
//!
//! Encoding notes: dates are `chrono::NaiveDate` (the district's local
//! calendar date, `YYYY-MM-DD` in JSON and as a string in postcard);
//! weekdays are ISO numbers, 1 = Monday … 7 = Sunday. [`ScheduleEvent`] is
//! externally tagged and flatten-free so postcard can decode it; its variants
//! are append-only like [`crate::Event`]'s.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::orders::OrderId;
use crate::{ChargeId, FridgeId, KitchenId, MealId, ValidationError};

pub use crate::ids::PlanId;

/// Longest plan, in days (a year and a day); longer is a typo.
pub const MAX_PLAN_DAYS: i64 = 366;
/// Longest calendar note, in bytes.
pub const MAX_NOTE_LEN: usize = 200;
/// Longest payment method token, in bytes.
pub const MAX_PLAN_PAYMENT_METHOD_LEN: usize = 128;

/// One weekday of a plan and the meal chosen for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDay {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    pub meal_id: MealId,
}

/// What a plan delivers on the days it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTerms {
    pub fridge_id: FridgeId,
    /// Sorted by weekday, one entry per weekday.
    pub days: Vec<PlanDay>,
    /// A paused plan materialises nothing until a later change resumes it.
    pub paused: bool,
}

/// Body of `POST /v1/subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub fridge_id: FridgeId,
    pub days: Vec<PlanDay>,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// A token from the payment provider's client SDK; every billing period
    /// is charged to it.
    pub payment_method: String,
}

/// Body of `PATCH /v1/subscriptions/{id}`: every field optional; what is
/// given replaces the current value from `from` on (default: the earliest
/// date the cutoff allows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    #[serde(default)]
    pub fridge_id: Option<FridgeId>,
    #[serde(default)]
    pub days: Option<Vec<PlanDay>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// A new payment method token for the plan's charges from now on
    /// (takes effect at once, not from a date; a declined week is retried
    /// with it).
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// Body of `PUT /v1/admin/calendar/{date}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarDaySpec {
    pub working: bool,
    /// Only this kitchen (a closure); the whole district when absent.
    #[serde(default)]
    pub kitchen_id: Option<KitchenId>,
    #[serde(default)]
    pub note: String,
}

/// What a kitchen reports about its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KitchenStage {
    Prepared,
    Dispatched,
    PlacedInFridge,
}

/// Body of `POST /v1/kitchens/{kitchen_id}/events`: moves the kitchen's
/// orders for `date` (optionally only those for one fridge, or only the listed
/// orders) forward to `stage`. Orders already at or past it are left alone,
/// so a repeated event changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitchenEventSpec {
    pub stage: KitchenStage,
    pub date: NaiveDate,
    #[serde(default)]
    pub fridge_id: Option<FridgeId>,
    #[serde(default)]
    pub order_ids: Option<Vec<OrderId>>,
}

/// Why a scheduled order was withdrawn (and its price credited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// The subscriber changed the plan.
    PlanChanged,
    /// The subscriber cancelled the plan.
    PlanCancelled,
    /// The day became non-working (holiday, kitchen closure).
    NonWorkingDay,
    /// The day passed its cutoff before it could become an order (the
    /// payment came late, the meal or the fridge left the catalog).
    NotDelivered,
    /// The kitchen did not place the meal in the fridge by the end of its
    /// delivery day.
    NotProduced,
    /// The fridge was quarantined or offline on the delivery day.
    FridgeUnavailable,
}

/// One prepaid day of a billing period and its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargedDay {
    pub date: NaiveDate,
    pub amount: i64,
}

/// Facts about plans, the calendar and scheduled orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScheduleEvent {
    PlanCreated {
        plan_id: PlanId,
        customer: String,
        start_date: NaiveDate,
        end_date: NaiveDate,
        terms: PlanTerms,
        currency: Currency,
        payment_method: String,
    },
    /// New terms (and end date) in force from `from` on.
    PlanChanged {
        plan_id: PlanId,
        from: NaiveDate,
        terms: PlanTerms,
        end_date: NaiveDate,
    },
    /// Nothing is delivered from `from` on.
    PlanCancelled {
        plan_id: PlanId,
        from: NaiveDate,
    },
    CalendarDaySet {
        date: NaiveDate,
        kitchen_id: Option<KitchenId>,
        working: bool,
        note: String,
    },
    /// One billing period's charge. With `amount > 0` it is an outbox row
    /// (the payment request `order_id` is `charge_id`); with `amount == 0`
    /// (covered by credit) the period is paid at once.
    ChargeRequested {
        charge_id: ChargeId,
        plan_id: PlanId,
        customer: String,
        period_start: NaiveDate,
        days: Vec<ChargedDay>,
        gross: i64,
        credit_applied: i64,
        amount: i64,
        currency: Currency,
        payment_method: String,
        deadline: DateTime<Utc>,
    },
    ChargeSettled {
        charge_id: ChargeId,
        plan_id: PlanId,
        approved: bool,
        reference: String,
    },
    /// A plan day became an order (stream `order-{order_id}`). `debit` is
    /// what was drawn from the subscriber's credit because the day was not
    /// (or no longer) prepaid.
    OrderScheduled {
        order_id: OrderId,
        plan_id: PlanId,
        customer: String,
        date: NaiveDate,
        fridge_id: FridgeId,
        kitchen_id: KitchenId,
        meal_id: MealId,
        meal_name: String,
        price: i64,
        currency: Currency,
        debit: i64,
    },
    /// A scheduled order that was not produced yet is withdrawn; its price
    /// is credited to the subscriber.
    OrderWithdrawn {
        order_id: OrderId,
        plan_id: PlanId,
        customer: String,
        credit: i64,
        reason: WithdrawReason,
    },
    /// A prepaid day that will not become an order is credited.
    DayCredited {
        plan_id: PlanId,
        customer: String,
        date: NaiveDate,
        amount: i64,
        reason: WithdrawReason,
    },
    OrderPrepared {
        order_id: OrderId,
    },
    OrderDispatched {
        order_id: OrderId,
    },
    /// The kitchen placed the order in its fridge: the subscriber may pick
    /// it up with `pickup_code` until `pickup_deadline`. The stock events
    /// (units in, reserved for this order) precede it in the same batch.
    OrderAvailableForPicking {
        order_id: OrderId,
        pickup_code: String,
        pickup_deadline: DateTime<Utc>,
    },
    /// The plan's charges go to `payment_method` from now on.
    PaymentMethodChanged {
        plan_id: PlanId,
        payment_method: String,
    },
    /// Part of the subscriber's credit goes back to the card it was paid
    /// with: refunded against the paid charge `charge_id` (an outbox row;
    /// the payment request's `order_id` is `charge_id`, kind refund). The
    /// credit is reduced now and given back if the refund is declined.
    CreditRefundRequested {
        charge_id: ChargeId,
        plan_id: PlanId,
        customer: String,
        amount: i64,
        currency: Currency,
        payment_method: String,
        deadline: DateTime<Utc>,
    },
    /// The result of a credit refund.
    CreditRefundSettled {
        charge_id: ChargeId,
        plan_id: PlanId,
        approved: bool,
        reference: String,
    },
    /// An order ahead (a one-off order for a future day) was confirmed: it
    /// follows its `OrderPlaced` in the same batch and says which day and
    /// kitchen it is for, and until when it may be cancelled for a refund
    /// (the change cutoff of the day before, as for a plan day).
    PreorderPlaced {
        order_id: OrderId,
        date: NaiveDate,
        kitchen_id: KitchenId,
        cancel_until: DateTime<Utc>,
    },
    /// An order ahead was paid: from now on the kitchen makes it, like a
    /// plan day's order (prep report, stages, placement, pickup code).
    PreorderScheduled {
        order_id: OrderId,
        customer: String,
        date: NaiveDate,
        fridge_id: FridgeId,
        kitchen_id: KitchenId,
        meal_id: MealId,
        meal_name: String,
        price: i64,
        currency: Currency,
    },
    /// A paid order ahead can no longer be delivered (its day ended before
    /// the kitchen placed it, or the day became non-working, or its fridge
    /// is closed that day): it is withdrawn, and the district refunds it in
    /// the same batch.
    PreorderWithdrawn {
        order_id: OrderId,
        customer: String,
        reason: WithdrawReason,
    },
}

impl ScheduleEvent {
    pub fn stream(&self) -> crate::StreamId {
        match self {
            ScheduleEvent::PlanCreated { plan_id, .. }
            | ScheduleEvent::PlanChanged { plan_id, .. }
            | ScheduleEvent::PlanCancelled { plan_id, .. }
            | ScheduleEvent::ChargeRequested { plan_id, .. }
            | ScheduleEvent::ChargeSettled { plan_id, .. }
            | ScheduleEvent::DayCredited { plan_id, .. }
            | ScheduleEvent::PaymentMethodChanged { plan_id, .. }
            | ScheduleEvent::CreditRefundRequested { plan_id, .. }
            | ScheduleEvent::CreditRefundSettled { plan_id, .. } => {
                crate::StreamId::Plan(plan_id.clone())
            }
            ScheduleEvent::CalendarDaySet { date, .. } => crate::StreamId::Calendar(*date),
            ScheduleEvent::OrderScheduled { order_id, .. }
            | ScheduleEvent::OrderWithdrawn { order_id, .. }
            | ScheduleEvent::OrderPrepared { order_id }
            | ScheduleEvent::OrderDispatched { order_id }
            | ScheduleEvent::OrderAvailableForPicking { order_id, .. }
            | ScheduleEvent::PreorderPlaced { order_id, .. }
            | ScheduleEvent::PreorderScheduled { order_id, .. }
            | ScheduleEvent::PreorderWithdrawn { order_id, .. } => {
                crate::StreamId::Order(order_id.clone())
            }
        }
    }

    pub fn stream_id(&self) -> String {
        self.stream().to_string()
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleEvent::PlanCreated { .. } => "PlanCreated",
            ScheduleEvent::PlanChanged { .. } => "PlanChanged",
            ScheduleEvent::PlanCancelled { .. } => "PlanCancelled",
            ScheduleEvent::CalendarDaySet { .. } => "CalendarDaySet",
            ScheduleEvent::ChargeRequested { .. } => "ChargeRequested",
            ScheduleEvent::ChargeSettled { .. } => "ChargeSettled",
            ScheduleEvent::OrderScheduled { .. } => "OrderScheduled",
            ScheduleEvent::OrderWithdrawn { .. } => "OrderWithdrawn",
            ScheduleEvent::DayCredited { .. } => "DayCredited",
            ScheduleEvent::OrderPrepared { .. } => "OrderPrepared",
            ScheduleEvent::OrderDispatched { .. } => "OrderDispatched",
            ScheduleEvent::OrderAvailableForPicking { .. } => "OrderAvailableForPicking",
            ScheduleEvent::PaymentMethodChanged { .. } => "PaymentMethodChanged",
            ScheduleEvent::CreditRefundRequested { .. } => "CreditRefundRequested",
            ScheduleEvent::CreditRefundSettled { .. } => "CreditRefundSettled",
            ScheduleEvent::PreorderPlaced { .. } => "PreorderPlaced",
            ScheduleEvent::PreorderScheduled { .. } => "PreorderScheduled",
            ScheduleEvent::PreorderWithdrawn { .. } => "PreorderWithdrawn",
        }
    }
}

/// Checks a list of plan days: 1..=7 entries, weekdays 1..=7, each once.
pub fn validate_days(days: &[PlanDay]) -> Result<(), ValidationError> {
    if days.is_empty() || days.len() > 7 {
        return Err(ValidationError::DayCount);
    }
    let mut seen = BTreeSet::new();
    for d in days {
        if !(1..=7).contains(&d.weekday) {
            return Err(ValidationError::Weekday { weekday: d.weekday });
        }
        if !seen.insert(d.weekday) {
            return Err(ValidationError::WeekdayTwice { weekday: d.weekday });
        }
    }
    Ok(())
}

impl PlanSpec {
    /// Shape rules; the scheduler checks dates against the cutoff and the
    /// catalog.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_days(&self.days)?;
        if self.end_date < self.start_date {
            return Err(ValidationError::EndBeforeStart);
        }
        if (self.end_date - self.start_date).num_days() >= MAX_PLAN_DAYS {
            return Err(ValidationError::PlanTooLong {
                max_days: MAX_PLAN_DAYS,
            });
        }
        if self.payment_method.is_empty() || self.payment_method.len() > MAX_PLAN_PAYMENT_METHOD_LEN
        {
            return Err(ValidationError::Length {
                field: "payment_method",
                min: 1,
                max: MAX_PLAN_PAYMENT_METHOD_LEN,
            });
        }
        Ok(())
    }
}

impl PlanChange {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(days) = &self.days {
            validate_days(days)?;
        }
        if let Some(method) = &self.payment_method {
            if method.is_empty() || method.len() > MAX_PLAN_PAYMENT_METHOD_LEN {
                return Err(ValidationError::Length {
                    field: "payment_method",
                    min: 1,
                    max: MAX_PLAN_PAYMENT_METHOD_LEN,
                });
            }
        }
        if self.fridge_id.is_none()
            && self.days.is_none()
            && self.paused.is_none()
            && self.end_date.is_none()
            && self.payment_method.is_none()
        {
            return Err(ValidationError::NothingToChange);
        }
        Ok(())
    }
}

impl CalendarDaySpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.note.len() > MAX_NOTE_LEN {
            return Err(ValidationError::TooLong {
                field: "note",
                max: MAX_NOTE_LEN,
            });
        }
        Ok(())
    }
}

/// Most orders one kitchen event may list.
pub const MAX_KITCHEN_EVENT_ORDERS: usize = 1_000;

impl KitchenEventSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(ids) = &self.order_ids {
            if ids.is_empty() || ids.len() > MAX_KITCHEN_EVENT_ORDERS {
                return Err(ValidationError::OrderIdCount {
                    max: MAX_KITCHEN_EVENT_ORDERS,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PlanSpec {
        PlanSpec {
            fridge_id: FridgeId::from_static("f-1"),
            days: vec![PlanDay {
                weekday: 1,
                meal_id: MealId::from_static("m-1"),
            }],
            start_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            payment_method: "tok_visa".into(),
        }
    }

    #[test]
    fn plan_specs_are_checked() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.end_date = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(s.validate(), Err(ValidationError::EndBeforeStart));
        let mut s = spec();
        s.days[0].weekday = 8;
        assert_eq!(s.validate(), Err(ValidationError::Weekday { weekday: 8 }));
        let mut s = spec();
        s.days[0].weekday = 0;
        assert_eq!(s.validate(), Err(ValidationError::Weekday { weekday: 0 }));
        let mut s = spec();
        s.days.push(s.days[0].clone());
        assert_eq!(
            s.validate(),
            Err(ValidationError::WeekdayTwice { weekday: 1 })
        );
        assert_eq!(
            PlanChange::default().validate(),
            Err(ValidationError::NothingToChange)
        );
    }

    #[test]
    fn schedule_events_survive_postcard() {
        let ev = ScheduleEvent::CalendarDaySet {
            date: NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
            kitchen_id: Some(KitchenId::from_static("k-1")),
            working: false,
            note: "Christmas".into(),
        };
        let bytes = postcard::to_stdvec(&ev).unwrap();
        assert_eq!(postcard::from_bytes::<ScheduleEvent>(&bytes).unwrap(), ev);
    }
}
