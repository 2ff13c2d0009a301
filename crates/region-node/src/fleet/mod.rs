//! The fleet: how district nodes find each other. A node registers its
//! district in the region directory (a JetStream KV bucket), keeps a local
//! copy of it, and routes what is not its own from that copy.
//!
//! - [`directory`]: the copy and the routing questions (pure).
//! - [`kv`]: joining, heartbeats, the watch and leaving, on NATS.
//! - [`customers`]: the customer index (which districts a customer has
//!   orders in), written from the committed feed, read by `/v1/me/orders`.
//! - [`profiles`]: customer profiles (display name, saved payment method),
//!   read and written by `/v1/me/profile` on any node.
//! - [`points`]: the bonus-point ledger, one account per customer, changed
//!   by compare-and-set from any node.
//! - [`issuer_keys`]: the token issuer's public keys by `kid`, watched by
//!   every node and merged with the keys in its config.
//! - (`crate::insights::fleet` keeps the insight board, each district's
//!   daily order counters, in a bucket made the same way.)
//!
//! Architecture Invariant: no district data crosses NATS here; only which
//! district serves which prefixes, and where, the ids of its fridges (as
//! its public catalog shows them, for routing), which districts a customer
//! has orders in, a customer's profile and bonus-point account (which
//! belong to no district), and the issuer's public keys.

pub mod customers;
pub mod directory;
pub mod issuer_keys;
pub mod kv;
pub mod points;
pub mod profiles;

pub use customers::CustomerIndex;

use std::sync::Arc;

use async_nats::jetstream::{self, kv as jskv};
use tokio::sync::OnceCell;

/// A bucket of the global plane found (or created, with its config) on
/// first use, so a node started with NATS down still starts. Refused at
/// once while the client is not connected, rather than waiting for the
/// reconnect. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LazyBucket {
    js: jetstream::Context,
    client: async_nats::Client,
    config: jskv::Config,
    store: Arc<OnceCell<jskv::Store>>,
}

impl LazyBucket {
    pub(crate) fn new(client: async_nats::Client, config: jskv::Config) -> Self {
        LazyBucket {
            js: jetstream::new(client.clone()),
            client,
            config,
            store: Arc::default(),
        }
    }

    /// The bucket; `Err` says why not (`not connected`, `create bucket: …`).
    pub(crate) async fn get(&self) -> Result<&jskv::Store, String> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected".into());
        }
        self.store
            .get_or_try_init(|| async {
                ensure_bucket(&self.js, self.config.clone())
                    .await
                    .map_err(|e| format!("create bucket: {e}"))
            })
            .await
    }
}

/// A KV bucket of the global plane: the existing one, or a new one made
/// with `config` (on file storage). Another node making it in between is
/// not an error: its bucket is used.
async fn ensure_bucket(
    js: &jetstream::Context,
    config: jskv::Config,
) -> Result<jskv::Store, String> {
    let name = config.bucket.clone();
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    let config = jskv::Config {
        storage: jetstream::stream::StorageType::File,
        ..config
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(e) => js.get_key_value(&name).await.map_err(|_| e.to_string()),
    }
}
pub use directory::Registration;
pub use kv::{join, Fleet, FleetError};
pub use profiles::Profiles;
