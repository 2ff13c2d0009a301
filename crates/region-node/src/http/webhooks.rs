//! Admin routes for webhooks (issue 14): register, list, read and disable
//! endpoints (district data, through the writer), an endpoint's delivery
//! log and a manual redelivery (the node's webhook outbox). Admin only.
//! The contract is `docs/webhooks.md` and `openapi.json`.

use axum::extract::State;
use axum::http::StatusCode;
use protocol::webhooks::WebhookSpec;
use protocol::WebhookId;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Path};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::webhooks::RedeliverError;
use district::webhooks::EndpointView;
use district::{Command, WebhookCommand};

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_webhook",
        format!("webhook endpoint {id} does not exist"),
    )
}

fn view(app: &AppState, id: &str) -> Result<EndpointView, ApiError> {
    app.district
        .state()
        .webhooks()
        .get(id)
        .map(|e| e.view())
        .ok_or_else(|| unknown(id))
}

/// `POST /v1/admin/webhooks`: register an endpoint; 201 with its view.
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(spec): Json<WebhookSpec>,
) -> Result<(StatusCode, axum::Json<EndpointView>), ApiError> {
    caller.require(&[Role::Admin])?;
    // Checked here for the 422's own code; `decide` checks again (the
    // same function), so no adapter can record a bad spec.
    let spec = spec
        .validated()
        .map_err(|e| ApiError::unprocessable("invalid_webhook", e.to_string()))?;
    let endpoint_id = WebhookId::from(app.clock.ulid());
    app.district
        .submit(Command::Webhook(WebhookCommand::Register {
            endpoint_id: endpoint_id.clone(),
            spec,
        }))
        .await?;
    tracing::info!(endpoint = %endpoint_id, "webhook endpoint registered");
    Ok((StatusCode::CREATED, axum::Json(view(&app, &endpoint_id)?)))
}

/// `GET /v1/admin/webhooks`.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    let endpoints: Vec<EndpointView> = state.webhooks().iter().map(|e| e.view()).collect();
    Ok(axum::Json(json!({ "endpoints": endpoints })))
}

/// `GET /v1/admin/webhooks/{endpoint_id}`.
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointView>, ApiError> {
    caller.require(&[Role::Admin])?;
    view(&app, &id).map(axum::Json)
}

/// `DELETE /v1/admin/webhooks/{endpoint_id}`: disable it (it stays listed,
/// with its delivery log); again is a no-op.
pub async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointView>, ApiError> {
    caller.require(&[Role::Admin])?;
    view(&app, &id)?;
    let endpoint_id: WebhookId = id.parse().map_err(|_| unknown(&id))?;
    app.district
        .submit(Command::Webhook(WebhookCommand::Disable {
            endpoint_id: endpoint_id.clone(),
        }))
        .await?;
    tracing::info!(endpoint = %endpoint_id, "webhook endpoint disabled");
    view(&app, &id).map(axum::Json)
}

/// `GET /v1/admin/webhooks/{endpoint_id}/deliveries`: the newest
/// deliveries, newest first.
pub async fn deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    view(&app, &id)?;
    let list = app.webhooks.deliveries(&id).map_err(|e| {
        tracing::error!(endpoint = %id, error = %e, "webhook delivery log not read");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the delivery log could not be read",
        )
    })?;
    let list: Vec<_> = list.iter().map(|d| d.view()).collect();
    Ok(axum::Json(json!({ "endpoint_id": id, "deliveries": list })))
}

/// `POST /v1/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver`:
/// 202, the delivery pending again with a new retry window.
pub async fn redeliver(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    caller.require(&[Role::Admin])?;
    let endpoint = view(&app, &id)?;
    let unknown_delivery = || {
        ApiError::not_found(
            "unknown_delivery",
            format!("webhook endpoint {id} has no delivery {delivery}"),
        )
    };
    let seq: u64 = delivery.parse().map_err(|_| unknown_delivery())?;
    if !endpoint.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_disabled",
            format!("webhook endpoint {id} is disabled"),
        ));
    }
    match app.webhooks.redeliver(&id, seq).await {
        Ok(d) => Ok((StatusCode::ACCEPTED, axum::Json(d.view()))),
        Err(RedeliverError::Unknown(..)) => Err(unknown_delivery()),
        Err(e @ RedeliverError::Pending(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_pending",
            e.to_string(),
        )),
        Err(e) => {
            tracing::error!(endpoint = %id, seq, error = %e, "webhook redelivery failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhooks_unavailable",
                "the redelivery could not be queued; try again",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    /// The URL rule is stated twice, in the code and in the contract; they
    /// must be the same pattern (the protocol crate checks the code against
    /// it).
    #[test]
    fn the_openapi_url_pattern_is_the_one_the_node_enforces() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let spec = &doc["components"]["schemas"]["WebhookSpec"]["properties"];
        assert_eq!(
            spec["url"]["pattern"],
            protocol::webhooks::URL_PATTERN,
            "update openapi.json's WebhookSpec.url"
        );
        assert_eq!(spec["url"]["maxLength"], protocol::webhooks::MAX_URL_BYTES);
        assert_eq!(
            spec["secret"]["minLength"],
            protocol::webhooks::MIN_SECRET_BYTES
        );
        assert_eq!(
            spec["secret"]["maxLength"],
            protocol::webhooks::MAX_SECRET_BYTES
        );
    }
}
