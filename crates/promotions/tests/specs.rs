//! The pricing contract of the crate docs, rule by rule, as given/when/then
//! specs with exact minor-unit results.
//!
//! The district is UTC+1: local noon is 11:00 UTC, so a test that mixes
//! happy hours (local) and best-before dates (UTC) would notice a mix-up.
//! "Now" is Friday 2026-12-04 12:00 local unless a spec says otherwise.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Weekday};
use promotions::{
    display_price, live, points_earned, price, rule_discount_minor, Basket, BasketLine,
    CampaignOffer, CouponOffer, CouponRefusal, PointsRequest, SubsidyOffer, Usage, When,
};
use protocol::promotions::{
    Budget, CampaignSpec, CouponDiscount, CouponSpec, PriceSplit, PromoArea, PromoRule,
    PromoTarget, Stacking, SubsidySpec,
};
use protocol::{CampaignId, CouponCode, FridgeId, KitchenId, MealId, SubsidyId};

const NOW: &str = "2026-12-04T12:00";
const FRIDGE: &str = "f-lobby";
const CELL: &str = "u33dc0";

// ---- fixtures ------------------------------------------------------------

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

/// The pricing moment at a district-local time (UTC+1).
fn when(local: &str) -> When {
    let local = at(local);
    When {
        local,
        utc: (local - Duration::hours(1)).and_utc(),
    }
}

fn now() -> When {
    when(NOW)
}

/// A best-before `hours` after now.
fn in_hours(hours: i64) -> DateTime<chrono::Utc> {
    now().utc + Duration::hours(hours)
}

/// The meals of the fixture: (meal, kitchen, tags).
fn meal(name: &str) -> (MealId, KitchenId, Vec<String>) {
    match name {
        "salad" => (
            MealId::from_static("m-salad"),
            KitchenId::from_static("k-greens"),
            vec!["vegan".to_string()],
        ),
        "curry" => (
            MealId::from_static("m-curry"),
            KitchenId::from_static("k-spice"),
            vec!["hot".to_string()],
        ),
        _ => panic!("no meal {name}"),
    }
}

fn line(name: &str, qty: u32, unit_price_minor: i64, best_before: &[i64]) -> BasketLine {
    let (meal_id, kitchen_id, tags) = meal(name);
    BasketLine {
        meal_id,
        kitchen_id,
        tags,
        qty,
        unit_price_minor,
        best_before: best_before.iter().map(|h| in_hours(*h)).collect(),
    }
}

fn basket(lines: Vec<BasketLine>) -> Basket {
    Basket {
        fridge_id: FridgeId::from_static(FRIDGE),
        fridge_cell: CELL.to_string(),
        lines,
    }
}

/// A campaign as the district holds it (the offer borrows from it).
#[derive(Clone)]
struct Campaign {
    id: CampaignId,
    spec: CampaignSpec,
    usage: Usage,
    ended: bool,
}

impl Campaign {
    fn new(id: &'static str, rule: PromoRule) -> Campaign {
        Campaign {
            id: CampaignId::from_static(id),
            spec: CampaignSpec {
                name: id.to_string(),
                starts: at("2026-12-01T00:00"),
                ends: at("2026-12-31T00:00"),
                area: PromoArea::default(),
                target: PromoTarget::default(),
                rule,
                priority: 0,
                stacking: Stacking::Combinable,
                budget: Budget::default(),
            },
            usage: Usage::default(),
            ended: false,
        }
    }

    fn priority(mut self, priority: u16) -> Campaign {
        self.spec.priority = priority;
        self
    }

    fn exclusive(mut self) -> Campaign {
        self.spec.stacking = Stacking::Exclusive;
        self
    }

    fn stacking(mut self, stacking: Stacking) -> Campaign {
        self.spec.stacking = stacking;
        self
    }

    fn offer(&self) -> CampaignOffer<'_> {
        CampaignOffer {
            campaign_id: &self.id,
            spec: &self.spec,
            usage: self.usage,
            ended: self.ended,
        }
    }
}

fn offers(campaigns: &[Campaign]) -> Vec<CampaignOffer<'_>> {
    campaigns.iter().map(Campaign::offer).collect()
}

/// Prices with campaigns only; every split must keep the money invariant.
fn with_campaigns(basket: &Basket, campaigns: &[Campaign], when: &When) -> PriceSplit {
    let split = price(basket, &offers(campaigns), None, &[], None, when).unwrap();
    assert!(split.check(), "{split:?}");
    split
}

/// `(campaign id, discount)` of a split, by id.
fn given(split: &PriceSplit) -> Vec<(&str, i64)> {
    split
        .campaigns
        .iter()
        .map(|c| (c.campaign_id.as_str(), c.discount_minor))
        .collect()
}

// The five rule kinds of the pair table, each on a list price of 1000:
// P takes 100, A 150, F 300, H 200 (now is inside its window), S 250 (the
// unit's best-before is 5 h away).
fn rule(kind: char) -> PromoRule {
    match kind {
        'P' => PromoRule::PercentOff { percent: 10 },
        'A' => PromoRule::AmountOff { amount_minor: 150 },
        'F' => PromoRule::FixedPrice { price_minor: 700 },
        'H' => PromoRule::HappyHour {
            weekdays: vec![],
            from: hm(11, 0),
            until: hm(14, 0),
            percent: 20,
        },
        'S' => PromoRule::ShelfLife {
            within_hours: 24,
            percent: 25,
        },
        _ => panic!("no rule kind {kind}"),
    }
}

fn one_unit_at_1000() -> Basket {
    basket(vec![line("salad", 1, 1000, &[5])])
}

// ---- rule 2: what each rule kind takes off ---------------------------------

#[test]
fn each_rule_kind_alone_takes_its_documented_discount() {
    // Given one salad at 999 whose best-before is 5 h away, at noon
    let b = basket(vec![line("salad", 1, 999, &[5])]);
    let cases = [
        ('P', 99),  // floor(999 × 10%) = 99.9 → 99
        ('A', 150), // min(150, 999)
        ('F', 299), // 999 − 700
        ('H', 199), // floor(999 × 20%) = 199.8 → 199
        ('S', 249), // floor(999 × 25%) = 249.75 → 249
    ];
    for (kind, expected) in cases {
        // When only that campaign runs
        let split = with_campaigns(&b, &[Campaign::new("c-one", rule(kind))], &now());
        // Then the line gets exactly its discount
        assert_eq!(split.lines[0].discount_minor, expected, "{kind}");
        assert_eq!(split.charged_minor, 999 - expected, "{kind}");
        assert_eq!(given(&split), vec![("c-one", expected)], "{kind}");
    }
}

#[test]
fn a_rule_never_takes_more_than_the_price_nor_less_than_nothing() {
    let amount = PromoRule::AmountOff { amount_minor: 150 };
    assert_eq!(rule_discount_minor(&amount, 100), 100);
    let fixed = PromoRule::FixedPrice { price_minor: 700 };
    assert_eq!(rule_discount_minor(&fixed, 500), 0, "only if lower");
    let free = PromoRule::FixedPrice { price_minor: 0 };
    assert_eq!(rule_discount_minor(&free, 500), 500);
    let all = PromoRule::PercentOff { percent: 100 };
    assert_eq!(rule_discount_minor(&all, 777), 777);
    assert_eq!(rule_discount_minor(&all, 0), 0);
}

// ---- rule 3: every pair of rule kinds under every stacking ---------------

/// `(X, Y, X's part, Y's part when both combine with X first, the better
/// single one and its discount)`, on one unit at 1000. Hand-computed.
const PAIRS: [(char, char, i64, i64, char, i64); 20] = [
    ('P', 'A', 100, 150, 'y', 150), // 1000 −100 → 900; A: 150
    ('A', 'P', 150, 85, 'x', 150),  // 850 × 10% = 85
    ('P', 'F', 100, 200, 'y', 300), // 900 − 700
    ('F', 'P', 300, 70, 'x', 300),  // 700 × 10%
    ('P', 'H', 100, 180, 'y', 200), // 900 × 20%
    ('H', 'P', 200, 80, 'x', 200),  // 800 × 10%
    ('P', 'S', 100, 225, 'y', 250), // 900 × 25%
    ('S', 'P', 250, 75, 'x', 250),  // 750 × 10%
    ('A', 'F', 150, 150, 'y', 300), // 850 − 700
    ('F', 'A', 300, 150, 'x', 300), // min(150, 700)
    ('A', 'H', 150, 170, 'y', 200), // 850 × 20%
    ('H', 'A', 200, 150, 'x', 200), // min(150, 800)
    ('A', 'S', 150, 212, 'y', 250), // 850 × 25% = 212.5
    ('S', 'A', 250, 150, 'x', 250), // min(150, 750)
    ('F', 'H', 300, 140, 'x', 300), // 700 × 20%
    ('H', 'F', 200, 100, 'y', 300), // 800 − 700
    ('F', 'S', 300, 175, 'x', 300), // 700 × 25%
    ('S', 'F', 250, 50, 'y', 300),  // 750 − 700
    ('H', 'S', 200, 200, 'y', 250), // 800 × 25%
    ('S', 'H', 250, 150, 'x', 250), // 750 × 20%
];

fn pair(x: char, y: char, sx: Stacking, sy: Stacking) -> PriceSplit {
    let campaigns = [
        Campaign::new("c-x", rule(x)).priority(2).stacking(sx),
        Campaign::new("c-y", rule(y)).priority(1).stacking(sy),
    ];
    with_campaigns(&one_unit_at_1000(), &campaigns, &now())
}

#[test]
fn two_combinables_chain_in_priority_order() {
    for (x, y, x_part, y_part, _, _) in PAIRS {
        // Given X (priority 2) and Y (priority 1), both combinable
        // When one unit at 1000 is priced
        let split = pair(x, y, Stacking::Combinable, Stacking::Combinable);
        // Then X takes its part of the list price, Y its part of the rest
        assert_eq!(
            given(&split),
            vec![("c-x", x_part), ("c-y", y_part)],
            "{x}{y}"
        );
        assert_eq!(split.charged_minor, 1000 - x_part - y_part, "{x}{y}");
    }
}

#[test]
fn one_exclusive_and_one_combinable_give_the_better_of_the_two() {
    use Stacking::{Combinable as C, Exclusive as E};
    for (x, y, _, _, winner, best) in PAIRS {
        for (sx, sy) in [(E, C), (C, E)] {
            // Given X and Y, one of them exclusive
            // When one unit at 1000 is priced
            let split = pair(x, y, sx, sy);
            // Then the one that takes more is the only one applied
            let id = if winner == 'x' { "c-x" } else { "c-y" };
            assert_eq!(given(&split), vec![(id, best)], "{x}{y} {sx:?}/{sy:?}");
            assert_eq!(split.charged_minor, 1000 - best);
        }
    }
}

#[test]
fn two_exclusives_give_the_best_one() {
    for (x, y, _, _, winner, best) in PAIRS {
        let split = pair(x, y, Stacking::Exclusive, Stacking::Exclusive);
        let id = if winner == 'x' { "c-x" } else { "c-y" };
        assert_eq!(given(&split), vec![(id, best)], "{x}{y}");
    }
}

#[test]
fn two_campaigns_of_the_same_kind_stack_or_tie_as_documented() {
    use Stacking::{Combinable as C, Exclusive as E};
    // (kind, X's part, Y's part chained): the second applies to the rest.
    let same = [
        ('P', 100, 90),  // 900 × 10%
        ('A', 150, 150), // min(150, 850)
        ('F', 300, 0),   // 700 is not above the fixed price
        ('H', 200, 160), // 800 × 20%
        ('S', 250, 187), // 750 × 25% = 187.5
    ];
    for (k, x_part, y_part) in same {
        let chained = pair(k, k, C, C);
        let mut expected = vec![("c-x", x_part)];
        if y_part > 0 {
            expected.push(("c-y", y_part));
        }
        assert_eq!(given(&chained), expected, "{k}{k} chained");
        // An exclusive that only ties the chain loses to it.
        assert_eq!(given(&pair(k, k, E, C)), vec![("c-y", x_part)], "{k} E/C");
        assert_eq!(given(&pair(k, k, C, E)), vec![("c-x", x_part)], "{k} C/E");
        // Equal exclusives: the higher priority.
        assert_eq!(given(&pair(k, k, E, E)), vec![("c-x", x_part)], "{k} E/E");
    }
}

#[test]
fn a_chain_that_ties_the_best_exclusive_wins() {
    // Given P (100) and A (150) combinable, S (250) exclusive
    let campaigns = [
        Campaign::new("c-p", rule('P')).priority(2),
        Campaign::new("c-a", rule('A')).priority(1),
        Campaign::new("c-s", rule('S')).exclusive(),
    ];
    // When one unit at 1000 is priced
    let split = with_campaigns(&one_unit_at_1000(), &campaigns, &now());
    // Then the chain (100 + 150 = 250) wins the tie with S (250)
    assert_eq!(given(&split), vec![("c-a", 150), ("c-p", 100)]);
}

#[test]
fn equal_exclusives_of_equal_priority_go_to_the_smaller_id() {
    let campaigns = [
        Campaign::new("c-b", rule('P')).exclusive(),
        Campaign::new("c-a", rule('P')).exclusive(),
    ];
    let split = with_campaigns(&one_unit_at_1000(), &campaigns, &now());
    assert_eq!(given(&split), vec![("c-a", 100)]);
}

#[test]
fn equal_priorities_chain_by_campaign_id() {
    // Given A (150 off) as c-a and F (at 700) as c-b, same priority
    let campaigns = [
        Campaign::new("c-b", rule('F')),
        Campaign::new("c-a", rule('A')),
    ];
    let split = with_campaigns(&one_unit_at_1000(), &campaigns, &now());
    // Then c-a goes first: 150, then 850 − 700 = 150
    assert_eq!(given(&split), vec![("c-a", 150), ("c-b", 150)]);
}

// ---- rule 1: conditions --------------------------------------------------

fn friday_night(weekdays: Vec<u8>) -> Campaign {
    Campaign::new(
        "c-night",
        PromoRule::HappyHour {
            weekdays,
            from: hm(22, 0),
            until: hm(2, 0),
            percent: 20,
        },
    )
}

#[test]
fn a_happy_hour_applies_inside_its_window_only() {
    // Given a weekday 11:00–14:00 happy hour of 20%
    let c = Campaign::new(
        "c-lunch",
        PromoRule::HappyHour {
            weekdays: vec![1, 2, 3, 4, 5],
            from: hm(11, 0),
            until: hm(14, 0),
            percent: 20,
        },
    );
    let b = basket(vec![line("salad", 2, 1000, &[])]);
    assert_eq!(at(NOW).weekday(), Weekday::Fri);
    let discount =
        |t: &str| with_campaigns(&b, std::slice::from_ref(&c), &when(t)).lines[0].discount_minor;
    // Then inside (start included) 20% of both units, outside nothing
    assert_eq!(discount("2026-12-04T11:00"), 400);
    assert_eq!(discount("2026-12-04T13:59"), 400);
    assert_eq!(discount("2026-12-04T14:00"), 0, "until is excluded");
    assert_eq!(discount("2026-12-04T10:59"), 0);
    assert_eq!(discount("2026-12-05T12:00"), 0, "Saturday is not listed");
}

#[test]
fn a_happy_hour_spanning_midnight_belongs_to_the_day_it_started() {
    // Given a Friday 22:00–02:00 happy hour of 20%
    let friday = friday_night(vec![5]);
    let b = basket(vec![line("curry", 1, 1000, &[])]);
    let discount = |c: &Campaign, t: &str| {
        with_campaigns(&b, std::slice::from_ref(c), &when(t)).lines[0].discount_minor
    };
    // Then Friday 22:00 and Saturday 01:00 are in it
    assert_eq!(discount(&friday, "2026-12-04T22:00"), 200);
    assert_eq!(discount(&friday, "2026-12-05T01:59"), 200);
    // And Saturday 02:00, Friday 01:00 (Thursday's night) and Saturday
    // 23:00 are not
    assert_eq!(discount(&friday, "2026-12-05T02:00"), 0);
    assert_eq!(discount(&friday, "2026-12-04T01:00"), 0);
    assert_eq!(discount(&friday, "2026-12-05T23:00"), 0);
    // And a Saturday-only window does not apply at Saturday 01:00
    let saturday = friday_night(vec![6]);
    assert_eq!(discount(&saturday, "2026-12-05T01:00"), 0);
    assert_eq!(discount(&saturday, "2026-12-05T23:30"), 200);
}

#[test]
fn a_shelf_life_markdown_reaches_only_the_units_near_their_best_before() {
    // Given a 25% markdown within 24 h, and three salads at 1000: one
    // best before in 5 h, two in 72 h
    let c = Campaign::new(
        "c-soon",
        PromoRule::ShelfLife {
            within_hours: 24,
            percent: 25,
        },
    );
    let b = basket(vec![line("salad", 3, 1000, &[72, 5, 72])]);
    // When priced
    let split = with_campaigns(&b, std::slice::from_ref(&c), &now());
    // Then only the near unit is marked down
    assert_eq!(split.lines[0].discount_minor, 250);
    assert_eq!(split.charged_minor, 2750);

    // Given the same line where only one unit's best-before is known
    let b = basket(vec![line("salad", 3, 1000, &[5])]);
    assert_eq!(
        with_campaigns(&b, std::slice::from_ref(&c), &now()).charged_minor,
        2750
    );

    // Given units exactly 24 h away, and one already past
    let b = basket(vec![line("salad", 2, 1000, &[24, 0])]);
    let split = with_campaigns(&b, &[c], &now());
    // Then the window includes 24 h and a past best-before gets nothing
    assert_eq!(split.lines[0].discount_minor, 250);
}

#[test]
fn an_area_matches_by_fridge_or_by_geohash_cell() {
    let b = basket(vec![line("salad", 1, 1000, &[])]);
    let cases: [(&[&'static str], &[&str], i64); 5] = [
        (&[], &[], 100),            // whole district
        (&[FRIDGE], &[], 100),      // the fridge is listed
        (&["f-gym"], &[], 0),       // another fridge
        (&[], &["u33"], 100),       // the fridge's cell starts with it
        (&["f-gym"], &["u34d"], 0), // neither
    ];
    for (fridges, cells, expected) in cases {
        let mut c = Campaign::new("c-area", rule('P'));
        c.spec.area = PromoArea {
            fridges: fridges.iter().copied().map(FridgeId::from_static).collect(),
            cells: cells.iter().map(|c| c.to_string()).collect(),
        };
        let split = with_campaigns(&b, &[c], &now());
        assert_eq!(
            split.lines[0].discount_minor, expected,
            "{fridges:?} {cells:?}"
        );
    }
}

#[test]
fn a_target_matches_by_meal_kitchen_or_tag() {
    // Given a salad (k-greens, vegan) and a curry (k-spice, hot) at 1000
    let b = basket(vec![
        line("salad", 1, 1000, &[]),
        line("curry", 1, 1000, &[]),
    ]);
    let targets = [
        (PromoTarget::default(), [100, 100]),
        (
            PromoTarget {
                meals: vec![MealId::from_static("m-salad")],
                ..PromoTarget::default()
            },
            [100, 0],
        ),
        (
            PromoTarget {
                kitchens: vec![KitchenId::from_static("k-spice")],
                ..PromoTarget::default()
            },
            [0, 100],
        ),
        (
            PromoTarget {
                tags: vec!["vegan".into(), "sweet".into()],
                ..PromoTarget::default()
            },
            [100, 0],
        ),
    ];
    for (target, expected) in targets {
        let mut c = Campaign::new("c-target", rule('P'));
        c.spec.target = target.clone();
        let split = with_campaigns(&b, &[c], &now());
        let got = [split.lines[0].discount_minor, split.lines[1].discount_minor];
        assert_eq!(got, expected, "{target:?}");
    }
}

#[test]
fn a_campaign_is_live_only_in_its_time_frame_and_until_ended() {
    let mut c = Campaign::new("c-live", rule('P'));
    assert!(
        live(&c.offer(), &when("2026-12-01T00:00")),
        "start included"
    );
    assert!(!live(&c.offer(), &when("2026-11-30T23:59")));
    assert!(!live(&c.offer(), &when("2026-12-31T00:00")), "end excluded");
    // A happy hour's window is not part of being live.
    let night = friday_night(vec![5]);
    assert!(live(&night.offer(), &now()));
    c.ended = true;
    assert!(!live(&c.offer(), &now()));
    let split = with_campaigns(&one_unit_at_1000(), &[c], &now());
    assert!(split.is_list());
}

// ---- rule 4: budgets -----------------------------------------------------

#[test]
fn a_campaign_that_reached_its_redemptions_gives_nothing() {
    // Given a campaign limited to 5 orders
    let mut c = Campaign::new("c-five", rule('P'));
    c.spec.budget.max_redemptions = Some(5);
    // When 4 orders had it, then it still applies
    c.usage.redemptions = 4;
    assert!(live(&c.offer(), &now()));
    let split = with_campaigns(&one_unit_at_1000(), std::slice::from_ref(&c), &now());
    assert_eq!(given(&split), vec![("c-five", 100)]);
    // When 5 orders had it, then it is over
    c.usage.redemptions = 5;
    assert!(!live(&c.offer(), &now()));
    assert!(with_campaigns(&one_unit_at_1000(), &[c], &now()).is_list());
}

#[test]
fn a_partly_used_discount_budget_runs_out_mid_order() {
    // Given 300 off per unit, a budget of 1000 of which 200 is used
    let mut c = Campaign::new("c-budget", PromoRule::AmountOff { amount_minor: 300 });
    c.spec.budget.max_discount_minor = Some(1000);
    c.usage.discount_minor = 200;
    // When a line of 2 and a line of 2 are priced
    let b = basket(vec![
        line("salad", 2, 1000, &[]),
        line("curry", 2, 1000, &[]),
    ]);
    let split = with_campaigns(&b, std::slice::from_ref(&c), &now());
    // Then the units get 300, 300 | 200, 0: the 800 left, in line order
    assert_eq!(split.lines[0].discount_minor, 600);
    assert_eq!(split.lines[1].discount_minor, 200);
    assert_eq!(given(&split), vec![("c-budget", 800)]);
    // And a spent budget ends the campaign
    c.usage.discount_minor = 1000;
    assert!(!live(&c.offer(), &now()));
}

#[test]
fn chain_and_exclusive_are_compared_on_budget_capped_figures() {
    // Given a 50% exclusive with 700 left and a 10% combinable
    let mut half = Campaign::new("c-half", PromoRule::PercentOff { percent: 50 }).exclusive();
    half.spec.budget.max_discount_minor = Some(1000);
    half.usage.discount_minor = 300;
    let tenth = Campaign::new("c-tenth", rule('P'));
    // When three units at 1000 are priced
    let b = basket(vec![line("salad", 3, 1000, &[])]);
    let split = with_campaigns(&b, &[half.clone(), tenth.clone()], &now());
    // Then unit 1 takes 500 (exclusive), unit 2 the 200 left (exclusive,
    // still above the chain's 100), unit 3 the chain's 100
    assert_eq!(given(&split), vec![("c-half", 700), ("c-tenth", 100)]);
    assert_eq!(split.charged_minor, 2200);

    // Given only 50 left of the exclusive: the chain's 100 is better
    half.usage.discount_minor = 950;
    let split = with_campaigns(&one_unit_at_1000(), &[half, tenth], &now());
    assert_eq!(given(&split), vec![("c-tenth", 100)]);
}

// ---- rule 5: coupons -----------------------------------------------------

fn coupon_spec(discount: CouponDiscount) -> CouponSpec {
    CouponSpec {
        discount,
        valid_from: at("2026-12-01T00:00"),
        valid_until: at("2026-12-08T00:00"),
        max_uses: None,
        max_uses_per_customer: None,
        fleet_max_uses: None,
        min_order_minor: None,
        first_order_only: false,
        target: PromoTarget::default(),
    }
}

fn ten_percent() -> CouponSpec {
    coupon_spec(CouponDiscount::PercentOff { percent: 10 })
}

fn code() -> CouponCode {
    CouponCode::from_static("WELCOME10")
}

fn offer<'a>(code: &'a CouponCode, spec: &'a CouponSpec) -> CouponOffer<'a> {
    CouponOffer {
        code,
        spec,
        withdrawn: false,
        uses_total: 0,
        uses_by_customer: 0,
        first_order: true,
    }
}

/// Prices a salad and a curry (1200 each) with `campaigns` and a coupon.
fn with_coupon(
    campaigns: &[Campaign],
    coupon: &CouponOffer<'_>,
    when: &When,
) -> Result<PriceSplit, CouponRefusal> {
    let b = basket(vec![
        line("salad", 1, 1200, &[]),
        line("curry", 1, 1200, &[]),
    ]);
    let result = price(&b, &offers(campaigns), Some(coupon), &[], None, when);
    if let Ok(split) = &result {
        assert!(split.check(), "{split:?}");
    }
    result
}

#[test]
fn every_coupon_refusal_has_its_code() {
    let code = code();
    let base = ten_percent();
    let refused = |o: &CouponOffer<'_>, w: &When| with_coupon(&[], o, w).unwrap_err().code();
    // Withdrawn
    let mut o = offer(&code, &base);
    o.withdrawn = true;
    assert_eq!(refused(&o, &now()), "withdrawn");
    // Before valid_from, and at valid_until (excluded)
    let o = offer(&code, &base);
    assert_eq!(refused(&o, &when("2026-11-30T23:59")), "not_yet_valid");
    assert_eq!(refused(&o, &when("2026-12-08T00:00")), "expired");
    // First order only, for a customer who ordered before
    let mut first = ten_percent();
    first.first_order_only = true;
    let mut o = offer(&code, &first);
    o.first_order = false;
    assert_eq!(refused(&o, &now()), "first_order_only");
    // Used up in total, or by this customer
    let mut limited = ten_percent();
    limited.max_uses = Some(100);
    limited.max_uses_per_customer = Some(1);
    let mut o = offer(&code, &limited);
    o.uses_total = 100;
    assert_eq!(refused(&o, &now()), "limit_reached");
    o.uses_total = 3;
    o.uses_by_customer = 1;
    assert_eq!(refused(&o, &now()), "limit_reached");
    // For meals not in the order
    let mut sweets = ten_percent();
    sweets.target.tags = vec!["sweet".into()];
    assert_eq!(refused(&offer(&code, &sweets), &now()), "not_applicable");
    // An order below the minimum after campaigns (list 2400, 300 off)
    let mut minimum = ten_percent();
    minimum.min_order_minor = Some(2200);
    let c = [Campaign::new(
        "c-a",
        PromoRule::AmountOff { amount_minor: 150 },
    )];
    let err = with_coupon(&c, &offer(&code, &minimum), &now()).unwrap_err();
    assert_eq!(
        err,
        CouponRefusal::MinimumNotMet {
            min_order_minor: 2200
        }
    );
    assert_eq!(err.code(), "minimum_not_met");
}

#[test]
fn coupon_refusals_come_in_contract_order() {
    let code = code();
    // Given a coupon that is withdrawn, expired, first-order-only and used up
    let mut spec = ten_percent();
    spec.first_order_only = true;
    spec.max_uses = Some(1);
    let mut o = offer(&code, &spec);
    o.withdrawn = true;
    o.first_order = false;
    o.uses_total = 1;
    let late = when("2026-12-09T12:00");
    // Then each reason shows only once those before it are gone
    assert_eq!(with_coupon(&[], &o, &late), Err(CouponRefusal::Withdrawn));
    o.withdrawn = false;
    assert_eq!(with_coupon(&[], &o, &late), Err(CouponRefusal::Expired));
    assert_eq!(
        with_coupon(&[], &o, &now()),
        Err(CouponRefusal::FirstOrderOnly)
    );
    o.first_order = true;
    assert_eq!(
        with_coupon(&[], &o, &now()),
        Err(CouponRefusal::LimitReached)
    );
}

#[test]
fn a_coupon_with_nothing_left_to_take_off_is_not_applicable() {
    // Given a coupon for the curry, and a campaign making the curry free
    let code = code();
    let mut spec = ten_percent();
    spec.target.kitchens = vec![KitchenId::from_static("k-spice")];
    let mut free = Campaign::new("c-free", PromoRule::FixedPrice { price_minor: 0 });
    free.spec.target.kitchens = vec![KitchenId::from_static("k-spice")];
    // Then the coupon is refused rather than used for nothing
    let result = with_coupon(&[free], &offer(&code, &spec), &now());
    assert_eq!(result, Err(CouponRefusal::NotApplicable));
}

#[test]
fn a_percent_coupon_takes_its_share_of_the_eligible_lines_after_campaigns() {
    // Given 10% off vegan meals, and 20% off everything by campaign
    let code = code();
    let mut spec = ten_percent();
    spec.target.tags = vec!["vegan".into()];
    let c = [Campaign::new("c-20", PromoRule::PercentOff { percent: 20 })];
    // When a salad and a curry (1200 each) are priced
    let split = with_coupon(&c, &offer(&code, &spec), &now()).unwrap();
    // Then campaigns take 240 + 240, the coupon 10% of the salad's 960
    assert_eq!(given(&split), vec![("c-20", 480)]);
    let used = split.coupon.as_ref().unwrap();
    assert_eq!((used.code.as_str(), used.discount_minor), ("WELCOME10", 96));
    assert_eq!(split.charged_minor, 2400 - 480 - 96);
}

#[test]
fn an_amount_coupon_takes_at_most_the_eligible_amount() {
    let code = code();
    // Given 500 off the curry only, the curry 1200 less a fixed price of 300
    let mut spec = coupon_spec(CouponDiscount::AmountOff { amount_minor: 500 });
    spec.target.meals = vec![MealId::from_static("m-curry")];
    let mut fixed = Campaign::new("c-fixed", PromoRule::FixedPrice { price_minor: 300 });
    fixed.spec.target = spec.target.clone();
    let split = with_coupon(&[fixed], &offer(&code, &spec), &now()).unwrap();
    // Then the coupon takes the curry's remaining 300, not 500
    assert_eq!(split.coupon.as_ref().unwrap().discount_minor, 300);
    assert_eq!(split.charged_minor, 1200);
    // And with nothing capping it, the full 500
    let split = with_coupon(&[], &offer(&code, &spec), &now()).unwrap();
    assert_eq!(split.coupon.as_ref().unwrap().discount_minor, 500);
    assert_eq!(split.charged_minor, 1900);
}

// ---- rules 6 and 7: subsidy and points -----------------------------------

fn sponsor(fridge: &'static str, percent: u8, cap: i64) -> SubsidySpec {
    SubsidySpec {
        sponsor: "Acme".into(),
        fridges: vec![FridgeId::from_static(fridge)],
        percent,
        cap_per_customer_day_minor: cap,
    }
}

fn two_salads() -> Basket {
    basket(vec![line("salad", 2, 1000, &[])])
}

#[test]
fn a_subsidy_pays_its_share_up_to_what_its_daily_cap_has_left() {
    let acme = SubsidyId::from_static("acme");
    let spec = sponsor(FRIDGE, 50, 800);
    let split_with = |used: i64| {
        let offer = SubsidyOffer {
            subsidy_id: &acme,
            spec: &spec,
            used_today_minor: used,
        };
        let split = price(&two_salads(), &[], None, &[offer], None, &now()).unwrap();
        assert!(split.check());
        split
    };
    // Given 50% of 2000 capped at 800 a day: with nothing paid today, 800
    assert_eq!(split_with(0).subsidy_minor(), 800);
    // With 500 paid today: the 300 left
    let split = split_with(500);
    assert_eq!(split.subsidy.as_ref().unwrap().amount_minor, 300);
    assert_eq!(split.charged_minor, 1700);
    // With the cap used up (or overrun): no subsidy at all
    assert_eq!(split_with(800).subsidy, None);
    assert_eq!(split_with(900).subsidy, None);
}

#[test]
fn the_sponsor_paying_most_at_this_fridge_pays() {
    let (a, b, c) = (
        SubsidyId::from_static("a-corp"),
        SubsidyId::from_static("b-corp"),
        SubsidyId::from_static("c-corp"),
    );
    let elsewhere = sponsor("f-gym", 100, 10_000);
    let thirty = sponsor(FRIDGE, 30, 10_000);
    let capped = sponsor(FRIDGE, 90, 600);
    let offers = [
        SubsidyOffer {
            subsidy_id: &a,
            spec: &elsewhere,
            used_today_minor: 0,
        },
        SubsidyOffer {
            subsidy_id: &c,
            spec: &thirty,
            used_today_minor: 0,
        },
        SubsidyOffer {
            subsidy_id: &b,
            spec: &capped,
            used_today_minor: 0,
        },
    ];
    // Given a-corp at another fridge, c-corp 30% (600), b-corp capped at 600
    let split = price(&two_salads(), &[], None, &offers, None, &now()).unwrap();
    // Then 600 is paid, by the smaller id of the tie
    let share = split.subsidy.unwrap();
    assert_eq!(
        (share.subsidy_id.as_str(), share.amount_minor),
        ("b-corp", 600)
    );
}

#[test]
fn points_spend_whole_points_up_to_what_remains() {
    let price_with = |request: PointsRequest| {
        let split = price(&two_salads(), &[], None, &[], Some(&request), &now()).unwrap();
        assert!(split.check());
        split
    };
    // Given 2000 to pay and 10 minor units a point: 50 points pay 500
    let split = price_with(PointsRequest {
        points: 50,
        minor_per_point: 10,
    });
    let spend = split.points.as_ref().unwrap();
    assert_eq!((spend.points, spend.value_minor), (50, 500));
    assert_eq!(split.charged_minor, 1500);
    // Asking for more than the order is worth spends only what it is worth
    let split = price_with(PointsRequest {
        points: 1_000,
        minor_per_point: 30,
    });
    let spend = split.points.as_ref().unwrap();
    assert_eq!((spend.points, spend.value_minor), (66, 1980));
    assert_eq!(split.charged_minor, 20);
    // No points, or a rate that is not positive: none spent
    for (points, minor_per_point) in [(0, 10), (-5, 10), (10, 0), (10, -1)] {
        let split = price_with(PointsRequest {
            points,
            minor_per_point,
        });
        assert_eq!(split.points, None);
    }
    // A point worth more than the whole order: none spent
    let split = price_with(PointsRequest {
        points: 1,
        minor_per_point: 5_000,
    });
    assert_eq!(split.points, None);
}

#[test]
fn campaign_then_coupon_then_subsidy_then_points() {
    // Given two salads at 1000 (one best before in 5 h), a 25% shelf-life
    // markdown, a 10% coupon, a 50% sponsor capped at 600 with 100 paid
    // today, and 100 points asked at 5 minor units each
    let b = basket(vec![line("salad", 2, 1000, &[5, 72])]);
    let soon = Campaign::new("c-soon", rule('S'));
    let code = code();
    let spec = ten_percent();
    let acme = SubsidyId::from_static("acme");
    let sub = sponsor(FRIDGE, 50, 600);
    let subsidy = SubsidyOffer {
        subsidy_id: &acme,
        spec: &sub,
        used_today_minor: 100,
    };
    let points = PointsRequest {
        points: 100,
        minor_per_point: 5,
    };
    // When priced
    let split = price(
        &b,
        &offers(&[soon]),
        Some(&offer(&code, &spec)),
        &[subsidy],
        Some(&points),
        &now(),
    )
    .unwrap();
    // Then 2000 − 250 (markdown) = 1750; − 175 (coupon) = 1575;
    // sponsor min(787, 500) = 500 → 1075; 100 points = 500 → 575 charged
    assert!(split.check());
    assert_eq!(split.list_minor, 2000);
    assert_eq!(given(&split), vec![("c-soon", 250)]);
    assert_eq!(split.coupon.as_ref().unwrap().discount_minor, 175);
    assert_eq!(split.subsidy_minor(), 500);
    assert_eq!(split.points_value_minor(), 500);
    assert_eq!(split.charged_minor, 575);
}

#[test]
fn an_order_no_promotion_touches_is_its_list_price() {
    let split = with_campaigns(&two_salads(), &[], &now());
    assert_eq!(split, PriceSplit::list(split.lines.clone()));
    assert_eq!(split.charged_minor, 2000);
}

// ---- display price and points earned -------------------------------------

#[test]
fn the_display_price_is_what_the_next_unit_costs_now() {
    let (meal_id, kitchen_id, tags) = meal("salad");
    let fridge = FridgeId::from_static(FRIDGE);
    let campaigns = [
        Campaign::new("c-soon", rule('S')).exclusive(),
        Campaign::new("c-ten", rule('P')),
    ];
    let show = |next: Option<i64>| {
        display_price(
            &fridge,
            CELL,
            (&meal_id, &kitchen_id, &tags),
            1000,
            next.map(in_hours),
            &offers(&campaigns),
            &now(),
        )
    };
    // Given the next unit is best before in 5 h: the markdown (250) wins
    let p = show(Some(5));
    assert_eq!((p.list_minor, p.now_minor), (1000, 750));
    assert_eq!(p.campaigns, vec![CampaignId::from_static("c-soon")]);
    // Given it is 3 days away (or unknown): only the 10%
    for next in [Some(72), None] {
        let p = show(next);
        assert_eq!(p.now_minor, 900);
        assert_eq!(p.campaigns, vec![CampaignId::from_static("c-ten")]);
    }
    // Given no campaign: the list price
    let none = display_price(
        &fridge,
        CELL,
        (&meal_id, &kitchen_id, &tags),
        1000,
        None,
        &[],
        &now(),
    );
    assert_eq!((none.now_minor, none.campaigns.len()), (1000, 0));
}

#[test]
fn points_are_earned_per_whole_major_unit_charged() {
    let mut split = with_campaigns(&two_salads(), &[], &now());
    split.charged_minor = 1_999;
    assert_eq!(points_earned(&split, 1, 100), 19);
    assert_eq!(points_earned(&split, 5, 100), 95);
    assert_eq!(points_earned(&split, 1, 0), 0);
    assert_eq!(points_earned(&split, -1, 100), 0);
    split.charged_minor = 0;
    assert_eq!(points_earned(&split, 1, 100), 0);
}
