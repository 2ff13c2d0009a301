//! The issuer's public keys as global data: a JetStream KV bucket
//! ([`BUCKET`]), one key per token `kid`, the value the issuer's Ed25519
//! public key as SPKI PEM text (what `nats kv get` shows).
//!
//! Every node watches the bucket and hands the set to its
//! [`Verifier`](crate::auth::Verifier), which merges it with the keys in
//! its config. So a key published once verifies tokens on every node
//! within the watch latency, and a key deleted from the bucket stops
//! verifying on every node as fast. Rotation without downtime: publish the
//! new key (`region-node keys publish`), start signing with it, delete the
//! old one once its tokens have expired.
//!
//! Configured keys always work: with NATS down a node verifies with them
//! and with the published set it last saw (it cannot see a delete then).
//! A malformed entry is logged and skipped, never fatal. The set is
//! bounded by [`MAX_PUBLISHED_KEYS`]: entries past it are skipped (and
//! logged), so a flooded bucket cannot grow every node's memory.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use jsonwebtoken::DecodingKey;

use crate::auth::Verifier;
use crate::config::MAX_KID_LEN;
use crate::lifecycle::Shutdown;

/// The issuer-key bucket's name.
pub const BUCKET: &str = "larder-issuer-keys";
/// Most published keys a node holds (a rotation needs two or three).
pub const MAX_PUBLISHED_KEYS: usize = 64;
/// Longest value accepted, in bytes (an Ed25519 SPKI PEM is 113).
pub const MAX_KEY_PEM_BYTES: usize = 1024;
/// Pause before watching again after the link broke.
const RESYNC_DELAY: Duration = Duration::from_millis(500);
/// Longest wait for a new watch and a full read of the bucket.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the whole bucket is read again while watching: a watch can
/// go quiet without an error when its server dies (see `fleet::kv`), and
/// this bounds how long a delete may then go unseen.
const REREAD_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("issuer keys: {0}")]
    Nats(String),
    #[error(
        "kid {0:?} must be 1..={MAX_KID_LEN} bytes of A-Z, a-z, 0-9, '-', '_' or '=' \
         (a KV key)"
    )]
    Kid(String),
    #[error("not an Ed25519 public key (SPKI PEM) of at most {MAX_KEY_PEM_BYTES} bytes: {0}")]
    Pem(String),
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Nats(format!("{what}: {e}"))
}

/// Checks a kid is usable as a bucket key (stricter than a config kid:
/// no dots, which would make subject levels).
pub fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    ok.then_some(()).ok_or_else(|| KeyError::Kid(kid.into()))
}

/// Parses a published value: an Ed25519 public key as SPKI PEM.
pub fn parse_key(pem: &[u8]) -> Result<DecodingKey, KeyError> {
    if pem.len() > MAX_KEY_PEM_BYTES {
        return Err(KeyError::Pem(format!("{} bytes", pem.len())));
    }
    DecodingKey::from_ed_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))
}

/// The bucket on NATS; cheap to clone. Found (or created) on first use.
#[derive(Clone)]
pub struct IssuerKeys {
    bucket: super::LazyBucket,
}

impl IssuerKeys {
    /// `replicas`: copies of the bucket if this process creates it (one
    /// history entry, no expiry: a key lives until it is deleted).
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let config = kv::Config {
            bucket: BUCKET.to_string(),
            description: "Larder issuer public keys: kid -> Ed25519 SPKI PEM".into(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        IssuerKeys {
            bucket: super::LazyBucket::new(client, config),
        }
    }

    async fn store(&self) -> Result<&kv::Store, KeyError> {
        self.bucket.get().await.map_err(KeyError::Nats)
    }

    /// Publishes `pem` under `kid` (replacing any) once both check out.
    pub async fn publish(&self, kid: &str, pem: &str) -> Result<(), KeyError> {
        check_kid(kid)?;
        parse_key(pem.as_bytes())?;
        let store = self.store().await?;
        store
            .put(kid, pem.to_string().into())
            .await
            .map_err(|e| nats_err("put", e))?;
        Ok(())
    }

    /// Deletes `kid`: its tokens stop verifying on every node.
    pub async fn delete(&self, kid: &str) -> Result<(), KeyError> {
        check_kid(kid)?;
        let store = self.store().await?;
        store.delete(kid).await.map_err(|e| nats_err("delete", e))
    }

    /// The kids published now.
    pub async fn kids(&self) -> Result<Vec<String>, KeyError> {
        Ok(read_all(self.store().await?)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
}

/// Every key in the bucket now, as (kid, value), at most
/// [`MAX_PUBLISHED_KEYS`] of them.
async fn read_all(store: &kv::Store) -> Result<Vec<(String, bytes::Bytes)>, KeyError> {
    let mut keys = store.keys().await.map_err(|e| nats_err("keys", e))?;
    let mut out = vec![];
    while let Some(kid) = keys.next().await {
        let kid = kid.map_err(|e| nats_err("keys", e))?;
        if out.len() == MAX_PUBLISHED_KEYS {
            tracing::warn!(kid = %kid, max = MAX_PUBLISHED_KEYS, "too many issuer keys; skipped");
            continue;
        }
        if let Some(value) = store.get(&kid).await.map_err(|e| nats_err("get", e))? {
            out.push((kid, value));
        }
    }
    Ok(out)
}

/// The verifier's view of the bucket: raw entries by kid, turned into
/// keys (malformed ones skipped) whenever they change.
struct Set {
    verifier: Verifier,
    entries: HashMap<String, bytes::Bytes>,
}

impl Set {
    fn replace(&mut self, all: Vec<(String, bytes::Bytes)>) {
        let entries: HashMap<_, _> = all.into_iter().collect();
        if entries != self.entries {
            self.entries = entries;
            self.publish();
        }
    }

    fn apply(&mut self, entry: kv::Entry) {
        let changed = match entry.operation {
            Operation::Put if self.entries.get(&entry.key) == Some(&entry.value) => false,
            Operation::Put
                if self.entries.len() >= MAX_PUBLISHED_KEYS
                    && !self.entries.contains_key(&entry.key) =>
            {
                tracing::warn!(kid = %entry.key, max = MAX_PUBLISHED_KEYS, "too many issuer keys; skipped");
                false
            }
            Operation::Put => {
                self.entries.insert(entry.key, entry.value);
                true
            }
            Operation::Delete | Operation::Purge => self.entries.remove(&entry.key).is_some(),
        };
        if changed {
            self.publish();
        }
    }

    /// Hands the well-formed keys to the verifier.
    fn publish(&self) {
        let mut by_kid = HashMap::new();
        for (kid, pem) in &self.entries {
            match check_kid(kid).and_then(|()| parse_key(pem)) {
                Ok(key) => {
                    by_kid.insert(kid.clone(), key);
                }
                Err(e) => tracing::warn!(kid = %kid, error = %e, "malformed issuer key ignored"),
            }
        }
        let mut kids: Vec<&String> = by_kid.keys().collect();
        kids.sort();
        tracing::info!(kids = ?kids, "published issuer keys changed");
        self.verifier.set_published_keys(by_kid);
    }
}

/// Keeps `verifier`'s published key set equal to the bucket until
/// shutdown: watch, and after any break (or every [`REREAD_EVERY`]) a
/// fresh read of the whole bucket.
pub async fn run(keys: IssuerKeys, verifier: Verifier, mut shutdown: Shutdown) {
    let mut set = Set {
        verifier,
        entries: HashMap::new(),
    };
    loop {
        let watched = tokio::time::timeout(RESYNC_TIMEOUT, resync(&keys, &mut set)).await;
        if let Ok(Some(w)) = watched {
            if follow(w, &keys, &mut set, &mut shutdown).await {
                return;
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(RESYNC_DELAY) => {}
        }
    }
}

/// A new watch and, behind it, a fresh read of the whole bucket. Watch
/// first, then read: nothing between the two is missed.
async fn resync(keys: &IssuerKeys, set: &mut Set) -> Option<kv::Watch> {
    let store = keys.store().await.ok()?;
    let w = store.watch_all().await.ok()?;
    set.replace(read_all(store).await.ok()?);
    Some(w)
}

/// Applies watched entries until the watch breaks (`false`) or shutdown
/// (`true`); reads the whole bucket again every [`REREAD_EVERY`].
async fn follow(
    mut w: kv::Watch,
    keys: &IssuerKeys,
    set: &mut Set,
    shutdown: &mut Shutdown,
) -> bool {
    let mut reread = tokio::time::interval(REREAD_EVERY);
    reread.tick().await;
    loop {
        tokio::select! {
            () = shutdown.triggered() => return true,
            next = w.next() => match next {
                Some(Ok(entry)) => set.apply(entry),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "issuer key watch broke; reading the bucket again");
                    return false;
                }
                None => return false,
            },
            _ = reread.tick() => {
                let Ok(store) = keys.store().await else { return false };
                match tokio::time::timeout(RESYNC_TIMEOUT, read_all(store)).await {
                    Ok(Ok(all)) => set.replace(all),
                    _ => return false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_must_be_bucket_keys() {
        for good in ["k-2026-12", "issuer_1", "a=b"] {
            assert!(check_kid(good).is_ok(), "{good}");
        }
        for bad in ["", "k.1", "k 1", "k/1", "ä", &"k".repeat(MAX_KID_LEN + 1)] {
            assert!(check_kid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_an_ed25519_public_key_parses() {
        let public = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAmsvZUyEA+GmFsWVyV8Ll1QXQXA7Fjgl+mtS/8XpOg/U=
-----END PUBLIC KEY-----
";
        assert!(parse_key(public.as_bytes()).is_ok());
        assert!(parse_key(b"not a key").is_err());
        assert!(parse_key(&vec![b'a'; MAX_KEY_PEM_BYTES + 1]).is_err());
    }
}
