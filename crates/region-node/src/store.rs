//! The district's event log in sled.
//!
//! Owns the on-disk format: tree `log` maps the big-endian event sequence
//! number to an encoded record (`protocol::codec`). Append-only: records are
//! never rewritten. Appends go through [`EventLog::append_batch`], one sled
//! batch plus one flush and `fdatasync` (`storage::SyncedDb`) — the writer
//! calls it once per group of commands. Everything else (projections,
//! timers, outbox, idempotency keys) is derived by replaying the log, so one
//! atomic append covers them all.
//!
//! The part of the log a snapshot already covers moves, in segments of
//! [`SEGMENT_RECORDS_DEFAULT`] records, into immutable files
//! ([`sealed`], which says why); every read here goes through both, so
//! nobody else sees where a record lives.
//!
//! Must not: decide anything, or be written by anyone but the writer task
//! (appends) and the snapshot task (sealing, behind a snapshot).

pub mod sealed;

use std::path::Path;
use std::sync::{Arc, RwLock};

use protocol::codec::{self, CodecError};
use protocol::EventEnvelope;
use storage::{StorageError, SyncStats, SyncedDb};

const LOG_TREE: &str = "log";
/// Records per sealed segment (`[snapshots] seal_segment_records`): ~10 MB
/// of a busy district's records, a few seconds of its log under load.
pub const SEGMENT_RECORDS_DEFAULT: u64 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("record {seq} cannot be decoded: {source}")]
    Corrupt { seq: u64, source: CodecError },
    #[error("log has a gap: expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
    #[error("encode: {0}")]
    Encode(CodecError),
    #[error("archive index: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("sealed segment {0}")]
    Sealed(String),
}

#[derive(Clone)]
pub struct EventLog {
    db: SyncedDb,
    log: sled::Tree,
    archive: crate::archive::Archive,
    /// Readers hold it shared while they read both parts; sealing holds it
    /// exclusively while it moves records from sled to a segment.
    sealed: Arc<RwLock<sealed::Sealed>>,
    /// One seal at a time (a seal reads where the last one ended).
    sealing: Arc<std::sync::Mutex<()>>,
    segment_records: u64,
}

impl EventLog {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_stats(dir, Arc::default())
    }

    /// Opens the log, counting its syncs in `stats` (the node's metrics).
    pub fn open_with_stats(dir: &Path, stats: Arc<SyncStats>) -> Result<Self, StoreError> {
        let config = storage::config(dir)
            // We sync explicitly after every batch; sled's background
            // flusher would only add fsyncs nobody waits for.
            .flush_every_ms(None);
        let db = SyncedDb::open_with_stats(config, stats)?;
        let log = db.db().open_tree(LOG_TREE)?;
        let archive = crate::archive::Archive::open(db.db())?;
        let sealed = sealed::Sealed::open(dir)?;
        trim_sealed(&log, sealed.upto())?;
        Ok(EventLog {
            db,
            log,
            archive,
            sealed: Arc::new(RwLock::new(sealed)),
            sealing: Arc::default(),
            segment_records: SEGMENT_RECORDS_DEFAULT,
        })
    }

    /// Seals in segments of `records` instead of the default; 0 never
    /// seals (every record stays in sled).
    pub fn with_segment_records(mut self, records: u64) -> Self {
        self.segment_records = records;
        self
    }

    fn sealed(&self) -> std::sync::RwLockReadGuard<'_, sealed::Sealed> {
        // A panic while sealing leaves the list as it was before the push.
        self.sealed.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last seq moved out of sled into a segment (0: none).
    pub fn sealed_upto(&self) -> u64 {
        self.sealed().upto()
    }

    /// Moves whole segments of records with `seq <= covered` (a durable
    /// snapshot's seq) out of sled; returns how many records moved. Each
    /// segment is durable under its name before its records leave sled,
    /// and they leave in one sled batch under the exclusive lock, so a
    /// reader sees every record in one place or the other. Blocking.
    pub fn seal_behind(&self, covered: u64) -> Result<u64, StoreError> {
        if self.segment_records == 0 {
            return Ok(0);
        }
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let mut moved = 0;
        loop {
            let from = self.sealed_upto() + 1;
            let to = from.saturating_add(self.segment_records - 1);
            if to > covered {
                return Ok(moved);
            }
            let dir = self.sealed().dir().to_path_buf();
            let records = self
                .log
                .range(from.to_be_bytes()..=to.to_be_bytes())
                .map(|item| {
                    let (key, value) = item?;
                    Ok((seq_of(&key), value))
                });
            let Some(segment) = sealed::write(&dir, from, records)? else {
                return Ok(moved);
            };
            // Dense from `from` (checked while writing); shorter than a
            // segment only if sled ended first, and then it is still whole.
            let last = segment.last;
            let mut list = self.sealed.write().unwrap_or_else(|p| p.into_inner());
            list.push(segment);
            trim_sealed(&self.log, last)?;
            drop(list);
            moved += last + 1 - from;
            if last < to {
                return Ok(moved);
            }
        }
    }

    /// The archive index in the same database (reads; the writer writes it
    /// through [`EventLog::append_batch_archiving`]).
    pub fn archive(&self) -> &crate::archive::Archive {
        &self.archive
    }

    /// How often the log was made durable (tests, metrics).
    pub fn sync_stats(&self) -> &Arc<SyncStats> {
        self.db.stats()
    }

    /// Appends a batch atomically and returns once it is on stable storage
    /// (sled's flush, then `fdatasync` of the data file).
    /// Envelopes must carry consecutive `seq` numbers following the log's end.
    pub async fn append_batch(&self, batch: &[EventEnvelope]) -> Result<(), StoreError> {
        self.append_batch_archiving(batch, &[]).await
    }

    /// [`EventLog::append_batch`] with the archive index entries of the
    /// batch's `OrdersArchived` events, written before the records and
    /// made durable by the same flush and `fdatasync` (see
    /// [`crate::archive`]).
    pub async fn append_batch_archiving(
        &self,
        batch: &[EventEnvelope],
        archived: &[crate::archive::Entry],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.archive.write(archived)?;
        let mut sled_batch = sled::Batch::default();
        for env in batch {
            let bytes = codec::encode_log_record(env).map_err(StoreError::Encode)?;
            sled_batch.insert(&env.seq.to_be_bytes(), bytes);
        }
        self.log.apply_batch(sled_batch)?;
        // A crash with the batch written to sled's buffers but not synced.
        fail::fail_point!("log-after-append-before-sync", |_| std::process::abort());
        self.db.flush_and_sync().await?;
        Ok(())
    }

    /// Every record in order, checking the sequence is dense.
    pub fn replay(&self) -> impl Iterator<Item = Result<EventEnvelope, StoreError>> + '_ {
        self.replay_after(0)
    }

    /// The records after `seq` in order (the tail behind a snapshot),
    /// checking the sequence is dense from `seq + 1`: sealed segments
    /// first, then sled. Meant for start-up, before sealing runs: a seal
    /// during the iteration shows as a gap, never as a silent skip.
    pub fn replay_after(
        &self,
        seq: u64,
    ) -> impl Iterator<Item = Result<EventEnvelope, StoreError>> + '_ {
        let mut expected = seq + 1;
        self.raw_after(seq).map(move |item| {
            let (seq, value) = item?;
            let env = codec::decode_log_record(&value)
                .map_err(|source| StoreError::Corrupt { seq, source })?;
            if env.seq != expected || seq != expected {
                return Err(StoreError::Gap {
                    expected,
                    found: env.seq,
                });
            }
            expected += 1;
            Ok(env)
        })
    }

    /// Every record after `seq` with its seq, undecoded: the sealed ones,
    /// then sled's from where they end.
    fn raw_after(
        &self,
        seq: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        let sealed = self.sealed();
        let (files, upto) = (sealed.records_after(seq), sealed.upto());
        drop(sealed);
        let files = files.map(|r| r.map(|(seq, bytes)| (seq, sled::IVec::from(bytes))));
        let from = seq.max(upto) + 1;
        let tail = self.log.range(from.to_be_bytes()..).map(|item| {
            let (key, value) = item?;
            Ok((seq_of(&key), value))
        });
        files.chain(tail)
    }

    /// The raw records in order, undecoded (benchmarks: the cost of reading
    /// alone).
    pub fn raw_records(&self) -> impl Iterator<Item = sled::IVec> + '_ {
        self.raw_after(0).filter_map(|r| r.ok().map(|(_, v)| v))
    }

    /// The id of event `seq`, which ties a snapshot to the log it was taken
    /// from. Seq 0 (before the first event) has id 0.
    pub fn event_id_at(&self, seq: u64) -> Result<u128, StoreError> {
        if seq == 0 {
            return Ok(0);
        }
        let value = match self.sealed().get(seq)? {
            Some(bytes) => sled::IVec::from(bytes),
            None => self.log.get(seq.to_be_bytes())?.ok_or(StoreError::Gap {
                expected: seq,
                found: 0,
            })?,
        };
        let env = codec::decode_log_record(&value)
            .map_err(|source| StoreError::Corrupt { seq, source })?;
        Ok(u128::from(env.event_id))
    }

    /// Records in the log, sealed ones included. Scans sled's part.
    pub fn len(&self) -> usize {
        self.sealed_upto() as usize + self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sealed_upto() == 0 && self.log.is_empty()
    }
}

/// Read-only access to the log's records, for the admin log route (backup
/// and export). It cannot append: the writer stays the only writer.
#[derive(Clone)]
pub struct LogReader {
    log: sled::Tree,
    sealed: Arc<RwLock<sealed::Sealed>>,
}

impl EventLog {
    /// A reader over the same tree, for handlers that stream records.
    pub fn reader(&self) -> LogReader {
        LogReader {
            log: self.log.clone(),
            sealed: self.sealed.clone(),
        }
    }

    /// Writes already-encoded records (a restore) in seq order without
    /// syncing; [`EventLog::sync`] once at the end makes them all durable.
    /// Each must decode and carry the seq it is stored under, and the
    /// records must continue the log densely.
    pub fn restore_records(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        // `last`, not `len`: sled's `len` scans the whole tree.
        let end = match self.log.last()? {
            Some((key, _)) => seq_of(&key),
            None => self.sealed_upto(),
        };
        let mut batch = sled::Batch::default();
        for (expected, (seq, bytes)) in (end + 1..).zip(records) {
            let env = codec::decode_log_record(bytes)
                .map_err(|source| StoreError::Corrupt { seq: *seq, source })?;
            if env.seq != expected || *seq != expected {
                return Err(StoreError::Gap {
                    expected,
                    found: env.seq,
                });
            }
            batch.insert(&seq.to_be_bytes(), bytes.as_slice());
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// Makes every write so far durable (sled's flush, then `fdatasync`).
    pub async fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.flush_and_sync().await?)
    }
}

impl LogReader {
    /// Encoded records with `after < seq <= upto`, at most `limit` of them,
    /// in order. Blocking (sled reads); call off the async threads.
    pub fn records(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(vec![]);
        };
        if first > upto {
            return Ok(vec![]);
        }
        let mut out = Vec::with_capacity(limit.min((upto - after) as usize));
        // Shared: a seal cannot move records between the two reads.
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        for item in sealed.records_after(after) {
            let (seq, bytes) = item?;
            if seq > upto || out.len() == limit {
                return Ok(out);
            }
            out.push((seq, sled::IVec::from(bytes)));
        }
        let from = after.max(sealed.upto()) + 1;
        if from > upto {
            return Ok(out);
        }
        let left = limit - out.len();
        for item in self
            .log
            .range(from.to_be_bytes()..=upto.to_be_bytes())
            .take(left)
        {
            let (key, value) = item?;
            out.push((seq_of(&key), value));
        }
        Ok(out)
    }
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Removes sled's copies of the records with `seq <= upto`, which are
/// sealed: after a seal, and on opening a log that crashed between a
/// segment's rename and this. Not synced: a removal lost in a crash is
/// made again by the next open.
fn trim_sealed(log: &sled::Tree, upto: u64) -> Result<(), StoreError> {
    if upto == 0 {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let mut any = false;
    for key in log.range(..=upto.to_be_bytes()).keys() {
        batch.remove(key?);
        any = true;
    }
    if any {
        log.apply_batch(batch)?;
    }
    Ok(())
}
