//! sled's space amplification, measured: the measured flows' log records
//! are appended to a real [`EventLog`] in a temporary directory, one
//! command's events per batch with one sync each (what the writer does
//! when commands do not queue up; under load it groups several, which
//! costs less space), and the growth of the directory is divided by the
//! record bytes written.

use std::path::{Path, PathBuf};

use protocol::EventEnvelope;
use serde::{Deserialize, Serialize};

use crate::store::{EventLog, StoreError};

/// Batches appended before the measured part (sled's first segments and
/// its config files are not growth).
const WARM_UP_BATCHES: usize = 300;
/// Batches whose growth is measured.
const MEASURED_BATCHES: usize = 2_000;

/// Bytes on disk per byte of log record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskFactor {
    pub disk_bytes_per_record_byte: f64,
    /// Records the factor was measured over.
    pub records_written: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no records to write")]
    Empty,
    #[error("the probe directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the probe log: {0}")]
    Store(#[from] StoreError),
    #[error("encode: {0}")]
    Encode(#[from] protocol::codec::CodecError),
}

/// Appends copies of `sample` (re-sequenced) under `dir` and measures the
/// growth of the directory. `dir` must not exist; it is removed after.
pub async fn measure(sample: &[Vec<EventEnvelope>], dir: &Path) -> Result<DiskFactor, DiskError> {
    if sample.is_empty() {
        return Err(DiskError::Empty);
    }
    let io = |source| DiskError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let result = probe(sample, dir).await;
    std::fs::remove_dir_all(dir).map_err(io)?;
    result
}

async fn probe(sample: &[Vec<EventEnvelope>], dir: &Path) -> Result<DiskFactor, DiskError> {
    let log = EventLog::open(dir)?;
    let mut batches = sample.iter().cycle();
    let mut seq = 0u64;
    let mut next_batch = || -> Vec<EventEnvelope> {
        let batch = batches.next().map(Vec::as_slice).unwrap_or_default();
        batch
            .iter()
            .map(|env| {
                seq += 1;
                EventEnvelope { seq, ..env.clone() }
            })
            .collect()
    };
    for _ in 0..WARM_UP_BATCHES {
        log.append_batch(&next_batch()).await?;
    }
    let before = dir_bytes(dir);
    let (mut record_bytes, mut records) = (0u64, 0u64);
    for _ in 0..MEASURED_BATCHES {
        let batch = next_batch();
        for env in &batch {
            record_bytes += protocol::codec::encode_log_record(env)?.len() as u64;
        }
        records += batch.len() as u64;
        log.append_batch(&batch).await?;
    }
    let after = dir_bytes(dir);
    drop(log);
    Ok(DiskFactor {
        disk_bytes_per_record_byte: after.saturating_sub(before) as f64
            / record_bytes.max(1) as f64,
        records_written: records,
    })
}

/// Sum of the file sizes under `dir` (what `du --apparent-size` says).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
