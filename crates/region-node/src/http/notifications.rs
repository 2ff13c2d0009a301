//! The caller's notifications over HTTP, for apps that poll
//! (`GET /v1/me/notifications?since=`), and their quiet hours
//! (`GET`/`PUT /v1/me/quiet-hours`). The same notifications arrive live
//! over the WebSocket (`notification` messages) and, for a phone with no
//! socket, through the push adapter (`crate::notify`).

use axum::extract::State;
use district::notifications::MAX_PER_CUSTOMER;
use district::push::version_after;
use district::{Command, NotificationCommand};
use protocol::notifications::QuietHours;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Query};
use super::AppState;
use crate::auth::{Caller, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceQuery {
    /// A notification id or WebSocket version; 0 or absent: everything kept.
    #[serde(default)]
    pub since: u64,
}

#[derive(Debug, Serialize)]
pub struct NotificationsView {
    /// The caller's notifications after `since`, of the last 24 h (at most
    /// the newest 100), oldest first.
    pub notifications: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Poll again with `since` = this to get only what is new.
    pub version: u64,
}

/// `GET /v1/me/notifications?since=` (customer).
pub async fn mine(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<SinceQuery>,
) -> Result<axum::Json<NotificationsView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let state = app.district.state();
    let notifications = state
        .notifications()
        .of_customer_after(&claims.sub, q.since, app.clock.now())
        .take(MAX_PER_CUSTOMER)
        .map(|n| n.to_json())
        .collect();
    Ok(axum::Json(NotificationsView {
        notifications,
        version: version_after(state.last_seq()),
    }))
}

/// Quiet hours as the API shows them: `"HH:MM"` district-local.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    /// `null`: none (pushes are sent at any hour). Required: a body
    /// without it is refused rather than read as "none".
    #[serde(deserialize_with = "required")]
    pub quiet_hours: Option<QuietHoursSpec>,
}

/// An `Option` field that must be present (`null` allowed).
fn required<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<QuietHoursSpec>, D::Error> {
    Option::<QuietHoursSpec>::deserialize(d)
}

#[derive(Debug, Serialize)]
pub struct QuietHoursView {
    pub quiet_hours: Option<QuietHoursSpec>,
    /// The district's offset from UTC the times are read in.
    pub utc_offset_minutes: i32,
}

fn view(app: &AppState, quiet_hours: Option<QuietHours>) -> QuietHoursView {
    QuietHoursView {
        quiet_hours: quiet_hours.map(|q| QuietHoursSpec {
            start: QuietHours::format(q.start_minute),
            end: QuietHours::format(q.end_minute),
        }),
        utc_offset_minutes: app.config.subscriptions.utc_offset_minutes,
    }
}

/// `GET /v1/me/quiet-hours` (customer).
pub async fn quiet_hours(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<QuietHoursView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let q = app
        .district
        .state()
        .notifications()
        .quiet_hours(&claims.sub);
    Ok(axum::Json(view(&app, q)))
}

/// `PUT /v1/me/quiet-hours` (customer): set or clear them.
pub async fn set_quiet_hours(
    State(app): State<AppState>,
    caller: Caller,
    Json(body): Json<QuietHoursBody>,
) -> Result<axum::Json<QuietHoursView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let quiet_hours = match &body.quiet_hours {
        None => None,
        Some(spec) => Some(QuietHours::parse(&spec.start, &spec.end).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_quiet_hours",
                "start and end are two different times of day, \"HH:MM\" (00:00 to 23:59)",
            )
        })?),
    };
    app.district
        .submit(Command::Notification(NotificationCommand::SetQuietHours {
            customer: claims.sub.clone(),
            quiet_hours,
        }))
        .await?;
    tracing::info!(customer = %claims.sub, ?quiet_hours, "quiet hours set");
    Ok(axum::Json(view(&app, quiet_hours)))
}
