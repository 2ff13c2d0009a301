//! Fridge telemetry throughput: signed batches through the same steps as
//! `POST /v1/fridges/{id}/telemetry` minus HTTP — size and HMAC check, parse
//! (frostline-json), fridge identity, then the writer: translate against the
//! fridge's cursor and stock, append the events and the new cursor, fsync
//! (group commit) — for the 12 demo fridges uploading concurrently.
//!
//! `cargo bench -p region-node --bench telemetry`; the result is in readings
//! (reports) per second. Numbers in BENCHMARKS.md.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use district::{Command, FridgeCommand};
use fridge_acl::{Dialect, Secrets, Upload};
use protocol::{FridgeId, MealId};

/// Readings per upload: a minute of per-second temperature samples, a scan
/// and a door session, as a fridge on a one-minute upload interval sends.
const TEMPS_PER_BATCH: usize = 60;
/// Uploads per fridge per measured round (all fridges upload concurrently).
const BATCHES_PER_FRIDGE: usize = 40;

/// A body with its `x-larder-timestamp` and `x-larder-signature`.
type Signed = (String, String, String);

struct Fridge {
    id: FridgeId,
    secret: String,
    meals: Vec<MealId>,
}

fn batch(f: &Fridge, first_seq: u64, now: chrono::DateTime<chrono::Utc>) -> String {
    let ts = |s: i64| (now - chrono::Duration::seconds(s)).to_rfc3339();
    let mut reports = String::new();
    let mut seq = first_seq;
    for i in 0..TEMPS_PER_BATCH {
        let _ = write!(
            reports,
            r#"{{"seq":{seq},"at":"{}","kind":"temp","celsius":{}.{}}},"#,
            ts(120 - i as i64),
            3 + i % 2,
            i % 10
        );
        seq += 1;
    }
    let counts: Vec<String> = f
        .meals
        .iter()
        .enumerate()
        .map(|(i, m)| format!(r#""{m}":{}"#, 5 + (first_seq as usize + i) % 7))
        .collect();
    let _ = write!(
        reports,
        r#"{{"seq":{seq},"at":"{}","kind":"scan","counts":{{{}}}}},"#,
        ts(30),
        counts.join(",")
    );
    seq += 1;
    let _ = write!(
        reports,
        r#"{{"seq":{seq},"at":"{}","kind":"door","who":"staff","badge":"B-1","added":{{"{}":1}}}}"#,
        ts(20),
        f.meals[0]
    );
    format!(
        r#"{{"fridge_id":"{}","batch_ts":"{}","reports":[{reports}]}}"#,
        f.id,
        now.to_rfc3339()
    )
}

#[path = "../tests/support/mod.rs"]
mod support;

fn telemetry(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let district = rt.block_on(support::demo_writer(dir.path()));
    let state = district.state();
    let fridges: Vec<Arc<Fridge>> = state
        .catalog()
        .fridges()
        .keys()
        .map(|id| {
            Arc::new(Fridge {
                id: id.clone(),
                secret: state.links().secret(id).unwrap_or_default().to_string(),
                meals: state.catalog().meals().keys().take(8).cloned().collect(),
            })
        })
        .collect();
    let readings_per_batch = TEMPS_PER_BATCH + 2;
    let per_round = (fridges.len() * BATCHES_PER_FRIDGE * readings_per_batch) as u64;
    let mut next_seq = 1u64;

    let mut group = c.benchmark_group("telemetry");
    group
        .measurement_time(Duration::from_secs(10))
        .sample_size(10);
    group.throughput(Throughput::Elements(per_round));
    group.bench_function("parse_translate_append/12_fridges", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let first = next_seq;
                next_seq += (BATCHES_PER_FRIDGE * readings_per_batch) as u64;
                // Bodies are built and signed before the clock starts: the
                // fridges' work is not the node's.
                let now = chrono::Utc::now();
                let uploads: Vec<(Arc<Fridge>, Vec<Signed>)> = fridges
                    .iter()
                    .map(|f| {
                        let signed = (0..BATCHES_PER_FRIDGE)
                            .map(|k| {
                                let body = batch(f, first + (k * readings_per_batch) as u64, now);
                                let ts = now.timestamp().to_string();
                                let sig =
                                    fridge_acl::sign(f.secret.as_bytes(), now.timestamp(), body.as_bytes());
                                (body, ts, sig)
                            })
                            .collect();
                        (f.clone(), signed)
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = uploads
                        .into_iter()
                        .map(|(f, signed)| {
                            let district = district.clone();
                            // One task per fridge: its uploads in order, as
                            // one fridge sends them.
                            tokio::spawn(async move {
                                for (body, ts, sig) in signed {
                                    let state = district.state();
                                    let secret = state.links().secret(&f.id).unwrap_or_default().to_string();
                                    let upload = Upload {
                                        fridge_id: &f.id,
                                        dialect: Dialect::FrostlineJson,
                                        body: body.as_bytes(),
                                        timestamp: &ts,
                                        signature: &sig,
                                    };
                                    let (batch, used) = fridge_acl::authenticate(
                                        &upload,
                                        &Secrets::new(secret.as_bytes()),
                                        chrono::Utc::now(),
                                    )
                                    .unwrap();
                                    let committed = district
                                        .submit(Command::Fridge(FridgeCommand::Telemetry {
                                            fridge_id: f.id.clone(),
                                            batch,
                                            secret_used: used,
                                        }))
                                        .await
                                        .unwrap();
                                    // Every reading must take effect, or the
                                    // number would flatter the node.
                                    let applied = format!(r#""applied":{readings_per_batch},"#);
                                    assert!(committed.events.iter().any(|e| matches!(
                                        &e.event,
                                        protocol::Event::FridgeTelemetryReceived { outcome_json, .. }
                                            if outcome_json.contains(&applied)
                                    )));
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, telemetry);
criterion_main!(benches);
