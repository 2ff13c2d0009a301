//! Decisions: what a command means in the current [`ScheduleState`], as
//! [`ScheduleEvent`]s. Nothing here mutates the state; the caller records
//! the events and folds them with [`ScheduleState::apply`].
//!
//! Money rules:
//! - each plan is charged once per ISO week for the days it will deliver
//!   that week (price at charge time), net of the subscriber's credit;
//! - a paid day becomes an order exactly once; a day that is withdrawn
//!   (plan change, cancellation, non-working day) before the kitchen produced
//!   it is credited at its paid price;
//! - a day made again after it was credited, or added to an already paid
//!   week, is drawn from the credit (which may go negative and is then
//!   collected with the next charge, or, when no plan of the customer will
//!   be charged again, with a final charge of its own);
//! - a prepaid day whose meal is swapped is credited at the price paid and
//!   made again at the new price, so a swap costs the difference whenever
//!   it is made.
//!
//! Materialisation: every tick makes an order for each plan day in
//! `[earliest effective date, today + days_ahead]` that the plan delivers,
//! the district and the meal's kitchen work, the week is paid, and no order
//! stands for yet. Order ids are `sub-{plan_id}-{date}` (then `-2`, `-3`
//! for days made again), so a second run — or a run after a restart — finds
//! the orders of the first and makes nothing.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use protocol::schedule::{
    ChargedDay, KitchenEventSpec, KitchenStage, PlanChange, PlanSpec, PlanTerms, ScheduleEvent,
    WithdrawReason,
};
use protocol::{ChargeId, FridgeId, KitchenId, MealId, OrderId, PlanId};

use crate::billing::{credit_to_apply, period_end, period_start};
use crate::calendar::Calendar;
use crate::plan::{canonical_days, earliest_effective, Plan};
use crate::state::{ChargeStatus, ScheduleState, ScheduledOrder, Stage};
use crate::{local_date, pickup_deadline, Catalog, Policy, ScheduleError};

/// Deterministic id of the `generation`-th order for a plan day (0 = first).
pub fn order_id(plan_id: &PlanId, date: NaiveDate, generation: usize) -> OrderId {
    // A day is made again once per withdrawal: billions of generations of
    // one day cannot exist, so saturating never merges two real ids.
    let earlier = u32::try_from(generation).unwrap_or(u32::MAX);
    OrderId::for_plan_day(plan_id, date, earlier)
}

fn check_terms(
    catalog: &dyn Catalog,
    terms: &PlanTerms,
    currency: Option<&protocol::money::Currency>,
) -> Result<protocol::money::Currency, ScheduleError> {
    if !catalog.has_fridge(&terms.fridge_id) {
        return Err(ScheduleError::UnknownFridge(terms.fridge_id.clone()));
    }
    let mut plan_currency = currency.cloned();
    for day in &terms.days {
        let meal = catalog
            .meal(&day.meal_id)
            .ok_or_else(|| ScheduleError::UnknownMeal(day.meal_id.clone()))?;
        match &plan_currency {
            None => plan_currency = Some(meal.price.currency),
            Some(c) if *c != meal.price.currency => {
                return Err(ScheduleError::Invalid(
                    "all meals of a plan must share one currency".into(),
                ))
            }
            Some(_) => {}
        }
    }
    plan_currency.ok_or_else(|| ScheduleError::Invalid("a plan needs at least one day".into()))
}

/// `POST /v1/subscriptions`.
pub fn create_plan(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    plan_id: PlanId,
    customer: String,
    spec: PlanSpec,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Vec<ScheduleEvent>, ScheduleError> {
    spec.validate()?;
    let terms = PlanTerms {
        fridge_id: spec.fridge_id,
        days: canonical_days(spec.days),
        paused: false,
    };
    // Plan ids derived from an Idempotency-Key repeat on a retry: the first
    // answer stands (no events), a different plan under the key is refused.
    if let Some(existing) = state.plans.get(&plan_id) {
        let same = (spec.start_date, spec.end_date, terms, spec.payment_method);
        return if existing.customer == customer && existing.created == same {
            Ok(vec![])
        } else {
            Err(ScheduleError::IdempotencyKeyReused)
        };
    }
    let earliest = earliest_effective(now, &state.calendar, policy);
    if spec.start_date < earliest {
        return Err(ScheduleError::AfterCutoff { earliest });
    }
    let currency = check_terms(catalog, &terms, None)?;
    if !catalog.fridge_takes_orders(&terms.fridge_id) {
        return Err(ScheduleError::FridgeUnavailable(terms.fridge_id));
    }
    if let Some(existing) =
        overlapping_plan(state, &customer, &terms, spec.start_date, spec.end_date)
    {
        return Err(ScheduleError::OverlappingPlan {
            existing: existing.plan_id.clone(),
            fridge_id: terms.fridge_id,
        });
    }
    Ok(vec![ScheduleEvent::PlanCreated {
        plan_id,
        customer,
        start_date: spec.start_date,
        end_date: spec.end_date,
        terms,
        currency,
        payment_method: spec.payment_method,
    }])
}

/// A plan of the same customer that would deliver at the same fridge on a
/// day the new terms deliver too, from `start` to `end` (a second plan
/// would charge twice for one lunch).
fn overlapping_plan<'a>(
    state: &'a ScheduleState,
    customer: &str,
    terms: &PlanTerms,
    start: NaiveDate,
    end: NaiveDate,
) -> Option<&'a Plan> {
    let ids = state.customer_plans.get(customer)?;
    ids.iter().filter_map(|id| state.plans.get(id)).find(|p| {
        let mut d = start.max(p.start_date);
        let Some(last) = p.last_day().map(|l| l.min(end)) else {
            return false;
        };
        // Plans last at most MAX_PLAN_DAYS, so this loop is bounded.
        while d <= last {
            let weekday = u8::try_from(chrono::Datelike::weekday(&d).number_from_monday()).ok();
            let new_delivers = weekday.is_some_and(|w| terms.days.iter().any(|x| x.weekday == w));
            if new_delivers && p.meal_on(d).is_some_and(|(f, _)| *f == terms.fridge_id) {
                return true;
            }
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
        false
    })
}

fn own_plan<'a>(
    state: &'a ScheduleState,
    plan_id: &PlanId,
    customer: Option<&str>,
) -> Result<&'a Plan, ScheduleError> {
    match state.plans.get(plan_id) {
        // Someone else's plan is reported as missing: existence must not leak.
        Some(p) if customer.is_none_or(|c| c == p.customer) => Ok(p),
        _ => Err(ScheduleError::UnknownPlan(plan_id.clone())),
    }
}

/// The date a change asked for `from` takes effect, or why it cannot.
fn effective_from(
    plan: &Plan,
    from: Option<NaiveDate>,
    earliest: NaiveDate,
) -> Result<NaiveDate, ScheduleError> {
    let from = from.unwrap_or(earliest);
    if from < earliest {
        return Err(ScheduleError::AfterCutoff { earliest });
    }
    Ok(from.max(plan.start_date))
}

/// Withdraws the plan's unproduced orders and credits its prepaid days from
/// `from` on wherever `next` no longer delivers the same thing (a day that
/// still delivers, another meal, is made again at that meal's price).
fn settle_from(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    plan: &Plan,
    next: &Plan,
    from: NaiveDate,
    reason: WithdrawReason,
) -> Vec<ScheduleEvent> {
    let mut events = vec![];
    for ((pid, date), ids) in state.day_orders.range((plan.plan_id.clone(), from)..) {
        if *pid != plan.plan_id {
            break;
        }
        for o in ids.iter().filter_map(|id| state.orders.get(id)) {
            let keeps = next.meal_on(*date) == Some((&o.fridge_id, &o.meal_id));
            if !keeps && o.stage(catalog) == Stage::Scheduled {
                events.push(ScheduleEvent::OrderWithdrawn {
                    order_id: o.order_id.clone(),
                    plan_id: plan.plan_id.clone(),
                    customer: plan.customer.clone(),
                    credit: o.price,
                    reason,
                });
            }
        }
    }
    for ((pid, date), amount) in state.prepaid_days.range((plan.plan_id.clone(), from)..) {
        if *pid != plan.plan_id {
            break;
        }
        // A prepaid day whose meal changes is credited at the price paid and
        // made again at the new meal's price from the credit, so a swap
        // costs the difference whenever it is made.
        if next.meal_on(*date) != plan.meal_on(*date) {
            events.push(ScheduleEvent::DayCredited {
                plan_id: plan.plan_id.clone(),
                customer: plan.customer.clone(),
                date: *date,
                amount: *amount,
                reason,
            });
        }
    }
    events
}

/// `PATCH /v1/subscriptions/{id}` (`customer: None` for an admin).
pub fn change_plan(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    plan_id: &PlanId,
    customer: Option<&str>,
    change: PlanChange,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Vec<ScheduleEvent>, ScheduleError> {
    let plan = own_plan(state, plan_id, customer)?;
    change.validate()?;
    if plan.is_cancelled() {
        return Err(ScheduleError::WrongState("the plan is cancelled".into()));
    }
    // A new payment method takes effect at once (a declined week is
    // retried with it by the next tick); it needs no date.
    let method_changed = change
        .payment_method
        .clone()
        .filter(|m| *m != plan.payment_method)
        .map(|payment_method| ScheduleEvent::PaymentMethodChanged {
            plan_id: plan_id.clone(),
            payment_method,
        });
    let terms_change = change.fridge_id.is_some()
        || change.days.is_some()
        || change.paused.is_some()
        || change.end_date.is_some();
    if !terms_change {
        return Ok(method_changed.into_iter().collect());
    }
    let earliest = earliest_effective(now, &state.calendar, policy);
    let from = effective_from(plan, change.from, earliest)?;
    let end_date = change.end_date.unwrap_or(plan.end_date);
    if from > plan.end_date || end_date < from {
        return Err(ScheduleError::Invalid(format!(
            "the change would take effect on {from}, outside the plan ({} to {end_date}); cancel the plan instead",
            plan.start_date
        )));
    }
    if (end_date - plan.start_date).num_days() >= protocol::schedule::MAX_PLAN_DAYS {
        return Err(ScheduleError::Invalid(format!(
            "a plan may last at most {} days",
            protocol::schedule::MAX_PLAN_DAYS
        )));
    }
    let current = plan
        .terms_on(from)
        .cloned()
        .ok_or_else(|| ScheduleError::WrongState("the plan has no terms".into()))?;
    let terms = PlanTerms {
        fridge_id: change.fridge_id.unwrap_or(current.fridge_id.clone()),
        days: change.days.map(canonical_days).unwrap_or(current.days),
        paused: change.paused.unwrap_or(current.paused),
    };
    check_terms(catalog, &terms, Some(&plan.currency))?;
    if terms.fridge_id != current.fridge_id && !catalog.fridge_takes_orders(&terms.fridge_id) {
        return Err(ScheduleError::FridgeUnavailable(terms.fridge_id));
    }
    let mut next = plan.clone();
    next.apply_change(from, terms.clone(), end_date);
    let mut events: Vec<ScheduleEvent> = method_changed.into_iter().collect();
    events.push(ScheduleEvent::PlanChanged {
        plan_id: plan_id.clone(),
        from,
        terms,
        end_date,
    });
    events.extend(settle_from(
        state,
        catalog,
        plan,
        &next,
        from,
        WithdrawReason::PlanChanged,
    ));
    Ok(events)
}

/// `DELETE /v1/subscriptions/{id}`: nothing is delivered from `from` on
/// (default: the earliest date the cutoff allows); unproduced orders and
/// prepaid days from then on are credited.
pub fn cancel_plan(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    plan_id: &PlanId,
    customer: Option<&str>,
    from: Option<NaiveDate>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Vec<ScheduleEvent>, ScheduleError> {
    let plan = own_plan(state, plan_id, customer)?;
    let earliest = earliest_effective(now, &state.calendar, policy);
    let from = effective_from(plan, from, earliest)?;
    if plan.cancelled_from.is_some_and(|c| c <= from) {
        return Err(ScheduleError::WrongState(
            "the plan is already cancelled".into(),
        ));
    }
    let mut next = plan.clone();
    next.apply_cancel(from);
    let mut events = vec![ScheduleEvent::PlanCancelled {
        plan_id: plan_id.clone(),
        from,
    }];
    events.extend(settle_from(
        state,
        catalog,
        plan,
        &next,
        from,
        WithdrawReason::PlanCancelled,
    ));
    Ok(events)
}

/// `PUT /v1/admin/calendar/{date}`. A day that stops working withdraws its
/// unproduced orders (credited) and credits its prepaid days; a day that
/// works again is made again by the next [`tick`] if still within the cutoff.
pub fn set_calendar_day(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    date: NaiveDate,
    spec: protocol::schedule::CalendarDaySpec,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Vec<ScheduleEvent>, ScheduleError> {
    spec.validate()?;
    let today = local_date(now, policy);
    if date < today {
        return Err(ScheduleError::Invalid(format!(
            "{date} is in the past (today is {today})"
        )));
    }
    if let Some(k) = &spec.kitchen_id {
        if !catalog.has_kitchen(k) {
            return Err(ScheduleError::UnknownKitchen(k.clone()));
        }
    }
    let kitchen = spec.kitchen_id.clone();
    let mut after = state.calendar.clone();
    after.set(date, kitchen.as_ref(), spec.working);
    let mut events = vec![ScheduleEvent::CalendarDaySet {
        date,
        kitchen_id: spec.kitchen_id,
        working: spec.working,
        note: spec.note,
    }];
    if !spec.working {
        events.extend(settle_closed_day(state, catalog, &after, date));
    }
    Ok(events)
}

/// The withdrawal of an undeliverable order: a plan day's is credited to
/// the subscriber, an order ahead is refunded by the district.
fn withdraw(o: &ScheduledOrder, reason: WithdrawReason) -> ScheduleEvent {
    match &o.plan_id {
        Some(plan_id) => ScheduleEvent::OrderWithdrawn {
            order_id: o.order_id.clone(),
            plan_id: plan_id.clone(),
            customer: o.customer.clone(),
            credit: o.price,
            reason,
        },
        None => ScheduleEvent::PreorderWithdrawn {
            order_id: o.order_id.clone(),
            customer: o.customer.clone(),
            reason,
        },
    }
}

/// Withdraws the unproduced orders and credits the prepaid days of `date`
/// whose kitchen does not work that day under the calendar `after`.
fn settle_closed_day(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    after: &Calendar,
    date: NaiveDate,
) -> Vec<ScheduleEvent> {
    let reason = WithdrawReason::NonWorkingDay;
    let mut events = vec![];
    for o in state.orders.values() {
        if o.date == date
            && !after.is_working(date, Some(&o.kitchen_id))
            && o.stage(catalog) == Stage::Scheduled
        {
            events.push(withdraw(o, reason));
        }
    }
    for ((plan_id, d), amount) in &state.prepaid_days {
        if *d != date {
            continue;
        }
        let Some(plan) = state.plans.get(plan_id) else {
            continue;
        };
        let kitchen_of_day = plan
            .meal_on(date)
            .and_then(|(_, meal)| catalog.meal(meal))
            .map(|m| m.kitchen_id);
        if !after.is_working(date, kitchen_of_day.as_ref()) {
            events.push(ScheduleEvent::DayCredited {
                plan_id: plan_id.clone(),
                customer: plan.customer.clone(),
                date,
                amount: *amount,
                reason,
            });
        }
    }
    events
}

/// Days of `plan` in `[from, to]` it delivers on working days, with their
/// meal's kitchen and current price.
fn delivery_days(
    plan: &Plan,
    state: &ScheduleState,
    catalog: &dyn Catalog,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<(NaiveDate, FridgeId, MealId, crate::MealInfo)> {
    let mut out = vec![];
    let mut d = from.max(plan.start_date);
    let Some(last) = plan.last_day() else {
        return out;
    };
    let to = to.min(last);
    while d <= to {
        if let Some((fridge, meal_id)) = plan.meal_on(d) {
            if let Some(meal) = catalog.meal(meal_id) {
                if state.calendar.is_working(d, Some(&meal.kitchen_id)) {
                    out.push((d, fridge.clone(), meal_id.clone(), meal));
                }
            }
        }
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

/// The dates the job works on at `now`: from the earliest date a change
/// could still affect to `days_ahead` days after today.
fn window(state: &ScheduleState, now: DateTime<Utc>, policy: &Policy) -> (NaiveDate, NaiveDate) {
    let earliest = earliest_effective(now, &state.calendar, policy);
    let horizon = local_date(now, policy) + Duration::days(i64::from(policy.days_ahead));
    (earliest, horizon)
}

/// Charges due: one per plan and ISO week reaching into the materialisation
/// horizon that has none yet.
fn charges_due(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<ScheduleEvent> {
    let (earliest, horizon) = window(state, now, policy);
    // Credit used by charges decided in this same call, per customer.
    let mut used: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut events = vec![];
    for plan in state.plans.values() {
        let Some(last) = plan.last_day() else {
            continue;
        };
        let first = plan.start_date.max(earliest);
        if first > last {
            continue;
        }
        let mut week = period_start(first);
        while week <= horizon.min(last) {
            if let Some(attempt) = attempt_due(state, plan, week, now, policy) {
                let id = ChargeId::for_attempt(&plan.plan_id, week, attempt);
                let days: Vec<ChargedDay> =
                    delivery_days(plan, state, catalog, week.max(first), period_end(week))
                        .into_iter()
                        .map(|(date, _, _, meal)| ChargedDay {
                            date,
                            amount: meal.price.amount_minor,
                        })
                        .collect();
                let gross: i64 = days.iter().map(|d| d.amount).sum();
                if attempt > 0 && gross == 0 {
                    // A retry for a week with nothing left to deliver.
                    week += Duration::days(7);
                    continue;
                }
                let spent = used.entry(plan.customer.as_str()).or_insert(0);
                let credit_applied = credit_to_apply(state.credit(&plan.customer) - *spent, gross);
                *spent += credit_applied;
                events.push(ScheduleEvent::ChargeRequested {
                    charge_id: id,
                    plan_id: plan.plan_id.clone(),
                    customer: plan.customer.clone(),
                    period_start: week,
                    days,
                    gross,
                    credit_applied,
                    amount: gross - credit_applied,
                    currency: plan.currency.clone(),
                    payment_method: plan.payment_method.clone(),
                    deadline: now + policy.charge_deadline,
                });
            }
            week += Duration::days(7);
        }
    }
    events.extend(final_charges(state, earliest, now + policy.charge_deadline));
    events
}

/// How long after a declined attempt the next one is made (the `n`-th
/// retry waits `CHARGE_RETRY_BACKOFF[n - 1]`); after the last, the week is
/// not charged again unless the subscriber changes the payment method.
pub const CHARGE_RETRY_BACKOFF_HOURS: [i64; 3] = [1, 6, 24];

/// The attempt of the plan's week to ask for now, if any: the first when the
/// week has no charge; a retry when every attempt so far was declined and
/// either the backoff since the last one has passed or the plan's payment
/// method is no longer the one it declined.
fn attempt_due(
    state: &ScheduleState,
    plan: &Plan,
    week: NaiveDate,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Option<u32> {
    let attempts: Vec<_> = state.week_charges(&plan.plan_id, week).collect();
    let Some(last) = attempts.last() else {
        return Some(0);
    };
    if attempts.iter().any(|c| c.status != ChargeStatus::Declined) {
        return None; // Paid, or an answer is awaited.
    }
    let retries = attempts.len() - 1;
    let new_method = last.payment_method != plan.payment_method;
    let backoff = CHARGE_RETRY_BACKOFF_HOURS
        .get(retries)
        .map(|h| Duration::hours(*h));
    let requested_at = last.deadline - policy.charge_deadline;
    let backed_off = backoff.is_some_and(|b| now >= requested_at + b);
    (new_method || backed_off).then(|| u32::try_from(attempts.len()).unwrap_or(u32::MAX))
}

/// A customer who owes (credit below zero: days made again after they were
/// credited, or added to a week already paid) and none of whose plans will
/// be charged again is charged the debt once: a charge with no days, under
/// the plan that ends last, for the week after its end, named
/// [`ChargeId::for_settlement`] (not after that week: the plan may already
/// have an empty weekly charge for it). Nothing is charged while another of
/// the customer's charges is pending.
fn final_charges(
    state: &ScheduleState,
    earliest: NaiveDate,
    deadline: DateTime<Utc>,
) -> Vec<ScheduleEvent> {
    let mut events = vec![];
    for (customer, plan_ids) in &state.customer_plans {
        let debt = -state.credit(customer);
        if debt <= 0 {
            continue;
        }
        let plans: Vec<&Plan> = plan_ids
            .iter()
            .filter_map(|id| state.plans.get(id))
            .collect();
        let charging = plans
            .iter()
            .any(|p| p.last_day().is_some_and(|last| last >= earliest));
        let pending = state
            .charges
            .values()
            .any(|c| c.customer == *customer && c.status == ChargeStatus::Pending);
        let last = plans
            .iter()
            .max_by_key(|p| (p.last_day().unwrap_or(p.start_date), p.plan_id.clone()));
        let (Some(plan), false, false) = (last, charging, pending) else {
            continue;
        };
        let after = period_start(plan.last_day().unwrap_or(plan.start_date)) + Duration::days(7);
        let id = ChargeId::for_settlement(&plan.plan_id);
        if state.charges.contains_key(&id) {
            continue; // Collected, or declined (not retried).
        }
        events.push(ScheduleEvent::ChargeRequested {
            charge_id: id,
            plan_id: plan.plan_id.clone(),
            customer: customer.clone(),
            period_start: after,
            days: vec![],
            gross: 0,
            credit_applied: -debt,
            amount: debt,
            currency: plan.currency.clone(),
            payment_method: plan.payment_method.clone(),
            deadline,
        });
    }
    events
}

/// Orders due: every deliverable, paid plan day in the horizon with no
/// standing order.
fn orders_due(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<ScheduleEvent> {
    let (earliest, horizon) = window(state, now, policy);
    let mut events = vec![];
    for plan in state.plans.values() {
        for (date, fridge_id, meal_id, meal) in
            delivery_days(plan, state, catalog, earliest, horizon)
        {
            let paid = state.week_paid(&plan.plan_id, period_start(date));
            if !paid || state.active_order(catalog, &plan.plan_id, date).is_some() {
                continue;
            }
            if !catalog.has_fridge(&fridge_id) {
                continue;
            }
            let generation = state
                .day_orders
                .get(&(plan.plan_id.clone(), date))
                .map_or(0, Vec::len);
            let (price, debit) = match state.prepaid_days.get(&(plan.plan_id.clone(), date)) {
                Some(p) => (*p, 0),
                None => (meal.price.amount_minor, meal.price.amount_minor),
            };
            events.push(ScheduleEvent::OrderScheduled {
                order_id: order_id(&plan.plan_id, date, generation),
                plan_id: plan.plan_id.clone(),
                customer: plan.customer.clone(),
                date,
                fridge_id,
                kitchen_id: meal.kitchen_id,
                meal_id,
                meal_name: meal.name,
                price,
                currency: plan.currency.clone(),
                debit,
            });
        }
    }
    events
}

/// Prepaid days that can no longer become orders (their date is before the
/// earliest date the job still works on) are credited, so no money is kept
/// for a meal that was never made.
fn lapsed_days(state: &ScheduleState, now: DateTime<Utc>, policy: &Policy) -> Vec<ScheduleEvent> {
    let (earliest, _) = window(state, now, policy);
    state
        .prepaid_days
        .iter()
        .filter(|((_, date), _)| *date < earliest)
        .filter_map(|((plan_id, date), amount)| {
            let plan = state.plans.get(plan_id)?;
            Some(ScheduleEvent::DayCredited {
                plan_id: plan_id.clone(),
                customer: plan.customer.clone(),
                date: *date,
                amount: *amount,
                reason: WithdrawReason::NotDelivered,
            })
        })
        .collect()
}

/// Orders the kitchen has not placed in the fridge that can no longer be
/// delivered are withdrawn and credited: those whose delivery day has ended
/// (`NotProduced`), and today's at a fridge that is quarantined or offline
/// (`FridgeUnavailable`). Whatever stage the kitchen reached: an order that
/// never reached the fridge was not delivered.
fn undeliverable(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<ScheduleEvent> {
    let today = local_date(now, policy);
    state
        .orders
        .values()
        .filter(|o| o.date <= today)
        .filter_map(|o| {
            let reason = if o.date < today {
                WithdrawReason::NotProduced
            } else if !catalog.fridge_takes_orders(&o.fridge_id) {
                WithdrawReason::FridgeUnavailable
            } else {
                return None;
            };
            let stage = o.stage(catalog);
            (stage < Stage::Available).then(|| withdraw(o, reason))
        })
        .collect()
}

/// The periodic job: charges due, the orders due once those are recorded,
/// credits for prepaid days that lapsed and for orders that can no longer
/// be delivered. Idempotent: a second call on the state after the first's
/// events returns nothing.
pub fn tick(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<ScheduleEvent> {
    let mut events = charges_due(state, catalog, now, policy);
    if events.is_empty() {
        events.extend(orders_due(state, catalog, now, policy));
    } else {
        // Charges covered by credit are paid at once: order their days now.
        let mut next = state.clone();
        for e in &events {
            next.apply(e);
        }
        events.extend(orders_due(&next, catalog, now, policy));
    }
    events.extend(lapsed_days(state, now, policy));
    events.extend(undeliverable(state, catalog, now, policy));
    events
}

/// Refunds up to `amount` of the customer's credit to the card: against
/// their paid charges, newest first, each at most once and for at most what
/// it charged. Less is refunded when the credit or the charges fall short.
pub fn refund_credit(
    state: &ScheduleState,
    customer: &str,
    amount: i64,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Vec<ScheduleEvent> {
    let mut left = amount.min(state.credit(customer));
    let mut events = vec![];
    let mut paid: Vec<_> = state
        .charges
        .values()
        .filter(|c| c.customer == customer && c.status == ChargeStatus::Paid && c.amount > 0)
        .filter(|c| !state.refunds.contains_key(&c.charge_id))
        .collect();
    paid.sort_by_key(|c| std::cmp::Reverse((c.period_start, c.charge_id.clone())));
    for c in paid {
        if left <= 0 {
            break;
        }
        let Some(plan) = state.plans.get(&c.plan_id) else {
            continue;
        };
        let take = left.min(c.amount);
        left -= take;
        events.push(ScheduleEvent::CreditRefundRequested {
            charge_id: c.charge_id.clone(),
            plan_id: c.plan_id.clone(),
            customer: customer.to_string(),
            amount: take,
            currency: plan.currency.clone(),
            payment_method: c.payment_method.clone(),
            deadline: now + policy.charge_deadline,
        });
    }
    events
}

/// A refund result for a credit refund. Duplicates change nothing.
pub fn record_refund(
    state: &ScheduleState,
    charge_id: &str,
    approved: bool,
    reference: String,
) -> Vec<ScheduleEvent> {
    match (state.refunds.get(charge_id), state.charges.get(charge_id)) {
        (Some(r), Some(c)) if r.status == ChargeStatus::Pending => {
            vec![ScheduleEvent::CreditRefundSettled {
                charge_id: r.charge_id.clone(),
                plan_id: c.plan_id.clone(),
                approved,
                reference,
            }]
        }
        _ => vec![],
    }
}

/// A payment result for a plan charge. Duplicates change nothing.
pub fn record_charge(
    state: &ScheduleState,
    charge_id: &str,
    approved: bool,
    reference: String,
) -> Vec<ScheduleEvent> {
    match state.charges.get(charge_id) {
        Some(c) if c.status == ChargeStatus::Pending => vec![ScheduleEvent::ChargeSettled {
            charge_id: c.charge_id.clone(),
            plan_id: c.plan_id.clone(),
            approved,
            reference,
        }],
        _ => vec![],
    }
}

/// `POST /v1/kitchens/{kitchen_id}/events`: moves the kitchen's orders for a
/// date forward to `stage`, with every stage in between, so the history is
/// complete. Placing in the fridge draws a pickup code from `pickup_code`
/// (randomness is the caller's). Orders at or past `stage` in the district's
/// order book (picked up and unclaimed ones are past every stage) and
/// withdrawn ones are left alone.
///
/// Placing in the fridge is allowed from the day before the delivery date
/// until that day's pickup window closes (a meal placed earlier would pass
/// its window before its day); the order stays reserved until then. Orders
/// at a fridge that does not take meals now (quarantined, offline) are
/// passed by, so one bad fridge does not hold back the kitchen's others;
/// only when every order the event would place is at such a fridge is the
/// event refused.
pub fn kitchen_event(
    state: &ScheduleState,
    catalog: &dyn Catalog,
    kitchen_id: &KitchenId,
    spec: &KitchenEventSpec,
    now: DateTime<Utc>,
    policy: &Policy,
    pickup_code: &mut dyn FnMut() -> String,
) -> Result<Vec<ScheduleEvent>, ScheduleError> {
    spec.validate()?;
    let target = match spec.stage {
        KitchenStage::Prepared => Stage::Prepared,
        KitchenStage::Dispatched => Stage::Dispatched,
        KitchenStage::PlacedInFridge => Stage::Available,
    };
    let selected: Vec<_> = match &spec.order_ids {
        Some(ids) => ids
            .iter()
            .map(|id| {
                state
                    .orders
                    .get(id)
                    .filter(|o| o.kitchen_id == *kitchen_id && o.date == spec.date)
                    .ok_or_else(|| ScheduleError::UnknownOrder(id.clone()))
            })
            .collect::<Result<_, _>>()?,
        None => state
            .orders
            .values()
            .filter(|o| o.kitchen_id == *kitchen_id && o.date == spec.date)
            .collect(),
    };
    let deadline = pickup_deadline(spec.date, policy);
    if target == Stage::Available {
        let first = spec.date.pred_opt().unwrap_or(spec.date);
        if local_date(now, policy) < first || now >= deadline {
            return Err(ScheduleError::OutsidePlacementWindow {
                date: spec.date,
                first,
                closes: deadline,
            });
        }
    }
    let mut events = vec![];
    let mut unavailable: Option<FridgeId> = None;
    for o in selected {
        if spec.fridge_id.as_ref().is_some_and(|f| *f != o.fridge_id) {
            continue;
        }
        let stage = o.stage(catalog);
        if stage >= target {
            continue; // Already there (or past it: picked up, unclaimed), or withdrawn.
        }
        if target == Stage::Available && !catalog.fridge_takes_orders(&o.fridge_id) {
            unavailable.get_or_insert_with(|| o.fridge_id.clone());
            continue;
        }
        let id = || o.order_id.clone();
        if stage < Stage::Prepared {
            events.push(ScheduleEvent::OrderPrepared { order_id: id() });
        }
        if target >= Stage::Dispatched && stage < Stage::Dispatched {
            events.push(ScheduleEvent::OrderDispatched { order_id: id() });
        }
        if target == Stage::Available {
            events.push(ScheduleEvent::OrderAvailableForPicking {
                order_id: id(),
                pickup_code: pickup_code(),
                pickup_deadline: deadline,
            });
        }
    }
    match unavailable {
        Some(fridge_id) if events.is_empty() => Err(ScheduleError::FridgeUnavailable(fridge_id)),
        _ => Ok(events),
    }
}
