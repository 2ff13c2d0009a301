//! Operator routes: liveness, readiness, Prometheus metrics, the OpenAPI
//! document, and the development clock (only on nodes started with
//! `--dev-clock`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::Json;
use super::AppState;
use crate::auth::{Caller, Role};

/// The API description served at `/v1/openapi.json`; kept next to the code
/// and checked against the router by tests.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let store_ok = app.district.is_writable();
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": store_ok,
        "store": if store_ok { "ok" } else { "stopped" },
        "nats": app.nats.as_ref().map_or("not_configured", |n| n.state()),
        "directory": app.fleet.as_ref().map_or_else(|| json!({"state": "off"}), |f| f.status()),
        "outbox_pending": app.district.state().outbox().len(),
        "log_seq": app.district.state().last_seq(),
    });
    (status, axum::Json(body))
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let state = app.district.state();
    let body = app.metrics.render(&[
        (
            "larder_log_seq",
            "Position of the last durable event.",
            state.last_seq(),
        ),
        (
            "larder_catalog_version",
            "Current catalog version.",
            state.catalog_version(),
        ),
        (
            "larder_meals",
            "Meals in the catalog.",
            state.catalog().meals().len() as u64,
        ),
        (
            "larder_fridges",
            "Registered fridges.",
            state.catalog().fridges().len() as u64,
        ),
        (
            "larder_ws_connections",
            "Open WebSocket connections.",
            app.ws_connections
                .load(std::sync::atomic::Ordering::Relaxed) as u64,
        ),
        (
            "larder_plans",
            "Subscription plans (all states).",
            state.schedule().plans.len() as u64,
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// Longest single clock step, in seconds (one year).
const MAX_CLOCK_STEP_SECS: i64 = 366 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    seconds: i64,
}

pub async fn clock_now(State(app): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({"now": app.clock.now(), "adjustable": app.clock.is_adjustable()}))
}

pub async fn clock_advance(
    State(app): State<AppState>,
    caller: Caller,
    Json(body): Json<Advance>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    if !app.clock.is_adjustable() {
        return Err(ApiError::not_found(
            "not_found",
            "the dev clock is off on this node",
        ));
    }
    if !(0..=MAX_CLOCK_STEP_SECS).contains(&body.seconds) {
        return Err(ApiError::unprocessable(
            "invalid",
            format!("seconds must be 0..={MAX_CLOCK_STEP_SECS}"),
        ));
    }
    let now = app
        .clock
        .advance(chrono::Duration::seconds(body.seconds))
        .map_err(|e| ApiError::unprocessable("invalid", e))?;
    Ok(axum::Json(json!({"now": now})))
}
