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
//! Must not: decide anything, or be written by anyone but the writer task.

use std::path::Path;
use std::sync::Arc;

use protocol::codec::{self, CodecError};
use protocol::EventEnvelope;
use storage::{StorageError, SyncStats, SyncedDb};

const LOG_TREE: &str = "log";

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
}

#[derive(Clone)]
pub struct EventLog {
    db: SyncedDb,
    log: sled::Tree,
    archive: crate::archive::Archive,
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
        Ok(EventLog { db, log, archive })
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
    /// checking the sequence is dense from `seq + 1`.
    pub fn replay_after(
        &self,
        seq: u64,
    ) -> impl Iterator<Item = Result<EventEnvelope, StoreError>> + '_ {
        let mut expected = seq + 1;
        self.log.range(expected.to_be_bytes()..).map(move |item| {
            let (key, value) = item?;
            let seq = key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
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

    /// The raw records in order, undecoded (benchmarks: the cost of reading
    /// alone).
    pub fn raw_records(&self) -> impl Iterator<Item = sled::IVec> + '_ {
        self.log.iter().values().filter_map(|v| v.ok())
    }

    /// The id of event `seq`, which ties a snapshot to the log it was taken
    /// from. Seq 0 (before the first event) has id 0.
    pub fn event_id_at(&self, seq: u64) -> Result<u128, StoreError> {
        if seq == 0 {
            return Ok(0);
        }
        let value = self.log.get(seq.to_be_bytes())?.ok_or(StoreError::Gap {
            expected: seq,
            found: 0,
        })?;
        let env = codec::decode_log_record(&value)
            .map_err(|source| StoreError::Corrupt { seq, source })?;
        Ok(u128::from(env.event_id))
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

/// Read-only access to the log's records, for the admin log route (backup
/// and export). It cannot append: the writer stays the only writer.
#[derive(Clone)]
pub struct LogReader {
    log: sled::Tree,
}

impl EventLog {
    /// A reader over the same tree, for handlers that stream records.
    pub fn reader(&self) -> LogReader {
        LogReader {
            log: self.log.clone(),
        }
    }

    /// Writes already-encoded records (a restore) in seq order without
    /// syncing; [`EventLog::sync`] once at the end makes them all durable.
    /// Each must decode and carry the seq it is stored under, and the
    /// records must continue the log densely.
    pub fn restore_records(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        // `last`, not `len`: sled's `len` scans the whole tree.
        let end = match self.log.last()? {
            Some((key, _)) => key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
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
        for item in self
            .log
            .range(first.to_be_bytes()..=upto.to_be_bytes())
            .take(limit)
        {
            let (key, value) = item?;
            let seq = key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            out.push((seq, value));
        }
        Ok(out)
    }
}
