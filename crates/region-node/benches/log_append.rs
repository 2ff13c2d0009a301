//! Durable append throughput with group commit.
//!
//! `log/append_batch/N`: one sled batch of N events plus one fsync.
//! `writer/submit_concurrent`: 4,096 concurrent commands through the one
//! writer task (decide, batch, fsync, publish, ack) — the real write path.

use protocol::{DistrictId, FridgeId, MealId};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use district::{CatalogCommand, Command};
use protocol::events::StockSource;
use protocol::{Event, EventEnvelope};
use region_node::clock::Clock;
use region_node::store::EventLog;

fn envelope(seq: u64) -> EventEnvelope {
    let event = Event::MealStockUpdated {
        fridge_id: FridgeId::from_static("f-campus-martius"),
        meal_id: MealId::from_static("m-kale-caesar"),
        on_hand: (seq % 9) as u32,
        source: StockSource::Scan,
    };
    EventEnvelope {
        event_id: region_node::clock::ulid_at(Utc::now()),
        seq,
        stream_id: event.stream_id(),
        stream_version: seq,
        district_id: DistrictId::from_static("detroit-downtown"),
        recorded_at: Utc::now(),
        valid_from: Utc::now(),
        correlation_id: None,
        causation_id: None,
        schema_version: 1,
        event,
    }
}

fn append_batches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("log/append_batch");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for size in [1usize, 64, 256, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let mut next = 1u64;
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<EventEnvelope>> = (0..iters)
                    .map(|_| {
                        (0..size)
                            .map(|_| {
                                next += 1;
                                envelope(next)
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    for batch in &batches {
                        log.append_batch(batch).await.unwrap();
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

// The same meal fixture as the in-process tests.
#[path = "../tests/support/mod.rs"]
mod support;
use support::meal_spec as meal;

const CONCURRENT_COMMANDS: usize = 4096;

fn writer_group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let district = rt
        .block_on(async { support::writer(EventLog::open(dir.path()).unwrap(), Clock::system()) });
    let mut price = 1i64;
    let mut group = c.benchmark_group("writer");
    group
        .measurement_time(Duration::from_secs(8))
        .sample_size(10);
    group.throughput(Throughput::Elements(CONCURRENT_COMMANDS as u64));
    group.bench_function("submit_concurrent_4096", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                price = price % 900_000 + 1;
                let p = price;
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..CONCURRENT_COMMANDS)
                        .map(|i| {
                            let d = district.clone();
                            // A changed price each round so every command appends an event.
                            let cmd = Command::Catalog(CatalogCommand::DefineMeal {
                                meal_id: MealId::parse(format!("m-{i}")).expect("an id"),
                                spec: meal(p),
                            });
                            tokio::spawn(async move { d.submit(cmd).await.map(|c| c.events.len()) })
                        })
                        .collect();
                    for t in tasks {
                        assert_eq!(t.await.unwrap().unwrap(), 1);
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, append_batches, writer_group_commit);
criterion_main!(benches);
