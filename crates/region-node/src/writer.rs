//! The one writer of a district: decides, appends in batches, fsyncs once per
//! batch, publishes the new state to readers, then answers every waiter.
//!
//! Commands arrive on a bounded channel. The task takes the first waiting
//! command, drains whatever else is queued (up to [`MAX_BATCH_COMMANDS`]),
//! decides each against the state as evolved by the ones before it, appends
//! the batch's events with a single fsync (group commit), stores a snapshot of
//! the state for readers (an `ArcSwap`, so reads never wait on the writer) and
//! only then replies. Nothing is acknowledged or visible before it is durable.
//!
//! If an append fails the in-memory state is ahead of the disk: the writer
//! answers every waiter with an error and stops, and the node reports not
//! ready. Restarting replays the log, which is the truth.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use ulid::Ulid;

use crate::clock::Clock;
use crate::domain::{self, Command, Context, DistrictState, DomainError};
use crate::metrics::Metrics;
use crate::store::{EventLog, StoreError};
use protocol::codec::LOG_SCHEMA_VERSION;
use protocol::geo::DistrictArea;
use protocol::{DistrictId, EventEnvelope};

/// Most commands decided and committed together in one fsync.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Commands that may wait for the writer before submitters are slowed down.
pub const COMMAND_QUEUE_CAPACITY: usize = 8192;

/// Committed batches kept for slow feed subscribers before they lag.
pub const FEED_CAPACITY: usize = 1024;

/// One durable batch, published once to every feed subscriber (outbox relay,
/// WebSocket fan-out) after its fsync.
#[derive(Debug)]
pub struct CommittedBatch {
    pub events: Vec<EventEnvelope>,
    /// The state right after this batch.
    pub state: Arc<DistrictState>,
}

/// What the writer needs besides its inbox.
pub struct WriterSetup {
    pub district_id: DistrictId,
    pub area: DistrictArea,
    pub log: EventLog,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub policy: domain::OrderPolicy,
    pub fridge_policy: domain::FridgePolicy,
}

/// The optimistic-concurrency expectation of a command, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub stream: String,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct Committed {
    /// Events the command produced (empty when it changed nothing).
    pub events: Vec<EventEnvelope>,
    /// Log position after the batch that carried this command.
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
}

struct Submission {
    command: Command,
    expected: Option<Expected>,
    correlation_id: Option<Ulid>,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// Cheap, cloneable handle to submit commands and read the latest state.
#[derive(Clone)]
pub struct District {
    tx: mpsc::Sender<Submission>,
    view: Arc<ArcSwap<DistrictState>>,
    committed: watch::Receiver<u64>,
    feed: broadcast::Sender<Arc<CommittedBatch>>,
}

impl District {
    /// Replays the log into memory and starts the writer task.
    pub fn start(setup: WriterSetup) -> Result<Self, StoreError> {
        let mut state = DistrictState::default();
        for env in setup.log.replay() {
            domain::evolve(&mut state, &env?);
        }
        tracing::info!(events = state.last_seq, district = %setup.district_id, "log replayed");
        let view = Arc::new(ArcSwap::from_pointee(state.clone()));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        let (committed_tx, committed) = watch::channel(state.last_seq);
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let writer = Writer {
            setup,
            state,
            view: view.clone(),
            committed: committed_tx,
            feed: feed.clone(),
        };
        tokio::spawn(writer.run(rx));
        Ok(District {
            tx,
            view,
            committed,
            feed,
        })
    }

    /// Decide and durably commit one command.
    pub async fn submit(&self, command: Command) -> Result<Committed, WriteError> {
        self.submit_with(command, None, None).await
    }

    pub async fn submit_with(
        &self,
        command: Command,
        expected: Option<Expected>,
        correlation_id: Option<Ulid>,
    ) -> Result<Committed, WriteError> {
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            command,
            expected,
            correlation_id,
            reply,
        };
        self.tx
            .send(sub)
            .await
            .map_err(|_| WriteError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("writer stopped".into()))?
    }

    /// The latest durable state. Never waits on the writer.
    pub fn state(&self) -> Arc<DistrictState> {
        self.view.load_full()
    }

    /// Whether the writer is still accepting commands.
    pub fn is_writable(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Notified with the log position after every durable batch.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Every durable batch with events, in order. A subscriber that falls
    /// more than [`FEED_CAPACITY`] batches behind gets `Lagged` and must
    /// resynchronise from [`District::state`].
    pub fn subscribe_feed(&self) -> broadcast::Receiver<Arc<CommittedBatch>> {
        self.feed.subscribe()
    }
}

struct Writer {
    setup: WriterSetup,
    state: DistrictState,
    view: Arc<ArcSwap<DistrictState>>,
    committed: watch::Sender<u64>,
    feed: broadcast::Sender<Arc<CommittedBatch>>,
}

type Outcome = (
    oneshot::Sender<Result<Committed, WriteError>>,
    Result<Vec<EventEnvelope>, DomainError>,
);

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Submission>) {
        let mut inbox = Vec::with_capacity(MAX_BATCH_COMMANDS);
        while rx.recv_many(&mut inbox, MAX_BATCH_COMMANDS).await > 0 {
            let started = Instant::now();
            let now = self.setup.clock.now();
            let outcomes: Vec<Outcome> = inbox.drain(..).map(|s| self.decide_one(s, now)).collect();
            let batch: Vec<EventEnvelope> = outcomes
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .flatten()
                .cloned()
                .collect();
            if let Err(e) = self.setup.log.append_batch(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "append failed; writer stops");
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(WriteError::Unavailable(e.to_string())));
                }
                return;
            }
            let snapshot = Arc::new(self.state.clone());
            self.view.store(snapshot.clone());
            self.committed.send_replace(self.state.last_seq);
            if !batch.is_empty() {
                // No subscriber is fine: the feed is a notification, not a queue of record.
                let _ = self.feed.send(Arc::new(CommittedBatch {
                    events: batch.clone(),
                    state: snapshot,
                }));
            }
            self.setup
                .metrics
                .record_batch(outcomes.len(), batch.len(), started.elapsed());
            let seq = self.state.last_seq;
            for (reply, result) in outcomes {
                let _ = reply.send(
                    result
                        .map(|events| Committed { events, seq })
                        .map_err(WriteError::Domain),
                );
            }
        }
    }

    fn decide_one(&mut self, sub: Submission, now: DateTime<Utc>) -> Outcome {
        let Submission {
            command,
            expected,
            correlation_id,
            reply,
        } = sub;
        (
            reply,
            self.decide_and_evolve(command, expected, correlation_id, now),
        )
    }

    fn decide_and_evolve(
        &mut self,
        command: Command,
        expected: Option<Expected>,
        correlation_id: Option<Ulid>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventEnvelope>, DomainError> {
        if let Some(exp) = expected {
            let actual = self.state.stream_version(&exp.stream);
            if actual != exp.version {
                return Err(DomainError::VersionConflict {
                    stream: exp.stream,
                    expected: exp.version,
                    actual,
                });
            }
        }
        let ctx = Context {
            district_id: self.setup.district_id.clone(),
            area: self.setup.area.clone(),
            now,
            policy: self.setup.policy,
            fridges: self.setup.fridge_policy,
        };
        let events = domain::decide(&self.state, command, &ctx)?;
        let mut out = Vec::with_capacity(events.len());
        let mut cause = None;
        for event in events {
            let stream_id = event.stream_id();
            let env = EventEnvelope {
                // Ids carry the node clock's time, so they sort with it.
                event_id: Ulid::from_datetime(now.into()),
                seq: self.state.last_seq + 1,
                stream_version: self.state.stream_version(&stream_id) + 1,
                stream_id,
                district_id: self.setup.district_id.clone(),
                recorded_at: now,
                valid_from: now,
                correlation_id,
                causation_id: cause,
                schema_version: LOG_SCHEMA_VERSION,
                event,
            };
            domain::evolve(&mut self.state, &env);
            cause = Some(env.event_id);
            out.push(env);
        }
        Ok(out)
    }
}
