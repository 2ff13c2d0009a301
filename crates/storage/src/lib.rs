//! sled with a real fsync.
//!
//! sled 0.34's `flush`/`flush_async` writes its IO buffers with `pwrite` and
//! then calls `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on the
//! written range (`pagecache/iobuf.rs`). That starts and awaits write-back of
//! the pages, but unlike `fdatasync` it neither persists the file's size (the
//! log grows by appending) nor asks the drive to empty its volatile write
//! cache, so a flushed write can be lost in a power cut (sled issues #1351,
//! #1452). sled's own `fsync`s happen only in its optional background flusher
//! (`flush_every_ms`), on segment truncation and when it writes a snapshot;
//! nobody can wait for them.
//!
//! [`SyncedDb::flush_and_sync`] is sled's flush followed by what is missing:
//! 1. `fsync` of every entry that appeared since the last call in `<dir>/blobs`
//!    and `<dir>`, then of each of those directories whose entries changed.
//!    sled writes values bigger than a quarter segment (~128 KiB) to
//!    `blobs/<lsn>` without any sync, writes `conf` without a sync, and
//!    publishes snapshots (`snap.<lsn>`) with a rename; the directory sync
//!    makes the names durable, not only the bytes. Blobs go first because
//!    the log points at them.
//! 2. `fdatasync` of `<dir>/db`, the file sled's log lives in: its data and
//!    its size, plus a cache flush of the drive.
//!
//! Opening syncs everything already there and the parent directory, so a
//! freshly created database exists on disk before its first acknowledgement.
//!
//! After a failed flush or sync the handle is poisoned: Linux may drop the
//! dirty pages of a failed write-back, and a later `fsync` would then report
//! success for data that never reached the disk. Only a restart (sled's
//! recovery reads what is really on disk) can continue.

pub mod archive;
pub mod failpoints;

/// sled's page cache per database, in bytes. sled's default is 1 GiB, and
/// whatever is read stays there up to it: a start-up that replayed a
/// 2 M-event log left ~1 GB of log pages on the heap (BENCHMARKS.md,
/// "Bounded memory"), and reads of archived orders would fill it the same
/// way over the days. Larder reads a log in full only at start-up, and then
/// once, in order, so a cache cannot help it; the writes are the same
/// whatever its size.
pub const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// sled's configuration for a database in `dir` as Larder opens them: the
/// page cache bounded to [`CACHE_CAPACITY_BYTES`].
pub fn config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY_BYTES)
}

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// sled 0.34's data file inside its directory (`config.rs`, `db_path`).
const DATA_FILE: &str = "db";
/// sled 0.34's directory of large values (`config.rs`, `blob_path`).
const BLOB_DIR: &str = "blobs";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("an earlier flush or sync failed; restart to recover from what is on disk")]
    Poisoned,
    #[error("the sync task did not finish: {0}")]
    Interrupted(String),
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct SyncStats {
    commits: AtomicU64,
    fsyncs: AtomicU64,
}

impl SyncStats {
    /// Completed syncs, each of which made every write before it durable:
    /// one at open, then one per [`SyncedDb::flush_and_sync`].
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// `fsync`/`fdatasync` calls made on the database's files and directories.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }
}

/// A `sled::Db` whose flush ends in `fdatasync`. Cheap to clone.
#[derive(Clone)]
pub struct SyncedDb {
    db: sled::Db,
    files: Arc<Files>,
}

impl SyncedDb {
    /// Opens `config` (which names the directory) with its own counters.
    pub fn open(config: sled::Config) -> Result<Self, StorageError> {
        Self::open_with_stats(config, Arc::default())
    }

    /// Opens `config`, counting syncs in `stats` (shared with metrics).
    pub fn open_with_stats(
        config: sled::Config,
        stats: Arc<SyncStats>,
    ) -> Result<Self, StorageError> {
        let dir = config.get_path();
        let db = config.open()?;
        let data_path = dir.join(DATA_FILE);
        let data = File::open(&data_path).map_err(io_error("open", &data_path))?;
        let files = Files {
            dir,
            data,
            known: Mutex::default(),
            poisoned: AtomicBool::new(false),
            stats,
        };
        // Nothing known yet: every file and both directories are synced once.
        files.sync()?;
        files.sync_parent()?;
        Ok(SyncedDb {
            db,
            files: Arc::new(files),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn stats(&self) -> &Arc<SyncStats> {
        &self.files.stats
    }

    /// Returns once every write made to the database before the call is on
    /// stable storage (see the crate docs for what is synced).
    pub async fn flush_and_sync(&self) -> Result<(), StorageError> {
        let db = self.db.clone();
        let files = self.files.clone();
        // One blocking hop for both: sled's `flush_async` would only move its
        // blocking `flush` to sled's own thread pool.
        tokio::task::spawn_blocking(move || {
            files.check()?;
            if let Err(e) = db.flush() {
                files.poison();
                return Err(e.into());
            }
            files.sync()
        })
        .await
        .map_err(|e| {
            self.files.poison();
            StorageError::Interrupted(e.to_string())
        })?
    }
}

struct Files {
    dir: PathBuf,
    /// `<dir>/db`, kept open: `fdatasync` works on the inode through any
    /// descriptor, and reopening per commit would cost two more syscalls.
    data: File,
    /// Entries of `<dir>` and `<dir>/blobs` already durable; the lock also
    /// serialises syncs.
    known: Mutex<Known>,
    poisoned: AtomicBool,
    stats: Arc<SyncStats>,
}

#[derive(Default)]
struct Known {
    top: BTreeSet<OsString>,
    blobs: BTreeSet<OsString>,
}

impl Files {
    fn check(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    fn sync(&self) -> Result<(), StorageError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        self.check()?;
        let known = &mut *known;
        let result = self
            .sync_new_entries(&self.dir.join(BLOB_DIR), &mut known.blobs)
            .and_then(|()| self.sync_new_entries(&self.dir, &mut known.top))
            .and_then(|()| {
                self.counted(|| self.data.sync_data())
                    .map_err(io_error("fdatasync", &self.dir.join(DATA_FILE)))
            });
        match result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.poison();
                Err(e)
            }
        }
    }

    /// Syncs entries of `dir` not in `known`, then `dir` itself if its
    /// entries changed (a new, renamed or removed name).
    fn sync_new_entries(
        &self,
        dir: &Path,
        known: &mut BTreeSet<OsString>,
    ) -> Result<(), StorageError> {
        let now = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(io_error("list", dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(io_error("list", dir)(e)),
        };
        if now == *known {
            return Ok(());
        }
        for name in now.difference(known) {
            let path = dir.join(name);
            // Directories open read-only as well; `fsync` on them persists
            // their entries.
            match File::open(&path) {
                Ok(f) => self
                    .counted(|| f.sync_all())
                    .map_err(io_error("fsync", &path))?,
                // Gone since the listing (an old snapshot removed, a
                // `.generating` renamed): the directory sync below and the
                // next call cover what replaced it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("open", &path)(e)),
            }
        }
        sync_dir(dir, self)?;
        *known = now;
        Ok(())
    }

    /// The database directory's own entry, for a directory just created.
    fn sync_parent(&self) -> Result<(), StorageError> {
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent, self)
    }

    fn counted(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        sync()
    }
}

fn sync_dir(dir: &Path, files: &Files) -> Result<(), StorageError> {
    let handle = File::open(dir).map_err(io_error("open", dir))?;
    files
        .counted(|| handle.sync_all())
        .map_err(io_error("fsync", dir))
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> SyncedDb {
        SyncedDb::open(sled::Config::new().path(dir).flush_every_ms(None)).unwrap()
    }

    #[tokio::test]
    async fn every_flush_ends_in_a_sync_of_the_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("store"));
        let opened = db.stats().fsyncs();
        assert!(opened >= 3, "open syncs files, directory and parent");
        let commits = db.stats().commits();
        for i in 0..5u32 {
            db.db().insert(i.to_be_bytes(), &b"meal"[..]).unwrap();
            db.flush_and_sync().await.unwrap();
        }
        assert_eq!(db.stats().commits(), commits + 5);
        // No new files: one fdatasync per flush and nothing else.
        assert_eq!(db.stats().fsyncs(), opened + 5);
    }

    #[tokio::test]
    async fn a_large_value_syncs_its_blob_file_and_the_blob_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let db = open(&path);
        let before = db.stats().fsyncs();
        // Over sled's blob threshold (a quarter of the 512 KiB segment).
        db.db().insert("big", vec![7u8; 300 * 1024]).unwrap();
        db.flush_and_sync().await.unwrap();
        let blobs = std::fs::read_dir(path.join(BLOB_DIR)).unwrap().count();
        assert!(blobs >= 1, "sled wrote the value to a blob file");
        // Each blob, the blob directory, and the data file.
        assert_eq!(db.stats().fsyncs(), before + blobs as u64 + 2);
        db.flush_and_sync().await.unwrap();
        assert_eq!(
            db.stats().fsyncs(),
            before + blobs as u64 + 3,
            "a known blob is not synced again"
        );
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path());
            db.db().insert("order", &b"paid"[..]).unwrap();
            db.flush_and_sync().await.unwrap();
        }
        let db = open(dir.path());
        assert_eq!(db.db().get("order").unwrap().unwrap(), &b"paid"[..]);
    }
}
