//! Kitchen routes: the prep report (JSON, or CSV with `Accept: text/csv`),
//! kitchen events (prepared, dispatched, placed in fridge), and the admin's
//! working-day calendar. A kitchen token only reaches its own kitchen
//! (`kitchen_id` claim); admins reach every kitchen.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use protocol::catalog::FridgeStatus;
use protocol::orders::OrderStatus;
use protocol::schedule::{CalendarDaySpec, KitchenEventSpec, KitchenStage};
use protocol::{KitchenId, MealId};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::AppState;
use crate::auth::{Caller, Role};
use district::schedule::{StateCatalog, PREPAID_PAYMENT_METHOD};
use district::{Command, DistrictState, ScheduleCommand};
use scheduler::prep::{prep_report, to_csv, PrepReport, Sale, FORECAST_WEEKS};

pub(super) fn own_kitchen(caller: &Caller, kitchen_id: &str) -> Result<(), ApiError> {
    let claims = caller.require(&[Role::Kitchen, Role::Admin])?;
    if claims.role == Role::Kitchen && claims.kitchen_id.as_deref() != Some(kitchen_id) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is for another kitchen",
        ));
    }
    Ok(())
}

fn parse_date(s: &str) -> Result<NaiveDate, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request("invalid_date", format!("{s:?} is not a date (YYYY-MM-DD)"))
    })
}

/// A kitchen exists in this district while it has meals here (or orders
/// from when it had); a path that is no id names none.
pub(super) fn known_kitchen(
    state: &DistrictState,
    kitchen_id: &str,
) -> Result<KitchenId, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "unknown_kitchen",
            format!("kitchen {kitchen_id} has no meals in this district"),
        )
    };
    let kitchen_id: KitchenId = kitchen_id.parse().map_err(|_| unknown())?;
    let known = state
        .catalog()
        .meals()
        .values()
        .any(|m| m.spec.kitchen_id == kitchen_id)
        || state
            .schedule()
            .orders
            .values()
            .any(|o| o.kitchen_id == kitchen_id);
    if known {
        Ok(kitchen_id)
    } else {
        Err(unknown())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepQuery {
    date: NaiveDate,
}

/// One-off sales (not plan orders) of the weeks the forecast looks at
/// before `date`, by local date.
fn one_off_sales(state: &DistrictState, policy: &scheduler::Policy, date: NaiveDate) -> Vec<Sale> {
    let since = date
        .checked_sub_signed(chrono::Duration::weeks(FORECAST_WEEKS))
        .unwrap_or(NaiveDate::MIN);
    state
        .orders()
        .iter()
        .filter(|o| o.payment_method != PREPAID_PAYMENT_METHOD)
        .filter(|o| {
            matches!(
                o.status,
                OrderStatus::Purchased | OrderStatus::PickedUp | OrderStatus::Unclaimed
            )
        })
        .filter_map(|o| {
            let day = scheduler::local_date(o.hold_until, policy);
            (day >= since && day < date).then_some((day, o))
        })
        .flat_map(|(date, o)| {
            o.lines.iter().map(move |l| Sale {
                date,
                fridge_id: o.fridge_id.clone(),
                meal_id: l.meal_id.clone(),
                units: l.qty,
            })
        })
        .collect()
}

/// The report's fridges that cannot take meals now, with their status.
fn unavailable_fridges(state: &DistrictState, report: &PrepReport) -> Vec<serde_json::Value> {
    report
        .rows
        .iter()
        .map(|r| &r.fridge_id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|f| {
            let status = state.catalog().fridge(f).map(|x| x.status);
            (status != Some(FridgeStatus::Online))
                .then(|| json!({"fridge_id": f, "status": status}))
        })
        .collect()
}

/// `GET /v1/kitchens/{kitchen_id}/prep?date=YYYY-MM-DD`.
pub async fn prep(
    State(app): State<AppState>,
    caller: Caller,
    Path(kitchen_id): Path<String>,
    Query(q): Query<PrepQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    own_kitchen(&caller, &kitchen_id)?;
    let state = app.district.state();
    let kitchen_meals: Vec<MealId> = state
        .catalog()
        .meals()
        .values()
        .filter(|m| m.spec.kitchen_id == kitchen_id)
        .map(|m| m.meal_id.clone())
        .collect();
    let kitchen_id = known_kitchen(&state, &kitchen_id)?;
    let sales = one_off_sales(&state, &app.config.schedule_policy(), q.date);
    let name = |meal_id: &MealId| {
        state
            .catalog()
            .meals()
            .get(meal_id)
            .map(|m| m.spec.name.clone())
            .unwrap_or_else(|| meal_id.to_string())
    };
    let report = prep_report(
        state.schedule(),
        &StateCatalog(&state),
        &kitchen_id,
        q.date,
        &name,
        &kitchen_meals,
        &sales,
    );
    // Operators see at once whether the day is worked and which fridges
    // cannot take meals now (the CSV is the kitchen's pick list only).
    let working_day = state
        .schedule()
        .calendar
        .is_working(q.date, Some(&kitchen_id));
    let unavailable_fridges = unavailable_fridges(&state, &report);
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response())
    } else {
        let mut body = serde_json::to_value(&report).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("prep report: {e}"),
            )
        })?;
        if let Some(map) = body.as_object_mut() {
            map.insert("working_day".into(), json!(working_day));
            map.insert("unavailable_fridges".into(), json!(unavailable_fridges));
        }
        Ok(axum::Json(body).into_response())
    }
}

/// Longest range `GET /v1/admin/calendar` answers, in days.
const MAX_CALENDAR_DAYS: i64 = 92;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    from: NaiveDate,
    to: NaiveDate,
}

/// `GET /v1/admin/calendar?from=&to=`: every date of the range, whether the
/// district works, and the kitchens whose own entry differs from that.
pub async fn calendar(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<CalendarQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let days = (q.to - q.from).num_days();
    if !(0..MAX_CALENDAR_DAYS).contains(&days) {
        return Err(ApiError::unprocessable(
            "invalid",
            format!("from..to must be 1 to {MAX_CALENDAR_DAYS} days, from before to"),
        ));
    }
    let state = app.district.state();
    let calendar = &state.schedule().calendar;
    let out: Vec<_> = q
        .from
        .iter_days()
        .take_while(|d| *d <= q.to)
        .map(|date| {
            let kitchens: Vec<_> = calendar
                .kitchens
                .iter()
                .filter(|((_, d), _)| *d == date)
                .map(|((k, _), working)| json!({"kitchen_id": k, "working": working}))
                .collect();
            json!({
                "date": date,
                "working": calendar.district_working(date),
                "set": calendar.district.contains_key(&date),
                "kitchens": kitchens,
            })
        })
        .collect();
    Ok(axum::Json(json!({"from": q.from, "to": q.to, "days": out})))
}

/// `POST /v1/kitchens/{kitchen_id}/events`.
pub async fn event(
    State(app): State<AppState>,
    caller: Caller,
    Path(kitchen_id): Path<String>,
    Json(spec): Json<KitchenEventSpec>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    own_kitchen(&caller, &kitchen_id)?;
    let kitchen_id = known_kitchen(&app.district.state(), &kitchen_id)?;
    // Drawn before the await: the thread-local generator must not cross it.
    let seed: u64 = rand::thread_rng().gen();
    let committed = app
        .district
        .submit(Command::Schedule(ScheduleCommand::KitchenEvent {
            kitchen_id: kitchen_id.clone(),
            spec: spec.clone(),
            seed,
            policy: app.config.schedule_policy(),
        }))
        .await?;
    let state = app.district.state();
    let mut moved: Vec<String> = committed
        .events
        .iter()
        .filter_map(|e| e.stream_id.strip_prefix("order-").map(str::to_string))
        .collect();
    moved.dedup();
    let orders: Vec<_> = moved
        .iter()
        .filter_map(|id| state.orders().get(id))
        .map(|o| json!({"order_id": o.order_id, "status": o.status, "fridge_id": o.fridge_id}))
        .collect();
    let passed_by = passed_by(&state, &kitchen_id, &spec);
    tracing::info!(%kitchen_id, stage = ?spec.stage, date = %spec.date, orders = orders.len(), passed_by = passed_by.len(), "kitchen event");
    Ok(axum::Json(
        json!({"stage": spec.stage, "date": spec.date, "orders": orders, "passed_by": passed_by}),
    ))
}

/// The event's orders left where they were because their fridge does not
/// take meals now (quarantined, offline): the kitchen keeps them, and the
/// schedule withdraws and credits them if the fridge is still unavailable
/// on their day.
fn passed_by(
    state: &DistrictState,
    kitchen_id: &KitchenId,
    spec: &KitchenEventSpec,
) -> Vec<serde_json::Value> {
    if spec.stage != KitchenStage::PlacedInFridge {
        return vec![];
    }
    state
        .schedule()
        .orders
        .values()
        .filter(|o| o.kitchen_id == *kitchen_id && o.date == spec.date)
        .filter(|o| spec.fridge_id.as_ref().is_none_or(|f| *f == o.fridge_id))
        .filter(|o| {
            spec.order_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&o.order_id))
        })
        .filter(|o| {
            !state
                .catalog()
                .fridge_is(&o.fridge_id, FridgeStatus::Online)
        })
        .filter_map(|o| {
            let status = state.orders().get(&o.order_id)?.status;
            matches!(
                status,
                OrderStatus::Scheduled | OrderStatus::Prepared | OrderStatus::Dispatched
            )
            .then(|| {
                json!({
                    "order_id": o.order_id,
                    "fridge_id": o.fridge_id,
                    "status": status,
                    "reason": "fridge_unavailable",
                })
            })
        })
        .collect()
}

/// `PUT /v1/admin/calendar/{date}`.
pub async fn set_calendar_day(
    State(app): State<AppState>,
    caller: Caller,
    Path(date): Path<String>,
    Json(spec): Json<CalendarDaySpec>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let date = parse_date(&date)?;
    let committed = app
        .district
        .submit(Command::Schedule(ScheduleCommand::SetCalendarDay {
            date,
            spec: spec.clone(),
            policy: app.config.schedule_policy(),
        }))
        .await?;
    let withdrawn = committed
        .events
        .iter()
        .filter(|e| e.event.kind() == "OrderWithdrawn")
        .count();
    tracing::info!(%date, kitchen_id = ?spec.kitchen_id, working = spec.working, withdrawn, "calendar day set");
    Ok(axum::Json(json!({
        "date": date,
        "kitchen_id": spec.kitchen_id,
        "working": spec.working,
        "note": spec.note,
        "orders_withdrawn": withdrawn,
    })))
}
