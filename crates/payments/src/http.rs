//! Read-only operator API: health and the ledger per order, so an operator
//! (or a test) can see what was really charged. The ledger needs an admin
//! token signed with the region nodes' key (`--public-key`); health does not.
//! With a shared processor (`--processor-url`) the money is in the
//! processor's ledger, not here: `GET /v1/ledger` answers 404
//! `ledger_at_processor` and an order's `ledger` is null, while its request
//! counts and book outcomes are this instance's.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use protocol::payments::{msg_id, PaymentKind, PaymentOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::book::Book;
use crate::provider::Sandbox;
use crate::service::Service;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Verifies admin tokens: EdDSA, the same key set as the region nodes.
pub struct AdminAuth {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    role: String,
    #[serde(default)]
    iat: u64,
}

impl AdminAuth {
    pub fn from_pem(public_pem: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_ed_pem(public_pem.as_bytes())?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(AdminAuth { key, validation })
    }

    /// Checks `Authorization: Bearer <token>` at `now_secs`.
    fn check(&self, authorization: Option<&str>, now_secs: u64) -> Result<(), Refusal> {
        let token = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "missing bearer token",
                )
            })?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                &format!("token longer than {MAX_TOKEN_BYTES} bytes"),
            ));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                // Our words, not the library's (it lists algorithms).
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "token signature does not verify"
                    }
                    _ => "token is malformed or not signed with EdDSA",
                };
                error(StatusCode::UNAUTHORIZED, "invalid_token", why)
            })?
            .claims;
        if claims.iat > now_secs.saturating_add(LEEWAY_SECS) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "invalid token: issued in the future",
            ));
        }
        if claims.role != "admin" {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the ledger is for admin tokens",
            ));
        }
        Ok(())
    }
}

/// Why a ledger request was refused: status, code, message.
type Refusal = (StatusCode, &'static str, String);

fn error(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    (status, code, message.to_string())
}

#[derive(Clone)]
pub struct Ops {
    pub book: Book,
    /// The in-process sandbox; `None` with a shared processor.
    pub sandbox: Option<Arc<Sandbox>>,
    pub seen: sled::Tree,
    pub nats: async_nats::Client,
    pub auth: Arc<AdminAuth>,
}

pub fn router(ops: Ops) -> Router {
    let ledger = Router::new()
        .route("/v1/ledger", get(totals))
        .route("/v1/ledger/{order_id}", get(order))
        .route_layer(middleware::from_fn_with_state(ops.clone(), require_admin));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(ledger)
        .with_state(ops)
}

async fn require_admin(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match ops.auth.check(authorization, now) {
        Ok(()) => next.run(req).await,
        Err((status, code, message)) => (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response(),
    }
}

async fn readyz(State(ops): State<Ops>) -> Json<Value> {
    let nats = format!("{:?}", ops.nats.connection_state()).to_lowercase();
    Json(json!({"ready": true, "nats": nats}))
}

async fn totals(State(ops): State<Ops>) -> Response {
    match &ops.sandbox {
        Some(sandbox) => Json(json!(sandbox.totals())).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {
                "code": "ledger_at_processor",
                "message": "this instance charges through a shared processor (--processor-url): its ledger is there"
            }})),
        )
            .into_response(),
    }
}

async fn order(State(ops): State<Ops>, Path(order_id): Path<String>) -> Json<Value> {
    let charge = msg_id(PaymentKind::Charge, &order_id);
    let refund = msg_id(PaymentKind::Refund, &order_id);
    Json(json!({
        "order_id": order_id,
        "charge_requests_seen": Service::<Sandbox>::times_seen(&ops.seen, &charge),
        "refund_requests_seen": Service::<Sandbox>::times_seen(&ops.seen, &refund),
        "ledger": ops.sandbox.as_ref().map(|s| s.entry(&order_id)),
        "charge_outcome": ops.book.get(&charge).ok().flatten().map(|r| outcome_view(&r.outcome)),
        "refund_outcome": ops.book.get(&refund).ok().flatten().map(|r| outcome_view(&r.outcome)),
    }))
}

/// A recorded outcome as JSON: `{"status": "approved", "reference"}` or
/// `{"status": "declined", "reason"}`.
fn outcome_view(outcome: &PaymentOutcome) -> Value {
    match outcome {
        PaymentOutcome::Approved { reference } => {
            json!({"status": "approved", "reference": reference})
        }
        PaymentOutcome::Declined { reason } => json!({"status": "declined", "reason": reason}),
    }
}
