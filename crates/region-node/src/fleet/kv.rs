//! The region directory on NATS: a JetStream KV bucket ([`BUCKET`]), one
//! key per district (`district.{id}`) holding its [`Registration`] as JSON.
//!
//! - **Join** (before the node opens its district): read the bucket, refuse
//!   to start if another district claims an overlapping prefix, put our
//!   entry, then read again. Two nodes that joined at the same moment both
//!   see both entries on the second read; the one whose entry has the later
//!   revision withdraws, so exactly one of them starts.
//! - **Heartbeat**: the entry is put again every `heartbeat_secs`, with
//!   the district's fridges as they are then (once the district is open),
//!   so other nodes send a request naming one of them here (421). The
//!   bucket's `max_age` is the TTL, so a node that dies without
//!   deregistering disappears from the bucket by itself, and watchers drop
//!   it when they stop seeing its heartbeats (`directory::Directory`).
//! - **Watch**: a watch on every key keeps the local copy current; after
//!   any break in the link the copy is rebuilt from a fresh read of the
//!   bucket, and until then it is served as it was (stale).
//! - **Leave**: on graceful shutdown the entry is deleted.
//!
//! Only this small, global fact crosses NATS: which district serves where,
//! and which fridge ids it has (already public in its catalog).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::{self};
use futures::StreamExt;
use protocol::{DistrictId, FridgeId};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::directory::{key, Directory, Registration};
use crate::config::FleetConfig;
use crate::lifecycle::Shutdown;
use crate::writer::District;

/// The directory bucket's name.
pub const BUCKET: &str = "larder-directory";
/// Longest wait for the leave (delete) to reach NATS at shutdown.
const LEAVE_MS: u64 = 1_000;
/// Pause before reading the bucket again after the link broke.
const RESYNC_DELAY: Duration = Duration::from_millis(500);
/// Longest wait for a new watch and a full read of the bucket.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the copy is checked for silent districts and a lost link.
const SWEEP_MS: u64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "district {other} ({url}) already serves {theirs:?}, which overlaps this node's \
         prefixes {ours:?}: refusing to start (move or retire one of the districts first)"
    )]
    Overlap {
        other: DistrictId,
        url: String,
        theirs: Vec<String>,
        ours: Vec<String>,
    },
    #[error("region directory: {0}")]
    Nats(String),
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> FleetError {
    FleetError::Nats(format!("{what}: {e}"))
}

/// Where this node stands in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// NATS not reached yet: joining in the background.
    Joining = 0,
    Registered = 1,
    /// Joined late and found an overlapping district: not registered.
    Refused = 2,
}

/// The node's view of the fleet: its own entry and the directory copy.
/// Cheap to clone; read by handlers.
#[derive(Clone)]
pub struct Fleet {
    me: Registration,
    copy: Arc<RwLock<Directory>>,
    client: async_nats::Client,
    standing: Arc<AtomicU8>,
    /// Copies of the bucket if this node creates it.
    replicas: usize,
    /// The district, once open: each heartbeat lists its fridges.
    district: Arc<OnceLock<District>>,
}

impl Fleet {
    /// The district serving the point with this geohash, from the copy.
    pub fn locate(&self, geohash: &str) -> Option<Registration> {
        let copy = self.copy.read().ok()?;
        copy.locate(geohash).cloned()
    }

    /// Another district listing `fridge_id` in the copy (never this one).
    pub fn fridge_owner(&self, fridge_id: &FridgeId) -> Option<Registration> {
        let copy = self.copy.read().ok()?;
        copy.fridge_owner(fridge_id)
            .filter(|r| r.district_id != self.me.district_id)
            .cloned()
    }

    /// From the next heartbeat on, our entry lists `district`'s fridges.
    pub fn list_fridges_of(&self, district: &District) {
        let _ = self.district.set(district.clone());
    }

    /// Every district in the copy (this one included once joined).
    pub fn districts(&self) -> Vec<Registration> {
        self.copy
            .read()
            .map(|c| c.districts().cloned().collect())
            .unwrap_or_default()
    }

    /// For `/readyz`: how fresh the copy is and what it holds.
    pub fn status(&self) -> Value {
        let Ok(copy) = self.copy.read() else {
            return json!({"state": "unknown"});
        };
        let standing = match self.standing.load(Ordering::Relaxed) {
            0 => "joining",
            1 => "registered",
            _ => "refused",
        };
        json!({
            "state": copy.freshness(),
            "standing": standing,
            "nats": match self.client.connection_state() {
                async_nats::connection::State::Connected => "connected",
                async_nats::connection::State::Disconnected => "disconnected",
                async_nats::connection::State::Pending => "pending",
            },
            "districts": copy.districts().map(|r| r.district_id.to_string()).collect::<Vec<_>>(),
            "age_secs": copy.age(Instant::now()).map(|a| a.as_secs()),
        })
    }

    /// The customer index, on this node's NATS connection.
    pub fn customer_index(&self) -> super::CustomerIndex {
        super::CustomerIndex::new(self.client.clone(), self.replicas)
    }

    /// The profile store, on this node's NATS connection.
    pub fn profiles(&self) -> super::Profiles {
        super::Profiles::new(self.client.clone(), self.replicas)
    }

    /// The bonus-point ledger, on this node's NATS connection.
    pub fn ledger(&self) -> super::points::Ledger {
        super::points::Ledger::new(self.client.clone(), self.replicas)
    }

    /// The issuer's published keys, on this node's NATS connection.
    pub fn issuer_keys(&self) -> super::issuer_keys::IssuerKeys {
        super::issuer_keys::IssuerKeys::new(self.client.clone(), self.replicas)
    }

    /// The fleet's insight board, on this node's NATS connection.
    pub fn insights_board(&self) -> crate::insights::fleet::Board {
        crate::insights::fleet::Board::new(self.client.clone(), self.replicas)
    }

    /// This node's own entry.
    pub fn me(&self) -> &Registration {
        &self.me
    }

    fn set(&self, standing: Standing) {
        self.standing.store(standing as u8, Ordering::Relaxed);
    }

    /// Bucket, claim (see the module docs), then heartbeat and watch.
    async fn enter(&self, config: &FleetConfig, shutdown: &Shutdown) -> Result<(), FleetError> {
        let js = jetstream::new(self.client.clone());
        let store = bucket(&js, config, self.replicas).await?;
        claim(&store, &self.me, &self.copy).await?;
        tracing::info!(
            district_id = %self.me.district_id,
            url = %self.me.url,
            prefixes = ?self.me.geohash_prefixes,
            "joined the region directory"
        );
        self.set(Standing::Registered);
        let heartbeat = Duration::from_secs(config.heartbeat_secs.max(1));
        let (s, m, d) = (store.clone(), self.me.clone(), self.district.clone());
        shutdown.spawn("directory-heartbeat", move |sd| {
            beat(s, m, d, heartbeat, sd)
        });
        let (c, cl) = (self.copy.clone(), self.client.clone());
        let canary = Canary {
            district_id: self.me.district_id.clone(),
            // Two beats missed on our own entry: the watch is dead.
            within: heartbeat * 2 + Duration::from_secs(1),
        };
        shutdown.spawn("directory-watch", move |sd| watch(store, c, cl, canary, sd));
        Ok(())
    }
}

/// Joins the directory (see the module docs) and starts the heartbeat and
/// the watch, both stopped by `shutdown` (the heartbeat deletes our entry
/// on its way out).
///
/// `Err` only for an overlapping district: the node must not start. If
/// NATS does not answer within `join_timeout_secs`, the node starts
/// anyway (a district keeps selling with NATS down) and joins in the
/// background; an overlap found then is logged as an error and the node
/// stays unregistered (`/readyz` says `refused`).
pub async fn join(
    servers: &[String],
    replicas: usize,
    me: Registration,
    config: &FleetConfig,
    shutdown: &Shutdown,
) -> Result<Fleet, FleetError> {
    // Returns at once; connects (and reconnects) in the background.
    let client = async_nats::ConnectOptions::new()
        .name(format!("larder-directory-{}", me.district_id))
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| nats_err("connect", e))?;
    let fleet = Fleet {
        me,
        copy: Arc::new(RwLock::new(Directory::new(Duration::from_secs(
            config.ttl_secs,
        )))),
        client,
        standing: Arc::new(AtomicU8::new(Standing::Joining as u8)),
        replicas,
        district: Arc::default(),
    };
    let timeout = Duration::from_secs(config.join_timeout_secs);
    match tokio::time::timeout(timeout, fleet.enter(config, shutdown)).await {
        Ok(Ok(())) => return Ok(fleet),
        Ok(Err(e @ FleetError::Overlap { .. })) => return Err(e),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "region directory unavailable; joining in the background")
        }
        Err(_) => tracing::warn!(
            ?timeout,
            "NATS did not answer; joining the region directory in the background"
        ),
    }
    let (f, c) = (fleet.clone(), config.clone());
    shutdown.spawn("directory-join", move |sd| join_later(f, c, sd));
    Ok(fleet)
}

/// Retries [`Fleet::enter`] until it succeeds, finds an overlap, or the
/// node stops.
async fn join_later(fleet: Fleet, config: FleetConfig, mut shutdown: Shutdown) {
    let timeout = Duration::from_secs(config.join_timeout_secs.max(1));
    loop {
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(RESYNC_DELAY) => {}
        }
        match tokio::time::timeout(timeout, fleet.enter(&config, &shutdown)).await {
            Ok(Ok(())) => return,
            Ok(Err(e @ FleetError::Overlap { .. })) => {
                tracing::error!(error = %e, "not registered in the region directory");
                fleet.set(Standing::Refused);
                return;
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

/// The bucket, created if no node made it yet (with our config: one
/// history entry, the TTL as `max_age`, `replicas` copies).
async fn bucket(
    js: &jetstream::Context,
    config: &FleetConfig,
    replicas: usize,
) -> Result<kv::Store, FleetError> {
    let config = kv::Config {
        bucket: BUCKET.to_string(),
        description: "Larder region directory: district id -> prefixes, URL".into(),
        history: 1,
        max_age: Duration::from_secs(config.ttl_secs),
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    super::ensure_bucket(js, config)
        .await
        .map_err(|e| nats_err("create bucket", e))
}

/// Every entry in the bucket now, with its revision.
async fn read_all(store: &kv::Store) -> Result<Vec<(Registration, u64)>, FleetError> {
    let mut keys = store.keys().await.map_err(|e| nats_err("keys", e))?;
    let mut names = vec![];
    while let Some(k) = keys.next().await {
        names.push(k.map_err(|e| nats_err("keys", e))?);
    }
    let mut out = vec![];
    for name in names {
        let Some(entry) = store.entry(&name).await.map_err(|e| nats_err("get", e))? else {
            continue;
        };
        if entry.operation != Operation::Put {
            continue;
        }
        match serde_json::from_slice::<Registration>(&entry.value) {
            Ok(r) => out.push((r, entry.revision)),
            Err(e) => tracing::warn!(key = %name, error = %e, "unreadable directory entry skipped"),
        }
    }
    Ok(out)
}

/// Read, refuse an overlap, put our entry, read again (see module docs).
async fn claim(
    store: &kv::Store,
    me: &Registration,
    copy: &RwLock<Directory>,
) -> Result<(), FleetError> {
    let overlap = |dir: &Directory| {
        dir.overlapping(me).map(|other| FleetError::Overlap {
            other: other.district_id.clone(),
            url: other.url.clone(),
            theirs: other.geohash_prefixes.clone(),
            ours: me.geohash_prefixes.clone(),
        })
    };
    let before = read_all(store).await?;
    let mut dir = Directory::new(Duration::MAX);
    dir.replace(before, Instant::now());
    if let Some(e) = overlap(&dir) {
        return Err(e);
    }
    let value = serde_json::to_vec(me).map_err(|e| nats_err("encode", e))?;
    let mine = store
        .put(key(&me.district_id), value.into())
        .await
        .map_err(|e| nats_err("put", e))?;
    let after = read_all(store).await?;
    dir.replace(after, Instant::now());
    let earlier = dir
        .districts()
        .filter(|r| r.district_id != me.district_id && r.overlaps(me))
        .any(|r| dir.revision(&r.district_id).is_some_and(|rev| rev < mine));
    if earlier {
        // It claimed first; leave it the prefixes.
        let _ = store.delete(key(&me.district_id)).await;
        return Err(overlap(&dir).unwrap_or_else(|| nats_err("claim", "lost a race")));
    }
    let now = read_all(store).await?;
    if let Ok(mut c) = copy.write() {
        c.replace(now, Instant::now());
    }
    Ok(())
}

/// Puts our entry every `every` (listing the district's fridges as they
/// are then) until shutdown, then deletes it.
async fn beat(
    store: kv::Store,
    mut me: Registration,
    district: Arc<OnceLock<District>>,
    every: Duration,
    mut shutdown: Shutdown,
) {
    let key = key(&me.district_id);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.triggered() => break,
            _ = tick.tick() => {}
        }
        if let Some(d) = district.get() {
            me.list_fridges(d.state().catalog().fridges().keys().cloned());
        }
        let Ok(value) = serde_json::to_vec(&me) else {
            continue;
        };
        match store.put(&key, value.into()).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("directory heartbeat resumed");
            }
            Ok(_) => {}
            // Once per outage, not per beat.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "directory heartbeat failed; retrying");
            }
            Err(_) => {}
        }
    }
    let leave = tokio::time::timeout(Duration::from_millis(LEAVE_MS), store.delete(&key)).await;
    match leave {
        Ok(Ok(())) => tracing::info!(district_id = %me.district_id, "left the region directory"),
        _ => tracing::warn!("could not leave the region directory; the entry expires by itself"),
    }
}

/// Our own heartbeats, seen on the watch, prove it is alive. A watch is an
/// ephemeral consumer on one server; when that server dies the client may
/// reconnect elsewhere at once and the watch goes quiet without an error,
/// and a quiet watch would make every other district look silent.
#[derive(Clone)]
struct Canary {
    district_id: DistrictId,
    within: Duration,
}

/// Keeps the copy current until shutdown: watch, and after any break a
/// fresh read of the whole bucket.
async fn watch(
    store: kv::Store,
    copy: Arc<RwLock<Directory>>,
    client: async_nats::Client,
    canary: Canary,
    mut shutdown: Shutdown,
) {
    loop {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let resynced = if connected {
            // Bounded: a request to a server that just died can hang.
            tokio::time::timeout(RESYNC_TIMEOUT, resync(&store, &copy))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        if let Some(w) = resynced {
            if follow(w, &copy, &client, &canary, &mut shutdown).await {
                return;
            }
        }
        if let Ok(mut c) = copy.write() {
            c.link_lost();
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(RESYNC_DELAY) => {}
        }
    }
}

/// A new watch and, behind it, a fresh read of the whole bucket into the
/// copy. Watch first, then read: nothing between the two is missed
/// (revisions order what arrives twice).
async fn resync(store: &kv::Store, copy: &RwLock<Directory>) -> Option<kv::Watch> {
    let w = store.watch_all().await.ok()?;
    let all = read_all(store).await.ok()?;
    if let Ok(mut c) = copy.write() {
        c.replace(all, Instant::now());
    }
    Some(w)
}

/// Applies watched entries and expires silent districts until the watch or
/// the connection breaks (`false`) or shutdown (`true`).
async fn follow(
    mut w: kv::Watch,
    copy: &RwLock<Directory>,
    client: &async_nats::Client,
    canary: &Canary,
    shutdown: &mut Shutdown,
) -> bool {
    let mut sweep = tokio::time::interval(Duration::from_millis(SWEEP_MS));
    let own_key = key(&canary.district_id);
    let mut own_seen = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.triggered() => return true,
            next = w.next() => match next {
                Some(Ok(entry)) => {
                    if entry.key == own_key {
                        own_seen = Instant::now();
                    }
                    apply(copy, entry);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "directory watch broke; reading the bucket again");
                    return false;
                }
                None => return false,
            },
            _ = sweep.tick() => {
                if client.connection_state() != async_nats::connection::State::Connected {
                    tracing::warn!("NATS link lost; routing from the directory copy");
                    return false;
                }
                if own_seen.elapsed() > canary.within {
                    tracing::warn!("directory watch went quiet; reading the bucket again");
                    return false;
                }
                if let Ok(mut c) = copy.write() {
                    c.expire(Instant::now());
                }
            }
        }
    }
}

fn apply(copy: &RwLock<Directory>, entry: kv::Entry) {
    let now = Instant::now();
    let Ok(mut c) = copy.write() else { return };
    match entry.operation {
        Operation::Put => match serde_json::from_slice::<Registration>(&entry.value) {
            Ok(r) => c.put(r, entry.revision, now),
            Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable directory entry"),
        },
        Operation::Delete | Operation::Purge => {
            let id = entry
                .key
                .strip_prefix("district.")
                .map(str::parse::<DistrictId>);
            if let Some(Ok(id)) = id {
                c.remove(&id, entry.revision, now);
            }
        }
    }
}
