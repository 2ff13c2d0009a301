//! The payments service's durable record: one outcome per request id
//! (`charge-{order}` / `refund-{order}`), written and synced (sled's flush,
//! then `fdatasync`, `storage::SyncedDb`) before the result is published. A
//! request seen again gets the recorded outcome, also only once it is durable.

use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::payments::{PaymentOutcome, PaymentResult};
use storage::{StorageError, SyncStats, SyncedDb};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("corrupt record for {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Book {
    db: SyncedDb,
    outcomes: sled::Tree,
    commit: Arc<GroupCommit>,
}

/// Group commit: one flush and sync at a time, and a record whose write an
/// already finished sync covered does not sync again. Many concurrent
/// requests then share a few fsyncs instead of piling up concurrent flushes
/// (which stalled the service under load).
#[derive(Default)]
struct GroupCommit {
    /// Writes issued so far (a ticket per write).
    written: AtomicU64,
    /// Writes known durable; only raised under `lock`.
    durable: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

impl Book {
    pub fn open(dir: &Path) -> Result<Self, BookError> {
        // sled's background flusher stays on (every 500 ms): it bounds how
        // much of what is not acknowledged (`requests_seen`, the sandbox's
        // ledger) a crash loses; acknowledged outcomes never wait for it.
        let db = SyncedDb::open(storage::config(dir))?;
        let outcomes = db.db().open_tree("outcomes")?;
        Ok(Book {
            db,
            outcomes,
            commit: Arc::default(),
        })
    }

    pub fn db(&self) -> &sled::Db {
        self.db.db()
    }

    /// How often the book was made durable (tests, metrics).
    pub fn sync_stats(&self) -> &Arc<SyncStats> {
        self.db.stats()
    }

    /// The recorded outcome for `msg_id`, returned only once it is durable.
    /// A record can be visible before its sync finished (a concurrent
    /// `record` still waiting, or one whose sync failed), and an answer
    /// must never be published from it before then.
    pub async fn get_durable(&self, msg_id: &str) -> Result<Option<PaymentResult>, BookError> {
        let found = self.get(msg_id)?;
        if found.is_some() {
            self.make_durable().await?;
        }
        Ok(found)
    }

    /// The recorded outcome, durable or not (for decisions and operators).
    pub fn get(&self, msg_id: &str) -> Result<Option<PaymentResult>, BookError> {
        match self.outcomes.get(msg_id)? {
            None => Ok(None),
            Some(bytes) => protocol::codec::from_postcard(&bytes)
                .map(Some)
                .map_err(|_| BookError::Corrupt(msg_id.to_string())),
        }
    }

    /// Records an outcome durably. The first record for an id wins: a racing
    /// duplicate gets the stored one back.
    pub async fn record(
        &self,
        msg_id: &str,
        result: &PaymentResult,
    ) -> Result<PaymentResult, BookError> {
        let mut stored = self
            .record_many(&[(msg_id.to_string(), result.clone())])
            .await?;
        stored
            .pop()
            .ok_or_else(|| BookError::Corrupt(msg_id.to_string()))
    }

    /// Records a group of outcomes with ONE flush and sync for all of them
    /// (shared with any concurrent caller's, see [`Book::make_durable`]),
    /// and returns the stored outcome of each, in order: for an id already
    /// in the book (a racing duplicate, another delivery of the same
    /// request) the first record wins. On return every write made before
    /// the call, the group's and any other, is durable; so an outcome
    /// [`Book::get`] found before the call may be published after it. On an
    /// error nothing of the group may be published.
    pub async fn record_many(
        &self,
        outcomes: &[(String, PaymentResult)],
    ) -> Result<Vec<PaymentResult>, BookError> {
        let mut stored = Vec::with_capacity(outcomes.len());
        for (msg_id, result) in outcomes {
            stored.push(self.write_first(msg_id, result)?);
        }
        self.make_durable().await?;
        Ok(stored)
    }

    /// Writes `result` for `msg_id` unless one is there; the one kept.
    fn write_first(
        &self,
        msg_id: &str,
        result: &PaymentResult,
    ) -> Result<PaymentResult, BookError> {
        let bytes = protocol::codec::to_postcard(result)
            .map_err(|_| BookError::Corrupt(msg_id.to_string()))?;
        match self
            .outcomes
            .compare_and_swap(msg_id, None as Option<&[u8]>, Some(bytes))?
        {
            Ok(()) => Ok(result.clone()),
            Err(existing) => match existing.current {
                Some(b) => protocol::codec::from_postcard(&b)
                    .map_err(|_| BookError::Corrupt(msg_id.to_string())),
                None => Ok(result.clone()),
            },
        }
    }

    /// Returns once every write made before the call is on stable storage.
    pub async fn make_durable(&self) -> Result<(), BookError> {
        let ticket = self.commit.written.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = self.commit.lock.lock().await;
        if self.commit.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(()); // A flush that started after our write covered it.
        }
        let upto = self.commit.written.load(Ordering::SeqCst);
        self.db.flush_and_sync().await?;
        self.commit.durable.store(upto, Ordering::SeqCst);
        Ok(())
    }

    pub fn is_approved(result: &PaymentResult) -> bool {
        matches!(result.outcome, PaymentOutcome::Approved { .. })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::payments::PaymentKind;

    /// An approved charge for `order_id` (also the backup tests').
    pub(crate) fn approved(order_id: &str) -> PaymentResult {
        PaymentResult {
            kind: PaymentKind::Charge,
            order_id: order_id.parse().expect("a valid order id"),
            district_id: protocol::DistrictId::from_static("detroit-downtown"),
            outcome: PaymentOutcome::Approved {
                reference: format!("ref-{order_id}"),
            },
        }
    }

    #[tokio::test]
    async fn a_recorded_outcome_is_synced_and_concurrent_ones_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).unwrap();
        let syncs = book.sync_stats().clone();
        let before = syncs.commits();
        book.record("charge-o1", &approved("o1")).await.unwrap();
        assert_eq!(syncs.commits(), before + 1);

        let before = syncs.commits();
        let records = (0..100).map(|i| {
            let book = book.clone();
            async move {
                let id = format!("o{i}-c");
                book.record(&format!("charge-{id}"), &approved(&id)).await
            }
        });
        for r in futures::future::join_all(records).await {
            r.unwrap();
        }
        let shared = syncs.commits() - before;
        assert!(
            (1..100).contains(&shared),
            "100 records took {shared} syncs"
        );
    }

    #[tokio::test]
    async fn a_group_is_recorded_with_one_sync_and_the_first_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).unwrap();
        book.record("charge-o0", &approved("o0")).await.unwrap();
        let syncs = book.sync_stats().clone();
        let before = syncs.commits();
        let mut group: Vec<(String, PaymentResult)> = (1..=200)
            .map(|i| (format!("charge-o{i}"), approved(&format!("o{i}"))))
            .collect();
        // Already in the book with another outcome: the book's answer stays.
        let mut late = approved("o0");
        late.outcome = PaymentOutcome::Declined {
            reason: "late".into(),
        };
        group.push(("charge-o0".into(), late));
        let stored = book.record_many(&group).await.unwrap();
        assert_eq!(syncs.commits(), before + 1, "one sync for the group");
        assert_eq!(stored.len(), 201);
        assert_eq!(stored[0], approved("o1"));
        assert_eq!(stored[200], approved("o0"), "the first record wins");
        assert_eq!(book.get("charge-o200").unwrap(), Some(approved("o200")));
        assert_eq!(book.get("charge-o0").unwrap(), Some(approved("o0")));
    }

    #[tokio::test]
    async fn a_found_outcome_is_made_durable_before_it_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).unwrap();
        let syncs = book.sync_stats().clone();
        assert_eq!(book.get_durable("charge-none").await.unwrap(), None);
        book.record("charge-o1", &approved("o1")).await.unwrap();
        let before = syncs.commits();
        // As a duplicate delivery would: the first record may still be waiting.
        let found = book.get_durable("charge-o1").await.unwrap();
        assert_eq!(found, Some(approved("o1")));
        assert_eq!(syncs.commits(), before + 1);
    }
}
