//! Promotions as they cross a boundary: what an admin sends to define a
//! campaign, a coupon or an employer subsidy, the facts the log records,
//! and the money split of a priced order.
//!
//! The rules that turn these into prices live in the pure `promotions`
//! crate; this module owns only shapes and validation, like the rest of
//! `protocol`.
//!
//! Times of a campaign or coupon are **district-local** (`NaiveDateTime`):
//! "lunch deal from 11:30 to 14:00" means the district's wall clock, on
//! every day of a daylight-saving change too.
//!
//! Amounts are minor units of the district's currency (a promotion carries
//! no currency of its own: a district sells in one).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::catalog::{MAX_LIST_ITEMS, MAX_NAME_LEN};
use crate::ids::{CampaignId, CouponCode, SubsidyId};
use crate::money::MAX_MEAL_PRICE_MINOR;
use crate::orders::OrderId;
use crate::{FridgeId, KitchenId, MealId, ValidationError};

/// Largest amount a promotion may name (a discount, a budget, a cap), in
/// minor units: 100× the dearest meal, far above any real campaign.
pub const MAX_PROMO_AMOUNT_MINOR: i64 = 100 * MAX_MEAL_PRICE_MINOR;
/// Most redemptions a budget or coupon limit may name.
pub const MAX_PROMO_USES: u32 = 10_000_000;
/// Longest shelf-life window a markdown may name, in hours (three weeks,
/// the longest shelf life a meal may declare).
pub const MAX_MARKDOWN_HOURS: u32 = 21 * 24;
/// Geohash cells of one campaign's area are 1..=this many characters.
pub const MAX_CELL_LEN: usize = 12;

/// Where a campaign applies. Both lists empty: the whole district.
/// Otherwise a fridge applies if it is listed or its geohash starts with
/// one of the cells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoArea {
    #[serde(default)]
    pub fridges: Vec<FridgeId>,
    #[serde(default)]
    pub cells: Vec<String>,
}

/// Which meals a campaign applies to. All lists empty: every meal.
/// Otherwise a meal applies if it is listed, comes from a listed kitchen
/// or carries a listed tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoTarget {
    #[serde(default)]
    pub meals: Vec<MealId>,
    #[serde(default)]
    pub kitchens: Vec<KitchenId>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What a campaign does to the price of one unit. JSON tags it with
/// `kind` (`{"kind":"percent_off","percent":20}`); the log's postcard
/// cannot read an internally tagged enum, so it stores the variant index
/// (see [`dual_tagging`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoRule {
    /// `percent` (1..=100) off the unit price, rounded down to a minor unit.
    PercentOff { percent: u8 },
    /// A fixed amount off the unit price (never below zero).
    AmountOff { amount_minor: i64 },
    /// The unit sells at `price_minor` (only if that is lower).
    FixedPrice { price_minor: i64 },
    /// `percent` off on the listed ISO weekdays (1 = Monday … 7 = Sunday;
    /// empty: every day) from `from` until `until` (district-local; `until`
    /// excluded; `from > until` spans midnight).
    HappyHour {
        weekdays: Vec<u8>,
        from: NaiveTime,
        until: NaiveTime,
        percent: u8,
    },
    /// `percent` off a unit whose best-before is within `within_hours`
    /// from now (shelf-life markdown; units from the oldest lot first).
    ShelfLife { within_hours: u32, percent: u8 },
}

/// One enum, two encodings: JSON (human-readable) tags a variant with
/// `kind`, as the API documents; postcard (the log, NATS) cannot decode an
/// internally tagged enum (it needs `deserialize_any`), so it writes the
/// variant index like any other enum. The mirrors below list the variants
/// in the same order as the real enums: **append only**, like events.
mod dual_tagging {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{CouponDiscount, PromoRule};

    #[derive(Serialize, Deserialize)]
    #[serde(
        remote = "PromoRule",
        tag = "kind",
        rename_all = "snake_case",
        deny_unknown_fields
    )]
    enum RuleJson {
        PercentOff {
            percent: u8,
        },
        AmountOff {
            amount_minor: i64,
        },
        FixedPrice {
            price_minor: i64,
        },
        HappyHour {
            #[serde(default)]
            weekdays: Vec<u8>,
            from: NaiveTime,
            until: NaiveTime,
            percent: u8,
        },
        ShelfLife {
            within_hours: u32,
            percent: u8,
        },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "PromoRule")]
    enum RuleLog {
        PercentOff {
            percent: u8,
        },
        AmountOff {
            amount_minor: i64,
        },
        FixedPrice {
            price_minor: i64,
        },
        HappyHour {
            #[serde(default)]
            weekdays: Vec<u8>,
            from: NaiveTime,
            until: NaiveTime,
            percent: u8,
        },
        ShelfLife {
            within_hours: u32,
            percent: u8,
        },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(
        remote = "CouponDiscount",
        tag = "kind",
        rename_all = "snake_case",
        deny_unknown_fields
    )]
    enum CouponJson {
        PercentOff { percent: u8 },
        AmountOff { amount_minor: i64 },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "CouponDiscount")]
    enum CouponLog {
        PercentOff { percent: u8 },
        AmountOff { amount_minor: i64 },
    }

    impl Serialize for PromoRule {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                RuleJson::serialize(self, s)
            } else {
                RuleLog::serialize(self, s)
            }
        }
    }

    impl<'de> Deserialize<'de> for PromoRule {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                RuleJson::deserialize(d)
            } else {
                RuleLog::deserialize(d)
            }
        }
    }

    impl Serialize for CouponDiscount {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                CouponJson::serialize(self, s)
            } else {
                CouponLog::serialize(self, s)
            }
        }
    }

    impl<'de> Deserialize<'de> for CouponDiscount {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                CouponJson::deserialize(d)
            } else {
                CouponLog::deserialize(d)
            }
        }
    }
}

impl PromoRule {
    /// The kind's name as the API spells it (reports, errors).
    pub fn kind(&self) -> &'static str {
        match self {
            PromoRule::PercentOff { .. } => "percent_off",
            PromoRule::AmountOff { .. } => "amount_off",
            PromoRule::FixedPrice { .. } => "fixed_price",
            PromoRule::HappyHour { .. } => "happy_hour",
            PromoRule::ShelfLife { .. } => "shelf_life",
        }
    }
}

/// How a campaign combines with others on the same unit (see the
/// `promotions` crate for the exact result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    /// Applies alone; the best exclusive campaign competes with the chain
    /// of all combinable ones and the customer gets the better of the two.
    Exclusive,
    /// Chains with the other combinable campaigns, higher priority first.
    #[default]
    Combinable,
}

/// Limits on a campaign's total effect. Reaching either ends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most orders that may get the campaign's discount.
    #[serde(default)]
    pub max_redemptions: Option<u32>,
    /// Most discount the campaign may give in total, in minor units.
    #[serde(default)]
    pub max_discount_minor: Option<i64>,
}

/// What an admin sends to define (or redefine) a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    /// District-local start (included) and end (excluded).
    pub starts: NaiveDateTime,
    pub ends: NaiveDateTime,
    #[serde(default)]
    pub area: PromoArea,
    #[serde(default)]
    pub target: PromoTarget,
    pub rule: PromoRule,
    /// Higher first when chaining; breaks ties between exclusives.
    #[serde(default)]
    pub priority: u16,
    #[serde(default)]
    pub stacking: Stacking,
    #[serde(default)]
    pub budget: Budget,
}

/// What a coupon takes off the order (after campaigns). Tagged with
/// `kind` in JSON, by variant index in the log, like [`PromoRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponDiscount {
    /// `percent` (1..=100) off the order, rounded down.
    PercentOff { percent: u8 },
    /// A fixed amount off the order (never below zero).
    AmountOff { amount_minor: i64 },
}

/// What an admin sends to define a coupon code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponSpec {
    pub discount: CouponDiscount,
    /// District-local validity: from (included) until (excluded).
    pub valid_from: NaiveDateTime,
    pub valid_until: NaiveDateTime,
    /// Most uses in this district in total.
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// Most uses by one customer.
    #[serde(default)]
    pub max_uses_per_customer: Option<u32>,
    /// Most uses over every district that defines this code, counted on
    /// NATS (a use is reserved before the order is placed; without NATS
    /// such a coupon is refused with 503).
    #[serde(default)]
    pub fleet_max_uses: Option<u32>,
    /// The order (after campaigns) must come to at least this much.
    #[serde(default)]
    pub min_order_minor: Option<i64>,
    /// Only a customer's first order in this district.
    #[serde(default)]
    pub first_order_only: bool,
    /// Meals the coupon applies to; empty: every meal. An order with none
    /// of them is refused `not_applicable`.
    #[serde(default)]
    pub target: PromoTarget,
}

/// What an admin sends to make a sponsor (an employer) pay part of every
/// order at some fridges ("billed to location").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsidySpec {
    /// Who pays, as the statement names it.
    pub sponsor: String,
    /// The fridges whose orders are subsidised (1..).
    pub fridges: Vec<FridgeId>,
    /// Share of the order (after discounts) the sponsor pays, 1..=100.
    pub percent: u8,
    /// Most the sponsor pays for one customer per district-local day.
    pub cap_per_customer_day_minor: i64,
}

/// How a district's customers earn and spend bonus points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyRules {
    /// Points earned per major currency unit charged (0: no earning).
    pub points_per_major_unit: u32,
    /// Minor units in a major one (100 for USD).
    pub minor_per_major: u32,
    /// What a point is worth when spent, in minor units (0: no spending).
    pub minor_per_point: u32,
    /// Earned points expire this many days later.
    pub expire_after_days: u32,
    /// Points a share code's owner earns when someone buys with it.
    pub referral_reward_points: u32,
}

impl LoyaltyRules {
    /// Points a charge of `charged_minor` earns (whole major units only).
    pub fn earned(&self, charged_minor: i64) -> i64 {
        if self.minor_per_major == 0 || charged_minor <= 0 {
            return 0;
        }
        charged_minor / i64::from(self.minor_per_major) * i64::from(self.points_per_major_unit)
    }
}

/// One coupon use in a priced order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponUse {
    pub code: CouponCode,
    pub discount_minor: i64,
}

/// The sponsor's part of a priced order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyShare {
    pub subsidy_id: SubsidyId,
    pub amount_minor: i64,
}

/// Points spent on an order (reserved with the loyalty ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsSpend {
    pub points: i64,
    pub value_minor: i64,
}

/// What one campaign took off one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignDiscount {
    pub campaign_id: CampaignId,
    pub discount_minor: i64,
}

/// What one order line costs after campaigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinePrice {
    pub meal_id: MealId,
    pub qty: u32,
    /// List price × qty.
    pub list_minor: i64,
    /// What campaigns took off the line.
    pub discount_minor: i64,
}

/// An order's price after promotions, recorded in its `OrderPlaced`
/// (`OrderPriced` in version-1 logs). Holds the coupon use, the campaign
/// budgets and the sponsor's daily cap until the order is cancelled in its
/// grace window or refused by payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPrice {
    /// The district-local day the order counts against (subsidy caps,
    /// statements and reports by day).
    pub local_date: NaiveDate,
    /// Shared with the order that keeps it, so copying the event (the
    /// writer hands it to the log, the feed and the push hub) does not copy
    /// the split. Encoded exactly as a `PriceSplit`.
    pub split: std::sync::Arc<PriceSplit>,
}

/// The money split of an order. Invariant (checked by [`PriceSplit::check`]
/// and property-tested in the `promotions` crate):
/// `list = charged + campaigns + coupon + subsidy + points`, every part ≥ 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceSplit {
    pub list_minor: i64,
    pub lines: Vec<LinePrice>,
    pub campaigns: Vec<CampaignDiscount>,
    pub coupon: Option<CouponUse>,
    pub subsidy: Option<SubsidyShare>,
    pub points: Option<PointsSpend>,
    /// What the customer's payment method is charged.
    pub charged_minor: i64,
}

impl PriceSplit {
    /// The split of an order no promotion touched.
    pub fn list(lines: Vec<LinePrice>) -> PriceSplit {
        let list_minor = lines.iter().map(|l| l.list_minor).sum();
        PriceSplit {
            list_minor,
            lines,
            campaigns: vec![],
            coupon: None,
            subsidy: None,
            points: None,
            charged_minor: list_minor,
        }
    }

    pub fn campaign_discount_minor(&self) -> i64 {
        self.campaigns.iter().map(|c| c.discount_minor).sum()
    }

    /// Campaigns plus coupon.
    pub fn discount_minor(&self) -> i64 {
        self.campaign_discount_minor() + self.coupon.as_ref().map_or(0, |c| c.discount_minor)
    }

    pub fn subsidy_minor(&self) -> i64 {
        self.subsidy.as_ref().map_or(0, |s| s.amount_minor)
    }

    pub fn points_value_minor(&self) -> i64 {
        self.points.as_ref().map_or(0, |p| p.value_minor)
    }

    /// Whether any promotion changed the price.
    pub fn is_list(&self) -> bool {
        self.charged_minor == self.list_minor
    }

    /// The money invariant: every part non-negative and the parts add up
    /// to the list price.
    pub fn check(&self) -> bool {
        let parts = [
            self.charged_minor,
            self.discount_minor(),
            self.subsidy_minor(),
            self.points_value_minor(),
        ];
        parts.iter().all(|p| *p >= 0)
            && self.campaigns.iter().all(|c| c.discount_minor >= 0)
            && self.lines.iter().map(|l| l.list_minor).sum::<i64>() == self.list_minor
            && self.lines.iter().map(|l| l.discount_minor).sum::<i64>()
                == self.campaign_discount_minor()
            && parts.iter().sum::<i64>() == self.list_minor
    }
}

/// Facts about promotions, recorded in the district's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PromotionEvent {
    /// A campaign was defined or redefined (its usage so far stays).
    CampaignDefined {
        campaign_id: CampaignId,
        spec: CampaignSpec,
    },
    /// An admin ended a campaign before its time.
    CampaignEnded {
        campaign_id: CampaignId,
    },
    CouponDefined {
        code: CouponCode,
        spec: CouponSpec,
    },
    /// An admin withdrew a coupon: it is refused from now on.
    CouponWithdrawn {
        code: CouponCode,
    },
    SubsidyDefined {
        subsidy_id: SubsidyId,
        spec: SubsidySpec,
    },
    SubsidyEnded {
        subsidy_id: SubsidyId,
    },
    /// An order's price after promotions, recorded with its `OrderPlaced`
    /// by version-1 logs (today's logs record it in `OrderPlaced::price`;
    /// this variant is still applied when an old log is replayed). Holds the
    /// coupon use, the campaign budgets and the sponsor's daily cap until
    /// the order is cancelled in its grace window or refused by payments.
    OrderPriced {
        order_id: OrderId,
        /// The district-local day the order counts against (subsidy caps,
        /// statements and reports by day).
        local_date: NaiveDate,
        /// Shared with the order that keeps it, so copying the event (the
        /// writer hands it to the log, the feed and the push hub) does not
        /// copy the split. Encoded exactly as a `PriceSplit`.
        split: std::sync::Arc<PriceSplit>,
    },
    /// The district's bonus-point rules (from its config at start-up).
    LoyaltyRulesDefined {
        rules: LoyaltyRules,
    },
    /// The order was placed with the share code of `owner` (checked by the
    /// node against the global ledger before the order was placed).
    OrderReferred {
        order_id: OrderId,
        owner: String,
    },
    /// The global ledger applied these operations (op ids of the district's
    /// loyalty outbox); they are owed no longer.
    LoyaltyApplied {
        op_ids: Vec<String>,
    },
    /// The clock alone changed the campaign's prices at district-local
    /// `at`: its time frame started or ended, or its happy hour opened or
    /// closed (`on`: it applies from `at`). Recorded once `at` has passed,
    /// so apps are told to fetch the catalog again.
    CampaignHoursTurned {
        campaign_id: CampaignId,
        at: NaiveDateTime,
        on: bool,
    },
}

impl PromotionEvent {
    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PromotionEvent::CampaignDefined { .. } => "CampaignDefined",
            PromotionEvent::CampaignEnded { .. } => "CampaignEnded",
            PromotionEvent::CouponDefined { .. } => "CouponDefined",
            PromotionEvent::CouponWithdrawn { .. } => "CouponWithdrawn",
            PromotionEvent::SubsidyDefined { .. } => "SubsidyDefined",
            PromotionEvent::SubsidyEnded { .. } => "SubsidyEnded",
            PromotionEvent::OrderPriced { .. } => "OrderPriced",
            PromotionEvent::LoyaltyRulesDefined { .. } => "LoyaltyRulesDefined",
            PromotionEvent::LoyaltyApplied { .. } => "LoyaltyApplied",
            PromotionEvent::OrderReferred { .. } => "OrderReferred",
            PromotionEvent::CampaignHoursTurned { .. } => "CampaignHoursTurned",
        }
    }

    pub fn stream(&self) -> crate::StreamId {
        use crate::StreamId;
        match self {
            PromotionEvent::CampaignDefined { campaign_id, .. }
            | PromotionEvent::CampaignEnded { campaign_id }
            | PromotionEvent::CampaignHoursTurned { campaign_id, .. } => {
                StreamId::Campaign(campaign_id.clone())
            }
            PromotionEvent::CouponDefined { code, .. }
            | PromotionEvent::CouponWithdrawn { code } => StreamId::Coupon(code.clone()),
            PromotionEvent::SubsidyDefined { subsidy_id, .. }
            | PromotionEvent::SubsidyEnded { subsidy_id } => StreamId::Subsidy(subsidy_id.clone()),
            PromotionEvent::OrderPriced { order_id, .. }
            | PromotionEvent::OrderReferred { order_id, .. } => StreamId::Order(order_id.clone()),
            PromotionEvent::LoyaltyRulesDefined { .. } | PromotionEvent::LoyaltyApplied { .. } => {
                StreamId::Loyalty
            }
        }
    }
}

fn check_percent(field: &'static str, percent: u8) -> Result<(), ValidationError> {
    if percent == 0 || percent > 100 {
        return Err(ValidationError::NotBetweenOneAnd { field, max: 100 });
    }
    Ok(())
}

fn check_amount(field: &'static str, amount: i64) -> Result<(), ValidationError> {
    if amount <= 0 || amount > MAX_PROMO_AMOUNT_MINOR {
        return Err(ValidationError::Amount {
            field,
            max: MAX_PROMO_AMOUNT_MINOR,
        });
    }
    Ok(())
}

fn check_uses(field: &'static str, uses: Option<u32>) -> Result<(), ValidationError> {
    match uses {
        Some(n) if n == 0 || n > MAX_PROMO_USES => Err(ValidationError::NotBetweenOneAnd {
            field,
            max: MAX_PROMO_USES,
        }),
        _ => Ok(()),
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::TooLong {
            field,
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

fn check_window(
    field: &'static str,
    from: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<(), ValidationError> {
    if until <= from {
        return Err(ValidationError::EndsBeforeStart { field });
    }
    Ok(())
}

impl PromoArea {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.fridges.len() > MAX_LIST_ITEMS {
            return Err(ValidationError::TooManyEntries {
                field: "area.fridges",
                max: MAX_LIST_ITEMS,
            });
        }
        if self.cells.len() > MAX_LIST_ITEMS {
            return Err(ValidationError::TooManyEntries {
                field: "area.cells",
                max: MAX_LIST_ITEMS,
            });
        }
        for cell in &self.cells {
            let base32 = "0123456789bcdefghjkmnpqrstuvwxyz";
            if cell.is_empty()
                || cell.len() > MAX_CELL_LEN
                || !cell.chars().all(|c| base32.contains(c))
            {
                return Err(ValidationError::Cell {
                    value: cell.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn is_everywhere(&self) -> bool {
        self.fridges.is_empty() && self.cells.is_empty()
    }
}

impl PromoTarget {
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, len) in [
            ("target.meals", self.meals.len()),
            ("target.kitchens", self.kitchens.len()),
            ("target.tags", self.tags.len()),
        ] {
            if len > MAX_LIST_ITEMS {
                return Err(ValidationError::TooManyEntries {
                    field,
                    max: MAX_LIST_ITEMS,
                });
            }
        }
        Ok(())
    }

    pub fn is_everything(&self) -> bool {
        self.meals.is_empty() && self.kitchens.is_empty() && self.tags.is_empty()
    }
}

impl PromoRule {
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            PromoRule::PercentOff { percent } => check_percent("rule.percent", *percent),
            PromoRule::AmountOff { amount_minor } => {
                check_amount("rule.amount_minor", *amount_minor)
            }
            PromoRule::FixedPrice { price_minor } => {
                // A fixed price of zero is a giveaway; allowed, but not below.
                if *price_minor < 0 || *price_minor > MAX_MEAL_PRICE_MINOR {
                    return Err(ValidationError::Amount {
                        field: "rule.price_minor",
                        max: MAX_MEAL_PRICE_MINOR,
                    });
                }
                Ok(())
            }
            PromoRule::HappyHour {
                weekdays,
                from,
                until,
                percent,
            } => {
                if let Some(d) = weekdays.iter().find(|d| !(1..=7).contains(*d)) {
                    return Err(ValidationError::Weekday { weekday: *d });
                }
                if from == until {
                    return Err(ValidationError::EndsBeforeStart {
                        field: "rule.until",
                    });
                }
                check_percent("rule.percent", *percent)
            }
            PromoRule::ShelfLife {
                within_hours,
                percent,
            } => {
                if *within_hours == 0 || *within_hours > MAX_MARKDOWN_HOURS {
                    return Err(ValidationError::NotBetweenOneAnd {
                        field: "rule.within_hours",
                        max: MAX_MARKDOWN_HOURS,
                    });
                }
                check_percent("rule.percent", *percent)
            }
        }
    }
}

impl CampaignSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_name("name", &self.name)?;
        check_window("ends", self.starts, self.ends)?;
        self.area.validate()?;
        self.target.validate()?;
        self.rule.validate()?;
        check_uses("budget.max_redemptions", self.budget.max_redemptions)?;
        if let Some(max) = self.budget.max_discount_minor {
            check_amount("budget.max_discount_minor", max)?;
        }
        Ok(())
    }
}

impl CouponSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        match &self.discount {
            CouponDiscount::PercentOff { percent } => check_percent("discount.percent", *percent)?,
            CouponDiscount::AmountOff { amount_minor } => {
                check_amount("discount.amount_minor", *amount_minor)?
            }
        }
        check_window("valid_until", self.valid_from, self.valid_until)?;
        check_uses("max_uses", self.max_uses)?;
        check_uses("max_uses_per_customer", self.max_uses_per_customer)?;
        check_uses("fleet_max_uses", self.fleet_max_uses)?;
        if let Some(min) = self.min_order_minor {
            check_amount("min_order_minor", min)?;
        }
        self.target.validate()
    }
}

impl SubsidySpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_name("sponsor", &self.sponsor)?;
        if self.fridges.is_empty() {
            return Err(ValidationError::Empty { field: "fridges" });
        }
        if self.fridges.len() > MAX_LIST_ITEMS {
            return Err(ValidationError::TooManyEntries {
                field: "fridges",
                max: MAX_LIST_ITEMS,
            });
        }
        check_percent("percent", self.percent)?;
        check_amount(
            "cap_per_customer_day_minor",
            self.cap_per_customer_day_minor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn campaign(rule: PromoRule) -> CampaignSpec {
        CampaignSpec {
            name: "lunch".into(),
            starts: at("2026-12-01T00:00"),
            ends: at("2026-12-31T00:00"),
            area: PromoArea::default(),
            target: PromoTarget::default(),
            rule,
            priority: 0,
            stacking: Stacking::Combinable,
            budget: Budget::default(),
        }
    }

    #[test]
    fn a_campaign_reads_as_the_api_documents_it() {
        let json = r#"{"name":"happy","starts":"2026-12-01T00:00:00","ends":"2026-12-31T00:00:00",
            "rule":{"kind":"happy_hour","weekdays":[1,2,3,4,5],"from":"15:00:00","until":"17:00:00","percent":20},
            "stacking":"exclusive","priority":5,"budget":{"max_redemptions":100}}"#;
        let spec: CampaignSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.stacking, Stacking::Exclusive);
        assert_eq!(spec.budget.max_redemptions, Some(100));
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn bad_campaigns_are_refused_with_the_field() {
        let mut spec = campaign(PromoRule::PercentOff { percent: 0 });
        assert_eq!(
            spec.validate(),
            Err(ValidationError::NotBetweenOneAnd {
                field: "rule.percent",
                max: 100
            })
        );
        spec.rule = PromoRule::PercentOff { percent: 10 };
        spec.ends = spec.starts;
        assert_eq!(
            spec.validate(),
            Err(ValidationError::EndsBeforeStart { field: "ends" })
        );
        let mut spec = campaign(PromoRule::AmountOff { amount_minor: -1 });
        assert!(spec.validate().is_err());
        spec.rule = PromoRule::PercentOff { percent: 10 };
        spec.area.cells.push("dr5a!".into());
        assert!(matches!(spec.validate(), Err(ValidationError::Cell { .. })));
    }

    fn rules() -> Vec<PromoRule> {
        vec![
            PromoRule::PercentOff { percent: 10 },
            PromoRule::AmountOff { amount_minor: 100 },
            PromoRule::FixedPrice { price_minor: 500 },
            PromoRule::HappyHour {
                weekdays: vec![1, 5],
                from: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
                until: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                percent: 20,
            },
            PromoRule::ShelfLife {
                within_hours: 6,
                percent: 50,
            },
        ]
    }

    /// The log stores campaign definitions with postcard, which cannot
    /// read JSON's `kind` tag: each rule must survive both encodings, and
    /// postcard must write its variant index (append-only, like events).
    #[test]
    fn every_rule_and_coupon_discount_survives_the_log_and_the_api() {
        for (index, rule) in rules().into_iter().enumerate() {
            let bytes = postcard::to_stdvec(&rule).unwrap();
            assert_eq!(bytes[0] as usize, index, "{rule:?}: variant index moved");
            assert_eq!(postcard::from_bytes::<PromoRule>(&bytes).unwrap(), rule);
            let json = serde_json::to_value(&rule).unwrap();
            assert_eq!(json["kind"], rule.kind());
            assert_eq!(serde_json::from_value::<PromoRule>(json).unwrap(), rule);
            let event = PromotionEvent::CampaignDefined {
                campaign_id: CampaignId::from_static("c"),
                spec: campaign(rule),
            };
            let bytes = postcard::to_stdvec(&event).unwrap();
            assert_eq!(
                postcard::from_bytes::<PromotionEvent>(&bytes).unwrap(),
                event
            );
        }
        for (index, discount) in [
            CouponDiscount::PercentOff { percent: 5 },
            CouponDiscount::AmountOff { amount_minor: 200 },
        ]
        .into_iter()
        .enumerate()
        {
            let bytes = postcard::to_stdvec(&discount).unwrap();
            assert_eq!(bytes[0] as usize, index);
            assert_eq!(
                postcard::from_bytes::<CouponDiscount>(&bytes).unwrap(),
                discount
            );
            let json = serde_json::to_string(&discount).unwrap();
            assert_eq!(
                serde_json::from_str::<CouponDiscount>(&json).unwrap(),
                discount
            );
        }
    }

    #[test]
    fn unknown_rule_fields_are_refused_in_json() {
        let bad = r#"{"kind":"percent_off","percent":10,"percnt":20}"#;
        assert!(serde_json::from_str::<PromoRule>(bad).is_err());
        assert!(serde_json::from_str::<PromoRule>(r#"{"kind":"bogo"}"#).is_err());
    }

    #[test]
    fn the_split_of_an_untouched_order_is_its_list_price() {
        let split = PriceSplit::list(vec![LinePrice {
            meal_id: MealId::from_static("m-1"),
            qty: 2,
            list_minor: 2000,
            discount_minor: 0,
        }]);
        assert!(split.check());
        assert!(split.is_list());
        assert_eq!(split.charged_minor, 2000);
    }

    #[test]
    fn a_split_that_does_not_add_up_fails_its_check() {
        let mut split = PriceSplit::list(vec![LinePrice {
            meal_id: MealId::from_static("m-1"),
            qty: 1,
            list_minor: 1000,
            discount_minor: 0,
        }]);
        split.subsidy = Some(SubsidyShare {
            subsidy_id: SubsidyId::from_static("acme"),
            amount_minor: 300,
        });
        assert!(!split.check());
        split.charged_minor = 700;
        assert!(split.check());
    }
}
