//! `GET`/`PUT /v1/me/profile`: a customer's display name and saved default
//! payment method, global data on NATS (`fleet::profiles`), so the same
//! token reads and writes the same profile on every node.
//!
//! Every request to the bucket is bounded by [`PROFILE_TIMEOUT_MS`]. Without
//! NATS (no `[nats]`, `[fleet]` off, or NATS unreachable) the answer is
//! 503 `profile_unavailable`: the profile belongs to no district, so no
//! node can answer for it alone; the district itself keeps selling.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Json, Query};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::fleet::profiles::{DisplayName, PaymentToken, Profile};
use crate::fleet::Profiles;

/// Longest wait for one request to the profile bucket, in milliseconds.
pub const PROFILE_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileParams {
    /// Whose profile (admin only; a customer may name only itself).
    pub customer: Option<String>,
}

/// Body of `PUT /v1/me/profile`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    pub name: String,
    pub payment_method: String,
}

fn unavailable(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "profile_unavailable",
        format!(
            "profiles are global data on NATS and cannot be reached now ({why}); \
             orders that name their payment_method still work"
        ),
    )
}

fn store(app: &AppState) -> Result<&Profiles, ApiError> {
    app.profiles
        .as_ref()
        .ok_or_else(|| unavailable("this node runs without NATS"))
}

/// `customer`'s profile within [`PROFILE_TIMEOUT_MS`]: `Ok(None)` if it has
/// none, `Err` with why it could not be read.
pub async fn read(profiles: &Profiles, customer: &str) -> Result<Option<Profile>, String> {
    match tokio::time::timeout(
        Duration::from_millis(PROFILE_TIMEOUT_MS),
        profiles.get(customer),
    )
    .await
    {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROFILE_TIMEOUT_MS} ms")),
    }
}

/// Whose profile the caller may read: a customer its own (naming another
/// is forbidden), an admin the one it names (it must name one).
fn whose_profile(caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    if asked.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "invalid_query",
            "customer must not be empty",
        ));
    }
    match (claims.role, asked) {
        (Role::Admin, Some(customer)) => Ok(customer),
        (Role::Admin, None) => Err(ApiError::bad_request(
            "missing_customer",
            "an admin must name the customer: ?customer=",
        )),
        (_, Some(other)) if other != claims.sub => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a customer may read only its own profile",
        )),
        _ => Ok(claims.sub.clone()),
    }
}

/// `GET /v1/me/profile` (customer; an admin names the customer with
/// `?customer=`).
pub async fn get_profile(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<ProfileParams>,
) -> Result<axum::Json<Profile>, ApiError> {
    let customer = whose_profile(&caller, params.customer)?;
    let profiles = store(&app)?;
    match read(profiles, &customer).await.map_err(unavailable)? {
        Some(profile) => Ok(axum::Json(profile)),
        None => Err(ApiError::not_found(
            "no_profile",
            format!("customer {customer} has no profile; PUT /v1/me/profile saves one"),
        )),
    }
}

/// `PUT /v1/me/profile` (customer only): saves the profile, replacing any.
pub async fn put_profile(
    State(app): State<AppState>,
    caller: Caller,
    Json(body): Json<ProfileBody>,
) -> Result<axum::Json<Profile>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let invalid = |e: crate::fleet::profiles::FieldError| {
        ApiError::unprocessable("invalid_body", format!("invalid body: {e}"))
    };
    let profile = Profile {
        customer: claims.sub.clone(),
        name: DisplayName::try_from(body.name).map_err(invalid)?,
        payment_method: PaymentToken::try_from(body.payment_method).map_err(invalid)?,
        updated_at: app.clock.now(),
    };
    let profiles = store(&app)?;
    match tokio::time::timeout(
        Duration::from_millis(PROFILE_TIMEOUT_MS),
        profiles.put(&profile),
    )
    .await
    {
        Ok(Ok(())) => Ok(axum::Json(profile)),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable(format!(
            "no answer within {PROFILE_TIMEOUT_MS} ms"
        ))),
    }
}
