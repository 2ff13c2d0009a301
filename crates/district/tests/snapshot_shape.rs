//! A state snapshot written by this version of the code decodes to the same
//! state: the guard behind `STATE_SNAPSHOT_VERSION`.
//!
//! `golden/state-v{STATE_SNAPSHOT_VERSION}.bin` is the snapshot body
//! (postcard of `DistrictState`) of a fixed history touching every part of
//! the state: catalog, stock and lots, orders in several states with their
//! timers and indexes, the outbox, a weekly plan with its charge, and
//! promotions (a campaign, a coupon use, a subsidy) with priced orders,
//! webhook endpoints (one disabled) and a par level. If you
//! change a type the state holds so that its serialized form changes, this
//! test fails: bump `STATE_SNAPSHOT_VERSION` (old snapshots are then skipped
//! and the log replayed, which is always correct) and write the new golden
//! file with `UPDATE_GOLDEN=1 cargo test -p larder-district --test snapshot_shape`.

use chrono::{Duration, TimeZone, Utc};
use district::{
    CatalogCommand, Command, Context, DistrictState, OrderCommand, PromotionCommand,
    RestockCommand, ScheduleCommand, WebhookCommand, STATE_SNAPSHOT_VERSION,
};
use protocol::catalog::{StockCount, StockSpec};
use protocol::orders::{Channel, OrderId, OrderItem, PlaceOrder};
use protocol::payments::{PaymentKind, PaymentOutcome, PaymentResult};
use protocol::promotions::{
    Budget, CampaignSpec, CouponDiscount, CouponSpec, PromoRule, Stacking, SubsidySpec,
};
use protocol::schedule::{PlanDay, PlanSpec};
use protocol::webhooks::{WebhookFamily, WebhookSpec};
use protocol::WebhookId;
use protocol::{CampaignId, CouponCode, DistrictId, FridgeId, MealId, PlanId, SubsidyId};

mod support;

fn history() -> DistrictState {
    let mut state = DistrictState::default();
    let mut ctx = Context {
        district_id: DistrictId::from_static("detroit-downtown"),
        area: support::demo_area(),
        now: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
        policy: Default::default(),
        fridges: Default::default(),
        utc_offset_minutes: 0,
        schedule: Default::default(),
    };
    let run = |state: &mut DistrictState, ctx: &Context, cmd: Command| {
        let events = district::decide(state, cmd, ctx).expect("the fixed history is accepted");
        support::apply(state, &events, ctx.now);
    };
    let demo = district::demo::detroit().unwrap();
    let fridge = demo.fridges[0].fridge_id.clone();
    let meal = demo.meals[0].meal_id.clone();
    for cmd in district::demo::commands(demo) {
        run(&mut state, &ctx, cmd);
    }
    let counts = vec![StockCount {
        meal_id: meal.clone(),
        units: 9,
    }];
    run(
        &mut state,
        &ctx,
        Command::Catalog(CatalogCommand::SetStock {
            fridge_id: fridge.clone(),
            spec: StockSpec { counts },
        }),
    );
    for cmd in promotions(&fridge) {
        run(&mut state, &ctx, cmd);
    }
    for (n, channel) in [Channel::Pos, Channel::App, Channel::App]
        .into_iter()
        .enumerate()
    {
        run(&mut state, &ctx, place(n, channel, &fridge, &meal));
    }
    run(&mut state, &ctx, paid(0));
    run(
        &mut state,
        &ctx,
        Command::Order(OrderCommand::Cancel {
            order_id: order_id(2),
            customer: None,
        }),
    );
    let policy = scheduler::Policy::default();
    let start_date = scheduler::plan::earliest_effective(ctx.now, &Default::default(), &policy);
    let spec = PlanSpec {
        fridge_id: fridge.clone(),
        days: (1..=5)
            .map(|weekday| PlanDay {
                weekday,
                meal_id: meal.clone(),
            })
            .collect(),
        start_date,
        end_date: start_date + Duration::days(13),
        payment_method: "tok_visa".into(),
    };
    let plan = ScheduleCommand::CreatePlan {
        plan_id: PlanId::from_static("p-golden"),
        customer: "alice".into(),
        spec,
        policy,
    };
    run(&mut state, &ctx, Command::Schedule(plan));
    ctx.now += Duration::minutes(1);
    run(
        &mut state,
        &ctx,
        Command::Schedule(ScheduleCommand::Tick { policy }),
    );
    // Two webhook endpoints, one of them disabled.
    for (id, families) in [
        (
            "w-golden-1",
            vec![WebhookFamily::Orders, WebhookFamily::Stock],
        ),
        ("w-golden-2", vec![WebhookFamily::Kitchens]),
    ] {
        let spec = WebhookSpec {
            url: "https://erp.example.com/larder".into(),
            families,
            secret: "whsec-0123456789abcdef".into(),
        };
        let endpoint_id = WebhookId::from_static(id);
        run(
            &mut state,
            &ctx,
            Command::Webhook(WebhookCommand::Register { endpoint_id, spec }),
        );
    }
    run(
        &mut state,
        &ctx,
        Command::Webhook(WebhookCommand::Disable {
            endpoint_id: WebhookId::from_static("w-golden-2"),
        }),
    );
    // A par level (the demand history holds the pickups above, if any).
    run(
        &mut state,
        &ctx,
        Command::Restock(RestockCommand::SetParLevel {
            fridge_id: fridge.clone(),
            meal_id: meal.clone(),
            units: 6,
        }),
    );
    state
}

/// A campaign, a coupon (the second order uses it) and a subsidy, so the
/// orders carry price splits and the promotions their uses.
fn promotions(fridge: &FridgeId) -> Vec<Command> {
    let from = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let until = from + Duration::days(365);
    vec![
        Command::Promotion(PromotionCommand::DefineCampaign {
            campaign_id: CampaignId::from_static("spring"),
            spec: CampaignSpec {
                name: "Spring".into(),
                starts: from,
                ends: until,
                area: Default::default(),
                target: Default::default(),
                rule: PromoRule::PercentOff { percent: 10 },
                priority: 1,
                stacking: Stacking::Combinable,
                budget: Budget {
                    max_redemptions: Some(100),
                    max_discount_minor: None,
                },
            },
        }),
        Command::Promotion(PromotionCommand::DefineCoupon {
            code: CouponCode::from_static("GOLDEN"),
            spec: CouponSpec {
                discount: CouponDiscount::AmountOff { amount_minor: 100 },
                valid_from: from,
                valid_until: until,
                max_uses: Some(10),
                max_uses_per_customer: Some(1),
                fleet_max_uses: None,
                min_order_minor: None,
                first_order_only: false,
                target: Default::default(),
            },
        }),
        Command::Promotion(PromotionCommand::DefineLoyaltyRules {
            rules: protocol::promotions::LoyaltyRules {
                points_per_major_unit: 1,
                minor_per_major: 100,
                minor_per_point: 1,
                expire_after_days: 365,
                referral_reward_points: 100,
            },
        }),
        Command::Promotion(PromotionCommand::DefineSubsidy {
            subsidy_id: SubsidyId::from_static("acme"),
            spec: SubsidySpec {
                sponsor: "ACME".into(),
                fridges: vec![fridge.clone()],
                percent: 20,
                cap_per_customer_day_minor: 500,
            },
        }),
    ]
}

fn order_id(n: usize) -> OrderId {
    OrderId::parse(format!("o-golden-{n}")).unwrap()
}

fn place(n: usize, channel: Channel, fridge: &FridgeId, meal: &MealId) -> Command {
    Command::Order(OrderCommand::Place {
        order_id: order_id(n),
        customer: format!("c-{n}"),
        channel,
        request: PlaceOrder {
            fridge_id: fridge.clone(),
            items: vec![OrderItem {
                meal_id: meal.clone(),
                qty: 1,
            }],
            coupon: (n == 1).then(|| "golden".to_string()),
            share_code: None,
            points: None,
            payment_method: "tok_visa".into(),
            pickup_date: None,
        },
        idempotency: Some((format!("key-{n}"), 7)),
        referral: None,
    })
}

fn paid(n: usize) -> Command {
    Command::RecordPayment {
        result: PaymentResult {
            kind: PaymentKind::Charge,
            order_id: order_id(n),
            district_id: DistrictId::from_static("detroit-downtown"),
            outcome: PaymentOutcome::Approved {
                reference: "ch_golden".into(),
            },
        },
        pickup_code: "482913".into(),
    }
}

#[test]
fn a_snapshot_of_this_version_decodes_to_the_same_state() {
    let state = history();
    assert!(
        state.schedule().charges.len() == 1,
        "the history covers a plan charge"
    );
    assert!(state.orders().len() >= 3, "the history covers orders");
    assert!(
        district::promotions::priced_orders(&state).count() >= 3
            && state
                .orders()
                .iter()
                .any(|o| o.price().is_some_and(|p| p.coupon.is_some())),
        "the history covers priced orders and a coupon use"
    );
    let path = format!(
        "{}/tests/golden/state-v{STATE_SNAPSHOT_VERSION}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, postcard::to_stdvec(&state).unwrap()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e}; a new STATE_SNAPSHOT_VERSION needs its golden file (see the module doc)"
        )
    });
    let decoded: Result<DistrictState, _> = postcard::from_bytes(&golden);
    assert!(
        decoded.as_ref() == Ok(&state),
        "the state's serialized form changed: bump STATE_SNAPSHOT_VERSION and write a new golden file (see the module doc); decoded: {:?}",
        decoded.err()
    );
}

#[test]
fn a_state_survives_its_own_round_trip() {
    let state = history();
    let bytes = postcard::to_stdvec(&state).unwrap();
    assert_eq!(
        postcard::from_bytes::<DistrictState>(&bytes).unwrap(),
        state
    );
}
