//! Subscription routes: a customer's weekly plans — create (idempotent with
//! an `Idempotency-Key`), list, change (pause and resume are changes), cancel. Changes take effect from the
//! earliest date the cutoff allows, or a later `from`; an earlier one is a
//! 422 `after_cutoff` and changes nothing.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::NaiveDate;
use protocol::schedule::{PlanChange, PlanId, PlanSpec, ScheduleEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::orders::idempotency_key;
use super::AppState;
use crate::auth::{Caller, Role};
use district::{Command, DistrictState, ScheduleCommand};
use protocol::schedule::PlanTerms;
use scheduler::plan::{earliest_effective, Plan};
use scheduler::state::ChargeStatus;
use scheduler::ScheduleState;

/// A plan as the API shows it.
pub fn plan_view(state: &DistrictState, plan: &Plan, today: NaiveDate) -> Value {
    let sched = &state.schedule();
    let current = plan.current_terms();
    let status = plan_status(sched, plan, today);
    let charges = charge_views(sched, plan);
    let orders = order_views(state, plan);
    // The last day of the last week paid for (by card or credit).
    let paid_through = sched
        .charges
        .values()
        .filter(|c| c.plan_id == plan.plan_id && c.status == ChargeStatus::Paid)
        .filter(|c| !c.days.is_empty())
        .map(|c| scheduler::billing::period_end(c.period_start))
        .max();
    let versions: Vec<Value> = plan
        .versions
        .iter()
        .map(|(from, t)| json!({"from": from, "fridge_id": t.fridge_id, "days": t.days, "paused": t.paused}))
        .collect();
    let notes = plan_notes(state, current);
    json!({
        "plan_id": plan.plan_id,
        "customer": plan.customer,
        "notes": notes,
        "status": status,
        "paid_through": paid_through,
        "balance": sched.credit(&plan.customer),
        "fridge_id": current.map(|t| t.fridge_id.clone()),
        "days": current.map(|t| t.days.clone()),
        "start_date": plan.start_date,
        "end_date": plan.end_date,
        "cancelled_from": plan.cancelled_from,
        "currency": plan.currency,
        "versions": versions,
        "charges": charges,
        "orders": orders,
    })
}

/// `cancelled`, `ended`, `payment_declined`, `paused` or `active`.
fn plan_status(sched: &ScheduleState, plan: &Plan, today: NaiveDate) -> &'static str {
    let current = plan.current_terms();
    // A week still to come whose every charge was declined: nothing is made
    // for it until a retry (or a new payment method) is paid.
    let declined_week = sched
        .charges
        .values()
        .filter(|c| c.plan_id == plan.plan_id)
        .map(|c| c.period_start)
        .filter(|week| scheduler::billing::period_end(*week) >= today)
        .any(|week| {
            let attempts: Vec<_> = sched.week_charges(&plan.plan_id, week).collect();
            !attempts.is_empty() && attempts.iter().all(|c| c.status == ChargeStatus::Declined)
        });
    if plan.is_cancelled() {
        "cancelled"
    } else if plan.end_date < today {
        "ended"
    } else if declined_week {
        "payment_declined"
    } else if current.is_some_and(|t| t.paused) {
        "paused"
    } else {
        "active"
    }
}

/// Every charge of the plan, with what it took from the card and why.
fn charge_views(sched: &ScheduleState, plan: &Plan) -> Vec<Value> {
    sched
        .charges
        .values()
        .filter(|c| c.plan_id == plan.plan_id)
        .map(|c| {
            json!({
                "charge_id": c.charge_id,
                "period_start": c.period_start,
                "days": c.days.len(),
                "gross": c.gross,
                "credit_applied": c.credit_applied,
                "amount": c.amount,
                "debt_collected": (-c.credit_applied).max(0),
                "status": match c.status {
                    // Nothing went to the card: say why instead of "paid".
                    ChargeStatus::Paid if c.amount == 0 && c.gross == 0 => "nothing_due",
                    ChargeStatus::Paid if c.amount == 0 => "covered_by_credit",
                    ChargeStatus::Pending => "pending",
                    ChargeStatus::Paid => "paid",
                    ChargeStatus::Declined => "declined",
                },
            })
        })
        .collect()
}

/// Every order the plan made, with its status in the order book.
fn order_views(state: &DistrictState, plan: &Plan) -> Vec<Value> {
    state
        .schedule()
        .orders
        .values()
        .filter(|o| o.plan_id.as_ref() == Some(&plan.plan_id))
        .map(|o| {
            let order = state.orders().get(&o.order_id);
            let status = order.map(|x| x.status);
            let withdrawn = order.and_then(|x| x.withdrawn.as_deref().copied());
            json!({"order_id": o.order_id, "date": o.date, "meal_id": o.meal_id, "price": o.price, "status": status, "withdrawn": withdrawn})
        })
        .collect()
}

/// What the plan asks for that will not be delivered, said rather than
/// silently skipped.
fn plan_notes(state: &DistrictState, current: Option<&PlanTerms>) -> Vec<String> {
    let mut notes: Vec<String> = vec![];
    for day in current.map(|t| t.days.as_slice()).unwrap_or_default() {
        if day.weekday >= 6 {
            notes.push(format!(
                "weekday {} is not a working day: nothing is delivered on it unless the calendar makes the date one",
                day.weekday
            ));
        }
        if state.catalog().meal(&day.meal_id).is_none() {
            notes.push(format!(
                "meal {} is no longer offered: its days are not delivered (prepaid ones are credited)",
                day.meal_id
            ));
        }
    }
    notes
}

fn today(app: &AppState) -> NaiveDate {
    scheduler::local_date(app.clock.now(), &app.config.schedule_policy())
}

fn visible_plan(app: &AppState, caller: &Caller, plan_id: &str) -> Result<Value, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let state = app.district.state();
    state
        .schedule()
        .plans
        .get(plan_id)
        .filter(|p| claims.role == Role::Admin || p.customer == claims.sub)
        .map(|p| plan_view(&state, p, today(app)))
        .ok_or_else(|| {
            ApiError::not_found("unknown_plan", format!("plan {plan_id} does not exist"))
        })
}

/// A plan id from the caller and their `Idempotency-Key` (FNV-1a, 64 bit):
/// a retried create names the same plan, which the decider answers with
/// the first result.
fn keyed_plan_id(customer: &str, key: &str) -> PlanId {
    let h = customer
        .bytes()
        .chain([0u8])
        .chain(key.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    PlanId::keyed(h)
}

/// `POST /v1/subscriptions` (optional `Idempotency-Key`).
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(spec): Json<PlanSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    super::misdirect::fridge_here(&app, spec.fridge_id.as_str())?;
    let plan_id = match idempotency_key(&headers)? {
        Some(key) => keyed_plan_id(&claims.sub, &key),
        None => app.clock.ulid().into(),
    };
    app.district
        .submit(Command::Schedule(ScheduleCommand::CreatePlan {
            plan_id: plan_id.clone(),
            customer: claims.sub.clone(),
            spec,
            policy: app.config.schedule_policy(),
        }))
        .await?;
    tracing::info!(%plan_id, customer = %claims.sub, "plan created");
    Ok((
        StatusCode::CREATED,
        axum::Json(visible_plan(&app, &caller, &plan_id)?),
    ))
}

/// `GET /v1/subscriptions`: the caller's plans (an admin's: every plan), the
/// credit balance, and the earliest date a change made now takes effect.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let state = app.district.state();
    let policy = app.config.schedule_policy();
    let now = app.clock.now();
    let today = scheduler::local_date(now, &policy);
    let plans: Vec<Value> = state
        .schedule()
        .plans
        .values()
        .filter(|p| claims.role == Role::Admin || p.customer == claims.sub)
        .map(|p| plan_view(&state, p, today))
        .collect();
    Ok(axum::Json(json!({
        "plans": plans,
        "credit": state.schedule().credit(&claims.sub),
        "today": today,
        "earliest_change_date": earliest_effective(now, &state.schedule().calendar, &policy),
    })))
}

/// `GET /v1/subscriptions/{id}`: one plan (the customer's own; any for an
/// admin), with its charges, orders, paid-through date and the customer's
/// balance.
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(plan_id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(visible_plan(&app, &caller, &plan_id)?))
}

/// What a change or cancellation credited to the subscriber: withdrawn
/// orders and prepaid days, in minor units.
fn credited(committed: &crate::writer::Committed) -> i64 {
    committed
        .events
        .iter()
        .map(|e| match &e.event {
            protocol::Event::Schedule(ScheduleEvent::OrderWithdrawn { credit, .. }) => *credit,
            protocol::Event::Schedule(ScheduleEvent::DayCredited { amount, .. }) => *amount,
            _ => 0,
        })
        .sum()
}

/// The plan as it is now, and what this request credited.
fn answer(
    app: &AppState,
    caller: &Caller,
    plan_id: &str,
    credited: i64,
) -> Result<axum::Json<Value>, ApiError> {
    let mut view = visible_plan(app, caller, plan_id)?;
    if let Some(map) = view.as_object_mut() {
        map.insert("credited".into(), json!(credited));
    }
    Ok(axum::Json(view))
}

/// Not an id, so no plan: what the decider answers for an unknown one.
fn path_plan_id(plan_id: &str) -> Result<PlanId, ApiError> {
    plan_id
        .parse()
        .map_err(|_| ApiError::not_found("unknown_plan", format!("plan {plan_id} does not exist")))
}

fn customer_of(caller: &Caller) -> Result<Option<String>, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    Ok((claims.role != Role::Admin).then(|| claims.sub.clone()))
}

/// `PATCH /v1/subscriptions/{id}`.
pub async fn change(
    State(app): State<AppState>,
    caller: Caller,
    Path(plan_id): Path<String>,
    Json(change): Json<PlanChange>,
) -> Result<axum::Json<Value>, ApiError> {
    let customer = customer_of(&caller)?;
    let plan_id = path_plan_id(&plan_id)?;
    let committed = app
        .district
        .submit(Command::Schedule(ScheduleCommand::ChangePlan {
            plan_id: plan_id.clone(),
            customer,
            change,
            policy: app.config.schedule_policy(),
        }))
        .await?;
    let credited = credited(&committed);
    tracing::info!(%plan_id, credited, "plan changed");
    answer(&app, &caller, &plan_id, credited)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelQuery {
    #[serde(default)]
    from: Option<NaiveDate>,
    /// `true`: what the cancellation credits is refunded to the card
    /// (default: kept as credit for the next charge).
    #[serde(default)]
    refund: bool,
}

/// `DELETE /v1/subscriptions/{id}[?from=YYYY-MM-DD]`.
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(plan_id): Path<String>,
    Query(q): Query<CancelQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let customer = customer_of(&caller)?;
    let plan_id = path_plan_id(&plan_id)?;
    let committed = app
        .district
        .submit(Command::Schedule(ScheduleCommand::CancelPlan {
            plan_id: plan_id.clone(),
            customer,
            from: q.from,
            refund: q.refund,
            policy: app.config.schedule_policy(),
        }))
        .await?;
    let credited = credited(&committed);
    let refunded: i64 = committed
        .events
        .iter()
        .map(|e| match &e.event {
            protocol::Event::Schedule(ScheduleEvent::CreditRefundRequested { amount, .. }) => {
                *amount
            }
            _ => 0,
        })
        .sum();
    tracing::info!(%plan_id, credited, refunded, "plan cancelled");
    let mut answer = answer(&app, &caller, &plan_id, credited)?;
    if let Some(map) = answer.0.as_object_mut() {
        map.insert("refunded".into(), json!(refunded));
    }
    Ok(answer)
}
