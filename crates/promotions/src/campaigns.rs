//! Campaigns on units: which apply, what each takes off, how they stack and
//! how their budgets cap them (rules 1–4 of the crate docs).
//!
//! Pricing is per unit because a line's units differ: a shelf-life markdown
//! reaches only the units near their best-before, and a budget may run out
//! between two units of one line. Units are priced in line order, each
//! line's units oldest best-before first, so the same basket always spends
//! a budget on the same units.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use protocol::promotions::{CampaignDiscount, CampaignSpec, PromoRule, Stacking};
use protocol::{CampaignId, FridgeId};

use crate::matching::{area_matches, holds_for_unit, holds_now, target_matches, MealRef};
use crate::{percent_of, When};

/// What a campaign has given so far (orders held or kept), as the district
/// counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Orders that got a discount from it.
    pub redemptions: u32,
    /// Discount it gave in total, in minor units.
    pub discount_minor: i64,
}

/// A campaign as the pricing rules take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignOffer<'a> {
    pub campaign_id: &'a CampaignId,
    pub spec: &'a CampaignSpec,
    pub usage: Usage,
    /// An admin ended it before its time.
    pub ended: bool,
}

/// Whether a campaign is running at `when`: not ended, `starts <= local <
/// ends`, and neither budget reached. A rule's own condition (a happy
/// hour's window, a unit's best-before) is not part of this.
pub fn live(offer: &CampaignOffer<'_>, when: &When) -> bool {
    let spec = offer.spec;
    let redemptions_left = match spec.budget.max_redemptions {
        Some(max) => offer.usage.redemptions < max,
        None => true,
    };
    let discount_left = match remaining_budget_minor(offer) {
        Some(left) => left > 0,
        None => true,
    };
    !offer.ended
        && spec.starts <= when.local
        && when.local < spec.ends
        && redemptions_left
        && discount_left
}

/// What a campaign may still give in minor units (`None`: no limit).
pub fn remaining_budget_minor(offer: &CampaignOffer<'_>) -> Option<i64> {
    offer
        .spec
        .budget
        .max_discount_minor
        .map(|max| max.saturating_sub(offer.usage.discount_minor))
}

/// What `rule` takes off a price of `price_minor` (rule 2): never negative,
/// never more than the price.
pub fn rule_discount_minor(rule: &PromoRule, price_minor: i64) -> i64 {
    let p = price_minor.max(0);
    let d = match rule {
        PromoRule::PercentOff { percent }
        | PromoRule::HappyHour { percent, .. }
        | PromoRule::ShelfLife { percent, .. } => percent_of(p, *percent),
        PromoRule::AmountOff { amount_minor } => (*amount_minor).min(p),
        PromoRule::FixedPrice { price_minor } => p.saturating_sub(*price_minor),
    };
    d.clamp(0, p)
}

/// What one unit costs right now, for the catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisplayPrice {
    pub list_minor: i64,
    /// List price less the campaigns' discount on the next unit sold.
    pub now_minor: i64,
    /// The campaigns that gave that discount, by id.
    pub campaigns: Vec<CampaignId>,
}

/// What the next unit sold of a meal at a fridge costs right now (the
/// oldest lot's, whose best-before is `next_best_before`), by the same
/// rules as [`crate::price`] for a one-unit order without coupon.
pub fn display_price(
    fridge_id: &FridgeId,
    fridge_cell: &str,
    meal: MealRef<'_>,
    unit_price_minor: i64,
    next_best_before: Option<DateTime<Utc>>,
    campaigns: &[CampaignOffer<'_>],
    when: &When,
) -> DisplayPrice {
    let mut running = Running::new(campaigns, fridge_id, fridge_cell, when);
    let best_before: Vec<DateTime<Utc>> = next_best_before.into_iter().collect();
    let discount = running.price_line(meal, unit_price_minor, 1, &best_before, when);
    let given = running.given();
    DisplayPrice {
        list_minor: unit_price_minor,
        now_minor: unit_price_minor.saturating_sub(discount),
        campaigns: given.into_iter().map(|c| c.campaign_id).collect(),
    }
}

/// A live campaign during one pricing: its budget left and what it gave.
struct Entry<'a> {
    offer: &'a CampaignOffer<'a>,
    /// `None`: no discount budget.
    left_minor: Option<i64>,
    given_minor: i64,
}

impl Entry<'_> {
    fn rule(&self) -> &PromoRule {
        &self.offer.spec.rule
    }

    fn combinable(&self) -> bool {
        self.offer.spec.stacking == Stacking::Combinable
    }

    /// `discount` as far as the budget left allows.
    fn capped(&self, discount: i64) -> i64 {
        match self.left_minor {
            Some(left) => discount.min(left.max(0)),
            None => discount,
        }
    }

    fn take(&mut self, discount: i64) {
        self.given_minor = self.given_minor.saturating_add(discount);
        if let Some(left) = &mut self.left_minor {
            *left = left.saturating_sub(discount);
        }
    }
}

/// The campaigns of one pricing, in chain order, with their budgets as
/// this order spends them.
pub(crate) struct Running<'a> {
    /// Live, in the fridge's area and with their window open; by priority
    /// (higher first), then campaign id.
    entries: Vec<Entry<'a>>,
}

impl<'a> Running<'a> {
    pub(crate) fn new(
        campaigns: &'a [CampaignOffer<'a>],
        fridge_id: &FridgeId,
        fridge_cell: &str,
        when: &When,
    ) -> Running<'a> {
        // Ids are unique in a district; were one passed twice, its budget
        // must still be spent once, so only the first counts.
        let mut seen = BTreeSet::new();
        let mut entries: Vec<Entry<'a>> = campaigns
            .iter()
            .filter(|o| seen.insert(o.campaign_id))
            .filter(|o| live(o, when))
            .filter(|o| area_matches(&o.spec.area, fridge_id, fridge_cell))
            .filter(|o| holds_now(&o.spec.rule, when.local))
            .map(|offer| Entry {
                offer,
                left_minor: remaining_budget_minor(offer),
                given_minor: 0,
            })
            .collect();
        entries.sort_by_key(|e| (Reverse(e.offer.spec.priority), e.offer.campaign_id));
        Running { entries }
    }

    /// Prices `qty` units of a meal at `unit_price_minor` and spends the
    /// budgets; returns the line's campaign discount. `best_before` holds
    /// the known best-before of the units (any order; more than `qty` are
    /// ignored, the oldest kept).
    pub(crate) fn price_line(
        &mut self,
        meal: MealRef<'_>,
        unit_price_minor: i64,
        qty: u32,
        best_before: &[DateTime<Utc>],
        when: &When,
    ) -> i64 {
        let targeted: Vec<usize> = (0..self.entries.len())
            .filter(|i| target_matches(&self.entries[*i].offer.spec.target, meal))
            .collect();
        let mut oldest_first = best_before.to_vec();
        oldest_first.sort_unstable();
        let mut total: i64 = 0;
        for unit in 0..qty {
            let bb = usize::try_from(unit)
                .ok()
                .and_then(|u| oldest_first.get(u))
                .copied();
            let unit_discount = self.price_unit(&targeted, unit_price_minor, bb, when.utc);
            total = total.saturating_add(unit_discount);
        }
        total
    }

    /// One unit (rule 3): the chain of combinables against the best single
    /// exclusive, budget-capped; the larger wins, the chain on a tie.
    fn price_unit(
        &mut self,
        targeted: &[usize],
        list_minor: i64,
        best_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> i64 {
        let applies: Vec<usize> = targeted
            .iter()
            .copied()
            .filter(|i| holds_for_unit(self.entries[*i].rule(), best_before, now))
            .collect();
        let mut chain: Vec<(usize, i64)> = Vec::new();
        let mut price = list_minor.max(0);
        for &i in applies.iter().filter(|i| self.entries[**i].combinable()) {
            let e = &self.entries[i];
            let d = e.capped(rule_discount_minor(e.rule(), price));
            if d > 0 {
                chain.push((i, d));
                price -= d;
            }
        }
        let chain_minor: i64 = chain.iter().map(|(_, d)| d).sum();
        // `applies` is in priority-then-id order, so keeping the first of
        // equal discounts is the documented tie-break.
        let mut best: Option<(usize, i64)> = None;
        for &i in applies.iter().filter(|i| !self.entries[**i].combinable()) {
            let e = &self.entries[i];
            let d = e.capped(rule_discount_minor(e.rule(), list_minor));
            if d > 0 && best.is_none_or(|(_, b)| d > b) {
                best = Some((i, d));
            }
        }
        let picked = match best {
            Some((i, d)) if d > chain_minor => vec![(i, d)],
            _ => chain,
        };
        picked.iter().fold(0i64, |sum, &(i, d)| {
            self.entries[i].take(d);
            sum.saturating_add(d)
        })
    }

    /// What each campaign gave in this pricing (> 0 only), by id.
    pub(crate) fn given(&self) -> Vec<CampaignDiscount> {
        let mut given: Vec<CampaignDiscount> = self
            .entries
            .iter()
            .filter(|e| e.given_minor > 0)
            .map(|e| CampaignDiscount {
                campaign_id: e.offer.campaign_id.clone(),
                discount_minor: e.given_minor,
            })
            .collect();
        given.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
        given
    }
}
