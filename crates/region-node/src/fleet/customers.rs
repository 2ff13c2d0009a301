//! The customer index: which districts a customer has orders in, in a
//! JetStream KV bucket ([`BUCKET`]), one key per (customer, district):
//! `customer.{hash}.{district_id}`, where `hash` is [`customer_hash`] of
//! the token subject (subjects may hold characters KV keys cannot).
//!
//! - **Write** ([`run`]): a task follows the district's committed feed and
//!   puts the key for every customer whose new order it sees (placed, or
//!   scheduled by a plan: `district::orders::customer_of_new_order`), off the request
//!   path. It starts from every customer in the order book (so a restart,
//!   or an outage while orders came in, loses nothing), remembers whom it
//!   has indexed in this process, and retries what it could not put while
//!   NATS is down. A put is idempotent: the same key, the same value.
//! - **Read** ([`CustomerIndex::districts_of`]): the keys under
//!   `customer.{hash}.>`, from one stream-info request.
//!
//! A hash collision only adds a district to ask: a district answers a
//! caller with that caller's own orders, so it cannot leak anyone's.
//!
//! Only this small, global fact crosses NATS: that a customer has orders in
//! a district, never the orders.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use protocol::DistrictId;
use tokio::sync::broadcast;

use crate::lifecycle::Shutdown;
use crate::writer::District;

/// The index bucket's name.
pub const BUCKET: &str = "larder-customers";
/// Most keys put in one round (the rest wait for the next).
pub const MAX_PUTS_PER_ROUND: usize = 256;
/// Pause before retrying puts that failed (NATS down, no stream leader).
const RETRY_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("customer index: {0}")]
    Nats(String),
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Nats(format!("{what}: {e}"))
}

/// FNV-1a (64 bits) of the customer's subject, as 16 hex digits: stable
/// across builds and processes (keys outlive both), unlike `std`'s hasher.
pub fn customer_hash(customer: &str) -> String {
    let h = customer.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The key saying `customer` has orders in `district`.
pub fn key(customer: &str, district: &DistrictId) -> String {
    format!("customer.{}.{district}", customer_hash(customer))
}

/// The index on NATS; cheap to clone. The bucket is found (or created) on
/// first use, so a node started with NATS down still starts.
#[derive(Clone)]
pub struct CustomerIndex {
    bucket: super::LazyBucket,
}

impl CustomerIndex {
    /// `replicas`: copies of the bucket if this node creates it (one
    /// history entry, no expiry: an index entry lives as long as the
    /// district's orders).
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let config = kv::Config {
            bucket: BUCKET.to_string(),
            description: "Larder customer index: districts a customer has orders in".into(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        CustomerIndex {
            bucket: super::LazyBucket::new(client, config),
        }
    }

    async fn store(&self) -> Result<&kv::Store, IndexError> {
        self.bucket.get().await.map_err(IndexError::Nats)
    }

    /// Records that `customer` has orders in `district`.
    pub async fn put(&self, customer: &str, district: &DistrictId) -> Result<(), IndexError> {
        let store = self.store().await?;
        store
            .put(key(customer, district), district.to_string().into())
            .await
            .map_err(|e| nats_err("put", e))?;
        Ok(())
    }

    /// The districts `customer` has orders in, as the index says now.
    ///
    /// One stream-info request for the subjects under `customer.{hash}.`
    /// (answered by the stream's leader), not a consumer: a consumer's
    /// pushed messages may wait on subscription interest crossing the
    /// cluster, which right after a server is lost can take longer than a
    /// request may. Keys are never deleted (an index entry outlives nothing
    /// it points at), so a subject present is a district with orders.
    pub async fn districts_of(&self, customer: &str) -> Result<Vec<DistrictId>, IndexError> {
        let store = self.store().await?;
        let under = format!("{}customer.{}.", store.prefix, customer_hash(customer));
        let mut subjects = store
            .stream
            .info_with_subjects(format!("{under}>"))
            .await
            .map_err(|e| nats_err("lookup", e))?;
        let mut districts = vec![];
        while let Some(subject) = subjects.next().await {
            let (subject, _count) = subject.map_err(|e| nats_err("lookup", e))?;
            match subject
                .strip_prefix(under.as_str())
                .and_then(|d| d.parse::<DistrictId>().ok())
            {
                Some(d) => districts.push(d),
                None => tracing::warn!(%subject, "unreadable index key skipped"),
            }
        }
        districts.sort();
        districts.dedup();
        Ok(districts)
    }
}

/// Customers with a new order in the events of a batch.
fn ordering_customers(events: &[protocol::EventEnvelope]) -> impl Iterator<Item = &str> {
    events
        .iter()
        .filter_map(|e| district::orders::customer_of_new_order(&e.event))
}

/// Keeps the index current for this district until `shutdown` (see the
/// module docs).
pub async fn run(
    index: CustomerIndex,
    district: District,
    district_id: DistrictId,
    mut shutdown: Shutdown,
) {
    let mut feed = district.subscribe_feed();
    let everyone = |district: &District| -> BTreeSet<String> {
        district
            .state()
            .orders()
            .customers()
            .map(String::from)
            .collect()
    };
    // Subscribed first, then read: an order committed in between is in both.
    let mut pending = everyone(&district);
    let mut indexed: HashSet<String> = HashSet::new();
    let mut failing = false;
    let mut retry = tokio::time::interval(Duration::from_millis(RETRY_MS));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !pending.is_empty() {
            let round: Vec<String> = pending.iter().take(MAX_PUTS_PER_ROUND).cloned().collect();
            let puts = round.iter().map(|c| {
                let (index, district_id) = (&index, &district_id);
                async move { (c, index.put(c, district_id).await) }
            });
            let results = tokio::select! {
                r = futures::future::join_all(puts) => r,
                () = shutdown.triggered() => return,
            };
            let mut failed = 0usize;
            for (customer, result) in results {
                match result {
                    Ok(()) => {
                        pending.remove(customer);
                        indexed.insert(customer.clone());
                    }
                    Err(e) => {
                        failed += 1;
                        // Once per outage, not per put.
                        if !failing {
                            tracing::warn!(error = %e, "customer index: put failed; retrying");
                        }
                    }
                }
            }
            if failing && failed == 0 {
                tracing::info!("customer index: puts resumed");
            }
            failing = failed > 0;
        }
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => pending.extend(
                    ordering_customers(&batch.events)
                        .filter(|c| !indexed.contains(*c))
                        .map(String::from),
                ),
                // Batches were missed: everyone not indexed yet.
                Err(broadcast::error::RecvError::Lagged(_)) => pending.extend(
                    everyone(&district).into_iter().filter(|c| !indexed.contains(c)),
                ),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = retry.tick(), if !pending.is_empty() => {}
            () = shutdown.triggered() => return,
        }
        while let Ok(batch) = feed.try_recv() {
            pending.extend(
                ordering_customers(&batch.events)
                    .filter(|c| !indexed.contains(*c))
                    .map(String::from),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_whatever_the_subject() {
        let d: DistrictId = "detroit-west".parse().expect("district id");
        for subject in ["alice", "a b/c*>.é", ""] {
            let k = key(subject, &d);
            assert!(k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=".contains(&b)));
            assert!(k.starts_with("customer.") && k.ends_with(".detroit-west"));
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned: keys written by one build are read by the next.
        assert_eq!(customer_hash("alice"), "508b2abb65a03907");
        assert_ne!(customer_hash("alice"), customer_hash("bob"));
    }
}
