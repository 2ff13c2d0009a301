//! [`ScheduleState`]: plans, the calendar, charges, scheduled orders,
//! prepaid days and credit balances, folded from
//! [`ScheduleEvent`]s. [`ScheduleState::apply`] is total: a recorded event is
//! a fact and is never refused.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use protocol::orders::OrderId;
use protocol::schedule::{PlanId, ScheduleEvent};
use protocol::{ChargeId, FridgeId, KitchenId, MealId};

use crate::calendar::Calendar;
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Pending,
    Paid,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// How far a scheduled order got. Ordered: later stages compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledOrder {
    pub order_id: OrderId,
    pub plan_id: PlanId,
    pub customer: String,
    pub date: NaiveDate,
    pub fridge_id: FridgeId,
    pub kitchen_id: KitchenId,
    pub meal_id: MealId,
    pub price: i64,
    pub stage: Stage,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl ScheduleState {
    /// The order currently standing for a plan day (not withdrawn), if any.
    pub fn active_order(&self, plan_id: &PlanId, date: NaiveDate) -> Option<&ScheduledOrder> {
        self.day_orders
            .get(&(plan_id.clone(), date))
            .into_iter()
            .flatten()
            .filter_map(|id| self.orders.get(id))
            .find(|o| o.stage != Stage::Withdrawn)
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

    fn set_stage(&mut self, order_id: &str, stage: Stage) {
        if let Some(o) = self.orders.get_mut(order_id) {
            o.stage = o.stage.max(stage);
        }
    }

    pub fn apply(&mut self, event: &ScheduleEvent) {
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
                self.plans.insert(
                    plan_id.clone(),
                    Plan {
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
                    },
                );
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
            ScheduleEvent::CalendarDaySet {
                date,
                kitchen_id,
                working,
                ..
            } => self.calendar.set(*date, kitchen_id.as_ref(), *working),
            ScheduleEvent::ChargeRequested {
                charge_id,
                plan_id,
                customer,
                period_start,
                days,
                gross,
                credit_applied,
                amount,
                ..
            } => {
                self.charges.insert(
                    charge_id.clone(),
                    Charge {
                        charge_id: charge_id.clone(),
                        plan_id: plan_id.clone(),
                        customer: customer.clone(),
                        period_start: *period_start,
                        days: days.iter().map(|d| (d.date, d.amount)).collect(),
                        gross: *gross,
                        credit_applied: *credit_applied,
                        amount: *amount,
                        status: ChargeStatus::Pending,
                    },
                );
                self.add_credit(customer, -credit_applied);
                if *amount == 0 {
                    self.mark_paid(charge_id);
                }
            }
            ScheduleEvent::ChargeSettled {
                charge_id,
                approved,
                ..
            } => {
                let pending = self
                    .charges
                    .get(charge_id)
                    .filter(|c| c.status == ChargeStatus::Pending)
                    .map(|c| (c.customer.clone(), c.credit_applied));
                if let Some((customer, credit_applied)) = pending {
                    if *approved {
                        self.mark_paid(charge_id);
                    } else {
                        // The credit it would have used is the customer's again.
                        self.add_credit(&customer, credit_applied);
                        if let Some(c) = self.charges.get_mut(charge_id) {
                            c.status = ChargeStatus::Declined;
                        }
                    }
                }
            }
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
                self.orders.insert(
                    order_id.clone(),
                    ScheduledOrder {
                        order_id: order_id.clone(),
                        plan_id: plan_id.clone(),
                        customer: customer.clone(),
                        date: *date,
                        fridge_id: fridge_id.clone(),
                        kitchen_id: kitchen_id.clone(),
                        meal_id: meal_id.clone(),
                        price: *price,
                        stage: Stage::Scheduled,
                    },
                );
                self.day_orders
                    .entry((plan_id.clone(), *date))
                    .or_default()
                    .push(order_id.clone());
            }
            ScheduleEvent::OrderWithdrawn {
                order_id,
                customer,
                credit,
                ..
            } => {
                if let Some(o) = self.orders.get_mut(order_id) {
                    o.stage = Stage::Withdrawn;
                }
                self.add_credit(customer, *credit);
            }
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
            ScheduleEvent::OrderPrepared { order_id } => self.set_stage(order_id, Stage::Prepared),
            ScheduleEvent::OrderDispatched { order_id } => {
                self.set_stage(order_id, Stage::Dispatched)
            }
            ScheduleEvent::OrderAvailableForPicking { order_id, .. } => {
                self.set_stage(order_id, Stage::Available)
            }
        }
    }
}
