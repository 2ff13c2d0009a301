//! The push hub: one task between the writer's committed feed and the
//! WebSocket connections.
//!
//! The writer publishes each durable batch once (`District::subscribe_feed`);
//! the hub turns it into messages ([`super::changes`]), keeps the recent ones
//! for resuming clients, and routes each to the connections that want it
//! through indexes by fridge, geohash cell and customer. Every connection has
//! a bounded queue and the hub only ever `try_send`s: a client that stops
//! reading fills its own queue and is cut off, and neither the writer nor any
//! other client waits for it.
//!
//! Subscribing goes through the same task as fan-out, so "replay what was
//! missed, then continue live" has no gap and no duplicate.
//!
//! Notifications (`district::notifications`) go to the customer's
//! connections that follow orders; one for a customer with none is handed
//! to the phone-push adapter (`crate::notify`) through its bounded queue
//! (`try_send`: a full queue drops it, with a warning, and never waits).
//! A subscribe with `since` replays the customer's notifications after it
//! from the state (the last 24 h), not from the ring, merged with the
//! ring's messages in version order.
//!
//! Each message is encoded once ([`Frame`]): every connection it goes to
//! gets a pointer to the same text, and the socket tasks write it as is.
//!
//! At shutdown the hub stops and drops every queue; a connection task that
//! finds its queue closed (and was not kicked) closes with 1001.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, Notify};

use super::{
    changes, notification_changes, notification_push, version_after, Interest, Route, ServerMessage,
};
use crate::clock::Clock;
use crate::lifecycle::Shutdown;
use crate::metrics::Metrics;
use crate::writer::District;
use district::notifications::{Notification, NOTIFICATION_SLOT_BASE};
use district::DistrictState;
use protocol::{DistrictId, FridgeId};

/// Control messages (connect, follow, disconnect) waiting for the hub.
pub const CONTROL_QUEUE_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub district_id: DistrictId,
    pub district_prefixes: Vec<String>,
    /// The district's offset from UTC (campaign prices in stock messages).
    pub utc_offset_minutes: i32,
    /// Frames a connection may have queued before it counts as too slow.
    pub queue_frames: usize,
    /// Recent messages kept for clients resuming with `since`.
    pub resume_messages: usize,
}

/// One encoded message, shared by every connection it goes to.
///
/// The JSON text is checked as UTF-8 once, when the hub encodes it, so a
/// socket task writes it without looking at it again. It sits behind one
/// pointer because a connection's queue allocates its first block of slots
/// (32 in tokio) when the connection opens, idle or not: an 8-byte slot
/// instead of a 32-byte `Bytes` saves ~750 bytes per idle connection.
#[derive(Debug, Clone)]
pub struct Frame(Arc<Utf8Bytes>);

impl Frame {
    /// `json` as the text the sockets write. `ServerMessage` encodes to
    /// UTF-8 JSON; anything else would be a bug, sent as `{}` rather than
    /// as broken text.
    pub fn new(json: Bytes) -> Frame {
        let text = Utf8Bytes::try_from(json).unwrap_or_else(|_| Utf8Bytes::from_static("{}"));
        Frame(Arc::new(text))
    }

    pub fn of(msg: &ServerMessage) -> Frame {
        Frame::new(msg.to_frame())
    }

    /// The text for a WebSocket text message: the same bytes, no copy.
    pub fn text(&self) -> Utf8Bytes {
        (*self.0).clone()
    }

    /// Whether both are the one encoding of a message (not merely equal).
    pub fn shares_encoding(&self, other: &Frame) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A message the hub fanned out, kept for clients resuming with `since`.
struct Sent {
    version: u64,
    route: Route,
    frame: Frame,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    control: mpsc::Sender<Control>,
    next_id: Arc<AtomicU64>,
    queue_frames: usize,
}

/// The receiving end of one connection's queue.
pub struct Subscriber {
    pub id: u64,
    pub frames: mpsc::Receiver<Frame>,
    /// Raised by the hub when it cut this connection off for not keeping up.
    pub kick: Arc<Kick>,
}

/// The hub's "you are too slow" signal to a connection task: a flag, and a
/// `Notify` so a task blocked writing to a stuck client wakes up.
#[derive(Default)]
pub struct Kick {
    pub flag: AtomicBool,
    pub notify: Notify,
}

enum Control {
    Connect {
        id: u64,
        queue: mpsc::Sender<Frame>,
        kick: Arc<Kick>,
    },
    Follow {
        id: u64,
        interest: Interest,
        since: Option<u64>,
    },
    Disconnect {
        id: u64,
    },
}

/// Where the hub sends notifications nobody is connected for, and the
/// clock that says which are older than a day.
pub struct NotifyLink {
    pub clock: Clock,
    /// The phone-push adapter's queue; `None`: nobody is pushed.
    pub offline: Option<mpsc::Sender<Notification>>,
}

impl Hub {
    /// Starts the hub task on the district's feed; it runs until
    /// `shutdown` or until the feed ends. Notifications go to sockets only,
    /// judged by the system clock (see [`Hub::start_with`]).
    pub fn start(
        district: District,
        config: HubConfig,
        metrics: Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Hub {
        let link = NotifyLink {
            clock: Clock::system(),
            offline: None,
        };
        Hub::start_with(district, config, metrics, link, shutdown)
    }

    /// [`Hub::start`] with the node's clock and push adapter.
    pub fn start_with(
        district: District,
        config: HubConfig,
        metrics: Arc<Metrics>,
        link: NotifyLink,
        shutdown: &Shutdown,
    ) -> Hub {
        // Subscribe before reading the state: a batch committed in between is
        // then seen (and skipped by seq) rather than lost.
        let feed = district.subscribe_feed();
        let state = district.state();
        let (control, inbox) = mpsc::channel(CONTROL_QUEUE_CAPACITY);
        let hub = Hub {
            control,
            next_id: Arc::new(AtomicU64::new(1)),
            queue_frames: config.queue_frames,
        };
        let head = version_after(state.last_seq());
        let task = HubTask {
            config,
            metrics,
            district,
            prev: state,
            head,
            floor: head,
            ring: VecDeque::new(),
            conns: HashMap::new(),
            by_fridge: HashMap::new(),
            by_cell: HashMap::new(),
            by_customer: HashMap::new(),
            listeners: HashSet::new(),
            link,
        };
        shutdown.spawn("push-hub", |s| task.run(feed, inbox, s));
        hub
    }

    /// Registers a new connection. `None` when the hub has stopped.
    pub async fn connect(&self) -> Option<Subscriber> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, frames) = mpsc::channel(self.queue_frames.max(1));
        let kick = Arc::new(Kick::default());
        self.control
            .send(Control::Connect {
                id,
                queue,
                kick: kick.clone(),
            })
            .await
            .ok()?;
        Some(Subscriber { id, frames, kick })
    }

    /// Replaces what connection `id` follows; with `since`, first replays
    /// what it missed after that version (or sends `resync`). The answer
    /// (`subscribed`) arrives on the connection's queue.
    pub async fn follow(&self, id: u64, interest: Interest, since: Option<u64>) {
        let _ = self
            .control
            .send(Control::Follow {
                id,
                interest,
                since,
            })
            .await;
    }

    /// Forgets connection `id` (also inferred when its queue is dropped).
    pub fn disconnect(&self, id: u64) {
        let _ = self.control.try_send(Control::Disconnect { id });
    }
}

struct Conn {
    queue: mpsc::Sender<Frame>,
    kick: Arc<Kick>,
    interest: Interest,
}

struct HubTask {
    config: HubConfig,
    metrics: Arc<Metrics>,
    district: District,
    /// The state the last processed batch left.
    prev: Arc<DistrictState>,
    /// Version a client is at once it has everything sent so far.
    head: u64,
    /// Messages with a version above `floor` are all still in `ring`.
    floor: u64,
    ring: VecDeque<Sent>,
    conns: HashMap<u64, Conn>,
    by_fridge: HashMap<FridgeId, HashSet<u64>>,
    by_cell: HashMap<String, HashSet<u64>>,
    by_customer: HashMap<String, HashSet<u64>>,
    /// Connections with any area or fridge subscription.
    listeners: HashSet<u64>,
    link: NotifyLink,
}

/// Whether a push is a notification (its version is in the upper slots).
fn is_notification(version: u64) -> bool {
    version & ((1 << district::push::VERSION_SLOT_BITS) - 1) >= NOTIFICATION_SLOT_BASE as u64
}

impl HubTask {
    async fn run(
        mut self,
        mut feed: broadcast::Receiver<Arc<crate::writer::CommittedBatch>>,
        mut inbox: mpsc::Receiver<Control>,
        mut shutdown: Shutdown,
    ) {
        loop {
            tokio::select! {
                () = shutdown.triggered() => break,
                batch = feed.recv() => match batch {
                    Ok(batch) => self.on_batch(&batch.state, &batch.events),
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.on_lag(missed),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                ctl = inbox.recv() => match ctl {
                    Some(ctl) => self.on_control(ctl),
                    None => break,
                },
            }
        }
        tracing::info!("push hub stopped");
    }

    fn on_batch(&mut self, state: &Arc<DistrictState>, events: &[protocol::EventEnvelope]) {
        if state.last_seq() <= self.prev.last_seq() {
            return; // Already part of the state the hub started from.
        }
        let mut pushes = changes(
            &self.prev,
            state,
            events,
            &self.config.district_id,
            &self.config.district_prefixes,
            self.config.utc_offset_minutes,
        );
        // In version order: notifications of an earlier event in the batch
        // come before the batch's messages, those of its last event after.
        pushes.extend(notification_changes(&self.prev, state));
        pushes.sort_by_key(|p| p.version);
        self.prev = state.clone();
        self.head = version_after(state.last_seq());
        for push in pushes {
            let frame = Frame::new(push.frame);
            let targets = self.targets(&push.route);
            for id in &targets {
                self.deliver(*id, &frame);
            }
            if is_notification(push.version) {
                // Replayed from the state, not the ring.
                if targets.is_empty() {
                    self.offline(state, push.version);
                }
                continue;
            }
            self.ring.push_back(Sent {
                version: push.version,
                route: push.route,
                frame,
            });
            while self.ring.len() > self.config.resume_messages {
                if let Some(old) = self.ring.pop_front() {
                    self.floor = old.version;
                }
            }
        }
    }

    /// Hands notification `id` to the push adapter: its customer has no
    /// connection following orders.
    fn offline(&self, state: &DistrictState, id: u64) {
        let Some(queue) = &self.link.offline else {
            return;
        };
        let Some(n) = state.notifications().get(id) else {
            return;
        };
        if let Err(e) = queue.try_send(n.clone()) {
            self.metrics.pushes_dropped.fetch_add(1, Ordering::Relaxed);
            let full = matches!(e, mpsc::error::TrySendError::Full(_));
            tracing::warn!(
                notification = id,
                customer = %n.customer,
                queue_full = full,
                "phone push dropped: the push adapter is not keeping up"
            );
        }
    }

    /// The hub fell behind the writer's feed: messages were lost, so every
    /// client starts over from a fresh snapshot.
    fn on_lag(&mut self, missed: u64) {
        tracing::warn!(
            missed_batches = missed,
            "push hub lagged behind the feed; resync all"
        );
        let fresh = self.district.state();
        // Notifications of the lost batches still reach offline phones;
        // connected apps resync (and fetch them with `since`).
        for push in notification_changes(&self.prev, &fresh) {
            if self.targets(&push.route).is_empty() {
                self.offline(&fresh, push.version);
            }
        }
        self.prev = fresh;
        self.head = version_after(self.prev.last_seq());
        self.floor = self.head;
        self.ring.clear();
        let frame = Frame::of(&ServerMessage::Resync { version: self.head });
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.metrics.ws_resyncs.fetch_add(1, Ordering::Relaxed);
            self.deliver(id, &frame);
        }
    }

    fn on_control(&mut self, ctl: Control) {
        match ctl {
            Control::Connect { id, queue, kick } => {
                self.conns.insert(
                    id,
                    Conn {
                        queue,
                        kick,
                        interest: Interest::default(),
                    },
                );
            }
            Control::Follow {
                id,
                interest,
                since,
            } => self.follow(id, interest, since),
            Control::Disconnect { id } => self.remove(id),
        }
    }

    fn follow(&mut self, id: u64, interest: Interest, since: Option<u64>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut conn.interest, interest.clone());
        self.unindex(id, &old);
        self.index(id, &interest);

        if let Some(since) = since {
            let missed: Vec<(u64, Frame)> = if since >= self.floor && since <= self.head {
                self.ring
                    .iter()
                    .filter(|p| p.version > since && interest.wants(&p.route))
                    .map(|p| (p.version, p.frame.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let notes = self.missed_notifications(&interest, since);
            let too_old = since < self.floor || since > self.head;
            // A replay longer than half the queue would cut the client off
            // at once; a resync is cheaper for both sides.
            if too_old || missed.len() + notes.len() > self.config.queue_frames / 2 {
                for (_, frame) in &notes {
                    self.deliver(id, frame);
                }
                self.metrics.ws_resyncs.fetch_add(1, Ordering::Relaxed);
                let frame = Frame::of(&ServerMessage::Resync { version: self.head });
                self.deliver(id, &frame);
            } else {
                let mut all = missed;
                all.extend(notes);
                all.sort_by_key(|(v, _)| *v);
                for (_, frame) in &all {
                    self.deliver(id, frame);
                }
            }
        }
        let ack = Frame::of(&ServerMessage::Subscribed {
            version: self.head,
            areas: interest.areas.len(),
            fridges: interest.fridges.len(),
            orders: interest.customer.is_some(),
        });
        self.deliver(id, &ack);
    }

    /// The notifications of the last 24 h after `since` for the customer
    /// whose orders `interest` follows: at most a quarter of the queue, the
    /// newest (the rest are at `GET /v1/me/notifications`).
    fn missed_notifications(&self, interest: &Interest, since: u64) -> Vec<(u64, Frame)> {
        let Some(customer) = &interest.customer else {
            return Vec::new();
        };
        let now = self.link.clock.now();
        let notes: Vec<&Notification> = self
            .prev
            .notifications()
            .of_customer_after(customer, since, now)
            .collect();
        let keep = (self.config.queue_frames / 4).max(1);
        notes[notes.len().saturating_sub(keep)..]
            .iter()
            .map(|n| {
                let p = notification_push(n);
                (p.version, Frame::new(p.frame))
            })
            .collect()
    }

    fn index(&mut self, id: u64, interest: &Interest) {
        for fridge in &interest.fridges {
            self.by_fridge.entry(fridge.clone()).or_default().insert(id);
        }
        for cell in interest.cells() {
            self.by_cell.entry(cell.to_string()).or_default().insert(id);
        }
        if let Some(c) = &interest.customer {
            self.by_customer.entry(c.clone()).or_default().insert(id);
        }
        if interest.subscriptions() > 0 {
            self.listeners.insert(id);
        }
    }

    fn unindex(&mut self, id: u64, interest: &Interest) {
        fn drop_from<K>(map: &mut HashMap<K, HashSet<u64>>, key: &str, id: u64)
        where
            K: Eq + std::hash::Hash + std::borrow::Borrow<str>,
        {
            if let Some(set) = map.get_mut(key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
        for fridge in &interest.fridges {
            drop_from(&mut self.by_fridge, fridge, id);
        }
        for cell in interest.cells() {
            drop_from(&mut self.by_cell, cell, id);
        }
        if let Some(c) = &interest.customer {
            drop_from(&mut self.by_customer, c, id);
        }
        self.listeners.remove(&id);
    }

    fn remove(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            self.unindex(id, &conn.interest);
        }
    }

    fn targets(&self, route: &Route) -> Vec<u64> {
        let mut ids: Vec<u64> = match route {
            Route::Fridge { fridge_id, geohash } => {
                let mut ids: Vec<u64> = self
                    .by_fridge
                    .get(fridge_id)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for len in 1..=geohash.len() {
                    if let Some(set) = geohash.get(..len).and_then(|p| self.by_cell.get(p)) {
                        ids.extend(set.iter().copied());
                    }
                }
                ids
            }
            Route::District => self.listeners.iter().copied().collect(),
            Route::Customer(c) => self
                .by_customer
                .get(c)
                .into_iter()
                .flatten()
                .copied()
                .collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn deliver(&mut self, id: u64, frame: &Frame) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.queue.try_send(frame.clone()) {
            Ok(()) => {
                self.metrics.ws_frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                conn.kick.flag.store(true, Ordering::SeqCst);
                conn.kick.notify.notify_one();
                self.metrics.ws_slow_kicks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn = id, "websocket client too slow; disconnecting");
                self.remove(id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.remove(id),
        }
    }
}
