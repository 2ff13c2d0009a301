//! The fleet view of insights: every node puts its district's aggregate of
//! today and yesterday (district-local) on a JetStream KV board, and any
//! node reads the board to show the fleet's districts side by side.
//!
//! Bucket [`BUCKET`], key `{district}.{YYYY-MM-DD}`, value
//! [`insights::FleetDay`] as JSON (counters, rates, 24 hours: under 3 KB),
//! history 1, entries gone after [`MAX_AGE_DAYS`]. Raw district data
//! (orders, meals, fridges, customers) never goes there.
//!
//! NATS down changes nothing but staleness: the publisher logs and tries
//! again next round, and the district keeps selling.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::NaiveDate;
use futures::StreamExt;
use insights::FleetDay;
use protocol::DistrictId;

use super::Insights;
use crate::clock::Clock;
use crate::lifecycle::{Lifecycle, Shutdown};

/// The board's bucket name.
pub const BUCKET: &str = "larder-insights";
/// Days an entry lives on the board (the endpoint shows a week back).
pub const MAX_AGE_DAYS: u64 = 8;
/// Longest wait for one put (NATS slow or gone).
const PUT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("insight board: {0}")]
    Nats(String),
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> BoardError {
    BoardError::Nats(format!("{what}: {e}"))
}

/// The key of `district`'s aggregate of `date`.
pub fn key(district: &str, date: NaiveDate) -> String {
    format!("{district}.{date}")
}

/// The board on NATS; cheap to clone. The bucket is found (or created) on
/// first use, so a node started with NATS down still starts.
#[derive(Clone)]
pub struct Board {
    bucket: crate::fleet::LazyBucket,
}

impl Board {
    /// `replicas`: copies of the bucket if this node creates it.
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let config = kv::Config {
            bucket: BUCKET.to_string(),
            description: "Larder insights: each district's daily order counters".into(),
            history: 1,
            max_age: Duration::from_secs(MAX_AGE_DAYS * 24 * 3600),
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        Board {
            bucket: crate::fleet::LazyBucket::new(client, config),
        }
    }

    async fn store(&self) -> Result<&kv::Store, BoardError> {
        self.bucket.get().await.map_err(BoardError::Nats)
    }

    pub async fn put(&self, day: &FleetDay) -> Result<(), BoardError> {
        let store = self.store().await?;
        let value = serde_json::to_vec(day).map_err(|e| nats_err("encode", e))?;
        store
            .put(key(&day.district, day.date), value.into())
            .await
            .map_err(|e| nats_err("put", e))?;
        Ok(())
    }

    /// Every district's aggregate of `date`, by district id.
    pub async fn day(&self, date: NaiveDate) -> Result<Vec<FleetDay>, BoardError> {
        let store = self.store().await?;
        let suffix = format!(".{date}");
        let mut keys = store.keys().await.map_err(|e| nats_err("keys", e))?;
        let mut wanted = vec![];
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| nats_err("keys", e))?;
            if k.ends_with(&suffix) {
                wanted.push(k);
            }
        }
        let mut out = vec![];
        for k in wanted {
            let Some(value) = store.get(&k).await.map_err(|e| nats_err("get", e))? else {
                continue;
            };
            match serde_json::from_slice::<FleetDay>(&value) {
                Ok(day) => out.push(day),
                Err(e) => tracing::warn!(key = %k, error = %e, "unreadable insight entry skipped"),
            }
        }
        out.sort_by(|a, b| a.district.cmp(&b.district));
        Ok(out)
    }
}

/// What the publisher needs.
pub struct Publisher {
    pub board: Board,
    pub insights: Insights,
    pub district_id: DistrictId,
    pub clock: Clock,
    pub every: Duration,
}

impl Publisher {
    pub fn start(self, tasks: &Lifecycle) {
        tasks.spawn("insights-publisher", |s| self.run(s));
    }

    /// Publishes every `every` (the first round at once) and at shutdown.
    async fn run(self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.publish().await,
                () = shutdown.triggered() => {
                    self.publish().await;
                    return;
                }
            }
        }
    }

    /// Today's and yesterday's aggregates (yesterday's last hours settle
    /// after midnight: pickups, unclaimed orders).
    async fn publish(&self) {
        let aggregates: Arc<insights::Aggregates> = self.insights.aggregates();
        let now = self.clock.now();
        let today = aggregates.local(now).date();
        let days = [today.pred_opt(), Some(today)];
        for date in days.into_iter().flatten() {
            let day = aggregates.fleet_day(self.district_id.as_str(), date, now);
            match tokio::time::timeout(PUT_TIMEOUT, self.board.put(&day)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, %date, "insights: not published to the fleet");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%date, "insights: publishing to the fleet timed out");
                    return;
                }
            }
        }
        tracing::debug!(%today, "insights: published to the fleet");
    }
}
