//! The HTTP API (axum): routing, auth per route, JSON in and out.
//!
//! Handlers are thin: parse and authorize, then either submit a command to the
//! district's writer or answer from the latest published snapshot. They must
//! not hold state of their own or touch the store directly (the one
//! exception reads it: `log.rs` streams durable records to admins).

pub mod archived;
pub mod catalog;
pub mod encoding;
pub mod error;
pub mod extract;
pub mod fridges;
pub mod insights;
pub mod kitchens;
pub mod limits;
pub mod log;
pub mod me;
pub mod misdirect;
pub mod notifications;
pub mod ops;
pub mod orders;
pub mod pickup_limit;
pub mod points;
pub mod profile;
pub mod promotions;
pub mod restock;
pub mod server;
pub mod subscriptions;
pub mod waitlist;
pub mod web;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use protocol::geo::DistrictArea;
use tower_http::trace::TraceLayer;

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::writer::District;
use error::ApiError;

/// Shared by every handler: one pointer, so a clone is one atomic
/// increment. axum clones the state for every `State` extractor and every
/// `from_fn_with_state` layer, several times per request; a clone of the
/// fields themselves (NATS clients, channel senders, KV configs with their
/// strings) cost ~10 % of the node's CPU under an order load (perf, see
/// `docs/perf/README.md`).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the handlers share, behind [`AppState`]'s one pointer.
pub struct Services {
    pub district: District,
    pub verifier: Verifier,
    pub config: Arc<Config>,
    pub area: DistrictArea,
    /// Where clients reach this node (`public_url` or the bound address).
    pub public_url: String,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// `None` when the node runs without NATS.
    pub nats: Option<crate::nats::NatsLink>,
    /// The region directory; `None` without NATS or with `[fleet]` off.
    pub fleet: Option<crate::fleet::Fleet>,
    /// The customer index; `None` exactly when `fleet` is.
    pub customers: Option<crate::fleet::CustomerIndex>,
    /// Customer profiles (`/v1/me/profile`); `None` exactly when `fleet` is.
    pub profiles: Option<crate::fleet::Profiles>,
    /// The bonus-point ledger (`/v1/me/points`, spends at confirm); `None`
    /// exactly when `fleet` is.
    pub ledger: Option<crate::fleet::points::Ledger>,
    /// HTTP client for asking other districts' nodes (`/v1/me/orders`).
    pub peers: reqwest::Client,
    pub hub: crate::push::hub::Hub,
    /// Open WebSocket connections (the limit is `config.ws.max_connections`).
    pub ws_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Open WebSocket connections per caller (role and subject).
    pub ws_per_caller: Arc<ws::PerCaller>,
    /// Per-caller and per-IP request rates (`[limits]`).
    pub rate_limits: Arc<limits::RateLimits>,
    /// Encoded catalog answers for the current catalog version
    /// (`[limits] catalog_cache_max_entries`, `catalog_cache_max_bytes`).
    pub catalog_cache: Arc<crate::catalog_cache::CatalogCache>,
    /// Pickup-code tries per order (`POST /v1/orders/{id}/pickup`).
    pub pickup_attempts: Arc<pickup_limit::PickupAttempts>,
    /// The node's stop signal. Held by every request and socket session, so
    /// the node's shutdown waits for them.
    pub shutdown: crate::lifecycle::Shutdown,
    /// The event log, read-only: `GET /v1/admin/log` (backup, export).
    pub log: crate::store::LogReader,
    /// The webhook outbox: delivery logs and redelivery.
    pub webhooks: crate::webhooks::Webhooks,
    /// The reporting projection (`/v1/admin/insights`, a kitchen's slice).
    pub insights: crate::insights::Insights,
    /// The fleet's insight board; `None` exactly when `fleet` is.
    pub insight_board: Option<crate::insights::fleet::Board>,
}

/// Longest request target (path and query) answered, in bytes: 414 above.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields in one request: 431 above.
pub const MAX_HEADER_FIELDS: usize = 100;
/// Largest header block (names and values), in bytes: 431 above.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Telemetry bodies just over the ACL's limit still reach it, so the fridge
/// gets the ACL's own 413 answer.
const TELEMETRY_LIMIT_SLACK_BYTES: usize = 1024;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route(
            "/v1/dev/clock",
            get(ops::clock_now).post(ops::clock_advance),
        )
        .route("/v1/catalog", get(catalog::catalog))
        .route("/v1/meals/{meal_id}", get(catalog::meal))
        .route("/v1/locate", get(catalog::locate))
        .route(
            "/v1/admin/meals/{meal_id}",
            put(catalog::define_meal).delete(catalog::discontinue_meal),
        )
        .route("/v1/admin/fridges", get(catalog::fleet))
        .route(
            "/v1/admin/fridges/{fridge_id}",
            put(catalog::register_fridge).get(catalog::fridge),
        )
        .route(
            "/v1/admin/fridges/{fridge_id}/stock",
            put(catalog::set_stock),
        )
        .route("/v1/orders", post(orders::place).get(orders::list))
        .route("/v1/orders/{order_id}", get(orders::get_one))
        .route("/v1/me/orders", get(me::orders))
        .route("/v1/me/points", get(points::mine))
        .route("/v1/me/referrals", get(points::referrals))
        .route(
            "/v1/me/profile",
            get(profile::get_profile).put(profile::put_profile),
        )
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route("/v1/orders/{order_id}/pickup", post(orders::pickup))
        .route("/v1/waitlist", post(waitlist::join).get(waitlist::mine))
        .route(
            "/v1/waitlist/{entry_id}",
            get(waitlist::one).delete(waitlist::leave),
        )
        .route("/v1/ws", get(ws::upgrade))
        .route(
            "/v1/fridges/{fridge_id}/telemetry",
            post(fridges::telemetry).layer(DefaultBodyLimit::max(
                fridges::MAX_TELEMETRY_BYTES + TELEMETRY_LIMIT_SLACK_BYTES,
            )),
        )
        .route(
            "/v1/admin/fridges/{fridge_id}/quarantine/lift",
            post(fridges::lift_quarantine),
        )
        .route(
            "/v1/subscriptions",
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            "/v1/subscriptions/{plan_id}",
            get(subscriptions::one)
                .patch(subscriptions::change)
                .delete(subscriptions::cancel),
        )
        .route("/v1/admin/calendar", get(kitchens::calendar))
        .route("/v1/admin/log", get(log::records))
        .route("/v1/admin/calendar/{date}", put(kitchens::set_calendar_day))
        .merge(promotion_routes())
        .route("/v1/me/notifications", get(notifications::mine))
        .route(
            "/v1/me/quiet-hours",
            get(notifications::quiet_hours).put(notifications::set_quiet_hours),
        )
        .merge(webhook_routes())
        .merge(restock_routes())
        .merge(page_routes())
        .route("/v1/kitchens/{kitchen_id}/prep", get(kitchens::prep))
        .route("/v1/kitchens/{kitchen_id}/events", post(kitchens::event))
        .route("/v1/admin/insights", get(insights::district))
        .route("/v1/kitchens/{kitchen_id}/insights", get(insights::kitchen))
        .route("/v1/admin/fleet/insights", get(insights::fleet))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(middleware::from_fn(guard_request_head))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        // Server errors are logged once, where they are mapped
        // (`ApiError::into_response`: shedding such as payments_backlog at
        // debug, real failures at error); the trace layer's own ERROR line
        // per 5xx would log every shed request twice, at error, under load.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

/// The promotions admin routes (`http/promotions.rs`).
fn promotion_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/campaigns", get(promotions::campaigns))
        .route(
            "/v1/admin/campaigns/{campaign_id}",
            put(promotions::define_campaign)
                .get(promotions::campaign)
                .delete(promotions::end_campaign),
        )
        .route("/v1/admin/coupons", get(promotions::coupons))
        .route(
            "/v1/admin/coupons/{code}",
            put(promotions::define_coupon)
                .get(promotions::coupon)
                .delete(promotions::withdraw_coupon),
        )
        .route("/v1/admin/subsidies", get(promotions::subsidies))
        .route(
            "/v1/admin/subsidies/{subsidy_id}",
            put(promotions::define_subsidy)
                .get(promotions::subsidy)
                .delete(promotions::end_subsidy),
        )
        .route(
            "/v1/admin/subsidies/{subsidy_id}/statement",
            get(promotions::statement),
        )
        .route("/v1/admin/promotions/report", get(promotions::report))
}

/// The restocking routes (`http/restock.rs`).
fn restock_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/fridges/{fridge_id}/par/{meal_id}",
            put(restock::set_par),
        )
        .route("/v1/admin/par", get(restock::levels))
        .route("/v1/admin/par/suggested", get(restock::suggested))
        .route("/v1/admin/par/suggested/apply", post(restock::apply))
        .route("/v1/kitchens/{kitchen_id}/picklist", get(restock::picklist))
}

/// The web apps (`http/web.rs`): pages and their files, no API.
fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(web::customer))
        .route("/ops", get(web::ops))
        .route("/kitchen", get(web::kitchen))
        .route("/web/{file}", get(web::asset))
}

/// The webhook admin routes (`http/webhooks.rs`).
fn webhook_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/v1/admin/webhooks/{endpoint_id}",
            get(webhooks::one).delete(webhooks::disable),
        )
        .route(
            "/v1/admin/webhooks/{endpoint_id}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Over-long request targets and header blocks, answered in JSON before
/// routing (hyper's own, higher limits would answer with empty bodies).
async fn guard_request_head(req: Request, next: Next) -> Result<Response, ApiError> {
    let uri_bytes = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri_bytes} bytes; at most {MAX_URI_BYTES}"),
        ));
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADER_FIELDS || header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "at most {MAX_HEADER_FIELDS} header fields and {MAX_HEADER_BYTES} bytes of headers"
            ),
        ));
    }
    Ok(next.run(req).await)
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    state.metrics.record_http(response.status().as_u16());
    response
}
