//! What promotions cost at confirm (issue 12), without HTTP.
//!
//! Both groups place one-unit POS orders on the demo district with every
//! meal stocked in every fridge, cycling over fridges and meals, in two
//! variants: `list` (no promotions) and `3_campaigns+coupon` (three active
//! combinable campaigns that apply to every meal — 10 % off, 0.50 off, a
//! 15 % happy hour covering the whole day — and a 0.50 coupon without
//! limits on every order, as `larder-promo-load`'s B).
//!
//! - `promo/decide_evolve/*`: the pure core — `district::decide` of an
//!   `OrderCommand::Place` plus `district::evolve` of the events it gives
//!   (`OrderPlaced`, with promotions carrying the price, and
//!   `MealStockReserved`), one order at a time on one state.
//! - `promo/writer_place_4096/*`: 4,096 concurrent `Place` commands
//!   through the writer task (decide, batch, append, fsync, publish, ack),
//!   as `writer/submit_concurrent_4096` in `log_append`.
//!
//! Allocates with mimalloc, as the node does.
//!
//! `cargo bench -p region-node --bench promotions`. Numbers in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use district::{Command, Context, DistrictState, OrderCommand, PromotionCommand};
use protocol::orders::{Channel, PlaceOrder};
use protocol::{CampaignId, CouponCode, DistrictId, EventEnvelope, FridgeId, MealId, OrderId};
use region_node::clock::ulid_at;
use region_node::writer::District;
use serde_json::{json, Value};

// The node's allocator (`src/main.rs`), so allocation costs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The same writer fixture as the in-process tests.
#[path = "../tests/support/mod.rs"]
mod support;

/// Units of every meal in every fridge (more than any run places).
const UNITS_PER_MEAL: u32 = 10_000;
/// POS tills the orders come from (the coupon counts uses per customer).
const TILLS: usize = 32;
const CONCURRENT_COMMANDS: usize = 4096;
const COUPON: &str = "BENCH";
const VARIANTS: [(&str, bool); 2] = [("list", false), ("3_campaigns+coupon", true)];

/// The demo district's fridges and meals.
fn demo_ids() -> (Vec<FridgeId>, Vec<MealId>) {
    let data = district::demo::detroit().expect("demo data");
    (
        data.fridges.into_iter().map(|f| f.fridge_id).collect(),
        data.meals.into_iter().map(|m| m.meal_id).collect(),
    )
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid spec")
}

/// The three campaigns and the coupon of the `promos` variant.
fn promotion_commands() -> Vec<Command> {
    let campaign = |id: &'static str, rule: Value, priority: u16| {
        Command::Promotion(PromotionCommand::DefineCampaign {
            campaign_id: CampaignId::from_static(id),
            spec: from_json(json!({
                "name": id,
                "starts": "2020-01-01T00:00:00",
                "ends": "2099-01-01T00:00:00",
                "rule": rule,
                "stacking": "combinable",
                "priority": priority,
            })),
        })
    };
    vec![
        campaign(
            "bench-ten-off",
            json!({"kind": "percent_off", "percent": 10}),
            30,
        ),
        campaign(
            "bench-fifty-cents",
            json!({"kind": "amount_off", "amount_minor": 50}),
            20,
        ),
        campaign(
            "bench-all-day",
            json!({"kind": "happy_hour", "from": "00:00:00", "until": "23:59:59.999",
                   "percent": 15}),
            10,
        ),
        Command::Promotion(PromotionCommand::DefineCoupon {
            code: CouponCode::from_input(COUPON).expect("a code"),
            spec: from_json(json!({
                "discount": {"kind": "amount_off", "amount_minor": 50},
                "valid_from": "2020-01-01T00:00:00",
                "valid_until": "2099-01-01T00:00:00",
            })),
        }),
    ]
}

/// A writer on `dir` with the demo district, every meal stocked, and the
/// promotions if `promos`.
async fn district(dir: &std::path::Path, promos: bool) -> District {
    let district = support::demo_writer(dir).await;
    let (fridges, meals) = demo_ids();
    for fridge_id in fridges {
        let counts: Vec<Value> = meals
            .iter()
            .map(|m| json!({"meal_id": m, "units": UNITS_PER_MEAL}))
            .collect();
        let cmd = district::CatalogCommand::SetStock {
            fridge_id,
            spec: from_json(json!({ "counts": counts })),
        };
        district
            .submit(Command::Catalog(cmd))
            .await
            .expect("stocked");
    }
    if promos {
        for cmd in promotion_commands() {
            let done = district.submit(cmd).await.expect("defined");
            assert_eq!(done.events.len(), 1);
        }
    }
    district
}

/// The `n`-th order of a run: one unit, fridges and meals in turn.
fn place(n: usize, promos: bool, ids: &(Vec<FridgeId>, Vec<MealId>)) -> Command {
    let (fridges, meals) = ids;
    let request: PlaceOrder = from_json(json!({
        "fridge_id": fridges[n % fridges.len()],
        "items": [{"meal_id": meals[(n / fridges.len()) % meals.len()], "qty": 1}],
        "coupon": promos.then_some(COUPON),
        "payment_method": "tok_visa",
    }));
    Command::Order(OrderCommand::Place {
        order_id: OrderId::from(ulid_at(Utc::now())),
        customer: format!("pos-{}", n % TILLS),
        channel: Channel::Pos,
        request,
        idempotency: None,
        referral: None,
    })
}

/// Whether a placement's events carry the price of all promotions.
fn priced(events: &[protocol::Event]) -> bool {
    events.iter().any(|e| match e {
        protocol::Event::OrderPlaced {
            price: Some(price), ..
        } => price.split.campaigns.len() == 3 && price.split.coupon.is_some(),
        _ => false,
    })
}

fn decide_evolve(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = demo_ids();
    let mut group = c.benchmark_group("promo/decide_evolve");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .throughput(Throughput::Elements(1));
    for (name, promos) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let writer = rt.block_on(district(dir.path(), promos));
        let mut state: DistrictState = (*writer.state()).clone();
        drop(writer);
        let ctx = Context {
            district_id: DistrictId::from_static("detroit-downtown"),
            area: support::demo_area(),
            now: Utc::now(),
            policy: Default::default(),
            fridges: Default::default(),
            utc_offset_minutes: 0,
            schedule: Default::default(),
        };
        let district_id = ctx.district_id.clone();
        let mut n = 0usize;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let commands: Vec<Command> = (0..iters)
                    .map(|_| {
                        n += 1;
                        place(n, promos, &ids)
                    })
                    .collect();
                let start = Instant::now();
                for cmd in commands {
                    let events = district::decide(&state, cmd, &ctx).expect("placed");
                    debug_assert_eq!(priced(&events), promos);
                    for event in events {
                        let stream_id = event.stream_id();
                        let env = EventEnvelope {
                            event_id: Default::default(),
                            seq: state.last_seq() + 1,
                            stream_version: state.stream_version(&stream_id) + 1,
                            stream_id,
                            district_id: district_id.clone(),
                            recorded_at: ctx.now,
                            valid_from: ctx.now,
                            correlation_id: None,
                            causation_id: None,
                            schema_version: 1,
                            event,
                        };
                        district::evolve(&mut state, &env);
                    }
                }
                start.elapsed()
            })
        });
        // Checked once outside the timing: the variant priced what it should.
        let events = district::decide(&state, place(n + 1, promos, &ids), &ctx).unwrap();
        assert_eq!(priced(&events), promos, "{name}: {events:?}");
    }
    group.finish();
}

fn writer_place(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids = Arc::new(demo_ids());
    let mut group = c.benchmark_group("promo/writer_place_4096");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .throughput(Throughput::Elements(CONCURRENT_COMMANDS as u64));
    for (name, promos) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let writer = rt.block_on(district(dir.path(), promos));
        let mut n = 0usize;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let commands: Vec<Command> = (0..CONCURRENT_COMMANDS)
                        .map(|_| {
                            n += 1;
                            place(n, promos, &ids)
                        })
                        .collect();
                    let start = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = commands
                            .into_iter()
                            .map(|cmd| {
                                let d = writer.clone();
                                tokio::spawn(async move { d.submit(cmd).await.map(|c| c.events) })
                            })
                            .collect();
                        for t in tasks {
                            let events = t.await.unwrap().expect("placed");
                            debug_assert!(!events.is_empty());
                        }
                    });
                    total += start.elapsed();
                }
                total
            })
        });
        let last = rt
            .block_on(writer.submit(place(n + 1, promos, &ids)))
            .expect("placed");
        let events: Vec<_> = last.events.into_iter().map(|e| e.event).collect();
        assert_eq!(priced(&events), promos, "{name}: {events:?}");
        drop(writer);
    }
    group.finish();
}

criterion_group!(benches, decide_evolve, writer_place);
criterion_main!(benches);
