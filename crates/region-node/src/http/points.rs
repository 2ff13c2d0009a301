//! `GET /v1/me/points`: the caller's bonus points, from the global ledger
//! (any node answers for any customer): balance, what is held for orders
//! being confirmed, when the next points expire, the lots and the history.

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::auth::{Caller, Role};

#[derive(Debug, Serialize)]
pub struct Lot {
    pub points: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
pub struct PointsView {
    #[serde(flatten)]
    pub balance: loyalty::Balance,
    /// What one point is worth when spent here, in minor units (0: this
    /// district does not take points).
    pub minor_per_point: u32,
    pub lots: Vec<Lot>,
    /// Newest last.
    pub history: Vec<loyalty::Entry>,
}

/// `GET /v1/me/points` (customer).
pub async fn mine(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<PointsView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let ledger = super::orders::ledger(&app, super::orders::NO_NATS)?;
    let (account, _) = ledger.account(&claims.sub).await?;
    let now = app.clock.now();
    let rules = app.district.state().loyalty().rules().copied();
    Ok(axum::Json(PointsView {
        balance: account.balance(now),
        minor_per_point: rules.map_or(0, |r| r.minor_per_point),
        lots: account
            .lots()
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(points, expires_at)| Lot { points, expires_at })
            .collect(),
        history: account.history().cloned().collect(),
    }))
}

/// Most first-level referrals whose own referrals are read for
/// `/v1/me/referrals` (one ledger read each).
pub const MAX_SECOND_LEVEL_READS: usize = 50;

/// Another customer as a referral view shows them: the first two
/// characters of their id, so an owner recognises friends without the
/// view handing out ids.
fn masked(customer: &str) -> String {
    let shown: String = customer.chars().take(2).collect();
    format!("{shown}***")
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferralView {
    pub customer: String,
    pub order: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// Purchases made with this customer's own code (second level only:
    /// empty below it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrals: Option<Vec<ReferralView>>,
}

#[derive(Debug, Serialize)]
pub struct ReferralsView {
    /// The caller's share code, once registered (after a first app
    /// purchase); `null` before.
    pub share_code: Option<String>,
    pub referred_by: Option<ReferralView>,
    /// Different people who bought with the caller's code.
    pub people: usize,
    /// Purchases made with the caller's code, each with the purchases
    /// made with that buyer's code (two levels, no deeper).
    pub referrals: Vec<ReferralView>,
}

fn view(r: &loyalty::Referral, referrals: Option<Vec<ReferralView>>) -> ReferralView {
    ReferralView {
        customer: masked(&r.customer),
        order: r.order.clone(),
        at: r.at,
        referrals,
    }
}

/// `GET /v1/me/referrals` (customer): the caller's share code and the
/// purchases made through it, two levels down.
pub async fn referrals(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ReferralsView>, ApiError> {
    let claims = caller.require(&[Role::Customer])?;
    let ledger = super::orders::ledger(&app, super::orders::NO_NATS)?;
    let me = claims.sub.as_str();
    let code = loyalty::share_code(me);
    let registered = ledger.share_owner(&code).await?.as_deref() == Some(me);
    let (account, _) = ledger.account(me).await?;
    let mut second: std::collections::HashMap<String, Vec<ReferralView>> = Default::default();
    let buyers: std::collections::BTreeSet<&str> =
        account.referrals().map(|r| r.customer.as_str()).collect();
    for buyer in buyers.iter().take(MAX_SECOND_LEVEL_READS) {
        let (theirs, _) = ledger.account(buyer).await?;
        let below = theirs.referrals().map(|r| view(r, None)).collect();
        second.insert(buyer.to_string(), below);
    }
    Ok(axum::Json(ReferralsView {
        share_code: registered.then_some(code),
        referred_by: account.referred_by().map(|r| view(r, None)),
        people: buyers.len(),
        referrals: account
            .referrals()
            .map(|r| {
                view(
                    r,
                    Some(second.get(&r.customer).cloned().unwrap_or_default()),
                )
            })
            .collect(),
    }))
}
