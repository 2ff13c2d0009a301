//! A coupon on an order after its campaigns (rule 5): why it may be
//! refused, in a fixed order, and what it takes off.
//!
//! The refusal order is part of the contract: a customer with an expired
//! code learns that it expired, not that their basket is too small, so the
//! reasons that no basket could fix come first.

use protocol::promotions::{CouponDiscount, CouponSpec, CouponUse};
use protocol::CouponCode;

use crate::matching::coupon_applies_to;
use crate::{percent_of, Basket, When};

/// A coupon code as the pricing rules take it, with its uses so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponOffer<'a> {
    pub code: &'a CouponCode,
    pub spec: &'a CouponSpec,
    pub withdrawn: bool,
    /// Uses in this district so far (held or kept).
    pub uses_total: u32,
    /// Uses by this customer so far (held or kept).
    pub uses_by_customer: u32,
    /// The customer has no earlier order in this district (only read for
    /// a first-order-only coupon; the district may leave it false otherwise).
    pub first_order: bool,
}

/// Why a coupon does not apply to an order. The order is refused with it:
/// the customer asked for the coupon and should not pay more than they
/// expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CouponRefusal {
    #[error("this coupon is not valid yet")]
    NotYetValid,
    #[error("this coupon has expired")]
    Expired,
    #[error("this coupon is no longer offered")]
    Withdrawn,
    #[error("this coupon has been used as many times as it may be")]
    LimitReached,
    #[error("this coupon is for a first order only")]
    FirstOrderOnly,
    #[error("this coupon does not apply to the meals in this order")]
    NotApplicable,
    #[error(
        "this coupon needs an order of at least {min_order_minor} (in minor units of the \
         currency) after other discounts"
    )]
    MinimumNotMet { min_order_minor: i64 },
}

impl CouponRefusal {
    /// The refusal's stable code, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            CouponRefusal::NotYetValid => "not_yet_valid",
            CouponRefusal::Expired => "expired",
            CouponRefusal::Withdrawn => "withdrawn",
            CouponRefusal::LimitReached => "limit_reached",
            CouponRefusal::FirstOrderOnly => "first_order_only",
            CouponRefusal::NotApplicable => "not_applicable",
            CouponRefusal::MinimumNotMet { .. } => "minimum_not_met",
        }
    }
}

/// What `offer` takes off an order whose lines cost `after_campaigns_minor`
/// (per basket line, list less campaign discounts), or why it is refused.
pub(crate) fn redeem(
    offer: &CouponOffer<'_>,
    basket: &Basket,
    after_campaigns_minor: &[i64],
    when: &When,
) -> Result<CouponUse, CouponRefusal> {
    check_terms(offer, when)?;
    let spec = offer.spec;
    let mut any_line = false;
    let mut eligible: i64 = 0;
    let mut subtotal: i64 = 0;
    for (line, after) in basket.lines.iter().zip(after_campaigns_minor) {
        subtotal = subtotal.saturating_add(*after);
        let meal = (&line.meal_id, &line.kitchen_id, line.tags.as_slice());
        if coupon_applies_to(spec, meal) {
            any_line = true;
            eligible = eligible.saturating_add(*after);
        }
    }
    if !any_line {
        return Err(CouponRefusal::NotApplicable);
    }
    if let Some(min_order_minor) = spec.min_order_minor {
        if subtotal < min_order_minor {
            return Err(CouponRefusal::MinimumNotMet { min_order_minor });
        }
    }
    let eligible = eligible.max(0);
    let discount_minor = match spec.discount {
        CouponDiscount::PercentOff { percent } => percent_of(eligible, percent),
        CouponDiscount::AmountOff { amount_minor } => amount_minor.min(eligible),
    }
    .clamp(0, eligible);
    // Nothing to take off (the campaigns already took it all, or a percent
    // of a few minor units rounds to 0): a use would be spent for nothing.
    if discount_minor == 0 {
        return Err(CouponRefusal::NotApplicable);
    }
    Ok(CouponUse {
        code: offer.code.clone(),
        discount_minor,
    })
}

/// The refusals that do not depend on the basket, in contract order.
fn check_terms(offer: &CouponOffer<'_>, when: &When) -> Result<(), CouponRefusal> {
    let spec = offer.spec;
    if offer.withdrawn {
        return Err(CouponRefusal::Withdrawn);
    }
    if when.local < spec.valid_from {
        return Err(CouponRefusal::NotYetValid);
    }
    if when.local >= spec.valid_until {
        return Err(CouponRefusal::Expired);
    }
    if spec.first_order_only && !offer.first_order {
        return Err(CouponRefusal::FirstOrderOnly);
    }
    let reached = |max: Option<u32>, used: u32| max.is_some_and(|m| used >= m);
    if reached(spec.max_uses, offer.uses_total)
        || reached(spec.max_uses_per_customer, offer.uses_by_customer)
    {
        return Err(CouponRefusal::LimitReached);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_code_and_a_sentence() {
        let all = [
            (CouponRefusal::NotYetValid, "not_yet_valid"),
            (CouponRefusal::Expired, "expired"),
            (CouponRefusal::Withdrawn, "withdrawn"),
            (CouponRefusal::LimitReached, "limit_reached"),
            (CouponRefusal::FirstOrderOnly, "first_order_only"),
            (CouponRefusal::NotApplicable, "not_applicable"),
            (
                CouponRefusal::MinimumNotMet {
                    min_order_minor: 1500,
                },
                "minimum_not_met",
            ),
        ];
        for (refusal, code) in all {
            assert_eq!(refusal.code(), code);
            let text = refusal.to_string();
            assert!(text.starts_with("this coupon "), "{text}");
        }
        let min = CouponRefusal::MinimumNotMet {
            min_order_minor: 1500,
        };
        assert!(min.to_string().contains("1500"));
    }
}
