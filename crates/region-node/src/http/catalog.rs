//! Catalog routes: admin writes (meals, fridges, manual stock) and public
//! reads (catalog by location, meal details, locate).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use protocol::catalog::{FridgeSpec, MealSpec, MealView, StockSpec};
use protocol::geo::GeoPoint;
use protocol::{FridgeId, MealId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::encoding;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::catalog_cache::{Cell, Coding, Entry, Key};
use crate::config::RADIUS_M_DEFAULT;
use district::query;
use district::{CatalogCommand, Command};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogParams {
    lat: f64,
    lon: f64,
    radius_m: Option<u32>,
}

fn point(lat: f64, lon: f64) -> Result<GeoPoint, ApiError> {
    GeoPoint::new(lat, lon).map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// `GET /v1/catalog?lat=&lon=&radius_m=`: nearest fridges first, with ETag;
/// `421` for a point another district serves.
///
/// The answer is computed for the point rounded to its [`Cell`] (~11 m)
/// and kept encoded in the node's [`CatalogCache`](crate::catalog_cache)
/// for the catalog version, so a repeated read costs no query and no JSON
/// encoding; gzip and br variants are made once per entry, for the clients
/// that accept them. Validation and the `If-None-Match` check come first:
/// a refused query caches nothing, and a 304 touches no cache.
pub async fn catalog(
    State(app): State<AppState>,
    Query(params): Query<CatalogParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let at = point(params.lat, params.lon)?;
    if let Some(to) = elsewhere(&app, &at) {
        return Err(misdirected(to));
    }
    let radius_m = params.radius_m.unwrap_or(RADIUS_M_DEFAULT);
    let max = app.config.limits.max_radius_m;
    if radius_m == 0 || radius_m > max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("radius_m must be between 1 and {max}"),
        ));
    }
    let key = Key {
        cell: Cell::of(&at),
        radius_m,
    };
    let state = app.district.state();
    if !state.promotions().campaigns().is_empty() {
        return priced_catalog(&app, &state, &key, &headers);
    }
    // Without campaigns the answer for a given URL changes only when the
    // catalog version does: the tag is known before any work.
    let version = state.catalog_version();
    let tags = Tags::new(&app.config.district_id, version);
    let coding = encoding::negotiate(&headers);
    if if_none_match(&headers, |t| tags.names(t)) {
        return not_modified(tags.of(coding));
    }
    let entry = match app.catalog_cache.get(version, &key) {
        Some(entry) => entry,
        None => {
            let view = query::catalog_near(
                &state,
                &app.config.district_id,
                &key.cell.point(),
                radius_m,
                &super::promotions::when(&app),
            );
            let entry = Arc::new(Entry::new(encode(&view)?));
            app.catalog_cache.insert(version, key, Arc::clone(&entry));
            entry
        }
    };
    answer(tags.of(coding), coding, entry.body(coding))
}

/// The catalog while a campaign runs: a campaign's price moves with the
/// clock (a happy hour starts, a unit nears its best-before), so the
/// answer is computed per request, its tag also names the prices
/// (computed before the tag is compared), and it is neither cached nor
/// compressed.
fn priced_catalog(
    app: &AppState,
    state: &district::DistrictState,
    key: &Key,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let view = query::catalog_near(
        state,
        &app.config.district_id,
        &key.cell.point(),
        key.radius_m,
        &super::promotions::when(app),
    );
    let etag = format!(
        "\"{}-{}-p{:x}\"",
        app.config.district_id,
        state.catalog_version(),
        price_digest(&view)
    );
    if if_none_match(headers, |t| t == etag) {
        return not_modified(etag);
    }
    answer(etag, Coding::Identity, encode(&view)?)
}

/// The catalog's entity tags at one version: `"{district}-{version}"` for
/// the JSON body, with `-gzip` or `-br` before the closing quote for the
/// compressed ones (each coding is a representation of its own).
struct Tags {
    /// The tag up to its closing quote.
    open: String,
}

impl Tags {
    fn new(district_id: &protocol::DistrictId, version: u64) -> Tags {
        Tags {
            open: format!("\"{district_id}-{version}"),
        }
    }

    fn of(&self, coding: Coding) -> String {
        match coding.content_encoding() {
            Some(name) => format!("{}-{name}\"", self.open),
            None => format!("{}\"", self.open),
        }
    }

    /// Whether `tag` is this version's, in any coding: a client holding
    /// any of them holds the current answer.
    fn names(&self, tag: &str) -> bool {
        tag.strip_prefix(self.open.as_str())
            .is_some_and(|rest| matches!(rest, "\"" | "-gzip\"" | "-br\""))
    }
}

/// Whether `If-None-Match` names a current tag (or `*`). Weak comparison,
/// as RFC 9110 asks for this header: a `W/` prefix is ignored.
fn if_none_match(headers: &HeaderMap, current: impl Fn(&str) -> bool) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || current(t.strip_prefix("W/").unwrap_or(t)))
}

fn encode(view: &protocol::catalog::CatalogView) -> Result<Bytes, ApiError> {
    serde_json::to_vec(view).map(Bytes::from).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding the catalog: {e}"),
        )
    })
}

fn etag_value(etag: String) -> Result<HeaderValue, ApiError> {
    HeaderValue::try_from(etag).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the catalog's ETag is not a header value",
        )
    })
}

/// The headers every catalog answer carries, 200 or 304.
fn validators(headers: &mut HeaderMap, etag: HeaderValue) {
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
}

fn not_modified(etag: String) -> Result<Response, ApiError> {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    validators(res.headers_mut(), etag_value(etag)?);
    Ok(res)
}

fn answer(etag: String, coding: Coding, body: Bytes) -> Result<Response, ApiError> {
    let mut res = Response::new(axum::body::Body::from(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(name) = coding.content_encoding() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    validators(h, etag_value(etag)?);
    Ok(res)
}

/// FNV-1a over the prices a campaign sets in `view`: the part of the
/// answer that moves with the clock.
fn price_digest(view: &protocol::catalog::CatalogView) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for meal in view.fridges.iter().flat_map(|f| &f.meals) {
        for byte in meal.price_now.unwrap_or(-1).to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn unknown_meal(meal_id: &str) -> ApiError {
    ApiError::not_found("unknown_meal", format!("meal {meal_id} does not exist"))
}

/// `GET /v1/meals/{id}`.
pub async fn meal(
    State(app): State<AppState>,
    Path(meal_id): Path<String>,
) -> Result<axum::Json<MealView>, ApiError> {
    let state = app.district.state();
    // Not an id, so no meal: the same 404 as an unknown one.
    let meal = state
        .catalog()
        .meal(&meal_id)
        .ok_or_else(|| unknown_meal(&meal_id))?;
    Ok(axum::Json(MealView {
        meal_id: meal.meal_id.clone(),
        spec: meal.spec.clone(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateParams {
    lat: f64,
    lon: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Located {
    pub district_id: String,
    pub url: String,
}

/// Geohash precision routing compares with district prefixes (about
/// 37 mm cells: finer than any prefix).
const ROUTING_PRECISION: usize = 12;

/// Every other district this node knows, with its prefixes: the live
/// region directory first, then the static `[[directory]]` fallback for
/// districts the directory does not list.
pub fn other_districts(app: &AppState) -> Vec<(Located, Vec<String>)> {
    let me = app.config.district_id.as_str();
    let mut out: Vec<(Located, Vec<String>)> = app
        .fleet
        .as_ref()
        .map(|f| f.districts())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.district_id.as_str() != me)
        .map(|r| {
            let located = Located {
                district_id: r.district_id.to_string(),
                url: r.url,
            };
            (located, r.geohash_prefixes)
        })
        .collect();
    for d in &app.config.directory {
        if d.district_id != me && !out.iter().any(|(l, _)| l.district_id == d.district_id) {
            let located = Located {
                district_id: d.district_id.clone(),
                url: d.url.clone(),
            };
            out.push((located, d.geohash_prefixes.clone()));
        }
    }
    out
}

/// Which other district serves `at`. `None` for this district's own points
/// and for points nobody serves.
fn elsewhere(app: &AppState, at: &GeoPoint) -> Option<Located> {
    if app.area.contains(at) {
        return None;
    }
    let geohash = at.geohash(ROUTING_PRECISION);
    other_districts(app)
        .into_iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| geohash.starts_with(p.as_str())))
        .map(|(located, _)| located)
}

/// `421 misdirected`: the point is another district's.
fn misdirected(to: Located) -> ApiError {
    ApiError::misdirected(&to.district_id, &to.url, "that point")
}

/// `GET /v1/locate`: which node serves a point (this one or one from the
/// directory).
pub async fn locate(
    State(app): State<AppState>,
    Query(p): Query<LocateParams>,
) -> Result<axum::Json<Located>, ApiError> {
    let at = point(p.lat, p.lon)?;
    if app.area.contains(&at) {
        return Ok(axum::Json(Located {
            district_id: app.config.district_id.to_string(),
            url: app.public_url.clone(),
        }));
    }
    elsewhere(&app, &at)
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("not_served", "no district serves that point"))
}

/// The id a `PUT` names its resource by: `400 invalid_id` if it is none.
fn new_path_id<T: std::str::FromStr<Err = protocol::IdError>>(id: &str) -> Result<T, ApiError> {
    id.parse()
        .map_err(|e: protocol::IdError| ApiError::bad_request("invalid_id", e.to_string()))
}

/// `PUT /v1/admin/meals/{id}`.
pub async fn define_meal(
    State(app): State<AppState>,
    caller: Caller,
    Path(meal_id): Path<String>,
    Json(spec): Json<MealSpec>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let meal_id: MealId = new_path_id(&meal_id)?;
    let view = MealView {
        meal_id: meal_id.clone(),
        spec: spec.clone(),
    };
    app.district
        .submit(Command::Catalog(CatalogCommand::DefineMeal {
            meal_id,
            spec,
        }))
        .await?;
    Ok(axum::Json(view))
}

/// `DELETE /v1/admin/meals/{id}`.
pub async fn discontinue_meal(
    State(app): State<AppState>,
    caller: Caller,
    Path(meal_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    // Not an id, so no meal: what the decider answers for an unknown one.
    let meal_id: MealId = meal_id.parse().map_err(|_| unknown_meal(&meal_id))?;
    app.district
        .submit(Command::Catalog(CatalogCommand::DiscontinueMeal {
            meal_id,
        }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/admin/fridges/{id}`. The secret is write-only: never echoed.
pub async fn register_fridge(
    State(app): State<AppState>,
    caller: Caller,
    Path(fridge_id): Path<String>,
    Json(spec): Json<FridgeSpec>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let fridge_id: FridgeId = new_path_id(&fridge_id)?;
    app.district
        .submit(Command::Catalog(CatalogCommand::RegisterFridge {
            fridge_id: fridge_id.clone(),
            spec,
        }))
        .await?;
    let state = app.district.state();
    let fridge = state.catalog().fridges().get(&fridge_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "fridge vanished",
        )
    })?;
    Ok(axum::Json(json!({
        "fridge_id": fridge.fridge_id,
        "name": fridge.name,
        "address": fridge.address,
        "lat": fridge.position.lat,
        "lon": fridge.position.lon,
        "geohash": fridge.geohash,
        "vendor": fridge.vendor,
        "status": fridge.status,
        "has_secret": state.links().secret(&fridge_id).is_some(),
    })))
}

/// `GET /v1/admin/fridges`: every fridge with its position, status, last
/// report, excursion under way and latest notices, for the operations
/// dashboard's fleet map.
pub async fn fleet(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    Ok(axum::Json(json!({ "fridges": query::fleet(&state) })))
}

/// `GET /v1/admin/fridges/{id}`: the fridge, its stock levels and its
/// latest notices (a pickup code that took nothing, a refused door pickup,
/// a temperature back in range).
pub async fn fridge(
    State(app): State<AppState>,
    caller: Caller,
    Path(fridge_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    super::misdirect::fridge_here(&app, &fridge_id)?;
    let state = app.district.state();
    let unknown = || {
        ApiError::not_found(
            "unknown_fridge",
            format!("fridge {fridge_id} does not exist"),
        )
    };
    let fridge = state.catalog().fridge(&fridge_id).ok_or_else(unknown)?;
    let stock: Vec<_> = state
        .stock()
        .fridge(&fridge_id)
        .into_iter()
        .flatten()
        .map(|(meal_id, level)| {
            json!({
                "meal_id": meal_id,
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "quarantined": level.quarantined,
                "expired": level.expired,
                "held": level.held,
                "available": level.available(),
            })
        })
        .collect();
    let notices: Vec<_> = state.links().notices(&fridge_id).collect();
    Ok(axum::Json(json!({
        "fridge_id": fridge.fridge_id,
        "name": fridge.name,
        "status": fridge.status,
        "stock": stock,
        "notices": notices,
    })))
}

/// `PUT /v1/admin/fridges/{id}/stock`: absolute units per meal. A kitchen
/// token may only set its own kitchen's meals, so it must name its kitchen
/// (`kitchen_id` claim); one without is refused.
pub async fn set_stock(
    State(app): State<AppState>,
    caller: Caller,
    Path(fridge_id): Path<String>,
    Json(spec): Json<StockSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let claims = caller.require(&[Role::Admin, Role::Kitchen])?;
    super::misdirect::fridge_here(&app, &fridge_id)?;
    let fridge_id: FridgeId = new_path_id(&fridge_id)?;
    if claims.role == Role::Kitchen {
        let Some(kitchen) = &claims.kitchen_id else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a kitchen token must name its kitchen (kitchen_id) to set stock",
            ));
        };
        let state = app.district.state();
        let foreign = spec.counts.iter().find(|c| {
            state
                .catalog()
                .meals()
                .get(&c.meal_id)
                .is_some_and(|m| &m.spec.kitchen_id != kitchen)
        });
        if let Some(c) = foreign {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("meal {} belongs to another kitchen", c.meal_id),
            ));
        }
    }
    let meal_ids: Vec<MealId> = spec.counts.iter().map(|c| c.meal_id.clone()).collect();
    app.district
        .submit(Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge_id.clone(),
            spec,
        }))
        .await?;
    let state = app.district.state();
    let meals: Vec<_> = meal_ids
        .iter()
        .map(|meal_id| {
            let level = state.stock_level(&fridge_id, meal_id);
            json!({"meal_id": meal_id, "on_hand": level.on_hand, "reserved": level.reserved,
                   "quarantined": level.quarantined, "held": level.held,
                   "available": level.available()})
        })
        .collect();
    Ok(axum::Json(json!({"fridge_id": fridge_id, "meals": meals})))
}
