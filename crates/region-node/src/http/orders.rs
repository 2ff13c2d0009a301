//! Order routes: confirm (with `Idempotency-Key`), read own orders, cancel,
//! manual pickup.

use crate::fleet::points::{Ledger, LedgerError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use protocol::orders::{
    Channel, OrderAccepted, OrderId, OrderItem, OrderStatus, OrderView, PlaceOrder,
    MAX_IDEMPOTENCY_KEY_LEN,
};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::pickup_limit::Try;
use super::AppState;
use crate::auth::{Caller, Role};
use crate::writer::WriteError;
use district::{Command, DomainError, Order, OrderCommand};
use std::sync::atomic::Ordering::Relaxed;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// `Retry-After` of a 503 `payments_backlog`, in seconds: a backlog at its
/// limit drains in a few seconds once payments answer.
pub const PAYMENTS_BACKLOG_RETRY_AFTER_SECS: i64 = 5;
/// Longest pickup code accepted, in bytes.
const MAX_PICKUP_CODE_LEN: usize = 16;

/// The `Idempotency-Key` header, if any: 1..=128 visible ASCII bytes.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let k = v.to_str().map_err(|_| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be visible ASCII",
        )
    })?;
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} bytes"),
        ));
    }
    Ok(Some(k.to_string()))
}

/// FNV-1a over the canonical JSON of the request: stable across builds and
/// processes (it is stored in the log), unlike `std`'s `DefaultHasher`.
fn fingerprint(request: &PlaceOrder) -> u64 {
    let bytes = serde_json::to_vec(request).unwrap_or_default();
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn accepted(order: &Order) -> OrderAccepted {
    OrderAccepted {
        order_id: order.order_id.clone(),
        // The first answer, whatever happened since: a retried confirm must
        // look exactly like the original one.
        status: OrderStatus::Held,
        hold_until: order.hold_until,
        total: order.charged().amount_minor,
        currency: order.total.currency.clone(),
        pricing: order.price().map(|p| p.as_ref().clone()),
    }
}

pub fn view(order: &Order, show_code: bool) -> OrderView {
    OrderView {
        order_id: order.order_id.clone(),
        status: order.status,
        fridge_id: order.fridge_id.clone(),
        lines: order.lines.clone(),
        total: order.charged().amount_minor,
        currency: order.total.currency.clone(),
        pricing: order.price().map(|p| p.as_ref().clone()),
        share_code: (order.channel == Channel::App
            && matches!(
                order.status,
                OrderStatus::Purchased | OrderStatus::PickedUp | OrderStatus::Unclaimed
            ))
        .then(|| loyalty::share_code(&order.customer)),
        // A plan day's order was never held; an order ahead was, like any.
        hold_until: (order.delivery_date.is_none() || order.preorder.is_some())
            .then_some(order.hold_until),
        pickup_code: order.pickup_code.clone().filter(|_| {
            show_code
                && !matches!(
                    order.status,
                    OrderStatus::Unclaimed | OrderStatus::Cancelled | OrderStatus::Refunded
                )
        }),
        pickup_deadline: order.pickup_deadline,
        refusal_reason: order.refusal_reason,
        refund_pending: order.refund_pending,
        history: order.history.to_vec(),
        shortage: order.shortage.clone(),
        delivery_date: order.delivery_date,
        withdrawn: order.withdrawn.as_deref().copied(),
        cancel_until: order.preorder.as_ref().map(|p| p.cancel_until),
    }
}

/// Body of `POST /v1/orders` as sent: [`PlaceOrder`] with
/// `payment_method` optional (a customer's saved one fills it in). Same
/// fields, same order, so serde's messages are [`PlaceOrder`]'s.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    fridge_id: protocol::FridgeId,
    items: Vec<OrderItem>,
    /// `coupon_code` is accepted as another name for it.
    #[serde(default, alias = "coupon_code")]
    coupon: Option<String>,
    #[serde(default)]
    share_code: Option<String>,
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(default)]
    points: Option<i64>,
    #[serde(default)]
    pickup_date: Option<chrono::NaiveDate>,
}

impl PlaceOrderBody {
    fn with_payment_method(self, payment_method: String) -> PlaceOrder {
        PlaceOrder {
            fridge_id: self.fridge_id,
            items: self.items,
            coupon: self.coupon,
            share_code: self.share_code,
            payment_method,
            points: self.points,
            pickup_date: self.pickup_date,
        }
    }
}

/// Today's answer to a body without `payment_method` (and no saved one).
fn missing_payment_method(why: Option<&str>) -> ApiError {
    let mut message = "invalid body: missing field `payment_method`".to_string();
    if let Some(why) = why {
        message.push_str(&format!(" ({why})"));
    }
    ApiError::unprocessable("invalid_body", message)
}

/// The request to place and its idempotency fingerprint. The fingerprint
/// is of the body as sent: a body without `payment_method` hashes as one
/// with an empty one (never valid), so a retry matches whatever the saved
/// method is by then, and a body with one hashes exactly as before.
async fn resolve(
    app: &AppState,
    claims: &crate::auth::Claims,
    body: PlaceOrderBody,
) -> Result<(PlaceOrder, u64), ApiError> {
    if let Some(method) = body.payment_method.clone() {
        let request = body.with_payment_method(method);
        let f = fingerprint(&request);
        return Ok((request, f));
    }
    let sent = body.with_payment_method(String::new());
    let f = fingerprint(&sent);
    if claims.role != Role::Customer {
        return Err(missing_payment_method(None));
    }
    let Some(profiles) = &app.profiles else {
        return Err(missing_payment_method(None));
    };
    match super::profile::read(profiles, &claims.sub).await {
        Ok(Some(profile)) => {
            let method = profile.payment_method.as_str().to_string();
            Ok((
                PlaceOrder {
                    payment_method: method,
                    ..sent
                },
                f,
            ))
        }
        Ok(None) => Err(missing_payment_method(Some("and no saved profile"))),
        Err(e) => {
            tracing::warn!(error = %e, "profile unreadable; order needs its payment_method");
            Err(missing_payment_method(Some(
                "and the saved profile could not be read",
            )))
        }
    }
}

/// The payments path is `pending` requests behind, at or over `[payments]
/// max_backlog`: a new order would be taken now and time out unpaid later.
#[derive(Debug, thiserror::Error)]
#[error(
    "payments are {pending} requests behind (the limit is {max}); \
     new orders are taken again once they catch up"
)]
pub struct PaymentsBacklog {
    pub pending: usize,
    pub max: usize,
}

/// Refuses a new order (one that will ask for a payment) while the outbox
/// holds `[payments] max_backlog` requests or more. Cancels, refunds and
/// pickups never pass here: they settle what was already taken.
fn admit_new_order(app: &AppState) -> Result<(), PaymentsBacklog> {
    let pending = app.district.state().outbox().len();
    let max = app.config.payments.max_backlog;
    if pending < max {
        return Ok(());
    }
    app.metrics.payments_backlog_refusals.fetch_add(1, Relaxed);
    Err(PaymentsBacklog { pending, max })
}

/// Whether the request retries an order placed under its key: a retry
/// gets its first answer from the decider, and nothing is checked or
/// reserved for it again. A new order must pass [`admit_new_order`] first,
/// before anything is reserved, so a refusal changes nothing.
fn retry_or_admit(
    app: &AppState,
    customer: &str,
    key: Option<&str>,
) -> Result<bool, PaymentsBacklog> {
    let retry = key.is_some_and(|k| {
        app.district
            .state()
            .orders()
            .by_idempotency_key(customer, k)
            .is_some()
    });
    if !retry {
        admit_new_order(app)?;
    }
    Ok(retry)
}

/// `POST /v1/orders`.
pub async fn place(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<PlaceOrderBody>,
) -> Result<impl IntoResponse, ApiError> {
    // First, as the body's own errors came first when the field was required.
    let (request, fingerprint) = resolve(&app, &caller.0, body).await?;
    let claims = caller.require(&[Role::Customer, Role::Pos])?;
    // Before any hold is taken: a misdirected order changes nothing.
    super::misdirect::fridge_here(&app, request.fridge_id.as_str())?;
    let channel = if claims.role == Role::Pos {
        Channel::Pos
    } else {
        Channel::App
    };
    let key = idempotency_key(&headers)?;
    let idempotency = key.clone().map(|k| (k, fingerprint));
    let order_id = OrderId::from(app.clock.ulid());
    let customer = claims.sub.clone();
    let retry = retry_or_admit(&app, &customer, key.as_deref())?;
    let referral = match (&request.share_code, channel) {
        (Some(_), _) if retry => None,
        (Some(code), Channel::App) => {
            Some(referrer(&app, &customer, code, &request.payment_method).await?)
        }
        _ => None, // The decider refuses a share code at a till.
    };
    // For a refusal for stock: where else the meals are, and the waitlist.
    let asked = (request.fridge_id.clone(), request.items.clone());
    let holds = match retry {
        true => Holds::default(),
        false => Holds::take(&app, &request, channel, &customer, &order_id).await?,
    };
    let committed = app
        .district
        .submit(Command::Order(OrderCommand::Place {
            order_id: order_id.clone(),
            customer: customer.clone(),
            channel,
            request,
            idempotency,
            referral,
        }))
        .await;
    let state = app.district.state();
    let placed_now = committed
        .as_ref()
        .is_ok_and(|c| !c.events.is_empty())
        .then(|| state.orders().get(&order_id))
        .flatten();
    holds.settle(&customer, placed_now).await;
    let committed = committed.map_err(|e| match e {
        WriteError::Domain(d @ DomainError::InsufficientStock { .. }) => {
            elsewhere(ApiError::from(d), &state, &asked.0, &asked.1)
        }
        e => ApiError::from(e),
    })?;
    let placed_id = if committed.events.is_empty() {
        // Same key, same request: answer with the order it created first.
        key.and_then(|k| {
            state
                .orders()
                .by_idempotency_key(&customer, &k)
                .map(|(id, _)| id.clone())
        })
    } else {
        Some(order_id)
    };
    let order = placed_id
        .and_then(|id| state.orders().get(&id).cloned())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "order not found after commit",
            )
        })?;
    Ok((StatusCode::CREATED, axum::Json(accepted(&order))))
}

/// Adds to a 409 `insufficient_stock` the nearest fridges that have the
/// short meals now (`alternatives`) and the waitlist entries to ask for
/// (`waitlist`: bodies for `POST /v1/waitlist`), so an app can move the
/// customer on in one tap.
fn elsewhere(
    mut e: ApiError,
    state: &district::DistrictState,
    fridge_id: &protocol::FridgeId,
    items: &[OrderItem],
) -> ApiError {
    let short: Vec<protocol::MealId> = items
        .iter()
        .filter(|i| state.stock_level(fridge_id, &i.meal_id).available() < i.qty)
        .map(|i| i.meal_id.clone())
        .collect();
    let alternatives: Vec<serde_json::Value> =
        district::query::alternatives(state, fridge_id, &short)
            .into_iter()
            .map(|a| {
                let meals: Vec<_> = a
                    .meals
                    .iter()
                    .map(|(m, units)| serde_json::json!({"meal_id": m, "available": units}))
                    .collect();
                serde_json::json!({"fridge_id": a.fridge_id, "name": a.name,
                    "distance_m": a.distance_m, "meals": meals})
            })
            .collect();
    let waitlist: Vec<serde_json::Value> = short
        .iter()
        .map(|m| serde_json::json!({"meal_id": m, "fridge_id": fridge_id}))
        .collect();
    let details = e.details.get_or_insert_with(Default::default);
    details.insert("alternatives".into(), serde_json::json!(alternatives));
    details.insert("waitlist".into(), serde_json::json!(waitlist));
    e
}

fn referral_refused(reason: &'static str, message: &str) -> ApiError {
    let mut e = ApiError::unprocessable("referral_refused", message);
    e.details = Some(
        [("reason".to_string(), serde_json::json!(reason))]
            .into_iter()
            .collect(),
    );
    e
}

/// The owner of share code `code` if `customer` may buy with it: not their
/// own, not referred before, and the payment method has not earned the
/// owner a reward already (one card farming a code through made-up
/// accounts). Read from the global ledger; 503 without it.
async fn referrer(
    app: &AppState,
    customer: &str,
    code: &str,
    payment_method: &str,
) -> Result<String, ApiError> {
    let ledger = ledger(app, NO_NATS)?;
    let unknown = || referral_refused("unknown_code", "this share code is not valid");
    let code = loyalty::parse_share_code(code).ok_or_else(unknown)?;
    let owner = ledger.share_owner(&code).await?.ok_or_else(unknown)?;
    if owner == customer {
        return Err(referral_refused(
            "self_referral",
            "this is your own share code",
        ));
    }
    let (buyer, _) = ledger.account(customer).await?;
    if buyer.referred_by().is_some() {
        return Err(referral_refused(
            "already_referred",
            "you were referred before; a share code counts once per customer",
        ));
    }
    let (owner_account, _) = ledger.account(&owner).await?;
    if owner_account.rewarded_method(loyalty::method_hash(payment_method)) {
        return Err(referral_refused(
            "payment_method_used",
            "this payment method was already used with this share code",
        ));
    }
    Ok(owner)
}

/// What the ledger holds for an order about to be placed: a use of a
/// fleet-counted coupon and the points to spend.
#[derive(Default)]
struct Holds {
    coupon: Option<(Ledger, String, String)>,
    points: Option<(Ledger, String)>,
}

impl Holds {
    /// Reserves what the request needs from the ledger; on a refusal,
    /// gives back what was already taken.
    async fn take(
        app: &AppState,
        request: &PlaceOrder,
        channel: Channel,
        customer: &str,
        order_id: &OrderId,
    ) -> Result<Holds, ApiError> {
        let mut holds = Holds::default();
        if let Some(code) = &request.coupon {
            holds.coupon = reserve_fleet_coupon(app, code, order_id).await?;
        }
        if let (Some(points), Channel::App) = (request.points, channel) {
            if points > 0 {
                // Otherwise the decider refuses what is wrong with it.
                match reserve_points(app, customer, order_id, points).await {
                    Ok(hold) => holds.points = Some(hold),
                    Err(e) => {
                        holds.settle(customer, None).await;
                        return Err(e);
                    }
                }
            }
        }
        Ok(holds)
    }

    /// Keeps each hold only if `placed_now` (the order this request
    /// placed, if it did) spends the points or uses the coupon.
    async fn settle(self, customer: &str, placed_now: Option<&Order>) {
        let price = placed_now.and_then(Order::price);
        if let Some((ledger, key)) = self.points {
            if price.is_none_or(|p| p.points.is_none()) {
                ledger.release_hold(customer, &key).await;
            }
        }
        if let Some((ledger, code, key)) = self.coupon {
            let uses = price
                .and_then(|p| p.coupon.as_ref())
                .is_some_and(|c| c.code.as_str() == code);
            if !uses {
                ledger.release_coupon_hold(&code, &key).await;
            }
        }
    }
}

/// Why the ledger is unavailable on a node configured without NATS.
pub(crate) const NO_NATS: &str = "this node runs without NATS";

/// The ledger, or 503 `loyalty_unavailable` on a node without NATS.
pub(crate) fn ledger(app: &AppState, why: &str) -> Result<Ledger, ApiError> {
    app.ledger
        .clone()
        .ok_or_else(|| LedgerError::Unavailable(why.to_string()).into())
}

/// For a coupon whose uses count fleet-wide (`fleet_max_uses`): reserves
/// one use for the order about to be placed (503 without the ledger, 422
/// `limit_reached` when the fleet has used them all). `None` for any other
/// coupon (the decider checks it, or refuses an unknown one).
async fn reserve_fleet_coupon(
    app: &AppState,
    code: &str,
    order_id: &OrderId,
) -> Result<Option<(Ledger, String, String)>, ApiError> {
    let Ok(code) = protocol::CouponCode::from_input(code) else {
        return Ok(None);
    };
    let max = app
        .district
        .state()
        .promotions()
        .coupons()
        .get(&code)
        .and_then(|c| c.spec.fleet_max_uses);
    let Some(max) = max else {
        return Ok(None);
    };
    let ledger = ledger(
        app,
        "this coupon is counted over every district, and this node runs without NATS",
    )?;
    let key = district::loyalty::order_key(&app.config.district_id, order_id);
    ledger
        .reserve_coupon(code.as_str(), &key, max, app.clock.now())
        .await?;
    Ok(Some((ledger, code.into_string(), key)))
}

/// Reserves `points` for the order about to be placed; the ledger and the
/// order's key there, to undo it if the order does not spend them.
async fn reserve_points(
    app: &AppState,
    customer: &str,
    order_id: &OrderId,
    points: i64,
) -> Result<(Ledger, String), ApiError> {
    let ledger = ledger(app, NO_NATS)?;
    let key = district::loyalty::order_key(&app.config.district_id, order_id);
    ledger
        .reserve(customer, &key, points, app.clock.now())
        .await?;
    Ok((ledger, key))
}

fn unknown_order(order_id: &str) -> ApiError {
    ApiError::not_found("unknown_order", format!("order {order_id} does not exist"))
}

/// Not an id, so no order: the same 404 as an unknown one.
fn path_order_id(order_id: &str) -> Result<OrderId, ApiError> {
    order_id.parse().map_err(|_| unknown_order(order_id))
}

fn visible_order(app: &AppState, caller: &Caller, order_id: &str) -> Result<Order, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let state = app.district.state();
    state
        .orders()
        .get(order_id)
        .filter(|o| claims.role == Role::Admin || o.customer == claims.sub)
        .cloned()
        .ok_or_else(|| unknown_order(order_id))
}

/// `GET /v1/orders/{id}`: the owner or an admin.
pub async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    match visible_order(&app, &caller, &order_id) {
        Ok(order) => Ok(axum::Json(view(&order, true))),
        Err(unknown) => {
            let claims = caller.require(&[Role::Customer, Role::Admin])?;
            let archived = super::archived::visible(&app, claims, &order_id).await?;
            archived.map(|a| axum::Json(a.view)).ok_or(unknown)
        }
    }
}

/// Most orders one listing returns (newest first).
pub const MAX_ORDERS_LISTED: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Whose orders (admin only; a customer may name only itself).
    pub customer: Option<String>,
}

/// Whose orders the caller may list: a customer its own (naming another
/// is forbidden), an admin the one it names or, without a name, everyone's
/// (`None`).
pub fn whose_orders(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    if asked.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "invalid_query",
            "customer must not be empty",
        ));
    }
    if claims.role == Role::Admin {
        return Ok(asked);
    }
    match asked {
        Some(other) if other != claims.sub => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a customer may list only its own orders",
        )),
        _ => Ok(Some(claims.sub.clone())),
    }
}

/// This district's orders of `customer` (everyone's for `None`), newest
/// first, at most [`MAX_ORDERS_LISTED`].
pub fn listed(state: &district::DistrictState, customer: Option<&str>) -> Vec<OrderView> {
    match customer {
        None => state
            .orders()
            .iter()
            .rev()
            .take(MAX_ORDERS_LISTED)
            .map(|o| view(o, true))
            .collect(),
        Some(c) => state
            .orders()
            .of_customer(c)
            .rev()
            .take(MAX_ORDERS_LISTED)
            .map(|o| view(o, true))
            .collect(),
    }
}

/// `GET /v1/orders`: a customer's own orders, newest first; an admin's
/// listing is everyone's, or one customer's with `?customer=`.
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let customer = whose_orders(&caller, params.customer)?;
    let orders = super::archived::listed(&app, customer).await?;
    Ok(axum::Json(serde_json::json!({ "orders": orders })))
}

/// `POST /v1/orders/{id}/cancel`.
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let claims = caller.require(&[Role::Customer, Role::Admin])?;
    let customer = (claims.role != Role::Admin).then(|| claims.sub.clone());
    let order_id = path_order_id(&order_id)?;
    let cancelled = app
        .district
        .submit(Command::Order(OrderCommand::Cancel {
            order_id: order_id.clone(),
            customer,
        }))
        .await;
    if let Err(WriteError::Domain(DomainError::UnknownOrder(_))) = &cancelled {
        // Archived: final, so refused as it was just before archiving.
        if let Some(a) = super::archived::visible(&app, claims, &order_id).await? {
            return Err(district::orders::cancel_refused(a.status()).into());
        }
    }
    cancelled?;
    let order = visible_order(&app, &caller, &order_id)?;
    Ok(axum::Json(view(&order, true)))
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PickupBody {
    pickup_code: String,
}

/// `POST /v1/orders/{id}/pickup`: manual confirmation at the fridge.
pub async fn pickup(
    State(app): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    Json(body): Json<PickupBody>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let claims = caller.require(&[Role::Pos, Role::Kitchen, Role::Fridge])?;
    if body.pickup_code.is_empty() || body.pickup_code.len() > MAX_PICKUP_CODE_LEN {
        return Err(ApiError::unprocessable(
            "invalid",
            format!("pickup_code must be 1..={MAX_PICKUP_CODE_LEN} characters"),
        ));
    }
    let order_id = path_order_id(&order_id)?;
    let state = app.district.state();
    let Some(order) = state.orders().get(&order_id) else {
        return Err(archived_pickup(&app, claims, &order_id).await);
    };
    if another_fridge(claims, &order.fridge_id) {
        return Err(another_fridge_refused());
    }
    let who = claims.caller_key();
    if let Err(wait_secs) = app.pickup_attempts.caller_may_try(&who, app.clock.now()) {
        return Err(ApiError::new(
            StatusCode::LOCKED,
            "pickup_locked",
            format!("too many wrong pickup codes from this token; try again in {wait_secs} s"),
        )
        .retry_after(wait_secs));
    }
    if app.pickup_attempts.try_once(&order_id) == Try::Locked {
        return Err(ApiError::new(
            StatusCode::LOCKED,
            "pickup_locked",
            format!(
                "too many wrong pickup codes for order {order_id}; \
                 collect it at the fridge with its code"
            ),
        ));
    }
    let result = app
        .district
        .submit(Command::Order(OrderCommand::Pickup {
            order_id: order_id.clone(),
            pickup_code: body.pickup_code,
        }))
        .await;
    match result {
        Err(WriteError::Domain(DomainError::WrongPickupCode)) => {
            app.pickup_attempts.caller_wrong(&who, app.clock.now());
            if app.pickup_attempts.wrong(&order_id) {
                app.metrics.pickup_lockouts.fetch_add(1, Relaxed);
                tracing::warn!(%order_id, "pickup code locked after too many wrong tries");
            }
            return Err(DomainError::WrongPickupCode.into());
        }
        Err(e) => {
            app.pickup_attempts.give_back(&order_id);
            return Err(e.into());
        }
        Ok(_) => app.pickup_attempts.give_back(&order_id),
    }
    let state = app.district.state();
    let order = state
        .orders()
        .get(&order_id)
        .ok_or_else(|| ApiError::not_found("unknown_order", "order vanished"))?;
    Ok(axum::Json(view(order, false)))
}

fn another_fridge(claims: &crate::auth::Claims, fridge_id: &str) -> bool {
    claims.fridge_id.as_ref().is_some_and(|f| f != fridge_id)
}

fn another_fridge_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this token is for another fridge",
    )
}

/// A pickup of an order not in memory: unknown, or archived and so final,
/// refused as it was just before archiving (after the same fridge check).
async fn archived_pickup(app: &AppState, claims: &crate::auth::Claims, order_id: &str) -> ApiError {
    match super::archived::find(app, order_id).await {
        Err(e) => e,
        Ok(None) => unknown_order(order_id),
        Ok(Some(a)) if another_fridge(claims, &a.view.fridge_id) => another_fridge_refused(),
        Ok(Some(a)) => district::orders::pickup_refused(a.status()).into(),
    }
}
