//! Insight routes (docs/insights.md): the district's report for admins, a
//! kitchen's slice for its own token, and the fleet's districts side by
//! side. Reports come from the projection's published aggregates, never
//! from the district state or the log.
//!
//! Ranges are inclusive district-local dates (`from`, `to`; both default
//! to today, `from` to `to`), at most `insights::MAX_RANGE_DAYS` long. CSV
//! (`format=csv` or `Accept: text/csv`) is one section at a time
//! (`section=`, default `volumes` for the district, `waste_fridges` for a
//! kitchen). Bad input answers 422 (`invalid_date`, `invalid_range`,
//! `invalid_format`, `invalid_section`) and changes nothing.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use insights::{Range, Section};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::kitchens::{known_kitchen, own_kitchen};
use super::AppState;
use crate::auth::{Caller, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightsQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    section: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    date: Option<String>,
}

fn today(app: &AppState) -> NaiveDate {
    app.insights.aggregates().local(app.clock.now()).date()
}

fn parse_date(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    s.parse().map_err(|_| {
        ApiError::unprocessable(
            "invalid_date",
            format!("{field} {s:?} is not a date (YYYY-MM-DD)"),
        )
    })
}

fn range(app: &AppState, q: &InsightsQuery) -> Result<Range, ApiError> {
    let to = match &q.to {
        Some(s) => parse_date("to", s)?,
        None => today(app),
    };
    let from = match &q.from {
        Some(s) => parse_date("from", s)?,
        None => to,
    };
    Range::new(from, to).map_err(|e| ApiError::unprocessable("invalid_range", e.to_string()))
}

/// `Some(section)` when CSV was asked for.
fn csv_section(
    q: &InsightsQuery,
    headers: &HeaderMap,
    default: Section,
) -> Result<Option<(Section, String)>, ApiError> {
    let section = match &q.section {
        Some(s) => Some(
            s.parse::<Section>()
                .map_err(|e| ApiError::unprocessable("invalid_section", e.to_string()))?,
        ),
        None => None,
    };
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_format",
                format!("format {other:?} is not json or csv"),
            ))
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    let name = q.section.clone().unwrap_or_default();
    Ok(csv.then(|| (section.unwrap_or(default), name)))
}

fn csv_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// `GET /v1/admin/insights?from&to[&format=csv&section=…]` (admin).
pub async fn district(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let range = range(&app, &q)?;
    let csv = csv_section(&q, &headers, Section::Volumes)?;
    let report = app
        .insights
        .aggregates()
        .report(app.config.district_id.as_str(), range);
    Ok(match csv {
        Some((section, _)) => csv_response(report.to_csv(section)),
        None => axum::Json(report).into_response(),
    })
}

/// `GET /v1/kitchens/{kitchen_id}/insights?from&to[&format=csv&section=…]`
/// (that kitchen's token, or admin).
pub async fn kitchen(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(kitchen_id): Path<String>,
    Query(q): Query<InsightsQuery>,
) -> Result<Response, ApiError> {
    own_kitchen(&caller, &kitchen_id)?;
    let kitchen_id = known_kitchen(&app.district.state(), &kitchen_id)?;
    let range = range(&app, &q)?;
    let csv = csv_section(&q, &headers, Section::WasteFridges)?;
    let report = app.insights.aggregates().kitchen_report(
        app.config.district_id.as_str(),
        &kitchen_id,
        range,
    );
    match csv {
        Some((section, name)) => report
            .to_csv(section, &name)
            .map(csv_response)
            .map_err(|e| ApiError::unprocessable("invalid_section", e.to_string())),
        None => Ok(axum::Json(report).into_response()),
    }
}

fn fleet_unavailable(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "fleet_unavailable",
        format!("the fleet's insight board cannot be read: {why}"),
    )
}

/// `GET /v1/admin/fleet/insights?date=YYYY-MM-DD` (admin, any node): every
/// district's published aggregate of `date` (default: today here). Stale:
/// districts in the directory with no aggregate of that date, or whose
/// newest is older than three publication periods.
pub async fn fleet(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<FleetQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let date = match &q.date {
        Some(s) => parse_date("date", s)?,
        None => today(&app),
    };
    let Some(board) = &app.insight_board else {
        return Err(fleet_unavailable("this node runs without NATS or [fleet]"));
    };
    let districts = board.day(date).await.map_err(fleet_unavailable)?;
    let now = app.clock.now();
    let stale_after = chrono::Duration::seconds(app.config.insights.stale_after_secs());
    let mut stale: Vec<String> = districts
        .iter()
        .filter(|d| now - d.published_at > stale_after)
        .map(|d| d.district.clone())
        .collect();
    if let Some(fleet) = &app.fleet {
        for r in fleet.districts() {
            let id = r.district_id.to_string();
            if !districts.iter().any(|d| d.district == id) && !stale.contains(&id) {
                stale.push(id);
            }
        }
    }
    stale.sort();
    Ok(axum::Json(json!({"date": date, "districts": districts, "stale": stale})).into_response())
}
