//! The webhook outbox on disk: its own sled database (`{data_dir}/webhooks`)
//! beside the event log, never the log itself (only the writer writes the
//! log).
//!
//! Tree `deliveries`: `{endpoint_id}\0{seq, big-endian}` → the delivery as
//! JSON (an endpoint's deliveries are one key range, in log order). Tree
//! `meta`: `cursor` → the last log seq turned into deliveries. Deliveries
//! and the cursor they advance are written in one sled batch and made
//! durable with one [`SyncedDb::flush_and_sync`], so after a crash the
//! outbox resumes from the log exactly after what it holds: nothing
//! committed is skipped, nothing is queued twice.

use std::path::Path;

use chrono::{DateTime, Utc};
use protocol::WebhookId;
use serde::{Deserialize, Serialize};
use storage::{StorageError, SyncedDb};

const DELIVERIES_TREE: &str = "deliveries";
const META_TREE: &str = "meta";
const CURSOR_KEY: &[u8] = b"cursor";
/// Attempts remembered per delivery (the delivery log shows them).
pub const MAX_ATTEMPTS_KEPT: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryStoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("delivery record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("events after {0} start at {1}: the rest comes from the log")]
    Gap(u64, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Retried for the whole retry window without a 2xx.
    Failed,
}

/// One try at POSTing a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// Why there was no 2xx answer (timeout, connection refused, …).
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One event for one endpoint. Its id is the event's log seq (unique per
/// endpoint; the `Larder-Delivery` header is `{endpoint_id}-{seq}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub endpoint_id: WebhookId,
    pub seq: u64,
    pub event_type: String,
    pub stream: String,
    /// The exact bytes POSTed, fixed at creation: every attempt and a
    /// redelivery send the same body.
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// Where the current retry window started: creation, or a redelivery.
    pub window_start: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The latest attempts, oldest first, at most [`MAX_ATTEMPTS_KEPT`].
    pub last_attempts: Vec<Attempt>,
}

impl Delivery {
    pub fn new(
        endpoint_id: WebhookId,
        payload: &district::webhooks::Payload,
        body: String,
        now: DateTime<Utc>,
    ) -> Self {
        Delivery {
            endpoint_id,
            seq: payload.seq,
            event_type: payload.event_type.to_string(),
            stream: payload.stream.clone(),
            body,
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            window_start: now,
            next_attempt_at: Some(now),
            last_attempts: vec![],
        }
    }

    /// The `Larder-Delivery` header: unique over endpoints, stable over
    /// retries and redeliveries (integrators de-duplicate by it).
    pub fn header_id(&self) -> String {
        format!("{}-{}", self.endpoint_id, self.seq)
    }

    /// What the delivery log shows (everything but the body).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "delivery_id": self.seq,
            "event_type": self.event_type,
            "stream": self.stream,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "next_attempt_at": self.next_attempt_at,
            "last_attempts": self.last_attempts,
        })
    }

    pub fn record_attempt(&mut self, attempt: Attempt) {
        self.attempts += 1;
        self.last_attempts.push(attempt);
        if self.last_attempts.len() > MAX_ATTEMPTS_KEPT {
            self.last_attempts.remove(0);
        }
    }
}

fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + 9);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(endpoint: &str) -> Vec<u8> {
    let mut k = endpoint.as_bytes().to_vec();
    k.push(0);
    k
}

#[derive(Clone)]
pub struct DeliveryStore {
    db: SyncedDb,
    deliveries: sled::Tree,
    meta: sled::Tree,
}

impl DeliveryStore {
    pub fn open(dir: &Path) -> Result<Self, DeliveryStoreError> {
        // Synced explicitly once per batch of deliveries or attempt result.
        let config = storage::config(dir).flush_every_ms(None);
        let db = SyncedDb::open(config)?;
        let deliveries = db.db().open_tree(DELIVERIES_TREE)?;
        let meta = db.db().open_tree(META_TREE)?;
        Ok(DeliveryStore {
            db,
            deliveries,
            meta,
        })
    }

    /// The last log seq turned into deliveries (0: none yet).
    pub fn cursor(&self) -> Result<u64, DeliveryStoreError> {
        Ok(self
            .meta
            .get(CURSOR_KEY)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Stores `new` deliveries and moves the cursor to `cursor`, durably,
    /// in one batch and one sync.
    pub async fn append(&self, new: &[Delivery], cursor: u64) -> Result<(), DeliveryStoreError> {
        let mut batch = sled::Batch::default();
        for d in new {
            batch.insert(key(&d.endpoint_id, d.seq), serde_json::to_vec(d)?);
        }
        self.deliveries.apply_batch(batch)?;
        self.meta.insert(CURSOR_KEY, &cursor.to_be_bytes())?;
        self.db.flush_and_sync().await?;
        Ok(())
    }

    /// Moves the cursor past events that made no deliveries, without a
    /// sync: losing it in a crash only means reading those events again,
    /// which makes nothing (see `webhooks::Outbox::take`).
    pub fn advance_cursor(&self, cursor: u64) -> Result<(), DeliveryStoreError> {
        self.meta.insert(CURSOR_KEY, &cursor.to_be_bytes())?;
        Ok(())
    }

    /// Makes every write so far durable.
    pub async fn sync(&self) -> Result<(), DeliveryStoreError> {
        self.db.flush_and_sync().await?;
        Ok(())
    }

    /// Rewrites one delivery (an attempt's result, a redelivery), durably.
    pub async fn put(&self, d: &Delivery) -> Result<(), DeliveryStoreError> {
        self.deliveries
            .insert(key(&d.endpoint_id, d.seq), serde_json::to_vec(d)?)?;
        self.db.flush_and_sync().await?;
        Ok(())
    }

    pub fn get(&self, endpoint: &str, seq: u64) -> Result<Option<Delivery>, DeliveryStoreError> {
        match self.deliveries.get(key(endpoint, seq))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// An endpoint's newest deliveries, newest first.
    pub fn latest(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, DeliveryStoreError> {
        self.deliveries
            .scan_prefix(prefix(endpoint))
            .rev()
            .take(limit)
            .map(|item| Ok(serde_json::from_slice(&item?.1)?))
            .collect()
    }

    /// Every pending delivery of every endpoint (start-up: what the senders
    /// had not finished). A record that no longer decodes is logged and
    /// skipped rather than stopping every endpoint.
    pub fn pending(&self) -> Result<Vec<Delivery>, DeliveryStoreError> {
        let mut out = vec![];
        for item in self.deliveries.iter() {
            let (k, v) = item?;
            match serde_json::from_slice::<Delivery>(&v) {
                Ok(d) if d.state == DeliveryState::Pending => out.push(d),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(key = ?k, error = %e, "webhooks: unreadable delivery skipped")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(endpoint: &'static str, seq: u64) -> Delivery {
        let payload = district::webhooks::Payload {
            family: protocol::webhooks::WebhookFamily::Orders,
            seq,
            stream: "order-o1".into(),
            event_type: "order.placed",
            body: serde_json::json!({}),
        };
        Delivery::new(
            WebhookId::from_static(endpoint),
            &payload,
            "{}".into(),
            Utc::now(),
        )
    }

    #[tokio::test]
    async fn deliveries_and_the_cursor_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DeliveryStore::open(dir.path()).unwrap();
            assert_eq!(store.cursor().unwrap(), 0);
            let new = [delivery("a", 3), delivery("a", 7), delivery("ab", 5)];
            store.append(&new, 9).await.unwrap();
            let mut done = new[0].clone();
            done.state = DeliveryState::Delivered;
            store.put(&done).await.unwrap();
        }
        let store = DeliveryStore::open(dir.path()).unwrap();
        assert_eq!(store.cursor().unwrap(), 9);
        let latest: Vec<u64> = store
            .latest("a", 10)
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        assert_eq!(latest, vec![7, 3], "newest first, and `ab` is not `a`");
        let pending: Vec<(String, u64)> = store
            .pending()
            .unwrap()
            .into_iter()
            .map(|d| (d.endpoint_id.to_string(), d.seq))
            .collect();
        assert_eq!(pending, vec![("a".into(), 7), ("ab".into(), 5)]);
        assert_eq!(
            store.get("a", 3).unwrap().unwrap().state,
            DeliveryState::Delivered
        );
    }
}
