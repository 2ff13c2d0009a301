//! Fridge routes: signed telemetry in the fridge's vendor dialect, and the
//! operator's quarantine release.
//!
//! Telemetry is checked here, in parallel and before the writer, in the
//! order that keeps a forged or malformed batch from costing anything: size,
//! signature (before any parsing), syntax, fridge identity. Only an
//! authenticated batch reaches the writer, which translates it against the
//! current state (`district::fridges`). The HMAC signature is the fridge's
//! credential; no bearer token is involved.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fridge_acl::{Dialect, Rejection, Secrets, Upload};
use protocol::{Event, FridgeId};

use super::error::ApiError;
use super::extract::{payload_too_large, Path};
use super::AppState;
use crate::auth::{Caller, Role};
use district::{Command, FridgeCommand};

/// Largest telemetry body accepted, in bytes (the ACL's limit).
pub const MAX_TELEMETRY_BYTES: usize = fridge_acl::report::MAX_BATCH_BYTES;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn rejected(r: Rejection) -> ApiError {
    let status = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, r.code(), r.to_string())
}

/// `POST /v1/fridges/{fridge_id}/telemetry`: 202 with how many reports were
/// applied, duplicate and stale, and which report numbers are missing.
pub async fn telemetry(
    State(app): State<AppState>,
    Path(fridge_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            payload_too_large()
        } else {
            ApiError::bad_request("invalid_body", "the body could not be read")
        }
    })?;
    super::misdirect::fridge_here(&app, &fridge_id)?;
    let state = app.district.state();
    // The catalog's own id from here on: a path that is no id names no fridge.
    let fridge = state.catalog().fridge(&fridge_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_fridge",
            format!("fridge {fridge_id} does not exist"),
        )
    })?;
    let fridge_id = fridge.fridge_id.clone();
    let dialect: Dialect = fridge
        .vendor
        .parse()
        .map_err(|e: fridge_acl::UnknownDialect| {
            ApiError::unprocessable("unknown_dialect", e.to_string())
        })?;
    let current = state
        .links()
        .secret(&fridge_id)
        .map(str::as_bytes)
        .unwrap_or_default();
    let secrets = Secrets {
        current,
        previous: state.links().previous_secret(&fridge_id).map(str::as_bytes),
    };
    let upload = Upload {
        fridge_id: &fridge_id,
        dialect,
        body: &body,
        timestamp: header(&headers, fridge_acl::auth::TIMESTAMP_HEADER),
        signature: header(&headers, fridge_acl::auth::SIGNATURE_HEADER),
    };
    let (batch, secret_used) = fridge_acl::authenticate(&upload, &secrets, app.clock.now())
        .map_err(|r| {
            if matches!(r, Rejection::Auth(_)) {
                tracing::warn!(fridge_id = %fridge_id, error = %r, "telemetry refused");
            }
            rejected(r)
        })?;
    let reports = batch.reports.len();

    let committed = app
        .district
        .submit(Command::Fridge(FridgeCommand::Telemetry {
            fridge_id: fridge_id.clone(),
            batch,
            secret_used,
        }))
        .await?;
    let outcome = committed
        .events
        .iter()
        .find_map(|env| match &env.event {
            Event::FridgeTelemetryReceived { outcome_json, .. } => Some(outcome_json.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "telemetry produced no receipt",
            )
        })?;
    tracing::debug!(fridge_id = %fridge_id, reports, events = committed.events.len(), "telemetry");
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        outcome,
    )
        .into_response())
}

/// `POST /v1/admin/fridges/{fridge_id}/quarantine/lift`: the unsafe meals
/// are gone; the fridge sells again once it is back in range, and each meal
/// once the fridge scans it again. Operators only: fridges belong to no
/// kitchen, so no kitchen token can say the fridge is safe for everyone's
/// meals.
pub async fn lift_quarantine(
    State(app): State<AppState>,
    caller: Caller,
    Path(fridge_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    super::misdirect::fridge_here(&app, &fridge_id)?;
    // Not an id, so no fridge: what the decider answers for an unknown one.
    let fridge_id: FridgeId = fridge_id.parse().map_err(|_| {
        ApiError::not_found(
            "unknown_fridge",
            format!("fridge {fridge_id} does not exist"),
        )
    })?;
    app.district
        .submit(Command::Fridge(FridgeCommand::LiftQuarantine {
            fridge_id: fridge_id.clone(),
        }))
        .await?;
    Ok(axum::Json(
        serde_json::json!({"fridge_id": fridge_id, "status": "online"}),
    ))
}
