//! `payments backup` and `payments restore`: the book as a
//! `storage::archive` (manifest, SHA-256 per file, fsync, atomic rename).
//!
//! What is backed up: `outcomes` (the record: one outcome per request id,
//! what answers a redelivered request so nobody is charged twice) and
//! `sandbox_ledger` (the sandbox provider's own account of what it
//! captured; a real processor keeps that itself, but without it a restored
//! sandbox would deny charges it made). Not `requests_seen`: delivery
//! counters for operators and tests, which acknowledge nothing.
//!
//! Offline: the running service holds sled's lock on the book, so a backup
//! of a running service is refused (sled cannot open a locked database)
//! rather than read half-written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use storage::archive::{self, Archive, ArchiveError, ArchiveWriter, Manifest};
use storage::{StorageError, SyncedDb};

/// `kind` in the manifest of a payments book backup.
pub const BOOK_BACKUP_KIND: &str = "payments-book";
/// The sled trees a backup holds, each in `{tree}.bin`.
pub const BACKED_UP_TREES: [&str; 2] = ["outcomes", "sandbox_ledger"];
/// sled's data file in a database directory: its presence says a book exists.
const SLED_DATA_FILE: &str = "db";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("sled: {0} (is the payments service still running on this data dir? stop it first)")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
}

/// `manifest.json` of a book backup, besides the archive's own fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct BookMeta {
    pub record_count: u64,
    pub created_at: String,
}

/// Copies the book in `data_dir` (service stopped) into a new archive `to`.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Manifest<BookMeta>, BackupError> {
    if !data_dir.join(SLED_DATA_FILE).exists() {
        return Err(BackupError::Refused {
            path: data_dir.to_path_buf(),
            reason: "holds no payments book".into(),
        });
    }
    let db = storage::config(data_dir).open()?;
    let mut writer = ArchiveWriter::create(to)?;
    let mut record_count = 0;
    for name in BACKED_UP_TREES {
        let tree = db.open_tree(name)?;
        let mut file = writer.file(&file_name(name))?;
        for item in tree.iter() {
            let (key, value) = item?;
            file.push(&key, &value)?;
        }
        record_count += writer.add(file)?.records;
    }
    let meta = BookMeta {
        record_count,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    Ok(writer.finish(BOOK_BACKUP_KIND, meta)?)
}

/// Restores the archive `from` as a new book at `data_dir` (absent or
/// empty), synced once, under a temporary name renamed at the end. Returns
/// the records written.
pub async fn restore(from: &Path, data_dir: &Path) -> Result<u64, BackupError> {
    if !archive::is_empty_or_absent(data_dir)? {
        return Err(BackupError::Refused {
            path: data_dir.to_path_buf(),
            reason: "is not empty: restore only into a new or empty directory".into(),
        });
    }
    let backup = Archive::<BookMeta>::open(from, BOOK_BACKUP_KIND)?;
    let name = data_dir
        .file_name()
        .map_or_else(|| "payments".into(), |n| n.to_string_lossy().into_owned());
    let partial = archive::parent_of(data_dir).join(format!(".{name}.restoring"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    let db = SyncedDb::open(storage::config(&partial))?;
    let mut written = 0;
    for tree_name in BACKED_UP_TREES {
        let tree = db.db().open_tree(tree_name)?;
        let mut frames = backup.frames(&file_name(tree_name))?;
        while let Some((key, value)) = frames.next_frame()? {
            tree.insert(key, value)?;
            written += 1;
        }
    }
    if written != backup.manifest.meta.record_count {
        return Err(BackupError::Refused {
            path: from.to_path_buf(),
            reason: format!(
                "holds {written} records, its manifest says {}",
                backup.manifest.meta.record_count
            ),
        });
    }
    db.flush_and_sync().await?;
    drop(db);
    if data_dir.exists() {
        std::fs::remove_dir(data_dir)?;
    }
    std::fs::rename(&partial, data_dir)?;
    archive::sync_dir(archive::parent_of(data_dir))?;
    Ok(written)
}

fn file_name(tree: &str) -> String {
    format!("{tree}.bin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::tests::approved;
    use crate::book::Book;

    #[tokio::test]
    async fn a_restored_book_answers_what_the_original_recorded() {
        let root = tempfile::tempdir().unwrap();
        let (data, to, restored) = (
            root.path().join("book"),
            root.path().join("backup"),
            root.path().join("restored"),
        );
        {
            let book = Book::open(&data).unwrap();
            for i in 0..20 {
                let id = format!("o{i}");
                book.record(&format!("charge-{id}"), &approved(&id))
                    .await
                    .unwrap();
            }
            book.db()
                .open_tree("sandbox_ledger")
                .unwrap()
                .insert("charge-o1", &b"{}"[..])
                .unwrap();
            let running = backup(&data, &to).expect_err("the book is locked");
            assert!(running.to_string().contains("still running"), "{running}");
            book.make_durable().await.unwrap();
        }
        let manifest = backup(&data, &to).unwrap();
        assert_eq!(manifest.meta.record_count, 21);
        assert_eq!(restore(&to, &restored).await.unwrap(), 21);
        let book = Book::open(&restored).unwrap();
        assert_eq!(book.get("charge-o7").unwrap(), Some(approved("o7")));
        assert_eq!(book.get("charge-o99").unwrap(), None);
        let refused = restore(&to, &restored).await.err().unwrap();
        assert!(refused.to_string().contains("not empty"), "{refused}");
    }
}
