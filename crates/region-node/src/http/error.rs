//! The one place errors become HTTP responses:
//! `{"error":{"code":"snake_case","message":"human text"}}` with the right
//! status. Every boundary error converts into [`ApiError`].
//!
//! Messages are capped at [`MAX_MESSAGE_CHARS`]: some name the caller's
//! input (an unknown id), and a 10 KB id must not come back 10 KB long.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::writer::WriteError;
use district::DomainError;

/// Longest message sent back, in characters; longer ones end in `…`.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// 5xx codes that are the node shedding load as designed, not failing:
/// counted in `/metrics` and logged at debug, since under overload an
/// error line per refused request would flood the log.
const SHEDDING_CODES: &[&str] = &["payments_backlog"];

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra machine-readable facts, merged into the error object
    /// (e.g. `available` for `insufficient_stock`).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds for the `Retry-After` header (429s).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }
    /// 429 with `Retry-After` (at least 1 s) and `retry_after_secs` in the body.
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after_secs: i64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(retry_after_secs)
    }
    /// Adds `Retry-After` (at least 1 s) and `retry_after_secs` in the body.
    pub fn retry_after(mut self, retry_after_secs: i64) -> Self {
        let secs = u64::try_from(retry_after_secs).unwrap_or(0).max(1);
        self.details
            .get_or_insert_with(Default::default)
            .insert("retry_after_secs".to_string(), json!(secs));
        self.retry_after_secs = Some(secs);
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    /// `421 misdirected`: `what` (a point, a fridge) is district
    /// `district_id`'s; the body names it and its node's `url`, where the
    /// same request is answered, so a client can follow. One shape for
    /// every route that answers it.
    pub fn misdirected(district_id: &str, url: &str, what: &str) -> Self {
        let mut e = Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!("district {district_id} serves {what} at {url}"),
        );
        let details = e.details.get_or_insert_with(Default::default);
        details.insert("district_id".into(), json!(district_id));
        details.insert("url".into(), json!(url));
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            if SHEDDING_CODES.contains(&self.code) {
                tracing::debug!(code = self.code, message = %self.message, "request refused");
            } else {
                tracing::error!(code = self.code, message = %self.message, "request failed");
            }
        }
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(truncated(self.message)));
        error.extend(self.details.unwrap_or_default());
        let body = json!({ "error": error });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

fn truncated(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            AuthError::Invalid(_) => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
            }
            AuthError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            AuthError::Key(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "auth misconfigured",
            ),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let message = e.to_string();
        match e {
            DomainError::Invalid(_) => Self::unprocessable("invalid", message),
            DomainError::UnknownMeal(_) => Self::not_found("unknown_meal", message),
            DomainError::UnknownFridge(_) => Self::not_found("unknown_fridge", message),
            DomainError::OutsideDistrict { .. } => Self::unprocessable("outside_district", message),
            DomainError::VersionConflict { .. } => {
                Self::new(StatusCode::CONFLICT, "version_conflict", message)
            }
            DomainError::UnknownOrder(_) => Self::not_found("unknown_order", message),
            DomainError::FridgeUnavailable(_) => {
                Self::new(StatusCode::CONFLICT, "fridge_unavailable", message)
            }
            DomainError::NotQuarantined(_) => {
                Self::new(StatusCode::CONFLICT, "not_quarantined", message)
            }
            DomainError::FridgeOutOfRange(_) => {
                Self::new(StatusCode::CONFLICT, "fridge_out_of_range", message)
            }
            DomainError::CursorUnreadable { .. } => {
                Self::new(StatusCode::CONFLICT, "cursor_unreadable", message)
            }
            DomainError::InsufficientStock { available } => {
                let available: Vec<_> = available
                    .into_iter()
                    .map(|(meal_id, available)| json!({"meal_id": meal_id, "available": available}))
                    .collect();
                let mut e = Self::new(StatusCode::CONFLICT, "insufficient_stock", message);
                e.details = Some(
                    [("available".to_string(), json!(available))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            DomainError::WrongState { status, .. } => {
                let mut e = Self::new(StatusCode::CONFLICT, "wrong_status", message);
                e.details = Some(
                    [("status".to_string(), json!(status))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            DomainError::IdempotencyKeyReused => {
                Self::unprocessable("idempotency_key_reused", message)
            }
            DomainError::WrongPickupCode => Self::unprocessable("wrong_pickup_code", message),
            DomainError::TooManyHeldOrders {
                retry_after_secs, ..
            } => Self::too_many("too_many_held_orders", message, retry_after_secs),
            DomainError::CancelCooldown {
                retry_after_secs, ..
            } => Self::too_many("cancel_cooldown", message, retry_after_secs),
            DomainError::Schedule(e) => e.into(),
            DomainError::UnknownPromotion(_) => Self::not_found("unknown_promotion", message),
            DomainError::UnknownCoupon => coupon_refused("unknown", message),
            DomainError::CouponRefused(refusal) => coupon_refused(refusal.code(), message),
            DomainError::MealAvailable { available, .. } => {
                let available: Vec<_> = available
                    .into_iter()
                    .map(|(fridge_id, units)| json!({"fridge_id": fridge_id, "available": units}))
                    .collect();
                let mut e = Self::new(StatusCode::CONFLICT, "meal_available", message);
                e.details = Some(
                    [("available_at".to_string(), json!(available))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            DomainError::UnknownWaitlistEntry(_) => {
                Self::not_found("unknown_waitlist_entry", message)
            }
            DomainError::WaitlistEntryClosed { status } => {
                let mut e = Self::new(StatusCode::CONFLICT, "waitlist_entry_closed", message);
                e.details = Some(
                    [("status".to_string(), json!(status))]
                        .into_iter()
                        .collect(),
                );
                e
            }
        }
    }
}

/// 422 `coupon_refused` with the machine-readable `reason` (`unknown`,
/// `expired`, `limit_reached`, …): the app can say why, or drop the code
/// and confirm again.
fn coupon_refused(reason: &'static str, message: String) -> ApiError {
    let mut e = ApiError::unprocessable("coupon_refused", message);
    e.details = Some(
        [("reason".to_string(), json!(reason))]
            .into_iter()
            .collect(),
    );
    e
}

impl From<crate::fleet::points::LedgerError> for ApiError {
    fn from(e: crate::fleet::points::LedgerError) -> Self {
        use crate::fleet::points::LedgerError as L;
        let message = e.to_string();
        match e {
            // Spends need the global balance; the rest of an order does not:
            // the app can confirm again without points.
            L::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "loyalty_unavailable",
                message,
            )
            .retry_after(5),
            L::Refused(loyalty::LoyaltyError::Insufficient { available, .. }) => {
                let mut e = Self::unprocessable("insufficient_points", message);
                e.details = Some(
                    [("available".to_string(), json!(available))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            L::Refused(loyalty::LoyaltyError::NotPositive) => {
                Self::unprocessable("invalid", message)
            }
            L::Refused(loyalty::LoyaltyError::TooManyHolds) => {
                Self::too_many("too_many_point_holds", message, 60)
            }
            L::Corrupt(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
            // The fleet-wide limit of a coupon: the same answer as a
            // district's own limit.
            L::CouponLimit(_) => coupon_refused("limit_reached", message),
        }
    }
}

impl From<scheduler::ScheduleError> for ApiError {
    fn from(e: scheduler::ScheduleError) -> Self {
        use scheduler::ScheduleError as S;
        let message = e.to_string();
        match e {
            S::Invalid(_) | S::Spec(_) => Self::unprocessable("invalid", message),
            S::UnknownPlan(_) => Self::not_found("unknown_plan", message),
            S::UnknownMeal(_) => Self::not_found("unknown_meal", message),
            S::UnknownFridge(_) => Self::not_found("unknown_fridge", message),
            S::UnknownKitchen(_) => Self::not_found("unknown_kitchen", message),
            S::UnknownOrder(_) => Self::not_found("unknown_order", message),
            S::AfterCutoff { earliest } => {
                let mut e = Self::unprocessable("after_cutoff", message);
                e.details = Some(
                    [("earliest".to_string(), json!(earliest))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            S::WrongState(_) => Self::new(StatusCode::CONFLICT, "wrong_state", message),
            S::FridgeUnavailable(_) => {
                Self::new(StatusCode::CONFLICT, "fridge_unavailable", message)
            }
            S::OutsidePlacementWindow { .. } => {
                Self::new(StatusCode::CONFLICT, "outside_placement_window", message)
            }
            S::OverlappingPlan { existing, .. } => {
                let mut e = Self::new(StatusCode::CONFLICT, "overlapping_plan", message);
                e.details = Some(
                    [("plan_id".to_string(), json!(existing))]
                        .into_iter()
                        .collect(),
                );
                e
            }
            S::IdempotencyKeyReused => Self::unprocessable("idempotency_key_reused", message),
        }
    }
}

impl From<super::orders::PaymentsBacklog> for ApiError {
    fn from(e: super::orders::PaymentsBacklog) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_backlog",
            e.to_string(),
        )
        .retry_after(super::orders::PAYMENTS_BACKLOG_RETRY_AFTER_SECS)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Domain(d) => d.into(),
            WriteError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m)
            }
            WriteError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
        }
    }
}
