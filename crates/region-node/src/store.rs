//! The district's event log in sled.
//!
//! Owns the on-disk format: tree `log` maps the big-endian event sequence
//! number to an encoded record (`protocol::codec`). Append-only: records are
//! never rewritten. Appends go through [`EventLog::append_batch`], one sled
//! batch plus one `flush_async` — the writer calls it once per group of
//! commands. Everything else (projections, timers, outbox, idempotency keys)
//! is derived by replaying the log, so one atomic append covers them all.
//!
//! Must not: decide anything, or be written by anyone but the writer task.

use std::path::Path;

use protocol::codec::{self, CodecError};
use protocol::EventEnvelope;

const LOG_TREE: &str = "log";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("record {seq} cannot be decoded: {source}")]
    Corrupt { seq: u64, source: CodecError },
    #[error("log has a gap: expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
    #[error("encode: {0}")]
    Encode(CodecError),
}

#[derive(Clone)]
pub struct EventLog {
    db: sled::Db,
    log: sled::Tree,
}

impl EventLog {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // We flush explicitly after every batch; sled's background
            // flusher would only add fsyncs nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let log = db.open_tree(LOG_TREE)?;
        Ok(EventLog { db, log })
    }

    /// Appends a batch atomically and returns once it is on disk (fsync).
    /// Envelopes must carry consecutive `seq` numbers following the log's end.
    pub async fn append_batch(&self, batch: &[EventEnvelope]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut sled_batch = sled::Batch::default();
        for env in batch {
            let bytes = codec::encode_log_record(env).map_err(StoreError::Encode)?;
            sled_batch.insert(&env.seq.to_be_bytes(), bytes);
        }
        self.log.apply_batch(sled_batch)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Every record in order, checking the sequence is dense.
    pub fn replay(&self) -> impl Iterator<Item = Result<EventEnvelope, StoreError>> + '_ {
        let mut expected = 1u64;
        self.log.iter().map(move |item| {
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

    /// Records with `seq > after`, in order (event export, WebSocket resume).
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EventEnvelope>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.log
            .range(start..)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                let seq = key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                codec::decode_log_record(&value)
                    .map_err(|source| StoreError::Corrupt { seq, source })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}
