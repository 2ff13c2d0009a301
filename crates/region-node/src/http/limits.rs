//! Request rate limits: one abusive caller must not take the node's
//! capacity from everyone else.
//!
//! Two keyed limits (GCRA, from `governor`), both in `[limits]`:
//! - **writes** (POST, PUT, PATCH, DELETE), per caller: the token's role and
//!   subject when it verifies, else the peer's IP (so garbage tokens share
//!   their address's budget). Admin tokens are not limited: they are the
//!   operator's own tools (bulk restocking, imports), and whoever holds one
//!   can do far worse than send requests quickly;
//! - **catalog reads** (`/v1/catalog`, `/v1/meals/…`, `/v1/locate`), public
//!   and unauthenticated, per peer IP.
//!
//! Over the limit: 429 `rate_limited` with `Retry-After` (whole seconds,
//! at least 1), and nothing else happens. Fridge telemetry (HMAC-signed,
//! bounded per fridge by its report numbers), health, metrics and the
//! WebSocket upgrade are not limited here; WebSockets have their own caps
//! (`[ws]`).
//!
//! Memory is bounded: forgotten keys (whose budget is full again) are
//! dropped every [`SWEEP_EVERY_CHECKS`] checks.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::AppState;
use crate::auth::Role;
use crate::config::Limits;

/// How often (in checks) keys whose budget is full again are forgotten.
pub const SWEEP_EVERY_CHECKS: u64 = 4096;

/// Who a write is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Token(Box<str>),
    Ip(IpAddr),
}

/// The node's limiters; `None` where the config turns one off (rate 0).
pub struct RateLimits {
    writes: Option<DefaultKeyedRateLimiter<Key>>,
    catalog: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let per_sec = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(per_sec);
    Some(Quota::per_second(per_sec).allow_burst(burst))
}

impl RateLimits {
    pub fn new(limits: &Limits) -> Self {
        RateLimits {
            writes: quota(
                limits.writes_per_sec_per_caller,
                limits.write_burst_per_caller,
            )
            .map(RateLimiter::keyed),
            catalog: quota(
                limits.catalog_reads_per_sec_per_ip,
                limits.catalog_burst_per_ip,
            )
            .map(RateLimiter::keyed),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    fn check<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), u64>
    where
        K: Clone + Eq + std::hash::Hash,
    {
        // `is_multiple_of` is Rust 1.87; the workspace's rust-version is 1.80.
        #[allow(clippy::manual_is_multiple_of)]
        let sweep = self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_CHECKS == 0;
        if sweep {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

fn is_catalog_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (path == "/v1/catalog" || path == "/v1/locate" || path.starts_with("/v1/meals/"))
}

fn is_limited_write(method: &Method, path: &str) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && !path.starts_with("/v1/fridges/")
        && !path.starts_with("/v1/dev/")
}

/// The middleware: counts the request against its limit, or answers 429.
/// A write's token is verified here once; the verified caller rides along
/// in the request's extensions for the handler's `Caller` extractor.
pub async fn limit(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let limits = &app.rate_limits;
    let ip = super::server::peer(&req).map(|a| a.ip());
    let verdict = if is_catalog_read(req.method(), req.uri().path()) {
        match (&limits.catalog, ip) {
            (Some(l), Some(ip)) => limits.check(l, &ip),
            _ => Ok(()),
        }
    } else if is_limited_write(req.method(), req.uri().path()) {
        let caller = verified_caller(&app, &req);
        let key = writer_key(caller.as_ref(), ip);
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        match (&limits.writes, key) {
            (Some(l), Some(key)) => limits.check(l, &key),
            _ => Ok(()),
        }
    } else {
        Ok(())
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait_secs) => {
            app.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            too_many_requests(wait_secs.max(1))
        }
    }
}

fn verified_caller(app: &AppState, req: &Request) -> Option<crate::auth::Caller> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.verifier.verify_header(header).ok()
}

/// Admins are not counted; a request without a valid token counts
/// against its address.
fn writer_key(caller: Option<&crate::auth::Caller>, ip: Option<IpAddr>) -> Option<Key> {
    match caller {
        Some(c) if c.0.role == Role::Admin => None,
        Some(c) => Some(Key::Token(c.0.caller_key().into())),
        None => ip.map(Key::Ip),
    }
}

/// 429 with `Retry-After`, in the JSON error shape.
pub fn too_many_requests(wait_secs: u64) -> Response {
    let secs = i64::try_from(wait_secs).unwrap_or(i64::MAX);
    ApiError::too_many(
        "rate_limited",
        format!("too many requests; retry in {wait_secs} s"),
        secs,
    )
    .into_response()
}
