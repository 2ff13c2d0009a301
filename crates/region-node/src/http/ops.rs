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
        "payments_backlog": backlog(&app),
        "log_seq": app.district.state().last_seq(),
    });
    (status, axum::Json(body))
}

/// The outbox against `[payments] max_backlog`: whether new orders are
/// taken (the node stays ready while refusing them: cancels, refunds,
/// pickups and reads go on).
fn backlog(app: &AppState) -> serde_json::Value {
    let pending = app.district.state().outbox().len();
    let max = app.config.payments.max_backlog;
    json!({"pending": pending, "max": max, "taking_orders": pending < max})
}

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let state = app.district.state();
    let cache = app.catalog_cache.stats();
    // None while the node stops (the writer let the index go).
    let archive = app
        .district
        .archive()
        .map(|a| a.stats())
        .unwrap_or_default();
    let mut body = app.metrics.render(&[
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
            "larder_payments_backlog",
            "Payment requests awaiting a result (the outbox).",
            state.outbox().len() as u64,
        ),
        (
            "larder_payments_max_backlog",
            "[payments] max_backlog: at this backlog new orders are refused (503 payments_backlog).",
            app.config.payments.max_backlog as u64,
        ),
        (
            "larder_plans",
            "Subscription plans (all states).",
            state.schedule().plans.len() as u64,
        ),
        (
            "larder_orders_in_memory",
            "Orders in the in-memory state (final ones leave it when archived).",
            state.orders().len() as u64,
        ),
        (
            "larder_archive_runs",
            "Immutable run files of the archive index (merged four at a time).",
            archive.runs,
        ),
        (
            "larder_archive_in_sled",
            "Archived orders still in sled, moved into a run at [orders] archive_flush_entries.",
            archive.in_sled,
        ),
        (
            "larder_catalog_cache_entries",
            "Encoded catalog answers kept for the current catalog version.",
            cache.entries as u64,
        ),
        (
            "larder_catalog_cache_bytes",
            "Bytes charged for them (bodies plus room for compressed variants).",
            cache.bytes as u64,
        ),
    ]);
    crate::metrics::counter(
        &mut body,
        "larder_archive_failures_total",
        "Archive flushes or merges that failed (logged; sled keeps the entries and the next write retries).",
        archive.failures,
    );
    crate::metrics::counter(
        &mut body,
        "larder_catalog_cache_hits_total",
        "Catalog reads answered from the cache.",
        cache.hits,
    );
    crate::metrics::counter(
        &mut body,
        "larder_catalog_cache_misses_total",
        "Catalog reads that ran the query (then cached when within bounds).",
        cache.misses,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// Longest single clock step, in seconds (one year).
const MAX_CLOCK_STEP_SECS: i64 = 366 * 24 * 3600;

#[derive(Debug, Deserialize, serde::Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schedule::PlanChange;
    use serde_json::Value;

    /// A value the schema allows for each `PlanChange` field.
    fn sample(field: &str) -> Value {
        match field {
            "fridge_id" => json!("f-campus-martius"),
            "days" => json!([{"weekday": 1, "meal_id": "m-greek-salad"}]),
            "paused" => json!(true),
            "end_date" | "from" => json!("2026-12-31"),
            "payment_method" => json!("tok_visa"),
            other => panic!("no sample for PlanChange field {other}"),
        }
    }

    /// The `PlanChange` schema names each field of the Rust type, and its
    /// `anyOf` lists exactly the fields the server takes as a change on
    /// their own: a body with only that field passes `validate` (a body
    /// with only `from` changes nothing and is refused).
    #[test]
    fn the_plan_change_schema_states_what_the_server_accepts() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json");
        let schema = &doc["components"]["schemas"]["PlanChange"];
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let fields = serde_json::to_value(PlanChange::default()).expect("serialize");
        let mut rust: Vec<&str> = fields
            .as_object()
            .expect("fields")
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        rust.sort_unstable();
        assert_eq!(documented, rust, "PlanChange's properties");

        let alone: Vec<&str> = schema["anyOf"]
            .as_array()
            .expect("anyOf")
            .iter()
            .filter_map(
                |branch| match branch["required"].as_array().map(Vec::as_slice) {
                    Some([field]) => field.as_str(),
                    _ => None,
                },
            )
            .collect();
        for field in rust {
            let body = json!({ field: sample(field) });
            let change: PlanChange = serde_json::from_value(body).expect(field);
            assert_eq!(
                alone.contains(&field),
                change.validate().is_ok(),
                "{field} alone: the schema's anyOf and the server disagree"
            );
        }
    }
}
