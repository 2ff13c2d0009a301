//! Pure pricing: what an order costs after campaigns, a coupon, an
//! employer's subsidy and loyalty points, as a [`PriceSplit`] of its list
//! price.
//!
//! Architecture Invariant: no IO, clock or randomness. The district passes
//! `now` ([`When`]) and every campaign's, coupon's and sponsor's use so far
//! in; the same inputs always give the same split, so an order's price can
//! be recomputed and explained from the log.
//!
//! The rules below are the product's contract (the HTTP docs quote them).
//! Amounts are minor units of the district's currency; "floor" rounds
//! towards zero, in the customer's disfavour by less than one minor unit.
//!
//! # Campaigns
//!
//! 1. **When a campaign applies to a unit.** It is [`live`] (not ended,
//!    `starts <= local now < ends`, and neither budget reached); the area
//!    matches (empty: the whole district; otherwise the fridge is listed or
//!    its geohash starts with a listed cell); the target matches (empty:
//!    every meal; otherwise the meal is listed, its kitchen is listed, or
//!    one of its tags is listed); and the rule's condition holds:
//!    - *happy hour*: the district-local weekday (ISO, 1 = Monday … 7 =
//!      Sunday) is listed (none listed: every day) and the local time is in
//!      `[from, until)`. If `from > until` the window spans midnight (local
//!      time `>= from` or `< until`) and belongs to the day it *started*: at
//!      01:00 on Saturday a Friday 22:00–02:00 window applies when Friday is
//!      listed. `from == until` is an empty window.
//!    - *shelf life*: the unit's best-before is known, still ahead, and at
//!      most `within_hours` away (`0 < best_before − now <= within_hours`).
//!      A unit whose best-before is unknown gets no markdown.
//!
//! 2. **What a rule takes off a price `p`.** Percent off, happy hour and
//!    shelf life: `floor(p × percent / 100)`; amount off: `min(amount, p)`;
//!    fixed price: `max(p − price, 0)`. Never negative, never above `p`.
//!
//! 3. **Stacking, per unit.** The *chain* applies every applicable
//!    combinable campaign in order of priority (higher first; ties by
//!    campaign id ascending), each on the price the previous ones left. The
//!    *best exclusive* is the applicable exclusive campaign with the largest
//!    discount on the unit's list price (ties: higher priority, then smaller
//!    campaign id). The unit gets whichever of the two takes off more; on a
//!    tie, the chain. The customer always gets the better of "stack the
//!    combinables" and "the single best exclusive".
//!
//! 4. **Budgets.** A campaign with `redemptions >= max_redemptions` is not
//!    live; an order counts as one redemption of each campaign that gave it
//!    a discount > 0. The discount budget left (`max_discount_minor −` what
//!    the campaign gave so far) caps what it gives in this order across all
//!    its units; a campaign with none left is not live. Units are priced in
//!    line order, each line's units oldest best-before first; a unit whose
//!    campaign has less budget left than its discount gets what is left.
//!    Chain and exclusive are compared on these capped figures.
//!
//! # Then, on the order after campaigns
//!
//! 5. **Coupon.** Refused, checked in this order: withdrawn →
//!    `withdrawn`; local now `< valid_from` → `not_yet_valid`; local now
//!    `>= valid_until` → `expired`; first-order-only and the customer has
//!    ordered before → `first_order_only`; `max_uses` or
//!    `max_uses_per_customer` reached → `limit_reached`; no line's meal in
//!    the coupon's target (empty: every meal) → `not_applicable`; the order
//!    after campaigns `< min_order_minor` → `minimum_not_met`. Otherwise it
//!    takes off, from the *eligible* amount (the target's lines after
//!    campaigns): percent off, `floor(eligible × percent / 100)`; amount
//!    off, `min(amount, eligible)`. If that is 0 (nothing eligible left, or
//!    a percent of a few minor units) → `not_applicable`, so a use is not
//!    spent for nothing.
//!
//! 6. **Subsidy.** Of the sponsors whose fridges include the order's
//!    fridge, the one that pays most (ties: smaller subsidy id) pays
//!    `min(floor(remaining × percent / 100), max(cap_per_customer_day −
//!    paid for this customer today, 0))`, where *remaining* is the order
//!    after campaigns and coupon and *today* is the district-local day.
//!    Nothing to pay: no subsidy.
//!
//! 7. **Points.** The customer spends `min(points asked, remaining /
//!    minor_per_point)` whole points (after the subsidy; integer division),
//!    worth that many × `minor_per_point`. None asked, a rate that is not
//!    positive, or nothing to spend: no points.
//!
//! 8. **The split.** `charged` is what remains. Each line's discount is
//!    what campaigns took off it; the split lists each campaign that gave
//!    this order more than 0, with its total, by campaign id. Every split
//!    returned passes [`PriceSplit::check`]: `list = charged + campaigns +
//!    coupon + subsidy + points`, every part `>= 0`.
//!
//! Inputs are the district's: unit prices `0..=`[`MAX_MEAL_PRICE_MINOR`],
//! quantities of at most a few thousand, campaign ids unique. Arithmetic
//! saturates rather than wraps; a split that would not add up (a bug, or
//! inputs outside these bounds) is never returned: the order is priced at
//! its list price instead.
//!
//! [`MAX_MEAL_PRICE_MINOR`]: protocol::money::MAX_MEAL_PRICE_MINOR

mod campaigns;
mod coupon;
mod hours;
mod matching;
mod sponsor;

use chrono::{DateTime, NaiveDateTime, Utc};
use protocol::promotions::{LinePrice, PriceSplit};
use protocol::{FridgeId, KitchenId, MealId};

pub use campaigns::{
    display_price, live, remaining_budget_minor, rule_discount_minor, CampaignOffer, DisplayPrice,
    Usage,
};
pub use coupon::{CouponOffer, CouponRefusal};
pub use hours::{in_hours, next_turn, turns_at, TURN_HORIZON_DAYS};
pub use matching::{area_matches, coupon_applies_to, target_matches, MealRef};
pub use sponsor::{points_earned, PointsRequest, SubsidyOffer};

use campaigns::Running;

/// The pricing moment: the district's wall clock (campaign and coupon
/// times, happy hours) and the same instant in UTC (best-before dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct When {
    pub local: NaiveDateTime,
    pub utc: DateTime<Utc>,
}

/// One line of the order to price.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BasketLine {
    pub meal_id: MealId,
    pub kitchen_id: KitchenId,
    pub tags: Vec<String>,
    pub qty: u32,
    pub unit_price_minor: i64,
    /// Best-before of the units this line will take, oldest first. May be
    /// shorter than `qty`: the other units' are unknown and get no
    /// shelf-life markdown.
    pub best_before: Vec<DateTime<Utc>>,
}

impl BasketLine {
    fn meal(&self) -> MealRef<'_> {
        (&self.meal_id, &self.kitchen_id, self.tags.as_slice())
    }

    fn list_minor(&self) -> i64 {
        self.unit_price_minor.saturating_mul(i64::from(self.qty))
    }
}

/// The order to price: where it is picked up and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Basket {
    pub fridge_id: FridgeId,
    /// The fridge's geohash (campaign areas name cells).
    pub fridge_cell: String,
    pub lines: Vec<BasketLine>,
}

/// The money split of an order (rules 1–8 of the crate docs), or why the
/// coupon asked for is refused.
pub fn price(
    basket: &Basket,
    campaigns: &[CampaignOffer<'_>],
    coupon: Option<&CouponOffer<'_>>,
    subsidies: &[SubsidyOffer<'_>],
    points: Option<&PointsRequest>,
    when: &When,
) -> Result<PriceSplit, CouponRefusal> {
    let mut running = Running::new(campaigns, &basket.fridge_id, &basket.fridge_cell, when);
    let lines: Vec<LinePrice> = basket
        .lines
        .iter()
        .map(|line| LinePrice {
            meal_id: line.meal_id.clone(),
            qty: line.qty,
            list_minor: line.list_minor(),
            discount_minor: running.price_line(
                line.meal(),
                line.unit_price_minor,
                line.qty,
                &line.best_before,
                when,
            ),
        })
        .collect();
    let after_campaigns: Vec<i64> = lines
        .iter()
        .map(|l| l.list_minor.saturating_sub(l.discount_minor))
        .collect();
    let coupon = coupon
        .map(|offer| coupon::redeem(offer, basket, &after_campaigns, when))
        .transpose()?;
    let mut remaining =
        sum(&after_campaigns).saturating_sub(coupon.as_ref().map_or(0, |c| c.discount_minor));
    let subsidy = sponsor::subsidy_share(subsidies, &basket.fridge_id, remaining);
    remaining = remaining.saturating_sub(subsidy.as_ref().map_or(0, |s| s.amount_minor));
    let points = points.and_then(|p| sponsor::points_spend(p, remaining));
    remaining = remaining.saturating_sub(points.as_ref().map_or(0, |p| p.value_minor));
    let split = PriceSplit {
        list_minor: sum_lines(&lines),
        campaigns: running.given(),
        lines,
        coupon,
        subsidy,
        points,
        charged_minor: remaining,
    };
    Ok(checked(split))
}

/// `split` if it keeps the money invariant; otherwise (a bug) the order at
/// its list price, which charges what the menu says rather than a split
/// that does not add up.
fn checked(split: PriceSplit) -> PriceSplit {
    let ok = split.check();
    debug_assert!(ok, "pricing broke the money invariant: {split:?}");
    if ok {
        return split;
    }
    let lines = split
        .lines
        .into_iter()
        .map(|l| LinePrice {
            discount_minor: 0,
            ..l
        })
        .collect();
    PriceSplit::list(lines)
}

fn sum(amounts: &[i64]) -> i64 {
    amounts.iter().fold(0i64, |s, a| s.saturating_add(*a))
}

fn sum_lines(lines: &[LinePrice]) -> i64 {
    lines
        .iter()
        .fold(0i64, |s, l| s.saturating_add(l.list_minor))
}

/// `floor(amount × percent / 100)` for `amount >= 0`, with `percent`
/// capped at 100 (validation refuses more); never more than `amount`.
pub(crate) fn percent_of(amount_minor: i64, percent: u8) -> i64 {
    let amount = amount_minor.max(0);
    let pct = i128::from(percent.min(100));
    let part = i128::from(amount) * pct / 100;
    i64::try_from(part).unwrap_or(amount).clamp(0, amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_rounds_down_and_never_exceeds_the_amount() {
        assert_eq!(percent_of(999, 10), 99);
        assert_eq!(percent_of(1000, 100), 1000);
        assert_eq!(percent_of(1000, 250), 1000);
        assert_eq!(percent_of(-5, 50), 0);
        assert_eq!(percent_of(i64::MAX, 100), i64::MAX);
    }
}
