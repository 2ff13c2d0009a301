//! Back-in-stock waitlist routes (`district::waitlist` decides): a
//! customer joins, reads and leaves their entries; holds are offered by the
//! waitlist tick and used by the customer's next order for the meal there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use protocol::waitlist::{JoinWaitlist, WaitlistEntryView};
use protocol::WaitlistId;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Json, Path};
use super::AppState;
use crate::auth::{Caller, Role};
use district::{Command, DomainError, WaitlistCommand};

#[derive(Debug, Serialize)]
pub struct Entries {
    /// Newest first: open entries and the last finished ones.
    pub entries: Vec<WaitlistEntryView>,
}

/// `POST /v1/waitlist` (customer): 201 with the entry.
pub async fn join(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<JoinWaitlist>,
) -> Result<impl IntoResponse, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    if let Some(f) = &request.fridge_id {
        super::misdirect::fridge_here(&app, f.as_str())?;
    }
    let entry_id = WaitlistId::from(app.clock.ulid());
    app.district
        .submit(Command::Waitlist(WaitlistCommand::Join {
            entry_id: entry_id.clone(),
            customer: claims.sub.clone(),
            request,
            policy: app.config.waitlist.policy(),
        }))
        .await?;
    let view = entry_view(&app, &caller, &entry_id)?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// `GET /v1/waitlist` (customer): the caller's entries.
pub async fn mine(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Entries>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let state = app.district.state();
    let wl = state.waitlist();
    let entries = wl.of_customer(&claims.sub).map(|e| wl.view(e)).collect();
    Ok(axum::Json(Entries { entries }))
}

/// `GET /v1/waitlist/{entry_id}`: the owner or an admin.
pub async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(entry_id): Path<String>,
) -> Result<axum::Json<WaitlistEntryView>, ApiError> {
    Ok(axum::Json(entry_view(&app, &caller, &entry_id)?))
}

/// `DELETE /v1/waitlist/{entry_id}`: the owner or an admin leaves it (a
/// held unit goes back on sale); answers the entry as it ended.
pub async fn leave(
    State(app): State<AppState>,
    caller: Caller,
    Path(entry_id): Path<String>,
) -> Result<axum::Json<WaitlistEntryView>, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let customer = (claims.role != Role::Admin).then(|| claims.sub.clone());
    let id: WaitlistId = entry_id.parse().map_err(|_| unknown(&entry_id))?;
    app.district
        .submit(Command::Waitlist(WaitlistCommand::Leave {
            entry_id: id,
            customer,
        }))
        .await?;
    Ok(axum::Json(entry_view(&app, &caller, &entry_id)?))
}

/// The entry if the caller may see it (someone else's is missing: its
/// existence must not leak).
fn entry_view(
    app: &AppState,
    caller: &Caller,
    entry_id: &str,
) -> Result<WaitlistEntryView, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let state = app.district.state();
    let wl = state.waitlist();
    wl.entry(entry_id)
        .filter(|e| claims.role == Role::Admin || e.customer == claims.sub)
        .map(|e| wl.view(e))
        .ok_or_else(|| unknown(entry_id))
}

fn unknown(entry_id: &str) -> ApiError {
    let id = WaitlistId::parse(entry_id).unwrap_or_else(|_| WaitlistId::from_static("-"));
    ApiError::from(DomainError::UnknownWaitlistEntry(id))
}
