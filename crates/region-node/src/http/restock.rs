//! Restocking routes (`docs/restocking.md`): admins set par levels per
//! fridge and meal and read the suggestions from the shelves' history; a
//! kitchen reads its pick list for a day (the prep report plus what brings
//! each shelf back to par). The numbers are `district::restock`'s.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use district::restock::{pick_list, suggestions, to_csv, PickList, RestockCommand, Suggestion};
use district::{Command, DistrictState, DomainError};
use protocol::catalog::FridgeStatus;
use protocol::restock::MAX_PAR_UNITS;
use protocol::{Event, FridgeId, MealId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::kitchens::{known_kitchen, own_kitchen, prep_report_for};
use super::AppState;
use crate::auth::{Caller, Role};

/// The window `suggested` and the suggestion routes use when none is
/// asked for, in days: the widest, so a weekly rhythm is seen four times.
pub const DEFAULT_WINDOW_DAYS: u32 = district::restock::MAX_WINDOW_DAYS;

fn unknown_fridge(id: &str) -> ApiError {
    ApiError::not_found("unknown_fridge", format!("fridge {id} does not exist"))
}

fn unknown_meal(id: &str) -> ApiError {
    ApiError::not_found("unknown_meal", format!("meal {id} does not exist"))
}

/// The district-local date at the node's now.
fn today(app: &AppState) -> NaiveDate {
    scheduler::local_date(app.clock.now(), &app.config.schedule_policy())
}

fn offset_minutes(app: &AppState) -> i32 {
    app.config.subscriptions.utc_offset_minutes
}

/// `days` or the default, checked against the window's bounds (422).
fn window(
    app: &AppState,
    state: &DistrictState,
    days: Option<u32>,
) -> Result<(u32, Vec<Suggestion>), ApiError> {
    let days = days.unwrap_or(DEFAULT_WINDOW_DAYS);
    let found = suggestions(state, today(app), offset_minutes(app), days).map_err(|e| match e {
        DomainError::Invalid(message) => ApiError::unprocessable("invalid_days", message),
        other => other.into(),
    })?;
    Ok((days, found))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParBody {
    /// Signed so that a negative number is our 422, not a parse error.
    units: i64,
}

/// `PUT /v1/admin/fridges/{fridge_id}/par/{meal_id}` `{"units": n}`: 0
/// clears the level.
pub async fn set_par(
    State(app): State<AppState>,
    caller: Caller,
    Path((fridge_id, meal_id)): Path<(String, String)>,
    Json(body): Json<ParBody>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    super::misdirect::fridge_here(&app, &fridge_id)?;
    let fridge: FridgeId = fridge_id.parse().map_err(|_| unknown_fridge(&fridge_id))?;
    let meal: MealId = meal_id.parse().map_err(|_| unknown_meal(&meal_id))?;
    let units = u32::try_from(body.units)
        .ok()
        .filter(|u| *u <= MAX_PAR_UNITS)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_units",
                format!(
                    "units must be 0 to {MAX_PAR_UNITS} (0 clears the par level), got {}",
                    body.units
                ),
            )
        })?;
    app.district
        .submit(Command::Restock(RestockCommand::SetParLevel {
            fridge_id: fridge.clone(),
            meal_id: meal.clone(),
            units,
        }))
        .await?;
    tracing::info!(%fridge, %meal, units, "par level set");
    Ok(axum::Json(
        json!({"fridge_id": fridge, "meal_id": meal, "units": units}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParQuery {
    fridge_id: Option<String>,
    days: Option<u32>,
}

/// `GET /v1/admin/par?fridge_id=&days=`: the set levels, each with what
/// the last `days` (default 28) suggest.
pub async fn levels(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<ParQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    if let Some(f) = &q.fridge_id {
        super::misdirect::fridge_here(&app, f)?;
        state.catalog().fridge(f).ok_or_else(|| unknown_fridge(f))?;
    }
    let (days, found) = window(&app, &state, q.days)?;
    let suggested = |f: &FridgeId, m: &MealId| {
        found
            .iter()
            .find(|s| s.fridge_id == *f && s.meal_id == *m)
            .map_or(0, |s| s.units)
    };
    let levels: Vec<_> = state
        .restock()
        .levels()
        .filter(|(f, m, _)| q.fridge_id.as_deref().is_none_or(|want| want == f.as_str()) && state.catalog().meal(m).is_some())
        .map(|(f, m, units)| {
            json!({"fridge_id": f, "meal_id": m, "units": units, "suggested": suggested(f, m)})
        })
        .collect();
    Ok(axum::Json(json!({"days": days, "levels": levels})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    days: Option<u32>,
}

/// `GET /v1/admin/par/suggested?days=7..28` (default 28).
pub async fn suggested(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<WindowQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    let (days, found) = window(&app, &state, q.days)?;
    Ok(axum::Json(json!({"days": days, "suggestions": found})))
}

/// `POST /v1/admin/par/suggested/apply?days=`: every suggestion becomes
/// the par level (a suggestion of 0 clears one); answers the levels that
/// changed.
pub async fn apply(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<WindowQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    // Checked here for the 422's own code; the decider checks again.
    let (days, _) = window(&app, &app.district.state(), q.days)?;
    let committed = app
        .district
        .submit(Command::Restock(RestockCommand::ApplySuggestions { days }))
        .await?;
    let changed: Vec<_> = committed
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Restock(protocol::restock::RestockEvent::ParLevelSet {
                fridge_id,
                meal_id,
                units,
            }) => Some(json!({"fridge_id": fridge_id, "meal_id": meal_id, "units": units})),
            Event::Restock(protocol::restock::RestockEvent::ParLevelCleared {
                fridge_id,
                meal_id,
            }) => Some(json!({"fridge_id": fridge_id, "meal_id": meal_id, "units": 0})),
            _ => None,
        })
        .collect();
    tracing::info!(days, changed = changed.len(), "par suggestions applied");
    Ok(axum::Json(json!({"days": days, "changed": changed})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickQuery {
    date: Option<NaiveDate>,
    format: Option<PickFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PickFormat {
    Json,
    Csv,
}

/// `GET /v1/kitchens/{kitchen_id}/picklist?date=YYYY-MM-DD[&format=csv]`
/// (default: today, district-local).
pub async fn picklist(
    State(app): State<AppState>,
    caller: Caller,
    Path(kitchen_id): Path<String>,
    Query(q): Query<PickQuery>,
) -> Result<Response, ApiError> {
    own_kitchen(&caller, &kitchen_id)?;
    let state = app.district.state();
    let kitchen_id = known_kitchen(&state, &kitchen_id)?;
    let date = q.date.unwrap_or_else(|| today(&app));
    let prep = prep_report_for(&state, &app.config.schedule_policy(), &kitchen_id, date);
    let list = pick_list(&state, &prep);
    if q.format == Some(PickFormat::Csv) {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&list),
        )
            .into_response());
    }
    let mut body = serde_json::to_value(&list).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("pick list: {e}"),
        )
    })?;
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "unavailable_fridges".into(),
            json!(unavailable(&state, &list)),
        );
    }
    Ok(axum::Json(body).into_response())
}

/// The list's fridges that cannot take meals now, with their status (their
/// shelves are withheld, so their `available` reads 0 until they are back).
fn unavailable(state: &DistrictState, list: &PickList) -> Vec<serde_json::Value> {
    let mut fridges: Vec<&FridgeId> = list.deliver.iter().map(|l| &l.fridge_id).collect();
    fridges.dedup();
    fridges
        .into_iter()
        .filter_map(|f| {
            let status = state.catalog().fridge(f).map(|x| x.status);
            (status != Some(FridgeStatus::Online))
                .then(|| json!({"fridge_id": f, "status": status}))
        })
        .collect()
}
