//! Normal operation of many fridges at once: each demo fridge, on its own
//! task and with its own report counter, samples its cabinet temperature
//! (in range), scans the stock it believes it holds, now and then gets a
//! staff refill, and uploads like firmware does — keeping reports the node
//! did not take because of a network error or a 5xx, dropping those it
//! refused.
//!
//! Stops when the `stop` channel says so (Ctrl-C, or a duration in the
//! binary) after the upload in progress, and returns the totals.

use std::time::Duration;

use chrono::Utc;
use fridge_acl::report::{MAX_REPORTS_PER_BATCH, MAX_UNITS_PER_MEAL};
use fridge_acl::{DoorActor, MealId, Report};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::client::{send, Answer, SimError, Tally};
use crate::demo::DemoFridge;
use crate::fridge::{MealCounts, SignOptions, SimFridge};

/// Coldest sample a healthy fridge reports in normal operation, in tenths °C.
pub const NORMAL_TEMP_MIN_TENTHS_C: i32 = 20;
/// Warmest sample in normal operation, in tenths °C: under the 5.0 °C limit.
pub const NORMAL_TEMP_MAX_TENTHS_C: i32 = 45;
/// Most units of one meal a refill leaves in the fridge.
pub const REFILL_MAX_UNITS_PER_MEAL: u32 = 12;
/// Most distinct meals one refill brings.
pub const REFILL_MAX_MEALS: usize = 3;

/// How the demo fridges behave.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub node_url: String,
    /// Time between a fridge's uploads (each fridge starts at a random
    /// offset within it, so uploads spread out).
    pub interval: Duration,
    /// A scan every this many uploads (the first upload always scans).
    pub scan_every_uploads: u32,
    /// Chance per upload of a staff refill, 0.0..=1.0.
    pub refill_probability: f64,
    /// Start each fridge's counter after the highest report number the node
    /// already has from it (learnt from a heartbeat), so a rerun against the
    /// same node is not all duplicates.
    pub resume_from_node: bool,
}

/// Sends a heartbeat and moves the fridge's counter past the highest report
/// number the node reports having. Leaves the counter alone if the node does
/// not say.
pub async fn resume_seq(
    client: &reqwest::Client,
    node_url: &str,
    fridge: &mut SimFridge,
) -> Result<Answer, SimError> {
    let answer = send(client, node_url, &fridge.heartbeat()?).await?;
    if let Some(highest) = answer.accepted().and_then(|a| a.highest_seq) {
        fridge.seq = fridge.seq.max(highest);
    }
    Ok(answer)
}

/// Plays every fridge until `stop` turns true (or its sender is dropped).
pub async fn run(
    fridges: Vec<DemoFridge>,
    config: RunConfig,
    stop: watch::Receiver<bool>,
) -> Tally {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = fridges
        .into_iter()
        .map(|f| tokio::spawn(play(f, config.clone(), client.clone(), stop.clone())))
        .collect();
    let mut totals = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => totals.add(&t),
            Err(e) => tracing::error!(error = %e, "fridge task failed"),
        }
    }
    totals
}

/// A random staff refill: up to [`REFILL_MAX_MEALS`] of the fridge's meals,
/// topped up towards [`REFILL_MAX_UNITS_PER_MEAL`]. Empty if all are full.
fn refill(rng: &mut StdRng, stock: &MealCounts, meal_ids: &[MealId]) -> MealCounts {
    let mut added = MealCounts::new();
    for meal in meal_ids.choose_multiple(rng, REFILL_MAX_MEALS) {
        let have = stock.get(meal).copied().unwrap_or(0);
        let room = REFILL_MAX_UNITS_PER_MEAL
            .min(MAX_UNITS_PER_MEAL)
            .saturating_sub(have);
        if room > 0 {
            added.insert(meal.clone(), rng.gen_range(1..=room));
        }
    }
    added
}

async fn play(
    demo: DemoFridge,
    config: RunConfig,
    client: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let DemoFridge {
        mut fridge,
        mut stock,
    } = demo;
    let mut rng = StdRng::from_entropy();
    let mut totals = Tally::default();
    // The meals this fridge carries at the start are the ones it is refilled
    // with; a fridge that starts empty gets nothing.
    let meal_ids: Vec<MealId> = stock.keys().cloned().collect();
    let badge = format!("B-SIM-{}", rng.gen_range(1..100));
    let mut tenths_c = rng.gen_range(NORMAL_TEMP_MIN_TENTHS_C..=NORMAL_TEMP_MAX_TENTHS_C);

    let offset = config.interval.mul_f64(rng.gen_range(0.0..1.0));
    tokio::select! {
        _ = tokio::time::sleep(offset) => {}
        _ = stop.wait_for(|s| *s) => return totals,
    }
    if config.resume_from_node {
        match resume_seq(&client, &config.node_url, &mut fridge).await {
            Ok(a) if a.is_accepted() => {
                tracing::info!(fridge = %fridge.id, seq = fridge.seq, "resuming after the node's highest report");
            }
            Ok(a) => {
                tracing::warn!(fridge = %fridge.id, status = a.status, answer = %a.body, "heartbeat refused");
            }
            Err(e) => tracing::warn!(fridge = %fridge.id, error = %e, "heartbeat failed"),
        }
    }

    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Report> = Vec::new();
    let mut uploads_until_scan: u32 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = Utc::now();
        tenths_c = (tenths_c + rng.gen_range(-2..=2))
            .clamp(NORMAL_TEMP_MIN_TENTHS_C, NORMAL_TEMP_MAX_TENTHS_C);
        pending.push(fridge.temperature_report(now, tenths_c * 100));
        if !meal_ids.is_empty() && rng.gen_bool(config.refill_probability.clamp(0.0, 1.0)) {
            let added = refill(&mut rng, &stock, &meal_ids);
            if !added.is_empty() {
                for (meal, units) in &added {
                    *stock.entry(meal.clone()).or_default() += units;
                }
                tracing::info!(fridge = %fridge.id, ?added, "staff refill");
                pending.push(fridge.door_report(
                    now,
                    DoorActor::Staff(badge.clone()),
                    &MealCounts::new(),
                    &added,
                ));
            }
        }
        if uploads_until_scan == 0 {
            pending.push(fridge.scan_report(now, &stock));
            uploads_until_scan = config.scan_every_uploads.max(1);
        }
        uploads_until_scan -= 1;
        // Bounded buffer, like flash: the oldest reports go first.
        if pending.len() > MAX_REPORTS_PER_BATCH {
            let excess = pending.len() - MAX_REPORTS_PER_BATCH;
            pending.drain(..excess);
        }

        let signed = match fridge.sign(pending.clone(), now, &SignOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(fridge = %fridge.id, error = %e, "cannot build batch; dropping it");
                pending.clear();
                continue;
            }
        };
        let result = send(&client, &config.node_url, &signed).await;
        match &result {
            Ok(a) if a.is_accepted() => {
                tracing::debug!(fridge = %fridge.id, seqs = ?signed.seqs, answer = %a.body, "accepted");
            }
            Ok(a) => {
                tracing::warn!(fridge = %fridge.id, status = a.status, answer = %a.body, "upload refused");
            }
            Err(e) => tracing::warn!(fridge = %fridge.id, error = %e, "upload failed; will resend"),
        }
        if totals.record(signed.report_count(), &result) {
            pending.clear();
        }
    }
    tracing::info!(fridge = %fridge.id, last_seq = fridge.seq, ?totals, "stopped");
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_tops_up_without_overfilling() {
        let mut rng = StdRng::seed_from_u64(7);
        let meals: Vec<MealId> = ["m-a", "m-b", "m-c", "m-d"]
            .map(MealId::from_static)
            .to_vec();
        let mut stock: MealCounts =
            [(MealId::from_static("m-a"), REFILL_MAX_UNITS_PER_MEAL)].into();
        for _ in 0..100 {
            let added = refill(&mut rng, &stock, &meals);
            assert!(added.len() <= REFILL_MAX_MEALS);
            for (meal, units) in added {
                assert!(units >= 1);
                *stock.entry(meal).or_default() += units;
            }
            assert!(stock.values().all(|u| *u <= REFILL_MAX_UNITS_PER_MEAL));
        }
    }
}
