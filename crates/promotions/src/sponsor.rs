//! What others pay of an order after its discounts: an employer's subsidy
//! (rule 6) and the customer's loyalty points (rule 7); and the points an
//! order earns.
//!
//! The sponsor pays before points are spent so that points never pay the
//! sponsor's share: a customer's points buy down what they would pay.

use protocol::promotions::{PointsSpend, PriceSplit, SubsidyShare, SubsidySpec};
use protocol::{FridgeId, SubsidyId};

use crate::percent_of;

/// A sponsor's subsidy as the pricing rules take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubsidyOffer<'a> {
    pub subsidy_id: &'a SubsidyId,
    pub spec: &'a SubsidySpec,
    /// What this sponsor already paid for this customer on this
    /// district-local day (held or kept).
    pub used_today_minor: i64,
}

/// Points the customer asks to spend, and what one point is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PointsRequest {
    pub points: i64,
    pub minor_per_point: i64,
}

/// The sponsor that pays most of `remaining_minor` at `fridge_id` (ties:
/// the smaller subsidy id); `None` if none pays anything.
pub(crate) fn subsidy_share(
    offers: &[SubsidyOffer<'_>],
    fridge_id: &FridgeId,
    remaining_minor: i64,
) -> Option<SubsidyShare> {
    let mut best: Option<(&SubsidyId, i64)> = None;
    for offer in offers.iter().filter(|o| o.spec.fridges.contains(fridge_id)) {
        let amount = subsidy_amount_minor(offer, remaining_minor);
        let better = match best {
            None => amount > 0,
            Some((id, b)) => amount > b || (amount == b && offer.subsidy_id < id),
        };
        if better {
            best = Some((offer.subsidy_id, amount));
        }
    }
    best.map(|(id, amount_minor)| SubsidyShare {
        subsidy_id: id.clone(),
        amount_minor,
    })
}

/// `percent` of what remains, but no more than the sponsor's daily cap for
/// this customer has left.
fn subsidy_amount_minor(offer: &SubsidyOffer<'_>, remaining_minor: i64) -> i64 {
    let remaining = remaining_minor.max(0);
    let cap_left = offer
        .spec
        .cap_per_customer_day_minor
        .saturating_sub(offer.used_today_minor)
        .max(0);
    percent_of(remaining, offer.spec.percent)
        .min(cap_left)
        .clamp(0, remaining)
}

/// Whole points worth at most `remaining_minor`, up to those asked for;
/// `None` if that is none.
pub(crate) fn points_spend(request: &PointsRequest, remaining_minor: i64) -> Option<PointsSpend> {
    if request.points <= 0 || request.minor_per_point <= 0 || remaining_minor <= 0 {
        return None;
    }
    let points = request
        .points
        .min(remaining_minor / request.minor_per_point);
    // points × minor_per_point <= remaining_minor, so this cannot overflow.
    let value_minor = points.checked_mul(request.minor_per_point)?;
    (points > 0).then_some(PointsSpend {
        points,
        value_minor,
    })
}

/// Points an order earns: `points_per_major_unit` for every whole major
/// unit (`minor_per_major` minor units) the customer was charged. Never
/// negative; 0 if either rate is not positive.
pub fn points_earned(split: &PriceSplit, points_per_major_unit: i64, minor_per_major: i64) -> i64 {
    if points_per_major_unit <= 0 || minor_per_major <= 0 || split.charged_minor <= 0 {
        return 0;
    }
    (split.charged_minor / minor_per_major).saturating_mul(points_per_major_unit)
}
