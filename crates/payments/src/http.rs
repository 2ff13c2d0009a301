//! Read-only operator API: health and the ledger per order, so an operator
//! (or a test) can see what was really charged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use protocol::payments::{msg_id, PaymentKind};
use serde_json::{json, Value};

use crate::book::Book;
use crate::provider::Sandbox;
use crate::service::Service;

#[derive(Clone)]
pub struct Ops {
    pub book: Book,
    pub sandbox: Arc<Sandbox>,
    pub seen: sled::Tree,
    pub nats: async_nats::Client,
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/v1/ledger", get(totals))
        .route("/v1/ledger/{order_id}", get(order))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> Json<Value> {
    let nats = format!("{:?}", ops.nats.connection_state()).to_lowercase();
    Json(json!({"ready": true, "nats": nats}))
}

async fn totals(State(ops): State<Ops>) -> Json<Value> {
    Json(json!(ops.sandbox.totals()))
}

async fn order(State(ops): State<Ops>, Path(order_id): Path<String>) -> Json<Value> {
    let charge = msg_id(PaymentKind::Charge, &order_id);
    let refund = msg_id(PaymentKind::Refund, &order_id);
    Json(json!({
        "order_id": order_id,
        "charge_requests_seen": Service::<Sandbox>::times_seen(&ops.seen, &charge),
        "refund_requests_seen": Service::<Sandbox>::times_seen(&ops.seen, &refund),
        "ledger": ops.sandbox.entry(&order_id),
        "charge_outcome": ops.book.get(&charge).ok().flatten().map(|r| format!("{:?}", r.outcome)),
        "refund_outcome": ops.book.get(&refund).ok().flatten().map(|r| format!("{:?}", r.outcome)),
    }))
}
