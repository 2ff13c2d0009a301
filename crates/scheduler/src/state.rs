//! [`ScheduleState`]: plans, the calendar, charges, scheduled orders,
//! prepaid days and credit balances, folded from
//! [`ScheduleEvent`]s. [`ScheduleState::apply`] is total: a recorded event is
//! a fact and is never refused.
//!
//! What an order is and whom it is for lives here; how far it got does not:
//! the district's order book is the one record of an order's lifecycle, and
//! [`ScheduledOrder::stage`] reads it through [`Catalog::order_status`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use protocol::orders::{OrderId, OrderStatus};
use protocol::schedule::{PlanId, ScheduleEvent};
use protocol::{ChargeId, FridgeId, KitchenId, MealId};

use crate::calendar::Calendar;
use crate::plan::Plan;
use crate::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChargeStatus {
    Pending,
    Paid,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    pub charge_id: ChargeId,
    pub plan_id: PlanId,
    pub customer: String,
    pub period_start: NaiveDate,
    /// Prepaid days of the period and their prices.
    pub days: BTreeMap<NaiveDate, i64>,
    pub gross: i64,
    pub credit_applied: i64,
    pub amount: i64,
    pub status: ChargeStatus,
    /// The payment method it was asked of.
    pub payment_method: String,
    /// When the payment had to be made by (requested at this minus the
    /// policy's charge deadline).
    pub deadline: DateTime<Utc>,
}

/// How far a scheduled order got, as the scheduler reads the district's
/// order status (it is never stored here). Ordered: later stages compare
/// greater.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Stage {
    Scheduled,
    Prepared,
    Dispatched,
    /// In the fridge (and whatever happened after: pickup or unclaimed).
    Available,
    /// Withdrawn before it was produced; its price was credited.
    Withdrawn,
}

impl Stage {
    /// Whether the kitchen has produced it (so no change may touch it).
    pub fn produced(self) -> bool {
        matches!(self, Stage::Prepared | Stage::Dispatched | Stage::Available)
    }

    /// The stage of a scheduled order whose status in the district is
    /// `status`. The district makes an order from every `OrderScheduled`,
    /// and a scheduled order can only be cancelled by its withdrawal, so
    /// `Cancelled` is `Withdrawn`. Anything else (no order, or a status
    /// only one-off orders reach) breaks that and is read as `Available`:
    /// past the kitchen, so nothing withdraws it, moves it or makes its day
    /// again.
    pub fn of(status: Option<OrderStatus>) -> Stage {
        match status {
            Some(OrderStatus::Scheduled) => Stage::Scheduled,
            Some(OrderStatus::Prepared) => Stage::Prepared,
            Some(OrderStatus::Dispatched) => Stage::Dispatched,
            Some(OrderStatus::Available | OrderStatus::PickedUp | OrderStatus::Unclaimed) => {
                Stage::Available
            }
            // An order ahead is cancelled (and then refunded) by its
            // customer before the cutoff, or withdrawn and refunded.
            Some(OrderStatus::Cancelled | OrderStatus::Refunded) => Stage::Withdrawn,
            Some(
                OrderStatus::Held
                | OrderStatus::Paying
                | OrderStatus::Purchased
                | OrderStatus::Refused,
            )
            | None => {
                debug_assert!(false, "not a scheduled order's status: {status:?}");
                Stage::Available
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledOrder {
    pub order_id: OrderId,
    /// The plan whose day it is; `None` for an order ahead (a paid one-off
    /// order for this day), which is refunded, not credited, when it
    /// cannot be delivered.
    pub plan_id: Option<PlanId>,
    pub customer: String,
    pub date: NaiveDate,
    pub fridge_id: FridgeId,
    pub kitchen_id: KitchenId,
    pub meal_id: MealId,
    pub price: i64,
}

impl ScheduledOrder {
    /// How far the order got, as the district's order book has it.
    pub fn stage(&self, catalog: &dyn Catalog) -> Stage {
        Stage::of(catalog.order_status(&self.order_id))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleState {
    pub plans: BTreeMap<PlanId, Plan>,
    /// Each customer's plans, oldest first.
    pub customer_plans: BTreeMap<String, Vec<PlanId>>,
    pub calendar: Calendar,
    pub charges: BTreeMap<ChargeId, Charge>,
    pub orders: BTreeMap<OrderId, ScheduledOrder>,
    /// Every order made for a plan day, oldest first (a day is made again
    /// under a new id after a withdrawal).
    pub day_orders: BTreeMap<(PlanId, NaiveDate), Vec<OrderId>>,
    /// Paid plan days not yet turned into an order nor credited: their price.
    pub prepaid_days: BTreeMap<(PlanId, NaiveDate), i64>,
    /// Credit balance per customer, in minor units (negative: owed).
    pub credits: BTreeMap<String, i64>,
    /// Credit refunds to the card, by the charge they go back against.
    pub refunds: BTreeMap<ChargeId, Refund>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    pub charge_id: ChargeId,
    pub customer: String,
    pub amount: i64,
    pub status: ChargeStatus,
}

impl ScheduleState {
    /// The order currently standing for a plan day (not withdrawn), if any.
    pub fn active_order(
        &self,
        catalog: &dyn Catalog,
        plan_id: &PlanId,
        date: NaiveDate,
    ) -> Option<&ScheduledOrder> {
        self.day_orders
            .get(&(plan_id.clone(), date))
            .into_iter()
            .flatten()
            .filter_map(|id| self.orders.get(id))
            .find(|o| o.stage(catalog) != Stage::Withdrawn)
    }

    /// Every charge asked of a plan for the week starting `period_start`,
    /// first attempt first (a declined week is retried under a new id).
    pub fn week_charges<'a>(
        &'a self,
        plan_id: &PlanId,
        period_start: NaiveDate,
    ) -> impl Iterator<Item = &'a Charge> + 'a {
        let plan_id = plan_id.clone();
        (0u32..)
            .map(move |attempt| ChargeId::for_attempt(&plan_id, period_start, attempt))
            .map_while(|id| self.charges.get(id.as_str()))
    }

    /// Whether a charge for the plan's week was paid (by card or credit).
    pub fn week_paid(&self, plan_id: &PlanId, period_start: NaiveDate) -> bool {
        self.week_charges(plan_id, period_start)
            .any(|c| c.status == ChargeStatus::Paid)
    }

    pub fn credit(&self, customer: &str) -> i64 {
        self.credits.get(customer).copied().unwrap_or(0)
    }

    fn add_credit(&mut self, customer: &str, amount: i64) {
        *self.credits.entry(customer.to_string()).or_insert(0) += amount;
    }

    fn mark_paid(&mut self, charge_id: &str) {
        if let Some(c) = self.charges.get_mut(charge_id) {
            c.status = ChargeStatus::Paid;
            for (date, price) in &c.days {
                self.prepaid_days.insert((c.plan_id.clone(), *date), *price);
            }
        }
    }

    /// Whether [`ScheduleState::apply`] keeps anything of `event`. Kitchen
    /// stages it does not: they move the order in the district's order book
    /// only, as the scheduler keeps no copy of an order's lifecycle.
    pub fn keeps(event: &ScheduleEvent) -> bool {
        !matches!(
            event,
            ScheduleEvent::OrderPrepared { .. }
                | ScheduleEvent::OrderDispatched { .. }
                | ScheduleEvent::OrderAvailableForPicking { .. }
                | ScheduleEvent::PreorderPlaced { .. }
                | ScheduleEvent::PreorderWithdrawn { .. }
        )
    }

    /// Folds one recorded event in, routed by family (plans, calendar,
    /// charges, orders and credits) to one short function each. The match
    /// is exhaustive so a new event cannot be forgotten.
    pub fn apply(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::PlanCreated { .. }
            | ScheduleEvent::PlanChanged { .. }
            | ScheduleEvent::PlanCancelled { .. }
            | ScheduleEvent::PaymentMethodChanged { .. } => self.apply_plan(event),
            ScheduleEvent::CalendarDaySet {
                date,
                kitchen_id,
                working,
                ..
            } => self.calendar.set(*date, kitchen_id.as_ref(), *working),
            ScheduleEvent::ChargeRequested { .. } | ScheduleEvent::ChargeSettled { .. } => {
                self.apply_charge(event)
            }
            ScheduleEvent::CreditRefundRequested {
                charge_id,
                customer,
                amount,
                ..
            } => {
                self.add_credit(customer, -amount);
                let refund = Refund {
                    charge_id: charge_id.clone(),
                    customer: customer.clone(),
                    amount: *amount,
                    status: ChargeStatus::Pending,
                };
                self.refunds.insert(charge_id.clone(), refund);
            }
            ScheduleEvent::CreditRefundSettled {
                charge_id,
                approved,
                ..
            } => self.settle_refund(charge_id, *approved),
            ScheduleEvent::OrderScheduled { .. }
            | ScheduleEvent::OrderWithdrawn { .. }
            | ScheduleEvent::DayCredited { .. } => self.apply_order_or_credit(event),
            ScheduleEvent::PreorderScheduled {
                order_id,
                customer,
                date,
                fridge_id,
                kitchen_id,
                meal_id,
                price,
                ..
            } => {
                let order = ScheduledOrder {
                    order_id: order_id.clone(),
                    plan_id: None,
                    customer: customer.clone(),
                    date: *date,
                    fridge_id: fridge_id.clone(),
                    kitchen_id: kitchen_id.clone(),
                    meal_id: meal_id.clone(),
                    price: *price,
                };
                self.orders.insert(order_id.clone(), order);
            }
            // Not kept here (see `keeps`): an order ahead before it is paid
            // lives in the district's order book only, and its withdrawal
            // moves it there (its refund is the district's).
            ScheduleEvent::OrderPrepared { .. }
            | ScheduleEvent::OrderDispatched { .. }
            | ScheduleEvent::OrderAvailableForPicking { .. }
            | ScheduleEvent::PreorderPlaced { .. }
            | ScheduleEvent::PreorderWithdrawn { .. } => {}
        }
    }

    /// `PlanCreated`, `PlanChanged`, `PlanCancelled`.
    fn apply_plan(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::PlanCreated {
                plan_id,
                customer,
                start_date,
                end_date,
                terms,
                currency,
                payment_method,
            } => {
                let plan = Plan {
                    plan_id: plan_id.clone(),
                    customer: customer.clone(),
                    start_date: *start_date,
                    end_date: *end_date,
                    versions: vec![(*start_date, terms.clone())],
                    currency: currency.clone(),
                    payment_method: payment_method.clone(),
                    cancelled_from: None,
                    created: (
                        *start_date,
                        *end_date,
                        terms.clone(),
                        payment_method.clone(),
                    ),
                };
                self.plans.insert(plan_id.clone(), plan);
                self.customer_plans
                    .entry(customer.clone())
                    .or_default()
                    .push(plan_id.clone());
            }
            ScheduleEvent::PlanChanged {
                plan_id,
                from,
                terms,
                end_date,
            } => {
                if let Some(p) = self.plans.get_mut(plan_id) {
                    p.apply_change(*from, terms.clone(), *end_date);
                }
            }
            ScheduleEvent::PlanCancelled { plan_id, from } => {
                if let Some(p) = self.plans.get_mut(plan_id) {
                    p.apply_cancel(*from);
                }
            }
            ScheduleEvent::PaymentMethodChanged {
                plan_id,
                payment_method,
            } => {
                if let Some(p) = self.plans.get_mut(plan_id) {
                    p.payment_method = payment_method.clone();
                }
            }
            _ => unreachable!("apply routes only plan events here"),
        }
    }

    /// `ChargeRequested`, `ChargeSettled`.
    fn apply_charge(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::ChargeRequested {
                charge_id,
                plan_id,
                customer,
                period_start,
                days,
                gross,
                credit_applied,
                amount,
                payment_method,
                deadline,
                ..
            } => {
                let charge = Charge {
                    charge_id: charge_id.clone(),
                    plan_id: plan_id.clone(),
                    customer: customer.clone(),
                    period_start: *period_start,
                    days: days.iter().map(|d| (d.date, d.amount)).collect(),
                    gross: *gross,
                    credit_applied: *credit_applied,
                    amount: *amount,
                    status: ChargeStatus::Pending,
                    payment_method: payment_method.clone(),
                    deadline: *deadline,
                };
                self.charges.insert(charge_id.clone(), charge);
                self.add_credit(customer, -credit_applied);
                if *amount == 0 {
                    self.mark_paid(charge_id);
                }
            }
            ScheduleEvent::ChargeSettled {
                charge_id,
                approved,
                ..
            } => self.settle_charge(charge_id, *approved),
            _ => unreachable!("apply routes only charge events here"),
        }
    }

    /// A payment result; only a pending charge moves (a duplicate result
    /// changes nothing).
    fn settle_charge(&mut self, charge_id: &str, approved: bool) {
        let Some(charge) = self.charges.get_mut(charge_id) else {
            return;
        };
        if charge.status != ChargeStatus::Pending {
            return;
        }
        if approved {
            self.mark_paid(charge_id);
        } else {
            charge.status = ChargeStatus::Declined;
            // The credit it would have used is the customer's again.
            let (customer, credit_applied) = (charge.customer.clone(), charge.credit_applied);
            self.add_credit(&customer, credit_applied);
        }
    }

    /// A refund result; a declined refund gives the credit back. Only a
    /// pending refund moves.
    fn settle_refund(&mut self, charge_id: &str, approved: bool) {
        let Some(refund) = self.refunds.get_mut(charge_id) else {
            return;
        };
        if refund.status != ChargeStatus::Pending {
            return;
        }
        if approved {
            refund.status = ChargeStatus::Paid;
        } else {
            refund.status = ChargeStatus::Declined;
            let (customer, amount) = (refund.customer.clone(), refund.amount);
            self.add_credit(&customer, amount);
        }
    }

    /// `OrderScheduled`, `OrderWithdrawn`, `DayCredited`: a prepaid day
    /// becomes an order or credit, an order is withdrawn and credited.
    fn apply_order_or_credit(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::OrderScheduled {
                order_id,
                plan_id,
                customer,
                date,
                fridge_id,
                kitchen_id,
                meal_id,
                price,
                debit,
                ..
            } => {
                self.prepaid_days.remove(&(plan_id.clone(), *date));
                self.add_credit(customer, -debit);
                let order = ScheduledOrder {
                    order_id: order_id.clone(),
                    plan_id: Some(plan_id.clone()),
                    customer: customer.clone(),
                    date: *date,
                    fridge_id: fridge_id.clone(),
                    kitchen_id: kitchen_id.clone(),
                    meal_id: meal_id.clone(),
                    price: *price,
                };
                self.orders.insert(order_id.clone(), order);
                self.day_orders
                    .entry((plan_id.clone(), *date))
                    .or_default()
                    .push(order_id.clone());
            }
            // The order itself is cancelled in the district's order book.
            ScheduleEvent::OrderWithdrawn {
                customer, credit, ..
            } => self.add_credit(customer, *credit),
            ScheduleEvent::DayCredited {
                plan_id,
                customer,
                date,
                amount,
                ..
            } => {
                self.prepaid_days.remove(&(plan_id.clone(), *date));
                self.add_credit(customer, *amount);
            }
            _ => unreachable!("apply routes only order and credit events here"),
        }
    }
}
