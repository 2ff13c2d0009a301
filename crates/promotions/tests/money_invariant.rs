//! The money invariant over arbitrary orders: whatever the basket,
//! campaigns (any rule, stacking, priority, budget, area and target),
//! coupon, sponsors and points, `price` either refuses the coupon or
//! returns a split where
//!
//!   list = charged + campaign discounts + coupon + subsidy + points,
//!
//! every part is >= 0, no line is discounted below zero, and no campaign
//! gives more in one order than its budget has left. Pure: the clock is a
//! value, so a failure shrinks to a replayable basket.

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, Utc};
use promotions::{
    live, price, remaining_budget_minor, Basket, BasketLine, CampaignOffer, CouponOffer,
    PointsRequest, SubsidyOffer, Usage, When,
};
use proptest::prelude::*;
use protocol::promotions::{
    Budget, CampaignSpec, CouponDiscount, CouponSpec, PromoArea, PromoRule, PromoTarget, Stacking,
    SubsidySpec,
};
use protocol::{CampaignId, CouponCode, FridgeId, KitchenId, MealId, SubsidyId};

/// (meal, kitchen, tags): two kitchens, overlapping tags.
const MEALS: [(&str, &str, &[&str]); 3] = [
    ("m-salad", "k-greens", &["vegan"]),
    ("m-curry", "k-spice", &["hot"]),
    ("m-oats", "k-greens", &["vegan", "sweet"]),
];
/// (fridge, geohash): neighbours sharing the cell `u33`.
const FRIDGES: [(&str, &str); 2] = [("f-lobby", "u33dc0"), ("f-gym", "u33e11")];

fn base() -> NaiveDateTime {
    NaiveDateTime::parse_from_str("2026-12-01T00:00", "%Y-%m-%dT%H:%M").unwrap()
}

fn area() -> impl Strategy<Value = PromoArea> {
    (0..5usize).prop_map(|k| {
        let fridge = |f: &'static str| PromoArea {
            fridges: vec![FridgeId::from_static(f)],
            cells: vec![],
        };
        let cell = |c: &str| PromoArea {
            fridges: vec![],
            cells: vec![c.to_string()],
        };
        match k {
            0 => PromoArea::default(),
            1 => fridge("f-lobby"),
            2 => fridge("f-gym"),
            3 => cell("u33"),
            _ => cell("u33e"),
        }
    })
}

fn target() -> impl Strategy<Value = PromoTarget> {
    (0..6usize).prop_map(|k| {
        let mut t = PromoTarget::default();
        match k {
            0 | 1 => {}
            2 => t.meals.push(MealId::from_static("m-curry")),
            3 => t.kitchens.push(KitchenId::from_static("k-greens")),
            4 => t.tags.push("vegan".into()),
            _ => t.tags.push("nothing-has-it".into()),
        }
        t
    })
}

fn rule() -> impl Strategy<Value = PromoRule> {
    prop_oneof![
        (1..=100u8).prop_map(|percent| PromoRule::PercentOff { percent }),
        (1..=1_500_000i64).prop_map(|amount_minor| PromoRule::AmountOff { amount_minor }),
        (0..=1_000_000i64).prop_map(|price_minor| PromoRule::FixedPrice { price_minor }),
        (
            prop::collection::vec(1..=7u8, 0..=3),
            0..24u32,
            0..24u32,
            1..=100u8
        )
            .prop_map(|(weekdays, from, until, percent)| PromoRule::HappyHour {
                weekdays,
                from: NaiveTime::from_hms_opt(from, 0, 0).unwrap(),
                until: NaiveTime::from_hms_opt(until, 30, 0).unwrap(),
                percent,
            }),
        (1..=72u32, 1..=100u8).prop_map(|(within_hours, percent)| PromoRule::ShelfLife {
            within_hours,
            percent
        }),
    ]
}

fn budget() -> impl Strategy<Value = (Budget, Usage)> {
    (
        prop::option::of(1..=5u32),
        prop::option::of(1..=3_000_000i64),
        0..=6u32,
        0..=3_000_000i64,
    )
        .prop_map(|(max_redemptions, max_discount_minor, redemptions, used)| {
            let budget = Budget {
                max_redemptions,
                max_discount_minor,
            };
            // Mostly below the budget, so budgets run out mid-order.
            let discount_minor = max_discount_minor.map_or(used, |m| used % (m + 500));
            let usage = Usage {
                redemptions,
                discount_minor,
            };
            (budget, usage)
        })
}

/// A campaign spec with its usage and whether it was ended.
fn campaign() -> impl Strategy<Value = (CampaignSpec, Usage, bool)> {
    (
        rule(),
        area(),
        target(),
        prop::bool::ANY,
        0..=3u16,
        budget(),
        -240..24i64,
        1..600i64,
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(rule, area, target, exclusive, priority, (budget, usage), start_h, len_h, ended)| {
                let starts = base() + Duration::hours(start_h + 240);
                let spec = CampaignSpec {
                    name: "c".into(),
                    starts,
                    ends: starts + Duration::hours(len_h),
                    area,
                    target,
                    rule,
                    priority,
                    stacking: if exclusive {
                        Stacking::Exclusive
                    } else {
                        Stacking::Combinable
                    },
                    budget,
                };
                (spec, usage, ended)
            },
        )
}

/// A coupon spec and its state.
fn coupon() -> impl Strategy<Value = (CouponSpec, CouponState)> {
    let discount = prop_oneof![
        (1..=100u8).prop_map(|percent| CouponDiscount::PercentOff { percent }),
        (1..=3_000_000i64).prop_map(|amount_minor| CouponDiscount::AmountOff { amount_minor }),
    ];
    (
        discount,
        -240..24i64,
        1..600i64,
        prop::option::of(1..=5u32),
        prop::option::of(1..=3u32),
        prop::option::of(1..=5_000_000i64),
        prop::bool::weighted(0.2),
        target(),
        (
            prop::bool::weighted(0.1),
            0..=5u32,
            0..=3u32,
            prop::bool::ANY,
        ),
    )
        .prop_map(
            |(
                discount,
                start_h,
                len_h,
                max_uses,
                per_customer,
                min_order,
                first,
                target,
                state,
            )| {
                let valid_from = base() + Duration::hours(start_h + 240);
                let spec = CouponSpec {
                    discount,
                    valid_from,
                    valid_until: valid_from + Duration::hours(len_h),
                    max_uses,
                    max_uses_per_customer: per_customer,
                    fleet_max_uses: None,
                    min_order_minor: min_order,
                    first_order_only: first,
                    target,
                };
                (spec, state)
            },
        )
}

/// A sponsor spec and what it paid today.
fn subsidy() -> impl Strategy<Value = (SubsidySpec, i64)> {
    (0..2usize, 1..=100u8, 1..=3_000_000i64, 0..=3_000_000i64).prop_map(
        |(fridge, percent, cap, used)| {
            let spec = SubsidySpec {
                sponsor: "Acme".into(),
                fridges: vec![FridgeId::from_static(FRIDGES[fridge].0)],
                percent,
                cap_per_customer_day_minor: cap,
            };
            (spec, used % (cap + 1000))
        },
    )
}

/// Offsets from now in hours: some past, some near, some far.
fn line(now: DateTime<Utc>) -> impl Strategy<Value = BasketLine> {
    (
        0..MEALS.len(),
        1..=20u32,
        1..=1_000_000i64,
        prop::collection::vec(-24..200i64, 0..=20),
    )
        .prop_map(move |(m, qty, unit_price_minor, offsets)| {
            let (meal, kitchen, tags) = MEALS[m];
            BasketLine {
                meal_id: MealId::from_static(meal),
                kitchen_id: KitchenId::from_static(kitchen),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                qty,
                unit_price_minor,
                best_before: offsets
                    .iter()
                    .take(qty as usize)
                    .map(|h| now + Duration::hours(*h))
                    .collect(),
            }
        })
}

/// A coupon's state: (withdrawn, uses in total, uses by this customer,
/// first order).
type CouponState = (bool, u32, u32, bool);

/// Everything an order's price depends on.
#[derive(Debug, Clone)]
struct Case {
    when: When,
    basket: Basket,
    campaigns: Vec<(CampaignId, CampaignSpec, Usage, bool)>,
    coupon: Option<(CouponCode, CouponSpec, CouponState)>,
    subsidies: Vec<(SubsidyId, SubsidySpec, i64)>,
    points: Option<PointsRequest>,
}

fn case() -> impl Strategy<Value = Case> {
    // Now: some minute of the second week of December, district at UTC+1.
    (0..7 * 24 * 60i64, 0..FRIDGES.len()).prop_flat_map(|(minute, fridge)| {
        let local = base() + Duration::days(7) + Duration::minutes(minute);
        let when = When {
            local,
            utc: (local - Duration::hours(1)).and_utc(),
        };
        (
            prop::collection::vec(line(when.utc), 1..=5),
            prop::collection::vec(campaign(), 0..=6),
            prop::option::of(coupon()),
            prop::collection::vec(subsidy(), 0..=2),
            prop::option::of((-5..=500_000i64, -1..=100i64)),
        )
            .prop_map(move |(lines, campaigns, coupon, subsidies, points)| {
                let n = campaigns.len();
                Case {
                    when,
                    basket: Basket {
                        fridge_id: FridgeId::from_static(FRIDGES[fridge].0),
                        fridge_cell: FRIDGES[fridge].1.to_string(),
                        lines,
                    },
                    // Ids run against input order, so sorting is exercised.
                    campaigns: campaigns
                        .into_iter()
                        .enumerate()
                        .map(|(i, (spec, usage, ended))| {
                            let id = CampaignId::parse(format!("c-{}", n - i)).unwrap();
                            (id, spec, usage, ended)
                        })
                        .collect(),
                    coupon: coupon
                        .map(|(spec, state)| (CouponCode::from_static("PROMO"), spec, state)),
                    subsidies: subsidies
                        .into_iter()
                        .enumerate()
                        .map(|(i, (spec, used))| {
                            (SubsidyId::parse(format!("s-{i}")).unwrap(), spec, used)
                        })
                        .collect(),
                    points: points.map(|(points, minor_per_point)| PointsRequest {
                        points,
                        minor_per_point,
                    }),
                }
            })
    })
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let offers: Vec<CampaignOffer<'_>> = case
        .campaigns
        .iter()
        .map(|(id, spec, usage, ended)| CampaignOffer {
            campaign_id: id,
            spec,
            usage: *usage,
            ended: *ended,
        })
        .collect();
    let coupon =
        case.coupon.as_ref().map(
            |(code, spec, (withdrawn, total, mine, first))| CouponOffer {
                code,
                spec,
                withdrawn: *withdrawn,
                uses_total: *total,
                uses_by_customer: *mine,
                first_order: *first,
            },
        );
    let subsidies: Vec<SubsidyOffer<'_>> = case
        .subsidies
        .iter()
        .map(|(id, spec, used)| SubsidyOffer {
            subsidy_id: id,
            spec,
            used_today_minor: *used,
        })
        .collect();
    let priced = |c: Option<&CouponOffer<'_>>| {
        price(
            &case.basket,
            &offers,
            c,
            &subsidies,
            case.points.as_ref(),
            &case.when,
        )
    };
    let split = match priced(coupon.as_ref()) {
        Err(refusal) => {
            prop_assert!(coupon.is_some(), "refused {refusal:?} without a coupon");
            // Refused only for the coupon: without it the order prices.
            prop_assert!(priced(None).is_ok());
            return Ok(());
        }
        Ok(split) => split,
    };
    prop_assert!(split.check(), "{split:?}");
    prop_assert_eq!(
        split.charged_minor
            + split.discount_minor()
            + split.subsidy_minor()
            + split.points_value_minor(),
        split.list_minor
    );
    prop_assert!(split.charged_minor >= 0);
    prop_assert_eq!(split.lines.len(), case.basket.lines.len());
    for (line, priced) in case.basket.lines.iter().zip(&split.lines) {
        prop_assert_eq!(
            priced.list_minor,
            line.unit_price_minor * i64::from(line.qty)
        );
        prop_assert!(0 <= priced.discount_minor && priced.discount_minor <= priced.list_minor);
    }
    for pair in split.campaigns.windows(2) {
        prop_assert!(pair[0].campaign_id < pair[1].campaign_id, "sorted, unique");
    }
    for given in &split.campaigns {
        let offer = offers.iter().find(|o| *o.campaign_id == given.campaign_id);
        let Some(offer) = offer else {
            return Err(TestCaseError::fail("a campaign that was not offered"));
        };
        prop_assert!(given.discount_minor > 0);
        prop_assert!(live(offer, &case.when));
        if let Some(left) = remaining_budget_minor(offer) {
            prop_assert!(given.discount_minor <= left, "{given:?} over {left}");
        }
    }
    prop_assert!(split.coupon.as_ref().is_none_or(|c| c.discount_minor > 0));
    prop_assert!(split.subsidy.as_ref().is_none_or(|s| s.amount_minor > 0));
    prop_assert!(split.points.as_ref().is_none_or(|p| p.value_minor > 0));
    // Pure: the same inputs price the same.
    prop_assert_eq!(priced(coupon.as_ref()), Ok(split));
    Ok(())
}

proptest! {
    // 10,000 orders in every `cargo test`; `PROPTEST_CASES` overrides.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_priced_order_adds_up_to_its_list_price(case in case()) {
        check_case(&case)?;
    }
}
