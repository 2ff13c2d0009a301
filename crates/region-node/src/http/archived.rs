//! Archived orders at the HTTP edge (issue 15): an order archived out of
//! the in-memory state is read from the archive index
//! ([`crate::archive`]) with the body and the authorisation it had before
//! (its owner or an admin; anyone else gets the 404 of an unknown order),
//! and a command naming it gets the refusal the decider gave it just
//! before (`district::orders::cancel_refused`, `pickup_refused`): an
//! archived order is final, and a final order's answer depends only on
//! its status, which the index keeps. Asking the index here, only when the
//! state does not know the order, keeps the state free of tombstones and
//! the hot path free of sled reads.

use protocol::orders::OrderView;

use super::error::ApiError;
use super::AppState;
use crate::archive::{ArchiveError, ArchivedOrder};
use crate::auth::{Claims, Role};

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "archive index read failed");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the order archive cannot be read",
    )
}

/// Runs a blocking archive read off the async threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// The archived order `order_id`, if it was archived (whoever asks).
/// None while the node stops (the writer let the index go).
pub async fn find(app: &AppState, order_id: &str) -> Result<Option<ArchivedOrder>, ApiError> {
    let Some(archive) = app.district.archive() else {
        return Ok(None);
    };
    let id = order_id.to_string();
    blocking(move || archive.get(&id)).await
}

/// The archived order if `claims` may see it: its owner or an admin.
pub async fn visible(
    app: &AppState,
    claims: &Claims,
    order_id: &str,
) -> Result<Option<ArchivedOrder>, ApiError> {
    let found = find(app, order_id).await?;
    Ok(found.filter(|a| claims.role == Role::Admin || a.customer == claims.sub))
}

/// The listing of `GET /v1/orders` (and this district's part of
/// `/v1/me/orders`): the orders in memory as before, newest first, then,
/// while there is room, the archived ones newest first. An order found in
/// both (its archiving not yet applied after a crash) is listed once,
/// from memory.
pub async fn listed(app: &AppState, customer: Option<String>) -> Result<Vec<OrderView>, ApiError> {
    let state = app.district.state();
    let archive = app.district.archive();
    blocking(move || {
        let mut views = super::orders::listed(&state, customer.as_deref());
        let room = super::orders::MAX_ORDERS_LISTED.saturating_sub(views.len());
        if let (Some(archive), true) = (archive, room > 0) {
            let in_memory = |id: &str| state.orders().get(id).is_some();
            let older = archive.newest(customer.as_deref(), room, in_memory)?;
            views.extend(older.into_iter().map(|a| a.view));
        }
        Ok(views)
    })
    .await
}
