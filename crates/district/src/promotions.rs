//! Promotions in the district: the campaigns, coupons and employer
//! subsidies an admin defined, what each has been used for, and the price
//! of an order at confirm.
//!
//! The rules (which campaign applies, how they stack, what a coupon takes
//! off, what a sponsor pays) are the pure `promotions` crate's; this module
//! gathers what it needs from the district's state (the basket's meals,
//! the best-before of the units it will take, the uses so far) and records
//! the result as `OrderPriced` in the same append as the `OrderPlaced`.
//!
//! Everything here is district-local, so it keeps working with NATS down.
//!
//! **Uses are held, then released or kept.** An `OrderPriced` holds the
//! coupon use, the campaigns' redemptions and budget, and the sponsor's
//! daily cap. A cancel in the grace window or a refusal by payments
//! releases all of them (the customer did not buy); a refund after the
//! purchase releases only the sponsor's share (the sponsor does not pay for
//! what was refunded) and keeps the coupon use, so cancelling a paid order
//! does not hand a one-time code back.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use imbl::{HashMap, OrdMap};
use protocol::catalog::Meal;
use protocol::orders::OrderLine;
use protocol::promotions::{
    CampaignSpec, CouponSpec, OrderPrice, PriceSplit, PromotionEvent, SubsidySpec,
};
use protocol::{CampaignId, CouponCode, Event, FridgeId, OrderId, SubsidyId};

use crate::{Context, DistrictState, DomainError};

pub use ::promotions::{CouponRefusal, When};

/// A campaign as defined. What it has given so far is kept apart
/// ([`Promotions::usage`]), so the definitions change only when an admin
/// changes them and the push hub can tell by pointer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Campaign {
    pub spec: CampaignSpec,
    pub ended: bool,
}

/// What a campaign has given so far (held uses included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CampaignUsage {
    pub redemptions: u32,
    pub discount_minor: i64,
}

/// A coupon with its uses so far (held uses included).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coupon {
    pub spec: CouponSpec,
    pub withdrawn: bool,
    pub uses: u32,
    pub uses_by_customer: HashMap<String, u32>,
}

/// A sponsor's subsidy with what it paid per customer and day.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Subsidy {
    pub spec: SubsidySpec,
    pub ended: bool,
    pub paid_minor: HashMap<(String, NaiveDate), i64>,
}

/// A priced order: its split and which of its uses are still held.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PricedOrder {
    pub customer: String,
    pub fridge_id: FridgeId,
    pub local_date: NaiveDate,
    pub split: Arc<PriceSplit>,
    /// Coupon use and campaign budgets are held.
    pub uses_held: bool,
    /// The sponsor's share counts against its daily cap (and statement).
    pub subsidy_held: bool,
    /// Set when the order was archived while it counted as bought and
    /// unrefunded: its currency and what was charged, which reports and
    /// statements otherwise read from the order book.
    pub kept_when_archived: Option<(protocol::money::Currency, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Promotions {
    campaigns: OrdMap<CampaignId, Campaign>,
    usage: HashMap<CampaignId, CampaignUsage>,
    coupons: OrdMap<CouponCode, Coupon>,
    subsidies: OrdMap<SubsidyId, Subsidy>,
    /// Priced orders archived while they count in reports and statements
    /// (bought, not refunded), with what they were charged. A priced order
    /// in the book keeps its `PricedOrder` itself (`Order::promo`).
    archived: HashMap<OrderId, Arc<PricedOrder>>,
}

impl Promotions {
    pub fn campaigns(&self) -> &OrdMap<CampaignId, Campaign> {
        &self.campaigns
    }

    pub fn usage(&self, campaign_id: &str) -> CampaignUsage {
        self.usage.get(campaign_id).copied().unwrap_or_default()
    }

    pub fn coupons(&self) -> &OrdMap<CouponCode, Coupon> {
        &self.coupons
    }

    pub fn subsidies(&self) -> &OrdMap<SubsidyId, Subsidy> {
        &self.subsidies
    }

    /// Priced orders archived while they counted (see `archived`).
    pub fn archived(&self) -> impl Iterator<Item = (&OrderId, &PricedOrder)> {
        self.archived.iter().map(|(id, p)| (id, p.as_ref()))
    }

    /// The campaigns as the pricing rules take them.
    pub fn offers(&self) -> Vec<::promotions::CampaignOffer<'_>> {
        self.campaigns
            .iter()
            .map(|(id, c)| ::promotions::CampaignOffer {
                campaign_id: id,
                spec: &c.spec,
                usage: {
                    let used = self.usage(id);
                    ::promotions::Usage {
                        redemptions: used.redemptions,
                        discount_minor: used.discount_minor,
                    }
                },
                ended: c.ended,
            })
            .collect()
    }

    /// Whether any campaign is running at `when` (the catalog's ETag and
    /// the push hub's price refresh look at this).
    pub fn any_live(&self, when: &When) -> bool {
        self.offers().iter().any(|o| ::promotions::live(o, when))
    }
}

/// An admin's change to the district's promotions.
#[derive(Debug, Clone, PartialEq)]
pub enum PromotionCommand {
    DefineCampaign {
        campaign_id: CampaignId,
        spec: CampaignSpec,
    },
    EndCampaign {
        campaign_id: CampaignId,
    },
    DefineCoupon {
        code: CouponCode,
        spec: CouponSpec,
    },
    WithdrawCoupon {
        code: CouponCode,
    },
    DefineSubsidy {
        subsidy_id: SubsidyId,
        spec: SubsidySpec,
    },
    EndSubsidy {
        subsidy_id: SubsidyId,
    },
    /// The node's configured bonus-point rules (a no-op when unchanged).
    DefineLoyaltyRules {
        rules: protocol::promotions::LoyaltyRules,
    },
    /// The ledger applied these operations of the loyalty outbox.
    LoyaltyApplied {
        op_ids: Vec<String>,
    },
    /// District-local `at` has passed and is when campaigns' prices turned
    /// by the clock ([`::promotions::next_turn`]); records which did. The
    /// node's timer sends it at least once per turn (a repeat only pushes
    /// one more `catalog_updated`).
    TurnHours {
        at: chrono::NaiveDateTime,
    },
}

pub fn decide(
    state: &DistrictState,
    cmd: PromotionCommand,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    let promos = &state.promotions;
    let invalid = |e: protocol::ValidationError| DomainError::Invalid(e.to_string());
    let event = match cmd {
        PromotionCommand::DefineCampaign { campaign_id, spec } => {
            spec.validate().map_err(invalid)?;
            if promos
                .campaigns
                .get(&campaign_id)
                .is_some_and(|c| c.spec == spec && !c.ended)
            {
                return Ok(vec![]); // Defining it again as it is changes nothing.
            }
            PromotionEvent::CampaignDefined { campaign_id, spec }
        }
        PromotionCommand::EndCampaign { campaign_id } => match promos.campaigns.get(&campaign_id) {
            None => return Err(DomainError::UnknownPromotion(campaign_id.into_string())),
            Some(c) if c.ended => return Ok(vec![]),
            Some(_) => PromotionEvent::CampaignEnded { campaign_id },
        },
        PromotionCommand::DefineCoupon { code, spec } => {
            spec.validate().map_err(invalid)?;
            if promos
                .coupons
                .get(&code)
                .is_some_and(|c| c.spec == spec && !c.withdrawn)
            {
                return Ok(vec![]);
            }
            PromotionEvent::CouponDefined { code, spec }
        }
        PromotionCommand::WithdrawCoupon { code } => match promos.coupons.get(&code) {
            None => return Err(DomainError::UnknownPromotion(code.into_string())),
            Some(c) if c.withdrawn => return Ok(vec![]),
            Some(_) => PromotionEvent::CouponWithdrawn { code },
        },
        PromotionCommand::DefineSubsidy { subsidy_id, spec } => {
            spec.validate().map_err(invalid)?;
            if let Some(f) = spec
                .fridges
                .iter()
                .find(|f| state.catalog.fridge(f).is_none())
            {
                return Err(DomainError::UnknownFridge(f.clone()));
            }
            if promos
                .subsidies
                .get(&subsidy_id)
                .is_some_and(|s| s.spec == spec && !s.ended)
            {
                return Ok(vec![]);
            }
            PromotionEvent::SubsidyDefined { subsidy_id, spec }
        }
        PromotionCommand::EndSubsidy { subsidy_id } => match promos.subsidies.get(&subsidy_id) {
            None => return Err(DomainError::UnknownPromotion(subsidy_id.into_string())),
            Some(s) if s.ended => return Ok(vec![]),
            Some(_) => PromotionEvent::SubsidyEnded { subsidy_id },
        },
        PromotionCommand::DefineLoyaltyRules { rules } => {
            if state.loyalty.rules() == Some(&rules) {
                return Ok(vec![]);
            }
            PromotionEvent::LoyaltyRulesDefined { rules }
        }
        PromotionCommand::LoyaltyApplied { op_ids } => {
            let op_ids: Vec<String> = op_ids
                .into_iter()
                .filter(|id| state.loyalty.due().contains_key(id))
                .collect();
            if op_ids.is_empty() {
                return Ok(vec![]);
            }
            PromotionEvent::LoyaltyApplied { op_ids }
        }
        PromotionCommand::TurnHours { at } => return turn_hours(state, at, ctx),
    };
    Ok(vec![Event::Promotion(event)])
}

/// `CampaignHoursTurned` for each running campaign whose clock conditions
/// change at `at` (which must have passed).
fn turn_hours(
    state: &DistrictState,
    at: chrono::NaiveDateTime,
    ctx: &Context,
) -> Result<Vec<Event>, DomainError> {
    if at > ctx.local_now() {
        return Err(DomainError::Invalid(format!(
            "{at} has not come yet: hours turn once they have passed"
        )));
    }
    Ok(state
        .promotions
        .campaigns
        .iter()
        .filter(|(_, c)| !c.ended && ::promotions::turns_at(&c.spec, at))
        .map(|(id, c)| {
            Event::Promotion(PromotionEvent::CampaignHoursTurned {
                campaign_id: id.clone(),
                at,
                on: ::promotions::in_hours(&c.spec, at),
            })
        })
        .collect())
}

/// The next instant, after district-local `after`, at which the clock
/// alone changes a running campaign's prices (for the node's timer).
pub fn next_turn(
    state: &DistrictState,
    after: chrono::NaiveDateTime,
) -> Option<chrono::NaiveDateTime> {
    let running = state
        .promotions
        .campaigns
        .values()
        .filter(|c| !c.ended)
        .map(|c| &c.spec);
    ::promotions::next_turn(running, after)
}

/// The pricing moment: `when` from the context.
pub fn when(ctx: &Context) -> When {
    When {
        local: ctx.local_now(),
        utc: ctx.now,
    }
}

/// The price of an order about to be placed: `None` when no promotion
/// touches it (the order is charged its list price and no `OrderPriced` is
/// recorded). A refused coupon refuses the order: the customer asked for
/// it and should know, not pay more than they expected.
pub(crate) fn price_order(
    state: &DistrictState,
    customer: &str,
    fridge_id: &FridgeId,
    lines: &[OrderLine],
    coupon: Option<&str>,
    points: Option<i64>,
    ctx: &Context,
) -> Result<Option<(NaiveDate, PriceSplit)>, DomainError> {
    let points = match points {
        None => None,
        Some(p) if p <= 0 => return Err(DomainError::Invalid("points must be at least 1".into())),
        Some(p) => match state.loyalty.rules() {
            Some(rules) if rules.minor_per_point > 0 => Some(::promotions::PointsRequest {
                points: p,
                minor_per_point: i64::from(rules.minor_per_point),
            }),
            _ => {
                return Err(DomainError::Invalid(
                    "this district does not take bonus points".into(),
                ))
            }
        },
    };
    let promos = &state.promotions;
    let coupon = match coupon {
        None => None,
        Some(text) => {
            let code = CouponCode::from_input(text).map_err(|_| DomainError::UnknownCoupon)?;
            let (code, entry) = promos
                .coupons
                .get_key_value(&code)
                .ok_or(DomainError::UnknownCoupon)?;
            Some((code, entry))
        }
    };
    let subsidies_here: Vec<_> = promos
        .subsidies
        .iter()
        .filter(|(_, s)| !s.ended && s.spec.fridges.contains(fridge_id))
        .collect();
    if promos.campaigns.is_empty()
        && coupon.is_none()
        && subsidies_here.is_empty()
        && points.is_none()
    {
        return Ok(None);
    }
    let when = when(ctx);
    let local_date = when.local.date();
    let basket = basket(state, fridge_id, lines, ctx.now)?;
    let coupon_offer = coupon.map(|(code, c)| ::promotions::CouponOffer {
        code,
        spec: &c.spec,
        withdrawn: c.withdrawn,
        uses_total: c.uses,
        uses_by_customer: c.uses_by_customer.get(customer).copied().unwrap_or(0),
        // Looked up only when it matters: it walks the customer's orders.
        first_order: c.spec.first_order_only && is_first_order(state, customer),
    });
    let subsidy_offers: Vec<_> = subsidies_here
        .iter()
        .map(|(id, s)| ::promotions::SubsidyOffer {
            subsidy_id: id,
            spec: &s.spec,
            used_today_minor: s
                .paid_minor
                .get(&(customer.to_string(), local_date))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    let split = ::promotions::price(
        &basket,
        &promos.offers(),
        coupon_offer.as_ref(),
        &subsidy_offers,
        points.as_ref(),
        &when,
    )
    .map_err(DomainError::CouponRefused)?;
    Ok((!split.is_list() || split.coupon.is_some()).then_some((local_date, split)))
}

/// The basket as the pricing rules see it: each line's meal facts and the
/// best-before of the units it will take.
fn basket(
    state: &DistrictState,
    fridge_id: &FridgeId,
    lines: &[OrderLine],
    now: DateTime<Utc>,
) -> Result<::promotions::Basket, DomainError> {
    let fridge = state
        .catalog
        .fridge(fridge_id)
        .ok_or_else(|| DomainError::UnknownFridge(fridge_id.clone()))?;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let meal: &Meal = state
            .catalog
            .meal(&line.meal_id)
            .ok_or_else(|| DomainError::UnknownMeal(line.meal_id.clone()))?;
        out.push(::promotions::BasketLine {
            meal_id: line.meal_id.clone(),
            kitchen_id: meal.spec.kitchen_id.clone(),
            tags: meal.spec.tags.clone(),
            qty: line.qty,
            unit_price_minor: line.unit_price,
            best_before: state
                .stock
                .next_for_sale(fridge_id, &line.meal_id, line.qty, now),
        });
    }
    Ok(::promotions::Basket {
        fridge_id: fridge_id.clone(),
        fridge_cell: fridge.geohash.clone(),
        lines: out,
    })
}

/// A customer's first order here: none placed before that was not
/// cancelled in its grace window or refused (those bought nothing).
fn is_first_order(state: &DistrictState, customer: &str) -> bool {
    use protocol::orders::OrderStatus;
    !state.orders.of_customer(customer).any(|o| {
        !matches!(o.status, OrderStatus::Cancelled | OrderStatus::Refused)
            || o.refund_pending
            || o.pickup_code.is_some()
    })
}

/// What a meal costs at a fridge right now, for the catalog and stock
/// pushes. `offers` is [`Promotions::offers`], taken once per catalog
/// answer or batch rather than once per shelf.
pub fn display_price(
    state: &DistrictState,
    offers: &[::promotions::CampaignOffer<'_>],
    fridge: &protocol::catalog::Fridge,
    meal: &Meal,
    when: &When,
) -> ::promotions::DisplayPrice {
    let next = state
        .stock
        .next_for_sale(&fridge.fridge_id, &meal.meal_id, 1, when.utc)
        .first()
        .copied();
    ::promotions::display_price(
        &fridge.fridge_id,
        &fridge.geohash,
        (&meal.meal_id, &meal.spec.kitchen_id, &meal.spec.tags),
        meal.spec.price,
        next,
        offers,
        when,
    )
}

/// Applies a promotion fact. Touches two areas on (a version-1 log's)
/// `OrderPriced`: the order keeps its split (charges and refunds read it).
pub(crate) fn evolve(state: &mut DistrictState, event: &PromotionEvent) -> bool {
    let promos = &mut state.promotions;
    match event {
        PromotionEvent::CampaignDefined { campaign_id, spec } => {
            let campaign = Campaign {
                spec: spec.clone(),
                ended: false,
            };
            promos.campaigns.insert(campaign_id.clone(), campaign);
            true
        }
        PromotionEvent::CampaignEnded { campaign_id } => {
            if let Some(c) = promos.campaigns.get_mut(campaign_id) {
                c.ended = true;
            }
            true
        }
        PromotionEvent::CouponDefined { code, spec } => {
            let entry = promos.coupons.entry(code.clone()).or_insert(Coupon {
                spec: spec.clone(),
                withdrawn: false,
                uses: 0,
                uses_by_customer: HashMap::new(),
            });
            entry.spec = spec.clone();
            entry.withdrawn = false;
            false
        }
        PromotionEvent::CouponWithdrawn { code } => {
            if let Some(c) = promos.coupons.get_mut(code) {
                c.withdrawn = true;
            }
            false
        }
        PromotionEvent::SubsidyDefined { subsidy_id, spec } => {
            let entry = promos
                .subsidies
                .entry(subsidy_id.clone())
                .or_insert(Subsidy {
                    spec: spec.clone(),
                    ended: false,
                    paid_minor: HashMap::new(),
                });
            entry.spec = spec.clone();
            entry.ended = false;
            false
        }
        PromotionEvent::SubsidyEnded { subsidy_id } => {
            if let Some(s) = promos.subsidies.get_mut(subsidy_id) {
                s.ended = true;
            }
            false
        }
        PromotionEvent::OrderPriced {
            order_id,
            local_date,
            split,
        } => {
            priced_v1(state, order_id, *local_date, split);
            false
        }
        PromotionEvent::LoyaltyRulesDefined { rules } => {
            crate::loyalty::define_rules(state, *rules);
            false
        }
        PromotionEvent::LoyaltyApplied { op_ids } => {
            crate::loyalty::applied(state, op_ids);
            false
        }
        PromotionEvent::OrderReferred { order_id, owner } => {
            crate::loyalty::referred_by(state, order_id, owner);
            false
        }
        // What the catalog shows changed: its version moves, apps are told.
        PromotionEvent::CampaignHoursTurned { .. } => true,
    }
}

/// The price of an order placed with a promotion (`None`: list price), in
/// the book or archived while it counts.
pub fn priced<'a>(state: &'a DistrictState, order_id: &str) -> Option<&'a PricedOrder> {
    match state.orders.get(order_id) {
        Some(order) => order.promo.as_deref(),
        None => state.promotions.archived.get(order_id).map(Arc::as_ref),
    }
}

/// Every priced order, in the book and archived (reports and statements
/// read these).
pub fn priced_orders(state: &DistrictState) -> impl Iterator<Item = (&OrderId, &PricedOrder)> {
    let in_book = state
        .orders
        .iter()
        .filter_map(|o| o.promo.as_deref().map(|p| (&o.order_id, p)));
    in_book.chain(state.promotions.archived())
}

/// A version-1 log's `OrderPriced`: the order placed just before keeps its
/// split, and its uses are held.
fn priced_v1(
    state: &mut DistrictState,
    order_id: &OrderId,
    local_date: NaiveDate,
    split: &Arc<PriceSplit>,
) {
    let price = OrderPrice {
        local_date,
        split: split.clone(),
    };
    let promos = &mut state.promotions;
    state
        .orders
        .update(order_id, |order| hold(promos, order, &price));
}

/// An order placed with `price` keeps its split, and holds the uses the
/// price takes (coupon, campaign budgets, the sponsor's daily cap).
pub(crate) fn hold(promos: &mut Promotions, order: &mut crate::Order, price: &OrderPrice) {
    let priced = PricedOrder {
        customer: order.customer.clone(),
        fridge_id: order.fridge_id.clone(),
        local_date: price.local_date,
        split: price.split.clone(),
        uses_held: true,
        subsidy_held: true,
        kept_when_archived: None,
    };
    count(promos, &priced, 1);
    order.promo = Some(Arc::new(priced));
}

/// Adds (`sign` 1) or takes back (`sign` -1) an order's held uses.
fn count(promos: &mut Promotions, p: &PricedOrder, sign: i64) {
    if p.uses_held {
        for c in &p.split.campaigns {
            let entry = promos.usage.entry(c.campaign_id.clone()).or_default();
            entry.redemptions = add_u32(entry.redemptions, sign);
            entry.discount_minor += sign * c.discount_minor;
        }
        if let Some(used) = &p.split.coupon {
            if let Some(entry) = promos.coupons.get_mut(&used.code) {
                entry.uses = add_u32(entry.uses, sign);
                let mine = entry
                    .uses_by_customer
                    .entry(p.customer.clone())
                    .or_insert(0);
                *mine = add_u32(*mine, sign);
            }
        }
    }
    if p.subsidy_held {
        if let Some(share) = &p.split.subsidy {
            if let Some(entry) = promos.subsidies.get_mut(&share.subsidy_id) {
                let paid = entry
                    .paid_minor
                    .entry((p.customer.clone(), p.local_date))
                    .or_insert(0);
                *paid = (*paid + sign * share.amount_minor).max(0);
            }
        }
    }
}

fn add_u32(value: u32, sign: i64) -> u32 {
    if sign >= 0 {
        value.saturating_add(1)
    } else {
        value.saturating_sub(1)
    }
}

/// Why an order's promotions are given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Cancelled in its grace window or refused: nothing was bought.
    All,
    /// Refunded after the purchase: the sponsor does not pay.
    Subsidy,
}

/// Gives back what an order held; each part at most once.
pub(crate) fn release(state: &mut DistrictState, order_id: &OrderId, what: Release) {
    let Some(mut p) = state
        .orders
        .get(order_id)
        .and_then(|o| o.promo.as_deref().cloned())
    else {
        return;
    };
    let before = p.clone();
    let mut undo = p.clone();
    undo.uses_held = what == Release::All && p.uses_held;
    undo.subsidy_held = p.subsidy_held;
    count(&mut state.promotions, &undo, -1);
    if what == Release::All {
        p.uses_held = false;
    }
    p.subsidy_held = false;
    if p != before {
        state
            .orders
            .update(order_id, |o| o.promo = Some(Arc::new(p)));
    }
}

/// The promotions' part of `OrdersArchived`, applied before the order
/// book lets the orders go (it reads their final status): a priced order
/// that counts in reports and statements (bought, not refunded) moves to
/// the promotions' archive, with what it was charged frozen in it, since a
/// sponsor's statement lists each order; every other priced order leaves
/// with its order. Uses and budgets are counters kept apart, so nothing is
/// given back here.
pub(crate) fn archived(state: &mut DistrictState, order_ids: &[OrderId]) {
    for id in order_ids {
        let Some(p) = state
            .orders
            .get(id)
            .filter(|o| o.status.is_final())
            .and_then(|o| o.promo.clone())
        else {
            continue;
        };
        if let Some(kept) = kept(state, id) {
            let mut p = PricedOrder::clone(&p);
            p.kept_when_archived = Some(kept);
            state.promotions.archived.insert(id.clone(), Arc::new(p));
        }
    }
}

/// A campaign as the admin API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CampaignView {
    pub campaign_id: CampaignId,
    #[serde(flatten)]
    pub spec: CampaignSpec,
    pub ended: bool,
    /// Running now: in its time frame, not ended, budget left (a happy
    /// hour may still be outside its hours).
    pub live: bool,
    pub redemptions: u32,
    pub discount_minor: i64,
}

/// A coupon as the admin API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CouponView {
    pub code: CouponCode,
    #[serde(flatten)]
    pub spec: CouponSpec,
    pub withdrawn: bool,
    /// Uses held or kept (released uses are not counted).
    pub uses: u32,
}

/// A subsidy as the admin API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SubsidyView {
    pub subsidy_id: SubsidyId,
    #[serde(flatten)]
    pub spec: SubsidySpec,
    pub ended: bool,
}

pub fn campaign_view(
    state: &DistrictState,
    campaign_id: &CampaignId,
    when: &When,
) -> Option<CampaignView> {
    let promos = &state.promotions;
    let c = promos.campaigns.get(campaign_id)?;
    let used = promos.usage(campaign_id);
    let offer = ::promotions::CampaignOffer {
        campaign_id,
        spec: &c.spec,
        usage: ::promotions::Usage {
            redemptions: used.redemptions,
            discount_minor: used.discount_minor,
        },
        ended: c.ended,
    };
    Some(CampaignView {
        campaign_id: campaign_id.clone(),
        spec: c.spec.clone(),
        ended: c.ended,
        live: ::promotions::live(&offer, when),
        redemptions: used.redemptions,
        discount_minor: used.discount_minor,
    })
}

pub fn coupon_view(state: &DistrictState, code: &CouponCode) -> Option<CouponView> {
    let c = state.promotions.coupons.get(code)?;
    Some(CouponView {
        code: code.clone(),
        spec: c.spec.clone(),
        withdrawn: c.withdrawn,
        uses: c.uses,
    })
}

pub fn subsidy_view(state: &DistrictState, subsidy_id: &SubsidyId) -> Option<SubsidyView> {
    let s = state.promotions.subsidies.get(subsidy_id)?;
    Some(SubsidyView {
        subsidy_id: subsidy_id.clone(),
        spec: s.spec.clone(),
        ended: s.ended,
    })
}

/// Whether an order's money was kept: bought and not refunded. Reports and
/// statements count only these (a held order may still be cancelled).
fn kept(state: &DistrictState, order_id: &str) -> Option<(protocol::money::Currency, i64)> {
    use protocol::orders::OrderStatus as S;
    let Some(order) = state.orders.get(order_id) else {
        let priced = state.promotions.archived.get(order_id)?;
        return priced.kept_when_archived.clone();
    };
    let kept =
        matches!(order.status, S::Purchased | S::PickedUp | S::Unclaimed) && !order.refund_pending;
    kept.then(|| (order.total.currency.clone(), order.charged().amount_minor))
}

/// One order in a sponsor's statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementLine {
    pub order_id: OrderId,
    pub date: NaiveDate,
    pub fridge_id: FridgeId,
    pub list_minor: i64,
    pub subsidy_minor: i64,
    pub charged_minor: i64,
}

/// What a sponsor owes for one month: every bought, unrefunded order it
/// paid part of, by date.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub subsidy_id: SubsidyId,
    pub sponsor: String,
    /// `YYYY-MM`.
    pub month: String,
    pub currency: Option<protocol::money::Currency>,
    pub orders: Vec<StatementLine>,
    pub total_minor: i64,
}

/// The sponsor's statement for the month starting `first` (district-local).
pub fn statement(
    state: &DistrictState,
    subsidy_id: &SubsidyId,
    first: NaiveDate,
) -> Option<Statement> {
    use chrono::Datelike;
    let subsidy = state.promotions.subsidies.get(subsidy_id)?;
    let mut currency = None;
    let mut orders: Vec<StatementLine> = priced_orders(state)
        .filter(|(_, p)| {
            p.subsidy_held
                && p.local_date.year() == first.year()
                && p.local_date.month() == first.month()
        })
        .filter_map(|(order_id, p)| {
            let share = p
                .split
                .subsidy
                .as_ref()
                .filter(|s| &s.subsidy_id == subsidy_id)?;
            let (cur, charged_minor) = kept(state, order_id)?;
            currency = Some(cur);
            Some(StatementLine {
                order_id: order_id.clone(),
                date: p.local_date,
                fridge_id: p.fridge_id.clone(),
                list_minor: p.split.list_minor,
                subsidy_minor: share.amount_minor,
                charged_minor,
            })
        })
        .collect();
    orders.sort_by(|a, b| (a.date, &a.order_id).cmp(&(b.date, &b.order_id)));
    Some(Statement {
        subsidy_id: subsidy_id.clone(),
        sponsor: subsidy.spec.sponsor.clone(),
        month: format!("{:04}-{:02}", first.year(), first.month()),
        currency,
        total_minor: orders.iter().map(|o| o.subsidy_minor).sum(),
        orders,
    })
}

impl Statement {
    /// `date,order_id,fridge_id,list_minor,subsidy_minor,charged_minor` rows
    /// under a header, then a total row. Ids are id characters only, so no
    /// field needs quoting.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("date,order_id,fridge_id,list_minor,subsidy_minor,charged_minor\n");
        for o in &self.orders {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                o.date, o.order_id, o.fridge_id, o.list_minor, o.subsidy_minor, o.charged_minor
            ));
        }
        out.push_str(&format!("total,,,,{},\n", self.total_minor));
        out
    }
}

/// One day at one fridge in a promotion's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportCell {
    pub date: NaiveDate,
    pub fridge_id: Option<FridgeId>,
    pub orders: u32,
    pub discount_minor: i64,
    /// What the customers paid for these orders.
    pub revenue_minor: i64,
}

/// One campaign or coupon in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportLine {
    pub id: String,
    pub orders: u32,
    pub discount_minor: i64,
    pub revenue_minor: i64,
    pub by_day_and_fridge: Vec<ReportCell>,
}

/// Redemptions, discount given and revenue influenced per campaign and
/// coupon, by district-local day and fridge, over `from..=to`. Counts
/// bought, unrefunded orders only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PromoReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub campaigns: Vec<ReportLine>,
    pub coupons: Vec<ReportLine>,
}

pub fn report(state: &DistrictState, from: NaiveDate, to: NaiveDate) -> PromoReport {
    use std::collections::BTreeMap;
    type Cells = BTreeMap<String, BTreeMap<(NaiveDate, FridgeId), ReportCell>>;
    let mut campaigns: Cells = BTreeMap::new();
    let mut coupons: Cells = BTreeMap::new();
    let add = |cells: &mut Cells, id: &str, p: &PricedOrder, discount: i64, revenue: i64| {
        let cell = cells
            .entry(id.to_string())
            .or_default()
            .entry((p.local_date, p.fridge_id.clone()))
            .or_insert_with(|| ReportCell {
                date: p.local_date,
                fridge_id: Some(p.fridge_id.clone()),
                ..ReportCell::default()
            });
        cell.orders += 1;
        cell.discount_minor += discount;
        cell.revenue_minor += revenue;
    };
    for (order_id, p) in priced_orders(state) {
        if p.local_date < from || p.local_date > to || !p.uses_held {
            continue;
        }
        let Some((_, revenue)) = kept(state, order_id) else {
            continue;
        };
        for c in &p.split.campaigns {
            add(&mut campaigns, &c.campaign_id, p, c.discount_minor, revenue);
        }
        if let Some(c) = &p.split.coupon {
            add(&mut coupons, &c.code, p, c.discount_minor, revenue);
        }
    }
    let lines = |cells: Cells| -> Vec<ReportLine> {
        cells
            .into_iter()
            .map(|(id, by)| {
                let by_day_and_fridge: Vec<ReportCell> = by.into_values().collect();
                ReportLine {
                    id,
                    orders: by_day_and_fridge.iter().map(|c| c.orders).sum(),
                    discount_minor: by_day_and_fridge.iter().map(|c| c.discount_minor).sum(),
                    revenue_minor: by_day_and_fridge.iter().map(|c| c.revenue_minor).sum(),
                    by_day_and_fridge,
                }
            })
            .collect()
    };
    PromoReport {
        from,
        to,
        campaigns: lines(campaigns),
        coupons: lines(coupons),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::given::{state, t0};
    use protocol::geo::DistrictArea;
    use protocol::DistrictId;

    /// Now is 2026-11-25 12:00 (UTC, offset 0).
    fn ctx() -> Context {
        Context {
            district_id: DistrictId::from_static("d"),
            area: DistrictArea::new(vec!["dpsby".into()]).unwrap_or_else(|_| unreachable!()),
            now: t0(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        }
    }

    fn lunch_hour() -> Event {
        let spec: CampaignSpec = serde_json::from_value(serde_json::json!({
            "name": "lunch", "starts": "2026-11-01T00:00:00", "ends": "2027-01-01T00:00:00",
            "rule": {"kind": "happy_hour", "from": "11:30:00", "until": "13:00:00", "percent": 20},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Event::Promotion(PromotionEvent::CampaignDefined {
            campaign_id: CampaignId::from_static("lunch"),
            spec,
        })
    }

    fn turn(at: &str) -> PromotionCommand {
        PromotionCommand::TurnHours {
            at: at.parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn a_happy_hour_that_opened_is_recorded_as_turned_on() {
        let s = state(vec![lunch_hour()]);
        assert_eq!(
            next_turn(&s, "2026-11-25T10:00:00".parse().unwrap_or_default()),
            "2026-11-25T11:30:00".parse().ok()
        );
        let events = decide(&s, turn("2026-11-25T11:30:00"), &ctx()).unwrap_or_default();
        assert!(
            matches!(
                events.as_slice(),
                [Event::Promotion(PromotionEvent::CampaignHoursTurned {
                    on: true,
                    ..
                })]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn hours_are_turned_only_once_they_have_passed_and_only_where_they_turn() {
        let s = state(vec![lunch_hour()]);
        assert!(matches!(
            decide(&s, turn("2026-11-25T13:00:00"), &ctx()),
            Err(DomainError::Invalid(_))
        ));
        let nothing = decide(&s, turn("2026-11-25T11:45:00"), &ctx());
        assert_eq!(nothing.ok(), Some(vec![]), "no edge at 11:45");
    }
}
