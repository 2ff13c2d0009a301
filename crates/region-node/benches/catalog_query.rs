//! In-process catalog query latency on the demo district (12 fridges,
//! 30 meals): what `GET /v1/catalog` computes per request, without HTTP.

use criterion::{criterion_group, criterion_main, Criterion};
use district::{Context, DistrictState};
use protocol::geo::{DistrictArea, GeoPoint};
use protocol::DistrictId;

fn demo_state() -> DistrictState {
    let ctx = Context {
        district_id: DistrictId::from_static("detroit-downtown"),
        area: DistrictArea::new(vec!["dpsbv".into(), "dpsby".into(), "dpscj".into()]).unwrap(),
        now: chrono::Utc::now(),
        policy: Default::default(),
        fridges: Default::default(),
        utc_offset_minutes: 0,
        schedule: Default::default(),
    };
    let mut state = DistrictState::default();
    let data = district::demo::detroit().unwrap();
    for cmd in district::demo::commands(data) {
        for event in district::decide(&state, cmd, &ctx).unwrap() {
            let env = protocol::EventEnvelope {
                event_id: region_node::clock::ulid_at(ctx.now),
                seq: state.last_seq() + 1,
                stream_id: event.stream_id(),
                stream_version: 1,
                district_id: ctx.district_id.clone(),
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
    state
}

fn catalog(c: &mut Criterion) {
    let state = demo_state();
    assert_eq!(state.catalog().fridges().len(), 12);
    let downtown = GeoPoint::new(42.3316, -83.0466).unwrap();
    let now = chrono::Utc::now();
    let when = district::promotions::When {
        local: now.naive_utc(),
        utc: now,
    };
    c.bench_function("catalog_near/2km/12_fridges", |b| {
        b.iter(|| {
            district::query::catalog_near(
                &state,
                &DistrictId::from_static("detroit-downtown"),
                std::hint::black_box(&downtown),
                2_000,
                &when,
            )
        })
    });
    c.bench_function("catalog_near/2km/12_fridges+json", |b| {
        b.iter(|| {
            serde_json::to_vec(&district::query::catalog_near(
                &state,
                &DistrictId::from_static("detroit-downtown"),
                &downtown,
                2_000,
                &when,
            ))
            .unwrap()
        })
    });
}

criterion_group!(benches, catalog);
criterion_main!(benches);
