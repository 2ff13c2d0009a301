//! The payments service's durable record: one outcome per request id
//! (`charge-{order}` / `refund-{order}`), written and fsynced before the
//! result is published. A request seen again gets the recorded outcome.

use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::payments::{PaymentOutcome, PaymentResult};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record for {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Book {
    db: sled::Db,
    outcomes: sled::Tree,
    commit: Arc<GroupCommit>,
}

/// Group commit: one flush at a time, and a record whose write an already
/// finished flush covered does not flush again. Many concurrent requests
/// then share a few fsyncs instead of piling up concurrent `flush_async`
/// calls (which stalled the service under load).
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
        let db = sled::open(dir)?;
        let outcomes = db.open_tree("outcomes")?;
        Ok(Book {
            db,
            outcomes,
            commit: Arc::default(),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

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
        let bytes = protocol::codec::to_postcard(result)
            .map_err(|_| BookError::Corrupt(msg_id.to_string()))?;
        let stored =
            match self
                .outcomes
                .compare_and_swap(msg_id, None as Option<&[u8]>, Some(bytes))?
            {
                Ok(()) => result.clone(),
                Err(existing) => match existing.current {
                    Some(b) => protocol::codec::from_postcard(&b)
                        .map_err(|_| BookError::Corrupt(msg_id.to_string()))?,
                    None => result.clone(),
                },
            };
        self.make_durable().await?;
        Ok(stored)
    }

    /// Returns once every write made before the call is on disk.
    pub async fn make_durable(&self) -> Result<(), BookError> {
        let ticket = self.commit.written.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = self.commit.lock.lock().await;
        if self.commit.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(()); // A flush that started after our write covered it.
        }
        let upto = self.commit.written.load(Ordering::SeqCst);
        self.db.flush_async().await?;
        self.commit.durable.store(upto, Ordering::SeqCst);
        Ok(())
    }

    pub fn is_approved(result: &PaymentResult) -> bool {
        matches!(result.outcome, PaymentOutcome::Approved { .. })
    }
}
