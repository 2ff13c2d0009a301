//! The district's event log in sled.
//!
//! Owns the on-disk format: trees `log`, `log.<first>`… ([`trees`]) map
//! the big-endian sequence number of a group's first event to the group
//! of encoded records (`protocol::codec`) a batch appended. Append-only:
//! records are never rewritten. Appends go through [`EventLog::append_batch`], one sled
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
pub mod trees;

use std::path::Path;
use std::sync::{Arc, RwLock};

use protocol::codec::{self, CodecError};
use protocol::EventEnvelope;
use storage::{StorageError, SyncStats, SyncedDb};

/// Records per sled tree and so per sealed segment (`[snapshots]
/// seal_segment_records`): ~10 MB of a busy district's records, a few
/// seconds of its log under load.
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
    #[error("the record group from seq {first} is cut short at seq {seq}")]
    CutShort { first: u64, seq: u64 },
}

#[derive(Clone)]
pub struct EventLog {
    db: SyncedDb,
    /// The sled part. Lock order: `sealed`, then `trees`.
    trees: Arc<RwLock<trees::Trees>>,
    archive: crate::archive::Archive,
    /// Readers hold it shared while they read both parts; sealing holds it
    /// exclusively while it adds a segment.
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
        let archive = crate::archive::Archive::open(db.db(), dir)?;
        let sealed = sealed::Sealed::open(dir)?;
        let trees = trees::Trees::open(db.db(), sealed.upto())?;
        Ok(EventLog {
            db,
            trees: Arc::new(RwLock::new(trees)),
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

    /// Moves archived orders out of sled once it holds `entries` of them
    /// ([`crate::archive`]).
    pub fn with_archive_flush_entries(mut self, entries: u64) -> Self {
        self.archive = self.archive.with_flush_entries(entries);
        self
    }

    fn sealed(&self) -> std::sync::RwLockReadGuard<'_, sealed::Sealed> {
        // A panic while sealing leaves the list as it was before the push.
        self.sealed.read().unwrap_or_else(|p| p.into_inner())
    }

    fn trees(&self) -> std::sync::RwLockReadGuard<'_, trees::Trees> {
        self.trees.read().unwrap_or_else(|p| p.into_inner())
    }

    fn trees_mut(&self) -> std::sync::RwLockWriteGuard<'_, trees::Trees> {
        self.trees.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The last seq moved out of sled into a segment (0: none).
    pub fn sealed_upto(&self) -> u64 {
        self.sealed().upto()
    }

    /// Moves the sled trees whose every record has `seq <= covered` (a
    /// durable snapshot's seq) into sealed segments; returns how many
    /// records moved. Each segment is durable under its name before it
    /// joins the list (under the exclusive lock, so a reader sees every
    /// record in one place or the other); a tree is dropped once all of
    /// it is sealed. Blocking.
    pub fn seal_behind(&self, covered: u64) -> Result<u64, StoreError> {
        if self.segment_records == 0 {
            return Ok(0);
        }
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let mut moved = 0;
        loop {
            // Bound first: a guard in a `while let` would live through the
            // body, which takes the write lock.
            let oldest = self.trees().oldest_closed();
            let Some((_, tree_last)) = oldest.filter(|(_, last)| *last <= covered) else {
                break;
            };
            // A tree from before trees rotated may hold many segments.
            loop {
                let from = self.sealed_upto() + 1;
                if from > tree_last {
                    break;
                }
                let to = tree_last.min(from.saturating_add(self.segment_records - 1));
                let last = self.seal_one(from, to)?;
                moved += (last + 1).saturating_sub(from);
                if last < to {
                    // sled ended early: nothing more to seal here.
                    return Ok(moved);
                }
            }
            let taken = self.trees_mut().take_oldest();
            if let Some(name) = taken {
                trees::drop_tree(self.db.db(), &name)?;
            }
        }
        Ok(moved)
    }

    /// Writes the records `from..=to` into a segment and adds it; the last
    /// seq it holds (`from - 1`: none).
    fn seal_one(&self, from: u64, to: u64) -> Result<u64, StoreError> {
        let dir = self.sealed().dir().to_path_buf();
        let records = trees::range(self.trees().from(from), from, to);
        let Some(segment) = sealed::write(&dir, from, records)? else {
            return Ok(from - 1);
        };
        let last = segment.last;
        // Waits for every reader that started before: from here on a
        // reader reads these seqs from the segment, never from sled.
        self.sealed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(segment);
        Ok(last)
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
        let records = batch
            .iter()
            .map(|env| Ok((env.seq, codec::encode_log_record(env)?)))
            .collect::<Result<Vec<_>, CodecError>>()
            .map_err(StoreError::Encode)?;
        // Groups of records, not one key per record ([`trees`] says why).
        let mut sled_batch = sled::Batch::default();
        for (first, value) in trees::group(records) {
            sled_batch.insert(&first.to_be_bytes(), value);
        }
        self.head_for(batch[0].seq)?.apply_batch(sled_batch)?;
        // A crash with the batch written to sled's buffers but not synced.
        fail::fail_point!("log-after-append-before-sync", |_| std::process::abort());
        self.db.flush_and_sync().await?;
        Ok(())
    }

    /// The tree to append records from `seq` to: a new one once the head
    /// holds a segment's worth ([`trees`]).
    fn head_for(&self, seq: u64) -> Result<sled::Tree, StoreError> {
        let full = self.trees().is_full(seq, self.segment_records);
        if full {
            self.trees_mut().rotate_for(seq, self.segment_records)?;
        }
        Ok(self.trees().head())
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
        both_parts(&self.sealed(), &self.trees(), seq, u64::MAX)
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
            None => self.trees().get(seq)?.ok_or(StoreError::Gap {
                expected: seq,
                found: 0,
            })?,
        };
        let env = codec::decode_log_record(&value)
            .map_err(|source| StoreError::Corrupt { seq, source })?;
        Ok(u128::from(env.event_id))
    }

    /// Records in the log, sealed ones included: its last seq, the log
    /// being dense from 1 (a record in both parts after a stopped seal
    /// counts once).
    pub fn len(&self) -> usize {
        let upto = self.sealed_upto();
        let last = self.trees().last_seq().ok().flatten().unwrap_or(0);
        last.max(upto) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read-only access to the log's records, for the admin log route (backup
/// and export). It cannot append: the writer stays the only writer.
#[derive(Clone)]
pub struct LogReader {
    trees: Arc<RwLock<trees::Trees>>,
    sealed: Arc<RwLock<sealed::Sealed>>,
}

impl EventLog {
    /// A reader over the same tree, for handlers that stream records.
    pub fn reader(&self) -> LogReader {
        LogReader {
            trees: self.trees.clone(),
            sealed: self.sealed.clone(),
        }
    }

    /// Writes already-encoded records (a restore) in seq order without
    /// syncing; [`EventLog::sync`] once at the end makes them all durable.
    /// Each must decode and carry the seq it is stored under, and the
    /// records must continue the log densely.
    pub fn restore_records(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        // `last`, not `len`: sled's `len` scans the whole tree.
        let last_in_sled = self.trees().last_seq()?;
        let end = last_in_sled.unwrap_or_else(|| self.sealed_upto());
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
        if let Some((first, _)) = records.first() {
            self.head_for(*first)?.apply_batch(batch)?;
        }
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
        // Held while reading: a seal cannot move records between the two
        // parts meanwhile.
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        let trees = self.trees.read().unwrap_or_else(|p| p.into_inner());
        let records = both_parts(&sealed, &trees, after, upto);
        // Only the handles are needed: the writer may start a tree.
        drop(trees);
        records.take(limit).collect()
    }
}

/// The records `after < seq <= upto`: the sealed ones, then sled's from
/// where they end, read lazily (no lock held; a caller that must not see a
/// seal in between holds `sealed` while it reads).
fn both_parts(
    sealed: &sealed::Sealed,
    trees: &trees::Trees,
    after: u64,
    upto: u64,
) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> {
    let files = sealed
        .records_after(after)
        .take_while(move |r| !matches!(r, Ok((seq, _)) if *seq > upto))
        .map(|r| r.map(|(seq, bytes)| (seq, sled::IVec::from(bytes))));
    let from = after.max(sealed.upto()) + 1;
    files.chain(trees::range(trees.from(from), from, upto))
}
