//! Insights (issue 13): the reporting projection kept beside the writer,
//! and the fleet board of every district's daily aggregate.
//!
//! ```text
//! writer ──committed feed──▶ projection task ──Arc<Aggregates> (watch)──▶ /v1/admin/insights
//!          (log after a lag,   (insights::Projection)                      /v1/kitchens/{id}/insights
//!           or at start-up)          │ every publish_secs, and at shutdown
//!                                    └──▶ fleet board (JetStream KV) ──▶ /v1/admin/fleet/insights
//! ```
//!
//! - Never on the write path: the task reads the feed the writer publishes
//!   after its fsync; a slow projection only lags (then re-reads the log
//!   after the last seq it applied), it never delays a commit.
//! - Complete after a restart: at start-up the task folds the whole log
//!   (from seq 1: the projection learns meals and fridges from it) before
//!   following the feed. Reports say how far they are (`applied_seq`). The
//!   projection is not snapshotted: it is small and the fold is cheap
//!   next to the district's own replay (no decide, no stock lots).
//! - Handlers read the newest published [`insights::Aggregates`], an `Arc`
//!   whose days are shared with the task's copy until it writes them.

pub mod fleet;

use std::sync::Arc;
use std::time::Duration;

use insights::{Aggregates, Projection};
use protocol::EventEnvelope;
use tokio::sync::{broadcast, watch};

use crate::lifecycle::{Lifecycle, Shutdown};
use crate::store::LogReader;
use crate::writer::{CommittedBatch, District};

/// Log records read per step when catching up.
const CATCH_UP_RECORDS: usize = 1024;
/// Pause before trying again after the log could not be read.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The projection as handlers see it; cheap to clone.
#[derive(Clone)]
pub struct Insights {
    view: watch::Receiver<Arc<Aggregates>>,
}

impl Insights {
    /// Spawns the projection task on `district`'s feed and log.
    pub fn start(
        district: District,
        log: LogReader,
        utc_offset_minutes: i32,
        tasks: &Lifecycle,
    ) -> Insights {
        let projection = Projection::new(utc_offset_minutes);
        let (publish, view) = watch::channel(Arc::new(projection.aggregates().clone()));
        let task = Follower {
            district,
            log,
            projection,
            publish,
        };
        tasks.spawn("insights", |s| task.run(s));
        Insights { view }
    }

    /// The newest published aggregates.
    pub fn aggregates(&self) -> Arc<Aggregates> {
        self.view.borrow().clone()
    }
}

/// The task: the projection, fed from the feed or the log.
struct Follower {
    district: District,
    log: LogReader,
    projection: Projection,
    publish: watch::Sender<Arc<Aggregates>>,
}

impl Follower {
    async fn run(mut self, mut shutdown: Shutdown) {
        // Subscribed before catching up, so nothing falls between the two.
        let mut feed = self.district.subscribe_feed();
        let mut behind = true;
        loop {
            if behind {
                tokio::select! {
                    r = self.catch_up() => match r {
                        Ok(()) => behind = false,
                        Err(e) => {
                            tracing::error!(error = %e, "insights: reading the log failed; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_DELAY) => {}
                                () = shutdown.triggered() => return,
                            }
                        }
                    },
                    () = shutdown.triggered() => return,
                }
                continue;
            }
            tokio::select! {
                batch = feed.recv() => match batch {
                    Ok(batch) => behind = !self.follow(&batch, &mut feed),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "insights: feed lagged; catching up from the log");
                        behind = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = shutdown.triggered() => return,
            }
        }
    }

    /// Applies `batch` and whatever else the feed holds already, then
    /// publishes once (a busy writer costs one publish per wake-up, not
    /// per batch). `false`: a gap or a lag, so the log must be read.
    fn follow(
        &mut self,
        batch: &CommittedBatch,
        feed: &mut broadcast::Receiver<Arc<CommittedBatch>>,
    ) -> bool {
        let mut in_step = self.take(&batch.events);
        while in_step {
            match feed.try_recv() {
                Ok(next) => in_step = self.take(&next.events),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => in_step = false,
            }
        }
        self.publish();
        in_step
    }

    /// Folds `events` in unless they start after a gap.
    fn take(&mut self, events: &[EventEnvelope]) -> bool {
        let next = self.projection.applied_seq() + 1;
        if events.iter().any(|e| e.seq == next) || events.iter().all(|e| e.seq < next) {
            for e in events {
                self.projection.apply(e);
            }
            return true;
        }
        false
    }

    fn publish(&self) {
        let aggregates = Arc::new(self.projection.aggregates().clone());
        self.publish.send_replace(aggregates);
    }

    /// Folds the log after the last applied seq, up to the state published
    /// now (later batches come from the feed), publishing after each step.
    async fn catch_up(&mut self) -> Result<(), String> {
        let upto = self.district.state().last_seq();
        loop {
            let after = self.projection.applied_seq();
            if after >= upto {
                self.publish();
                return Ok(());
            }
            let log = self.log.clone();
            let records =
                tokio::task::spawn_blocking(move || log.records(after, upto, CATCH_UP_RECORDS))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            if records.is_empty() {
                return Err(format!("log has no records after {after} up to {upto}"));
            }
            for (seq, bytes) in records {
                let env = protocol::codec::decode_log_record(&bytes)
                    .map_err(|e| format!("log record {seq}: {e}"))?;
                self.projection.apply(&env);
            }
            self.publish();
        }
    }
}
