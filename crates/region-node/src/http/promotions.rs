//! Admin routes for promotions: campaigns, coupons and employer subsidies
//! (define with PUT, read, end with DELETE), a sponsor's monthly statement
//! (JSON, or CSV with `Accept: text/csv`) and the promotions report. Admin
//! only: prices are the district's business. The rules themselves are the
//! `promotions` crate's; the bookkeeping is `district::promotions`.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use protocol::promotions::{CampaignSpec, CouponSpec, SubsidySpec};
use protocol::{CampaignId, CouponCode, SubsidyId};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::AppState;
use crate::auth::{Caller, Role};
use district::promotions::{self as promos, When};
use district::{Command, PromotionCommand};

/// Longest report range, in days counting both ends: a report walks every
/// priced order.
pub const MAX_REPORT_DAYS: i64 = 366;

/// The pricing moment: the node's clock and the district's wall clock.
pub(crate) fn when(app: &AppState) -> When {
    let utc = app.clock.now();
    let offset = chrono::Duration::minutes(i64::from(app.config.subscriptions.utc_offset_minutes));
    When {
        local: (utc + offset).naive_utc(),
        utc,
    }
}

fn unknown(what: &str, id: &str) -> ApiError {
    ApiError::not_found("unknown_promotion", format!("{what} {id} does not exist"))
}

fn path_id<T: std::str::FromStr<Err = protocol::IdError>>(id: &str) -> Result<T, ApiError> {
    id.parse()
        .map_err(|e: protocol::IdError| ApiError::bad_request("invalid_id", e.to_string()))
}

fn coupon_code(code: &str) -> Result<CouponCode, ApiError> {
    CouponCode::from_input(code).map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
}

async fn submit(app: &AppState, cmd: PromotionCommand) -> Result<(), ApiError> {
    app.district.submit(Command::Promotion(cmd)).await?;
    Ok(())
}

/// `PUT /v1/admin/campaigns/{campaign_id}`: define or redefine.
pub async fn define_campaign(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<CampaignSpec>,
) -> Result<axum::Json<promos::CampaignView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let campaign_id: CampaignId = path_id(&id)?;
    submit(
        &app,
        PromotionCommand::DefineCampaign {
            campaign_id: campaign_id.clone(),
            spec,
        },
    )
    .await?;
    tracing::info!(%campaign_id, "campaign defined");
    get_campaign_view(&app, &campaign_id)
}

fn get_campaign_view(
    app: &AppState,
    id: &CampaignId,
) -> Result<axum::Json<promos::CampaignView>, ApiError> {
    let state = app.district.state();
    promos::campaign_view(&state, id, &when(app))
        .map(axum::Json)
        .ok_or_else(|| unknown("campaign", id))
}

/// `GET /v1/admin/campaigns/{campaign_id}`.
pub async fn campaign(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<promos::CampaignView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let campaign_id: CampaignId = id.parse().map_err(|_| unknown("campaign", &id))?;
    get_campaign_view(&app, &campaign_id)
}

/// `DELETE /v1/admin/campaigns/{campaign_id}`: end it now (its record and
/// report stay).
pub async fn end_campaign(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<promos::CampaignView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let campaign_id: CampaignId = id.parse().map_err(|_| unknown("campaign", &id))?;
    submit(
        &app,
        PromotionCommand::EndCampaign {
            campaign_id: campaign_id.clone(),
        },
    )
    .await?;
    tracing::info!(%campaign_id, "campaign ended");
    get_campaign_view(&app, &campaign_id)
}

/// `GET /v1/admin/campaigns`.
pub async fn campaigns(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    let now = when(&app);
    let list: Vec<_> = state
        .promotions()
        .campaigns()
        .keys()
        .filter_map(|id| promos::campaign_view(&state, id, &now))
        .collect();
    Ok(axum::Json(json!({ "campaigns": list })))
}

/// `PUT /v1/admin/coupons/{code}` (codes are case-insensitive).
pub async fn define_coupon(
    State(app): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Json(spec): Json<CouponSpec>,
) -> Result<axum::Json<promos::CouponView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let code = coupon_code(&code)?;
    submit(
        &app,
        PromotionCommand::DefineCoupon {
            code: code.clone(),
            spec,
        },
    )
    .await?;
    tracing::info!(%code, "coupon defined");
    coupon_view(&app, &code)
}

fn coupon_view(
    app: &AppState,
    code: &CouponCode,
) -> Result<axum::Json<promos::CouponView>, ApiError> {
    promos::coupon_view(&app.district.state(), code)
        .map(axum::Json)
        .ok_or_else(|| unknown("coupon", code))
}

/// `GET /v1/admin/coupons/{code}`.
pub async fn coupon(
    State(app): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<axum::Json<promos::CouponView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let code = CouponCode::from_input(&code).map_err(|_| unknown("coupon", &code))?;
    coupon_view(&app, &code)
}

/// `DELETE /v1/admin/coupons/{code}`: withdraw (refused from now on).
pub async fn withdraw_coupon(
    State(app): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<axum::Json<promos::CouponView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let code = CouponCode::from_input(&code).map_err(|_| unknown("coupon", &code))?;
    submit(
        &app,
        PromotionCommand::WithdrawCoupon { code: code.clone() },
    )
    .await?;
    tracing::info!(%code, "coupon withdrawn");
    coupon_view(&app, &code)
}

/// `GET /v1/admin/coupons`.
pub async fn coupons(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    let list: Vec<_> = state
        .promotions()
        .coupons()
        .keys()
        .filter_map(|code| promos::coupon_view(&state, code))
        .collect();
    Ok(axum::Json(json!({ "coupons": list })))
}

/// `PUT /v1/admin/subsidies/{subsidy_id}`.
pub async fn define_subsidy(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(spec): Json<SubsidySpec>,
) -> Result<axum::Json<promos::SubsidyView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let subsidy_id: SubsidyId = path_id(&id)?;
    submit(
        &app,
        PromotionCommand::DefineSubsidy {
            subsidy_id: subsidy_id.clone(),
            spec,
        },
    )
    .await?;
    tracing::info!(%subsidy_id, "subsidy defined");
    subsidy_view(&app, &subsidy_id)
}

fn subsidy_view(
    app: &AppState,
    id: &SubsidyId,
) -> Result<axum::Json<promos::SubsidyView>, ApiError> {
    promos::subsidy_view(&app.district.state(), id)
        .map(axum::Json)
        .ok_or_else(|| unknown("subsidy", id))
}

/// `GET /v1/admin/subsidies/{subsidy_id}`.
pub async fn subsidy(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<promos::SubsidyView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let subsidy_id: SubsidyId = id.parse().map_err(|_| unknown("subsidy", &id))?;
    subsidy_view(&app, &subsidy_id)
}

/// `DELETE /v1/admin/subsidies/{subsidy_id}`: the sponsor stops paying.
pub async fn end_subsidy(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<promos::SubsidyView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let subsidy_id: SubsidyId = id.parse().map_err(|_| unknown("subsidy", &id))?;
    submit(
        &app,
        PromotionCommand::EndSubsidy {
            subsidy_id: subsidy_id.clone(),
        },
    )
    .await?;
    tracing::info!(%subsidy_id, "subsidy ended");
    subsidy_view(&app, &subsidy_id)
}

/// `GET /v1/admin/subsidies`.
pub async fn subsidies(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let state = app.district.state();
    let list: Vec<_> = state
        .promotions()
        .subsidies()
        .keys()
        .filter_map(|id| promos::subsidy_view(&state, id))
        .collect();
    Ok(axum::Json(json!({ "subsidies": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    /// `YYYY-MM`.
    month: String,
}

fn parse_month(month: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| month.len() == 7)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{month:?} is not a month (YYYY-MM)"),
            )
        })
}

/// `GET /v1/admin/subsidies/{subsidy_id}/statement?month=YYYY-MM`: JSON, or
/// CSV with `Accept: text/csv`.
pub async fn statement(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let subsidy_id: SubsidyId = id.parse().map_err(|_| unknown("subsidy", &id))?;
    let first = parse_month(&q.month)?;
    let statement = promos::statement(&app.district.state(), &subsidy_id, first)
        .ok_or_else(|| unknown("subsidy", &subsidy_id))?;
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            statement.to_csv(),
        )
            .into_response());
    }
    Ok(axum::Json(statement).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: NaiveDate,
    to: NaiveDate,
}

/// `GET /v1/admin/promotions/report?from=&to=` (district-local dates,
/// both included).
pub async fn report(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<promos::PromoReport>, ApiError> {
    caller.require(&[Role::Admin])?;
    let days = (q.to - q.from).num_days();
    if !(0..MAX_REPORT_DAYS).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("to must be on or after from, and the range at most {MAX_REPORT_DAYS} days (both ends included)"),
        ));
    }
    Ok(axum::Json(promos::report(
        &app.district.state(),
        q.from,
        q.to,
    )))
}
