//! State snapshots: a cache of the log's replay, so start-up reads the newest
//! snapshot and replays only the events after it.
//!
//! The log stays the only truth. A snapshot is the `DistrictState` after
//! event `seq`, written from a published (so already durable) state by a
//! background task, never by the writer: taking it costs the writer nothing
//! (the state is persistent, a snapshot of it is an `Arc`), and encoding and
//! writing happen on a thread of their own at a lower CPU priority
//! ([`SNAPSHOT_THREAD_NICE`]). Because it is only a cache, anything
//! doubtful about a snapshot makes start-up skip it, with a log line, and
//! use an older one or replay the whole log: another state shape
//! ([`STATE_SNAPSHOT_VERSION`]), a bad checksum, a truncated file, a seq the
//! log does not reach, or a log whose event at that seq is not the one the
//! snapshot was taken after (a log restored or replaced under it).
//!
//! File format, `snapshots/state-<seq, 20 digits>.snap`:
//! ```text
//! magic "LRDSNAP1" | state version u32 | seq u64 | event id of seq u128
//! | body length u64 | crc32 of body u32 | body: postcard(DistrictState)
//! ```
//! (little-endian). Written to a temporary name, fsynced, renamed, and the
//! directory fsynced, so a crash leaves either the whole file or none.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use district::{DistrictState, STATE_SNAPSHOT_VERSION};
use storage::archive;

use crate::store::EventLog;

pub const SNAPSHOT_DIR: &str = "snapshots";
const MAGIC: &[u8; 8] = b"LRDSNAP1";
const HEADER_BYTES: usize = 8 + 4 + 8 + 16 + 8 + 4;
const PREFIX: &str = "state-";
const SUFFIX: &str = ".snap";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] storage::archive::ArchiveError),
    #[error("encode: {0}")]
    Encode(postcard::Error),
    #[error("{0}")]
    Unusable(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshots of one district, in `<data_dir>/snapshots`.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Snapshots kept after a successful write (older ones are deleted).
    keep: usize,
}

/// A snapshot found on disk and checked against the log.
pub struct Loaded {
    pub state: DistrictState,
    pub path: PathBuf,
}

impl SnapshotStore {
    pub fn new(data_dir: &Path, keep: usize) -> Self {
        SnapshotStore {
            dir: data_dir.join(SNAPSHOT_DIR),
            keep: keep.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `state` durably; returns its path. Blocking: call it from a
    /// blocking thread.
    pub fn write(&self, state: &DistrictState, log: &EventLog) -> Result<PathBuf, SnapshotError> {
        let seq = state.last_seq();
        let event_id = log
            .event_id_at(seq)
            .map_err(|e| SnapshotError::Unusable(format!("reading event {seq}: {e}")))?;
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let path = self.dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"));
        // Temporary name, fsync, rename, fsync of the directory: the name
        // appears only for complete, durable contents.
        let tmp = path.with_extension("tmp");
        if let Err(e) = write_synced(&tmp, state, seq, event_id) {
            // Only a cache: a half-written temporary file is just litter.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
        archive::sync_dir(archive::parent_of(&path))?;
        self.prune();
        Ok(path)
    }

    /// The newest snapshot that is whole, of this state version, and taken
    /// from this log; `None` means replay from the start. Each one skipped
    /// is logged with why.
    pub fn load_newest(&self, log: &EventLog) -> Option<Loaded> {
        for (seq, path) in self.listed().into_iter().rev() {
            match read(&path, seq, log) {
                Ok(state) => return Some(Loaded { state, path }),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "snapshot skipped; trying an older one or the full log"
                ),
            }
        }
        None
    }

    /// Snapshot files by seq, oldest first. Names that do not parse are not
    /// ours and are left alone.
    fn listed(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let seq = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
                Some((seq.parse().ok()?, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// Deletes all but the newest `keep`. A failure only costs disk space.
    fn prune(&self) {
        let listed = self.listed();
        let excess = listed.len().saturating_sub(self.keep);
        for (_, path) in listed.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "old snapshot not removed");
            }
        }
    }
}

fn read(path: &Path, seq_in_name: u64, log: &EventLog) -> Result<DistrictState, SnapshotError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let unusable = |why: String| Err(SnapshotError::Unusable(why));
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return unusable("not a snapshot file (bad magic or too short)".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
    let version = u32_at(8);
    if version != STATE_SNAPSHOT_VERSION {
        return unusable(format!(
            "state version {version}, this node reads {STATE_SNAPSHOT_VERSION}"
        ));
    }
    let seq = u64_at(12);
    let event_id = u128::from_le_bytes(bytes[20..36].try_into().unwrap_or_default());
    let body_len = u64_at(36);
    let crc = u32_at(44);
    let body = &bytes[HEADER_BYTES..];
    if seq != seq_in_name || body.len() as u64 != body_len || crc32fast::hash(body) != crc {
        return unusable("truncated or corrupt (length, name or checksum mismatch)".into());
    }
    match log.event_id_at(seq) {
        Ok(id) if id == event_id => {}
        Ok(_) => {
            return unusable(format!(
                "the log's event {seq} is not the one it was taken after"
            ))
        }
        Err(e) => return unusable(format!("the log does not reach seq {seq}: {e}")),
    }
    let state: DistrictState = protocol::ids::interning(|| postcard::from_bytes(body))
        .map_err(|e| SnapshotError::Unusable(format!("decode: {e}")))?;
    if state.last_seq() != seq {
        return unusable(format!(
            "body is at seq {}, header says {seq}",
            state.last_seq()
        ));
    }
    Ok(state)
}

/// Bytes encoded between two writes to the file. The state is tens of MB
/// (~400 bytes an order in memory): encoding it into one `Vec` grew it by
/// doubling (copies and fresh pages for ~2x the body) and then copied it
/// again behind the header; chunks keep the encoder's memory at this size
/// and the write calls at one per MiB.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Encodes `state` straight into the file at `tmp` and fsyncs it. The body
/// streams out in chunks, its length and crc32 taken as it goes; the header,
/// which names both, goes last, over the zeroes left for it at the start
/// (the format is the one [`read`] expects whatever the write order).
fn write_synced(
    tmp: &Path,
    state: &DistrictState,
    seq: u64,
    event_id: u128,
) -> Result<(), SnapshotError> {
    use std::io::Write as _;
    use std::os::unix::fs::FileExt as _;
    let mut file = fs::File::create(tmp).map_err(io_err("create", tmp))?;
    file.write_all(&[0; HEADER_BYTES])
        .map_err(io_err("write", tmp))?;
    let mut chunks = Chunks {
        file,
        buf: Vec::with_capacity(WRITE_CHUNK_BYTES),
        crc: crc32fast::Hasher::new(),
        len_bytes: 0,
        failed: None,
    };
    if let Err(e) = postcard::serialize_with_flavor(state, &mut chunks) {
        return Err(match chunks.failed.take() {
            Some(source) => io_err("write", tmp)(source),
            None => SnapshotError::Encode(e),
        });
    }
    let Chunks {
        file,
        crc,
        len_bytes,
        ..
    } = chunks;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&STATE_SNAPSHOT_VERSION.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&event_id.to_le_bytes());
    header.extend_from_slice(&len_bytes.to_le_bytes());
    header.extend_from_slice(&crc.finalize().to_le_bytes());
    file.write_all_at(&header, 0)
        .map_err(io_err("write", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))
}

/// A postcard output that writes to a file in [`WRITE_CHUNK_BYTES`] chunks,
/// summing the body's length and crc32 as they leave.
struct Chunks {
    file: fs::File,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    len_bytes: u64,
    /// The write that failed: postcard's error type has no room for it, so
    /// the encoder is stopped with a stand-in and this is reported.
    failed: Option<io::Error>,
}

impl Chunks {
    fn flush(&mut self) -> postcard::Result<()> {
        use std::io::Write as _;
        self.crc.update(&self.buf);
        self.len_bytes += self.buf.len() as u64;
        let written = self.file.write_all(&self.buf);
        self.buf.clear();
        written.map_err(|e| {
            self.failed = Some(e);
            postcard::Error::SerializeBufferFull
        })
    }
}

impl postcard::ser_flavors::Flavor for &mut Chunks {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.buf.push(byte);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        self.flush()
    }
}

/// What start-up recovered, and from where.
pub struct Recovered {
    pub state: DistrictState,
    /// The snapshot's seq; 0 when the whole log was replayed.
    pub from_seq: u64,
    /// Log events replayed after it.
    pub replayed: u64,
    /// Time spent finding, reading and decoding the snapshot (zero without
    /// one); the rest of start-up is the tail's replay.
    pub snapshot_load: std::time::Duration,
}

/// Start-up: the newest usable snapshot (if any), then the log after it.
pub fn recover(
    log: &EventLog,
    snapshots: Option<&SnapshotStore>,
) -> Result<Recovered, crate::store::StoreError> {
    let started = std::time::Instant::now();
    let loaded = snapshots.and_then(|s| s.load_newest(log));
    let snapshot_load = started.elapsed();
    let from_seq = loaded.as_ref().map_or(0, |l| l.state.last_seq());
    if let Some(l) = &loaded {
        tracing::info!(
            path = %l.path.display(),
            seq = from_seq,
            ms = snapshot_load.as_millis() as u64,
            "snapshot loaded"
        );
    }
    let mut state = loaded.map(|l| l.state).unwrap_or_default();
    replay_into(&mut state, log, from_seq)?;
    tracing::info!(
        from_seq,
        events = state.last_seq() - from_seq,
        last_seq = state.last_seq(),
        ms = started.elapsed().as_millis() as u64,
        "state recovered"
    );
    Ok(Recovered {
        replayed: state.last_seq() - from_seq,
        state,
        from_seq,
        snapshot_load,
    })
}

/// Events read and decoded per batch handed to the evolving thread.
const REPLAY_BATCH_EVENTS: usize = 4_096;
/// Decoded batches waiting for the evolving thread (bounds the memory a
/// reader running ahead can take: about 16 Ki events).
const REPLAY_BATCHES_IN_FLIGHT: usize = 4;

/// Folds the log after `from_seq` into `state`. Reading sled and decoding
/// the records cost about as much as evolving the state (BENCHMARKS.md,
/// "Start-up"), so a reader thread does the first while this one evolves:
/// on two cores a replay takes the longer of the two, not their sum. The
/// order of events is kept (one reader, one channel).
fn replay_into(
    state: &mut DistrictState,
    log: &EventLog,
    from_seq: u64,
) -> Result<(), crate::store::StoreError> {
    type Batch = Result<Vec<protocol::EventEnvelope>, crate::store::StoreError>;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(REPLAY_BATCHES_IN_FLIGHT);
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(REPLAY_BATCH_EVENTS);
            for env in log.replay_after(from_seq) {
                let env = match env {
                    Ok(env) => env,
                    // The evolving side stops at the first error.
                    Err(e) => return drop(tx.send(Err(e))),
                };
                batch.push(env);
                if batch.len() == REPLAY_BATCH_EVENTS {
                    let full =
                        std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH_EVENTS));
                    if tx.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch));
            }
        });
        for batch in rx {
            for env in &batch? {
                // The archive index follows the log: an entry missing (a
                // log restored from a backup) is written from the state
                // just before the event, as the writer wrote it.
                if let protocol::Event::OrdersArchived { order_ids } = &env.event {
                    log.archive().heal(state, order_ids)?;
                }
                district::evolve(state, env);
            }
        }
        Ok(())
    })
}

/// When the background task writes a snapshot (`[snapshots]`).
///
/// A snapshot encodes the whole hot state, so its cost grows with the
/// orders in memory; a fixed interval in events would make that cost per
/// event grow with them too. The interval is therefore at least
/// `events_per_hot_order` events per order in memory: a snapshot's cost is
/// then spread over events in proportion to it, and costs each event at
/// most its cost per order divided by that factor, whatever the state's
/// size (the factor's reasons: `config::SNAPSHOT_EVENTS_PER_HOT_ORDER_DEFAULT`).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// After at least this many events since the last snapshot.
    pub every_events: u64,
    /// And at least this many events per order in memory.
    pub events_per_hot_order: u64,
    /// Or after this long, if there is any new event at all.
    pub every_secs: u64,
}

impl SnapshotPolicy {
    /// Events after the last snapshot that make the next one due, for a
    /// state holding `hot_orders` orders.
    pub fn interval_events(&self, hot_orders: u64) -> u64 {
        self.every_events
            .max(self.events_per_hot_order.saturating_mul(hot_orders))
    }

    /// Whether a snapshot is due: `new_events` since the last one, which
    /// was `since_secs` ago, with `hot_orders` orders in memory now.
    pub fn is_due(&self, new_events: u64, hot_orders: u64, since_secs: u64) -> bool {
        new_events >= self.interval_events(hot_orders)
            || (new_events > 0 && since_secs >= self.every_secs)
    }
}

/// How often the task looks whether a snapshot is due, in milliseconds.
const CHECK_EVERY_MS: u64 = 1_000;

/// The nice value of the thread that writes a snapshot. A write is about a
/// second of CPU at 600k orders in memory that nobody waits on; at the
/// default priority it takes an equal share of a small machine's cores from
/// the writer and the request handlers. Under the order load, confirm p99
/// was 20.5-21.9 ms with snapshots off and 22-26 ms with them on, before
/// and after this (BENCHMARKS.md, "Orders", "After the memory cuts"): the
/// gain is within the runs' noise, the reason stands.
pub const SNAPSHOT_THREAD_NICE: i32 = 10;

/// Writes the snapshot on a thread of its own at [`SNAPSHOT_THREAD_NICE`].
/// Not on tokio's blocking pool: an unprivileged process cannot raise a
/// thread's priority back afterwards, and the pool's threads also run the
/// log's fsyncs.
async fn write_in_background(
    store: SnapshotStore,
    state: Arc<DistrictState>,
    log: EventLog,
) -> Result<PathBuf, String> {
    let (done, written) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            lower_this_threads_priority();
            let written = store.write(&state, &log).map_err(|e| e.to_string());
            if written.is_ok() {
                seal_behind(&log, state.last_seq());
            }
            let _ = done.send(written);
        });
    if let Err(e) = spawned {
        return Err(format!("no thread for the snapshot: {e}"));
    }
    written
        .await
        .unwrap_or_else(|_| Err("the snapshot thread ended without an answer".into()))
}

/// Moves the log's records that the snapshot at `seq` covers into sealed
/// segments (`store::sealed`), on the snapshot's thread. A failure only
/// leaves them in sled until the next snapshot.
fn seal_behind(log: &EventLog, seq: u64) {
    let started = std::time::Instant::now();
    match log.seal_behind(seq) {
        Ok(0) => {}
        Ok(records) => tracing::info!(
            records,
            sealed_upto = log.sealed_upto(),
            ms = started.elapsed().as_millis() as u64,
            "log records sealed"
        ),
        Err(e) => tracing::warn!(seq, error = %e, "log records not sealed; kept in sled"),
    }
}

/// Best effort: a thread left at the default priority only competes more.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread, no memory shared.
        let tid = unsafe { libc::gettid() };
        let set = unsafe {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, SNAPSHOT_THREAD_NICE)
        };
        if set != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "snapshot thread keeps its priority");
        }
    }
}

/// Writes a snapshot whenever one is due, until shutdown. Runs beside the
/// writer and only reads published states.
///
/// `log` is a handle of the district's log, only read here (event ids).
/// Held by this task, which ends before the writer, so the log still closes
/// when the writer does.
pub async fn run(
    district: crate::writer::District,
    log: EventLog,
    store: SnapshotStore,
    policy: SnapshotPolicy,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: crate::lifecycle::Shutdown,
) {
    let mut covered_seq = district.state().last_seq();
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(CHECK_EVERY_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.triggered() => return,
        }
        let state = district.state();
        let new_events = state.last_seq() - covered_seq;
        let hot_orders = state.orders().len() as u64;
        if !policy.is_due(new_events, hot_orders, since.elapsed().as_secs()) {
            continue;
        }
        let (store, writing) = (store.clone(), log.clone());
        let started = std::time::Instant::now();
        let seq = state.last_seq();
        match write_in_background(store, state, writing).await {
            Ok(path) => {
                tracing::info!(seq, path = %path.display(), ms = started.elapsed().as_millis() as u64, "snapshot written");
                covered_seq = seq;
                since = tokio::time::Instant::now();
                metrics.snapshots_written.fetch_add(1, Relaxed);
                metrics.snapshot_seq.store(seq, Relaxed);
                // Sealing ran on the snapshot's thread before it answered.
                metrics.log_sealed_seq.store(log.sealed_upto(), Relaxed);
            }
            // Only the next start-up is slower; try again at the next due time.
            Err(e) => tracing::warn!(seq, error = %e, "snapshot not written"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotPolicy;

    const POLICY: SnapshotPolicy = SnapshotPolicy {
        every_events: 100_000,
        events_per_hot_order: 2,
        every_secs: 600,
    };

    #[test]
    fn a_small_state_snapshots_every_every_events() {
        assert_eq!(POLICY.interval_events(0), 100_000);
        assert_eq!(POLICY.interval_events(50_000), 100_000);
        assert!(!POLICY.is_due(99_999, 10_000, 0));
        assert!(POLICY.is_due(100_000, 10_000, 0));
    }

    #[test]
    fn a_big_state_waits_in_proportion_to_its_orders() {
        assert_eq!(POLICY.interval_events(300_000), 600_000);
        assert!(!POLICY.is_due(100_000, 300_000, 0));
        assert!(!POLICY.is_due(599_999, 300_000, 0));
        assert!(POLICY.is_due(600_000, 300_000, 0));
    }

    #[test]
    fn time_makes_one_due_only_with_new_events() {
        assert!(POLICY.is_due(1, 300_000, 600));
        assert!(!POLICY.is_due(1, 300_000, 599));
        assert!(!POLICY.is_due(0, 0, 10_000));
    }

    #[test]
    fn the_defaults_wait_one_event_per_order_beyond_every_events() {
        let policy = crate::config::SnapshotsConfig::default().policy();
        assert_eq!(policy.interval_events(20_000), 100_000);
        assert_eq!(policy.interval_events(300_000), 300_000);
        assert!(!policy.is_due(299_999, 300_000, 599));
        assert!(policy.is_due(300_000, 300_000, 0));
    }

    #[test]
    fn no_factor_is_the_fixed_interval_and_nothing_overflows() {
        let fixed = SnapshotPolicy {
            events_per_hot_order: 0,
            ..POLICY
        };
        assert_eq!(fixed.interval_events(1_000_000), 100_000);
        let huge = SnapshotPolicy {
            events_per_hot_order: u64::MAX,
            ..POLICY
        };
        assert_eq!(huge.interval_events(2), u64::MAX);
        assert!(huge.is_due(1, 2, 600));
    }
}
