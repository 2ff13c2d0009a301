//! `GET /v1/me/points`: the caller's bonus points, from the global ledger
//! (any node answers for any customer): balance, what is held for orders
//! being confirmed, when the next points expire, the lots and the history.

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::auth::{Caller, Role};
use crate::fleet::points::LedgerError;

#[derive(Debug, Serialize)]
pub struct Lot {
    pub points: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
pub struct PointsView {
    #[serde(flatten)]
    pub balance: loyalty::Balance,
    /// What one point is worth when spent here, in minor units (0: this
    /// district does not take points).
    pub minor_per_point: u32,
    pub lots: Vec<Lot>,
    /// Newest last.
    pub history: Vec<loyalty::Entry>,
}

/// `GET /v1/me/points` (customer).
pub async fn mine(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<PointsView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let ledger = app
        .ledger
        .as_ref()
        .ok_or_else(|| LedgerError::Unavailable("this node runs without NATS".into()))?;
    let (account, _) = ledger.account(&claims.sub).await?;
    let now = app.clock.now();
    let rules = app.district.state().loyalty().rules().copied();
    Ok(axum::Json(PointsView {
        balance: account.balance(now),
        minor_per_point: rules.map_or(0, |r| r.minor_per_point),
        lots: account
            .lots()
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(points, expires_at)| Lot { points, expires_at })
            .collect(),
        history: account.history().cloned().collect(),
    }))
}
