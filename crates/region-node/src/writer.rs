//! The one writer of a district: decides, appends in batches, fsyncs once per
//! batch, publishes the new state to readers, then answers every waiter.
//!
//! Commands arrive on two bounded channels. The task takes the first waiting
//! command, drains whatever else is queued (up to [`MAX_BATCH_COMMANDS`]),
//! decides each against the state as evolved by the ones before it, appends
//! the batch's events with a single fsync (group commit), stores a snapshot of
//! the state for readers (an `ArcSwap`, so reads never wait on the writer) and
//! only then replies. Nothing is acknowledged or visible before it is durable.
//!
//! The second channel is the **background lane**, for commands no one is
//! waiting on at the other end of a socket: payment results, which arrive
//! from the payments service hundreds at a time, and fired timers (a tick
//! fires every grace window that ended in the last 100 ms). A batch takes
//! every queued interactive command first and at most
//! [`MAX_BACKGROUND_PER_BATCH`] background ones after them. With one lane,
//! a customer's confirm queued behind a burst of 1,000 of them waited for
//! all to be decided (~10 ms) and synced, then for its own batch: most of
//! the confirm p99 of ~40 ms under order load (BENCHMARKS.md, "Orders",
//! "Two lanes"). The cap still lets results through at tens of thousands
//! per second while the interactive lane is saturated, so neither lane
//! starves.
//!
//! If an append fails the in-memory state is ahead of the disk: the writer
//! answers every waiter with an error and stops, and the node reports not
//! ready. Restarting replays the log, which is the truth.
//!
//! On shutdown the writer stops taking commands, finishes (fsyncs and
//! answers) the batch in flight, answers whatever is still queued with
//! [`WriteError::ShuttingDown`], and closes the log before it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot};
use ulid::Ulid;

use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::metrics::Metrics;
use crate::store::{EventLog, StoreError};
use district::{Command, Context, DistrictState, DomainError};
use protocol::codec::LOG_SCHEMA_VERSION;
use protocol::geo::DistrictArea;
use protocol::{DistrictId, EventEnvelope};

/// Most commands decided and committed together in one fsync.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Most background-lane commands (payment results, timers) in one batch,
/// after the interactive ones. One costs ~10-14 µs to decide under load, so
/// this adds at most ~2-3 ms to a confirm's batch, and still admits ~100k/s at
/// the ~500 batches/s of a saturated writer (BENCHMARKS.md, "Two lanes":
/// 128 cost ~10 % of the confirm rate, 256 kept p99 above 30 ms).
pub const MAX_BACKGROUND_PER_BATCH: usize = 192;
/// Commands that may wait for the writer before submitters are slowed down
/// (per lane).
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
    pub policy: district::OrderPolicy,
    pub fridge_policy: district::FridgePolicy,
    /// The district's offset from UTC, in minutes (see `district::Context`).
    pub utc_offset_minutes: i32,
    /// The kitchen calendar's rules, for orders ahead.
    pub schedule_policy: scheduler::Policy,
    /// Where start-up looks for a snapshot to replay from (`None`: the
    /// whole log).
    pub snapshots: Option<crate::snapshot::SnapshotStore>,
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
    /// The node is stopping; the command was not decided. Retrying against
    /// the restarted node is safe.
    #[error("the node is shutting down; the command was not applied")]
    ShuttingDown,
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
    /// The background lane (see the module doc).
    background: mpsc::Sender<Submission>,
    view: Arc<ArcSwap<DistrictState>>,
    feed: broadcast::Sender<Arc<CommittedBatch>>,
    /// Set by the writer when it stops on the shutdown signal, so a refused
    /// submit says why.
    stopping: Arc<AtomicBool>,
    /// Why the writer stopped after a failed append (a full disk, an I/O
    /// error), so every later refusal names the cause.
    failure: Arc<OnceLock<String>>,
    /// The archived orders' index (reads only), until the writer stops:
    /// its trees keep the log's database open, which must close with the
    /// writer (a restart in the same process opens it again).
    archive: Arc<ArcSwapOption<crate::archive::Archive>>,
}

impl District {
    /// Recovers the state (newest snapshot, then the log after it) and
    /// starts the writer task, which runs until `shutdown` is signalled or
    /// every handle is dropped.
    pub fn start(setup: WriterSetup, shutdown: Shutdown) -> Result<Self, StoreError> {
        let recovered = crate::snapshot::recover(&setup.log, setup.snapshots.as_ref())?;
        // Recovery's temporaries (the snapshot's bytes, the replay) are
        // freed: the node would otherwise keep their pages resident.
        crate::memory::return_freed_pages();
        let metrics = &setup.metrics;
        metrics
            .recovered_from_seq
            .store(recovered.from_seq, Ordering::Relaxed);
        metrics
            .recovery_replayed_events
            .store(recovered.replayed, Ordering::Relaxed);
        let state = recovered.state;
        let view = Arc::new(ArcSwap::from_pointee(state.clone()));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        let (background, background_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let stopping = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(OnceLock::new());
        let archive = Arc::new(ArcSwapOption::from_pointee(setup.log.archive().clone()));
        let writer = Writer {
            setup,
            archive: archive.clone(),
            archived: Vec::new(),
            state,
            view: view.clone(),
            feed: feed.clone(),
            stopping: stopping.clone(),
            failure: failure.clone(),
        };
        let inbox = Inbox {
            interactive: rx,
            background: background_rx,
        };
        tokio::spawn(writer.run(inbox, shutdown.enlist("writer")));
        Ok(District {
            tx,
            background,
            view,
            feed,
            stopping,
            failure,
            archive,
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
        self.send(&self.tx, command, expected, correlation_id).await
    }

    /// [`District::submit`] on the background lane: for commands no caller
    /// is waiting on (payment results, fired timers). Decided after the interactive
    /// commands queued with them; see the module doc.
    pub async fn submit_background(&self, command: Command) -> Result<Committed, WriteError> {
        self.send(&self.background, command, None, None).await
    }

    async fn send(
        &self,
        lane: &mpsc::Sender<Submission>,
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
        let stopped = || {
            if self.stopping.load(Ordering::Acquire) {
                WriteError::ShuttingDown
            } else {
                refusal(&self.failure)
            }
        };
        lane.send(sub).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The latest durable state. Never waits on the writer.
    /// The archived orders (final orders that left the state: see
    /// [`crate::archive`]); `None` once the writer has stopped.
    pub fn archive(&self) -> Option<Arc<crate::archive::Archive>> {
        self.archive.load_full()
    }

    pub fn state(&self) -> Arc<DistrictState> {
        self.view.load_full()
    }

    /// Whether the writer is still accepting commands.
    pub fn is_writable(&self) -> bool {
        !self.tx.is_closed()
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
    /// The readers' handle on the archive index, let go when the writer stops.
    archive: Arc<ArcSwapOption<crate::archive::Archive>>,
    /// Archive index entries of the batch being decided, written with it.
    archived: Vec<crate::archive::Entry>,
    state: DistrictState,
    view: Arc<ArcSwap<DistrictState>>,
    feed: broadcast::Sender<Arc<CommittedBatch>>,
    stopping: Arc<AtomicBool>,
    failure: Arc<OnceLock<String>>,
}

/// The answer to a command the stopped writer will never decide: the
/// failed append's cause when there was one.
fn refusal(failure: &OnceLock<String>) -> WriteError {
    let cause = failure.get().map_or("writer stopped", String::as_str);
    WriteError::Unavailable(format!("writes refused until the node restarts: {cause}"))
}

type Outcome = (
    oneshot::Sender<Result<Committed, WriteError>>,
    Result<Vec<EventEnvelope>, DomainError>,
);

/// The writer's two lanes (see the module doc).
struct Inbox {
    interactive: mpsc::Receiver<Submission>,
    background: mpsc::Receiver<Submission>,
}

impl Inbox {
    /// Waits for a command on either lane, then takes what is queued: every
    /// interactive command first (up to [`MAX_BATCH_COMMANDS`]), then at
    /// most [`MAX_BACKGROUND_PER_BATCH`] background ones. `0` when both
    /// lanes are closed and empty (the handles that hold both senders are
    /// gone); `None` on the shutdown signal.
    async fn take(
        &mut self,
        batch: &mut Vec<Submission>,
        shutdown: &mut Shutdown,
    ) -> Option<usize> {
        debug_assert!(batch.is_empty());
        // `recv` is cancel-safe: a command is never lost to the other branch.
        let (first, lane) = tokio::select! {
            biased;
            () = shutdown.triggered() => return None,
            s = self.interactive.recv() => (s, Lane::Interactive),
            s = self.background.recv() => (s, Lane::Background),
        };
        // Both senders live in every `District` handle, so one closed lane
        // means both are; `run` refuses whatever is left.
        let Some(first) = first else { return Some(0) };
        let first_background = match lane {
            Lane::Interactive => {
                batch.push(first);
                None
            }
            Lane::Background => Some(first),
        };
        take_queued(&mut self.interactive, batch, MAX_BATCH_COMMANDS);
        let interactive = batch.len();
        batch.extend(first_background);
        take_queued(
            &mut self.background,
            batch,
            interactive + MAX_BACKGROUND_PER_BATCH,
        );
        Some(batch.len())
    }

    /// Closes both lanes and returns what was still queued.
    async fn close(&mut self) -> Vec<Submission> {
        self.interactive.close();
        self.background.close();
        let mut left = Vec::new();
        while let Some(sub) = self.interactive.recv().await {
            left.push(sub);
        }
        while let Some(sub) = self.background.recv().await {
            left.push(sub);
        }
        left
    }
}

enum Lane {
    Interactive,
    Background,
}

/// Moves what `lane` has queued into `batch` until it holds `up_to`.
fn take_queued(lane: &mut mpsc::Receiver<Submission>, batch: &mut Vec<Submission>, up_to: usize) {
    while batch.len() < up_to {
        let Ok(sub) = lane.try_recv() else { break };
        batch.push(sub);
    }
}

/// Why the writer stopped committing.
enum Ended {
    /// The shutdown signal.
    Signalled,
    /// Every handle was dropped: nothing can be submitted any more.
    Abandoned,
    /// An append failed: memory is ahead of the disk.
    AppendFailed,
}

impl Writer {
    /// `shutdown` is held until the log is closed, so whoever awaits the
    /// writer's lifecycle may reopen the log at once.
    async fn run(self, mut inbox: Inbox, mut shutdown: Shutdown) {
        let stopping = self.stopping.clone();
        let failure = self.failure.clone();
        let archive = self.archive.clone();
        let ended = self.commit_until(&mut inbox, &mut shutdown).await;
        // The log is closed; the readers' trees would keep it open.
        archive.store(None);
        // The writer, and with it the log, is gone. Queued commands are
        // answered here; later submits fail at once on the closed channel.
        let signalled = match ended {
            Ended::AppendFailed => false,
            Ended::Signalled | Ended::Abandoned => {
                stopping.store(true, Ordering::Release);
                true
            }
        };
        let mut refused = 0usize;
        for sub in inbox.close().await {
            let answer = if signalled {
                WriteError::ShuttingDown
            } else {
                refusal(&failure)
            };
            let _ = sub.reply.send(Err(answer));
            refused += 1;
        }
        tracing::info!(refused, "writer stopped");
        drop(shutdown);
    }

    /// Commits batches until it must stop. Consumes the writer, so the log
    /// is closed when this returns.
    async fn commit_until(mut self, inbox: &mut Inbox, shutdown: &mut Shutdown) -> Ended {
        let mut batch = Vec::with_capacity(MAX_BATCH_COMMANDS + MAX_BACKGROUND_PER_BATCH);
        loop {
            // The signal wins over waiting commands: a stopping writer takes
            // nothing new. A batch already taken is never raced with it.
            match inbox.take(&mut batch, shutdown).await {
                None => return Ended::Signalled,
                Some(0) => return Ended::Abandoned,
                Some(_) => {}
            }
            if !self.commit(&mut batch).await {
                return Ended::AppendFailed;
            }
        }
    }

    /// Decides, appends with one fsync, publishes, answers. `false` when the
    /// append failed (everyone in the batch was answered with an error).
    async fn commit(&mut self, inbox: &mut Vec<Submission>) -> bool {
        let started = Instant::now();
        let now = self.setup.clock.now();
        let outcomes: Vec<Outcome> = inbox.drain(..).map(|s| self.decide_one(s, now)).collect();
        let batch: Vec<EventEnvelope> = outcomes
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let archived = std::mem::take(&mut self.archived);
        let appended = self
            .setup
            .log
            .append_batch_archiving(&batch, &archived)
            .await;
        if let Err(e) = appended {
            tracing::error!(error = %e, events = batch.len(), "append failed; writer stops");
            let _ = self
                .failure
                .set(format!("appending to the event log failed: {e}"));
            for (reply, _) in outcomes {
                let _ = reply.send(Err(refusal(&self.failure)));
            }
            return false;
        }
        // A crash with the batch durable but nobody answered or notified.
        fail::fail_point!("writer-after-sync-before-reply", |_| std::process::abort());
        let snapshot = Arc::new(self.state.clone());
        self.view.store(snapshot.clone());
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
        let seq = self.state.last_seq();
        for (reply, result) in outcomes {
            let _ = reply.send(
                result
                    .map(|events| Committed { events, seq })
                    .map_err(WriteError::Domain),
            );
        }
        true
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
            utc_offset_minutes: self.setup.utc_offset_minutes,
            schedule: self.setup.schedule_policy,
        };
        let events = district::decide(&self.state, command, &ctx)?;
        self.archive_entries(&events)?;
        let mut out = Vec::with_capacity(events.len());
        let mut cause = None;
        for event in events {
            let stream_id = event.stream_id();
            let env = EventEnvelope {
                // Ids carry the node clock's time, so they sort with it.
                event_id: crate::clock::ulid_at(now),
                seq: self.state.last_seq() + 1,
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
            district::evolve(&mut self.state, &env);
            cause = Some(env.event_id);
            out.push(env);
        }
        Ok(out)
    }

    /// The archive index entries of a decision's `OrdersArchived`, from the
    /// state before the decision is applied (the only event of its
    /// command, so that is the state it was decided on).
    fn archive_entries(&mut self, events: &[protocol::Event]) -> Result<(), DomainError> {
        for event in events {
            if let protocol::Event::OrdersArchived { order_ids } = event {
                let entries = crate::archive::entries(&self.state, order_ids)
                    .map_err(|e| DomainError::Invalid(e.to_string()))?;
                self.archived.extend(entries);
            }
        }
        Ok(())
    }
}
