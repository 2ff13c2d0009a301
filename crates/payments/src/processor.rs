//! `payments sandbox-processor`: the sandbox card processor as a service of
//! its own, for several payments instances to share as they would share a
//! real processor.
//!
//! Why a service: each payments instance has its own book, which only
//! remembers what that instance answered. When JetStream hands a request to
//! a second instance (the first one's `ack_wait` ran out, or it crashed),
//! the second decides it again, and only the processor's idempotency key
//! (the order id) keeps the card from being charged twice — as with a real
//! processor. An in-process sandbox per instance would be one ledger per
//! instance, and two captures.
//!
//! The rules are the in-process sandbox's ([`Sandbox`]: idempotent charge,
//! refund and capture lookup per key, `tok_decline`, the amount limit, the
//! latency). Unlike the in-process one, whose ledger is synced with the
//! book's next outcome, this one syncs its ledger before it answers (one
//! flush + `fdatasync` at a time, shared by every answer waiting for it): a
//! processor must not forget a capture it reported.
//!
//! The wire (JSON over HTTP, spoken by [`crate::remote::HttpProcessor`]):
//! - `POST /v1/charges` `{"idempotency_key", "amount": {"amount_minor",
//!   "currency"}, "payment_method"}` → [`Answer`];
//! - `POST /v1/refunds` `{"idempotency_key", "amount"}` → [`Answer`];
//! - `GET /v1/captures/{key}` → `{"reference": "…" | null}`;
//! - `GET /v1/ledger` (totals), `GET /v1/ledger/{key}` → [`LedgerEntry`];
//! - `GET /healthz`.
//!
//! No authentication: it is a sandbox that moves no money, and it binds
//! 127.0.0.1 unless told otherwise. Do not expose it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::money::Money;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::book::Book;
use crate::provider::{LedgerEntry, Provider, ProviderError, ProviderOutcome, Sandbox};

/// A charge as the processor takes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChargeBody {
    pub idempotency_key: String,
    pub amount: Money,
    pub payment_method: String,
}

/// A refund of the capture made under `idempotency_key`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefundBody {
    pub idempotency_key: String,
    pub amount: Money,
}

/// The processor's answer to a charge or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    Approved { reference: String },
    Declined { reason: String },
}

impl From<ProviderOutcome> for Answer {
    fn from(o: ProviderOutcome) -> Self {
        match o {
            ProviderOutcome::Approved { reference } => Answer::Approved { reference },
            ProviderOutcome::Declined { reason } => Answer::Declined { reason },
        }
    }
}

impl From<Answer> for ProviderOutcome {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Approved { reference } => ProviderOutcome::Approved { reference },
            Answer::Declined { reason } => ProviderOutcome::Declined { reason },
        }
    }
}

/// `GET /v1/captures/{key}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Capture {
    pub reference: Option<String>,
}

/// The sandbox and the store that makes its ledger durable (a [`Book`],
/// for its group commit; its `outcomes` tree stays empty here).
#[derive(Clone)]
pub struct Processor {
    pub sandbox: Arc<Sandbox>,
    pub store: Book,
}

pub fn router(processor: Processor) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .route("/v1/captures/{key}", get(captured))
        .route("/v1/ledger", get(totals))
        .route("/v1/ledger/{key}", get(entry))
        .with_state(processor)
}

impl Processor {
    /// `answer` once the ledger as it is now is on stable storage; 503 if
    /// it cannot be.
    async fn synced(&self, answer: impl IntoResponse) -> Response {
        match self.store.make_durable().await {
            Ok(()) => answer.into_response(),
            Err(e) => {
                tracing::error!(error = %e, "sandbox processor: ledger not synced");
                unavailable(&e.to_string())
            }
        }
    }

    /// The sandbox's answer, synced; 503 when there is none.
    async fn answer(&self, outcome: Result<ProviderOutcome, ProviderError>) -> Response {
        match outcome {
            Ok(outcome) => self.synced(Json(Answer::from(outcome))).await,
            Err(e) => unavailable(&e.to_string()),
        }
    }
}

fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": {"code": "processor_unavailable", "message": why}})),
    )
        .into_response()
}

async fn charge(State(p): State<Processor>, Json(body): Json<ChargeBody>) -> Response {
    let outcome = p
        .sandbox
        .charge(&body.idempotency_key, &body.amount, &body.payment_method)
        .await;
    p.answer(outcome).await
}

async fn refund(State(p): State<Processor>, Json(body): Json<RefundBody>) -> Response {
    let outcome = p.sandbox.refund(&body.idempotency_key, &body.amount).await;
    p.answer(outcome).await
}

async fn captured(State(p): State<Processor>, Path(key): Path<String>) -> Response {
    match p.sandbox.captured(&key).await {
        // A capture another request just made may not be synced yet: it is
        // reported only once it is.
        Ok(reference) => p.synced(Json(Capture { reference })).await,
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn totals(State(p): State<Processor>) -> Json<LedgerEntry> {
    Json(p.sandbox.totals())
}

async fn entry(State(p): State<Processor>, Path(key): Path<String>) -> Json<LedgerEntry> {
    Json(p.sandbox.entry(&key))
}
