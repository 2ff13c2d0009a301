//! `GET /v1/me/orders`: a travelling customer's orders from every district
//! the customer index lists, gathered by whichever node is asked.
//!
//! This node answers for its own district from its snapshot, reads the
//! index (`fleet::customers`) and asks every other indexed district's node
//! (its URL from the directory copy) for `GET /v1/orders` with the
//! caller's own bearer token, in parallel, each within
//! [`PEER_TIMEOUT_MS`]. A district that does not answer, answers with an
//! error, or is not in the directory is reported `partial`; the request
//! itself fails only for the caller's own mistakes (auth, query).
//!
//! The other node verifies the forwarded token itself: every node trusts
//! the same issuer, and it answers with that caller's orders only.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use protocol::DistrictId;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::Query;
use super::orders::{whose_orders, ListParams};
use super::AppState;
use crate::auth::Caller;

/// Longest wait for one other district's answer, in milliseconds.
pub const PEER_TIMEOUT_MS: u64 = 2_000;
/// Longest wait to connect to another district's node, in milliseconds.
const PEER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Longest wait for the customer index, in milliseconds.
pub const INDEX_TIMEOUT_MS: u64 = 2_000;
/// Most districts asked for one customer (beyond it they are `partial`):
/// bounds the fan-out one request can cause.
pub const MAX_DISTRICTS_ASKED: usize = 16;

/// The client for other districts' nodes (plain HTTP between nodes; the
/// per-request timeout is set per call).
pub fn peer_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
        .build()
}

#[derive(Debug, Serialize)]
struct DistrictAnswer {
    district_id: DistrictId,
    /// `ok` or `partial`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl DistrictAnswer {
    fn ok(district_id: DistrictId) -> Self {
        DistrictAnswer {
            district_id,
            status: "ok",
            error: None,
        }
    }

    fn partial(district_id: DistrictId, error: impl Into<String>) -> Self {
        DistrictAnswer {
            district_id,
            status: "partial",
            error: Some(error.into()),
        }
    }
}

/// Each order as JSON with its district.
fn tagged(orders: impl IntoIterator<Item = Value>, district: &DistrictId) -> Vec<Value> {
    orders
        .into_iter()
        .map(|mut o| {
            if let Some(map) = o.as_object_mut() {
                map.insert("district_id".into(), json!(district));
            }
            o
        })
        .collect()
}

/// `GET /v1/me/orders` (customer; an admin names the customer with
/// `?customer=`).
pub async fn orders(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(customer) = whose_orders(&caller, params.customer)? else {
        return Err(ApiError::bad_request(
            "missing_customer",
            "an admin must name the customer: ?customer=",
        ));
    };
    let me = app.config.district_id.clone();
    let mut orders = tagged(own_orders(&app, &customer).await?, &me);
    let mut districts = vec![DistrictAnswer::ok(me.clone())];
    let (index, others) = indexed_districts(&app, &customer, &me).await;
    let requests = peer_requests(&app, &caller, &headers, &customer, others, &mut districts);
    let asks = requests
        .into_iter()
        .map(|(district, request)| async move { (district, ask(request).await) });
    for (district, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(theirs) => {
                orders.extend(tagged(theirs, &district));
                districts.push(DistrictAnswer::ok(district));
            }
            Err(e) => {
                tracing::info!(%district, error = %e, "district did not answer; partial");
                districts.push(DistrictAnswer::partial(district, e));
            }
        }
    }
    // Newest first across districts (order ids are ULIDs).
    orders.sort_by(|a, b| b["order_id"].as_str().cmp(&a["order_id"].as_str()));
    Ok(axum::Json(json!({
        "customer": customer,
        "orders": orders,
        "districts": districts,
        "index": index,
    })))
}

/// This district's orders of `customer`, as `GET /v1/orders` lists them
/// (archived ones too).
async fn own_orders(app: &AppState, customer: &str) -> Result<Vec<Value>, ApiError> {
    let views = super::archived::listed(app, Some(customer.to_string())).await?;
    Ok(serde_json::to_value(views)
        .ok()
        .and_then(|v| match v {
            Value::Array(a) => Some(a),
            _ => None,
        })
        .unwrap_or_default())
}

/// What the customer index says (`ok`, `unavailable`, or `none` without
/// one), and the other districts it lists.
async fn indexed_districts(
    app: &AppState,
    customer: &str,
    me: &DistrictId,
) -> (&'static str, BTreeSet<DistrictId>) {
    let Some(index) = &app.customers else {
        return ("none", BTreeSet::new());
    };
    let looked_up = tokio::time::timeout(
        Duration::from_millis(INDEX_TIMEOUT_MS),
        index.districts_of(customer),
    )
    .await;
    match looked_up {
        Ok(Ok(found)) => ("ok", found.into_iter().filter(|d| d != me).collect()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "customer index unreadable; own district only");
            ("unavailable", BTreeSet::new())
        }
        Err(_) => {
            tracing::warn!("customer index did not answer; own district only");
            ("unavailable", BTreeSet::new())
        }
    }
}

/// The request to each other district's node (the caller's token
/// forwarded; an admin's `?customer=` too). A district over
/// [`MAX_DISTRICTS_ASKED`] or missing from the directory is recorded in
/// `districts` as `partial` and not asked.
fn peer_requests(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    customer: &str,
    others: BTreeSet<DistrictId>,
    districts: &mut Vec<DistrictAnswer>,
) -> Vec<(DistrictId, reqwest::RequestBuilder)> {
    let directory = app
        .fleet
        .as_ref()
        .map(|f| f.districts())
        .unwrap_or_default();
    let authorization = headers.get(header::AUTHORIZATION);
    let admin_query = (caller.0.role == crate::auth::Role::Admin).then_some(customer);
    let mut requests = vec![];
    for (n, district) in others.into_iter().enumerate() {
        if n >= MAX_DISTRICTS_ASKED {
            districts.push(DistrictAnswer::partial(
                district,
                format!("not asked: more than {MAX_DISTRICTS_ASKED} districts"),
            ));
            continue;
        }
        let Some(entry) = directory.iter().find(|r| r.district_id == district) else {
            districts.push(DistrictAnswer::partial(
                district,
                "not in the region directory",
            ));
            continue;
        };
        let url = format!("{}/v1/orders", entry.url.trim_end_matches('/'));
        let mut request = app
            .peers
            .get(url)
            .timeout(Duration::from_millis(PEER_TIMEOUT_MS));
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a.clone());
        }
        if let Some(c) = admin_query {
            request = request.query(&[("customer", c)]);
        }
        requests.push((district, request));
    }
    requests
}

/// One district's `{orders: [...]}`, or why not.
async fn ask(request: reqwest::RequestBuilder) -> Result<Vec<Value>, String> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {PEER_TIMEOUT_MS} ms")
        } else {
            format!("unreachable: {e}")
        }
    })?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(format!("answered {}", status.as_u16()));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))?;
    match body.get("orders") {
        Some(Value::Array(orders)) => Ok(orders.clone()),
        _ => Err("answer without orders".into()),
    }
}
