//! `/v1/ws`: the WebSocket session of one app.
//!
//! Owns the socket: parses and checks client messages (subscribe,
//! unsubscribe, ping), enforces the per-connection limits, keeps the
//! connection alive (ping, idle timeout), and writes the frames the push hub
//! queues for it (all it finds queued, one flush per wakeup). It never decides what to push (that is `push::changes`)
//! and never blocks the hub: the hub drops a connection whose queue is full,
//! and this task then closes it with a reason. At shutdown it closes with
//! 1001 (going away), and the node waits for that before it exits.
//!
//! A token is only as good as its `exp`: when the connection's token
//! expires (by the node's clock, with the configured leeway) a connection
//! that follows orders is closed with [`CLOSE_TOKEN_EXPIRED`]; one that
//! follows only public areas and fridges just forgets the token. A client
//! renews before expiry with `{"type":"reauth","token":…}` (same subject
//! and role).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use protocol::geo::GeoPoint;
use protocol::FridgeId;
use serde::Deserialize;

use super::error::ApiError;
use super::AppState;
use crate::auth::Caller;
use crate::push::hub::{Frame, Kick};
use crate::push::{cover, AreaSpec, ElsewhereDistrict, Interest, ServerMessage};

/// After sending a close frame, how long the client may take to answer it.
/// Dropping the socket at once would make the client's TCP stack discard
/// the close frame (and its reason) if it was still sending, e.g. a pong.
pub const CLOSE_LINGER_SECS: u64 = 5;
/// Longest fridge id a client may name, in bytes.
const MAX_FRIDGE_ID_LEN: usize = 64;
/// Close codes (RFC 6455 §7.4.1).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_PROTOCOL: u16 = 1002;
/// `Retry-After` when a caller already holds its connections: one of them
/// has to close first, which the node cannot foresee; a few seconds keeps
/// a looping client from spinning.
const CALLER_FULL_RETRY_SECS: i64 = 5;
/// Private-use close code (RFC 6455 §7.4.2): the token expired; connect
/// again with a fresh one.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Read buffer per connection. It is allocated when the socket opens and
/// kept for the connection's life, and most connections are idle: memory per
/// idle connection is what limits how many one node holds. Client messages
/// are small (subscribe, ping); a bigger one grows the buffer for its frame.
pub const WS_READ_BUFFER_BYTES: usize = 1024;
/// Frames written to a socket are gathered up to this size before a write
/// syscall; the rest goes out with the one flush per wakeup (see
/// [`write_queued`]). The buffer grows only when frames are queued.
pub const WS_WRITE_COALESCE_BYTES: usize = 4 * 1024;
/// Unflushed bytes a socket may hold before a write fails (a client that
/// stopped reading is cut off by its queue first).
pub const WS_MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Most queued frames written per wakeup before the task looks at its
/// other duties (pings, the client's messages, the idle timer) again.
pub const WS_WRITE_BATCH_FRAMES: usize = 64;

/// Counts a connection against the node's limit for as long as it lives.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(counter.clone())),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per caller (role and subject), against
/// `ws.max_connections_per_caller`.
#[derive(Default)]
pub struct PerCaller(std::sync::Mutex<std::collections::HashMap<Box<str>, usize>>);

/// One connection counted against its caller while it lives.
struct CallerSlot {
    counts: Arc<PerCaller>,
    key: Box<str>,
}

impl PerCaller {
    fn take(counts: &Arc<PerCaller>, key: Box<str>, max: usize) -> Option<CallerSlot> {
        let mut map = counts.0.lock().ok()?;
        let n = map.entry(key.clone()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(CallerSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.0.lock() {
            if let Some(n) = map.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

/// The connection's token, if any, and its place in the per-caller count.
#[derive(Default)]
struct Auth {
    caller: Option<Caller>,
    slot: Option<CallerSlot>,
}

impl Auth {
    fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// Takes `claims` as the connection's token, unless its caller already
    /// has as many connections as allowed.
    fn set(&mut self, app: &AppState, claims: crate::auth::Claims) -> Result<(), Refusal> {
        let key: Box<str> = claims.caller_key().into();
        if self.slot.as_ref().is_none_or(|s| s.key != key) {
            let max = app.config.ws.max_connections_per_caller;
            let slot = PerCaller::take(&app.ws_per_caller, key, max).ok_or_else(|| {
                refuse(
                    "too_many_caller_connections",
                    format!("one token's caller may hold at most {max} WebSocket connections"),
                )
            })?;
            self.slot = Some(slot);
        }
        self.caller = Some(Caller(claims));
        Ok(())
    }

    fn clear(&mut self) {
        self.caller = None;
        self.slot = None;
    }
}

/// `GET /v1/ws`. Areas and fridges are public; following one's orders needs
/// a token (`Authorization` header on the upgrade, or `token` in the
/// subscribe message for browsers, which cannot set headers).
pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::bad_request(
            "not_websocket",
            format!("/v1/ws needs a WebSocket upgrade request: {e}"),
        )
    })?;
    let mut auth = Auth::default();
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let caller = app.verifier.verify_header(h.to_str().ok())?;
        auth.set(&app, caller.0)
            .map_err(|r| ApiError::too_many(r.code, r.message, CALLER_FULL_RETRY_SECS))?;
    }
    let limits = app.config.ws.clone();
    let Some(slot) = Slot::take(&app.ws_connections, limits.max_connections) else {
        app.metrics.ws_refused.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!(
                "this node serves at most {} WebSocket connections; retry later",
                limits.max_connections
            ),
        ));
    };
    Ok(ws
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_COALESCE_BYTES)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER_BYTES)
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| session(socket, app, auth, slot)))
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        #[serde(default)]
        areas: Vec<AreaSpec>,
        #[serde(default)]
        fridges: Vec<String>,
        #[serde(default)]
        orders: bool,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        token: Option<String>,
    },
    Unsubscribe {
        #[serde(default)]
        areas: Vec<AreaSpec>,
        #[serde(default)]
        fridges: Vec<String>,
        #[serde(default)]
        orders: bool,
    },
    Ping,
    /// A fresh token for the same subject and role, before the old expires.
    Reauth {
        token: String,
    },
}

const CLIENT_TYPES: [&str; 4] = ["subscribe", "unsubscribe", "ping", "reauth"];

/// A message the client got wrong: answered with an `error`, nothing changes.
struct Refusal {
    code: &'static str,
    message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn parse(text: &str) -> Result<ClientMessage, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| refuse("malformed_message", format!("not JSON: {e}")))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| refuse("malformed_message", "a message needs a string \"type\""))?;
    if !CLIENT_TYPES.contains(&kind) {
        return Err(refuse(
            "unknown_type",
            format!("unknown message type {kind:?}; expected one of {CLIENT_TYPES:?}"),
        ));
    }
    serde_json::from_value(value).map_err(|e| refuse("invalid_message", e.to_string()))
}

/// The interest after a subscribe or unsubscribe, checked against limits and
/// the district; `Err` leaves the connection's interest as it was.
fn next_interest(
    app: &AppState,
    current: &Interest,
    auth: &mut Auth,
    msg: ClientMessage,
) -> Result<(Interest, Option<u64>), Refusal> {
    let state = app.district.state();
    // A fridge the catalog knows has a valid id: take the catalog's.
    let check_fridges = |fridges: &[String]| -> Result<Vec<FridgeId>, Refusal> {
        fridges
            .iter()
            .map(|f| {
                if f.is_empty() || f.len() > MAX_FRIDGE_ID_LEN {
                    return Err(refuse("invalid_fridge", "fridge ids are 1 to 64 bytes"));
                }
                state
                    .catalog()
                    .fridge(f)
                    .map(|fridge| fridge.fridge_id.clone())
                    .ok_or_else(|| refuse("unknown_fridge", format!("no fridge {f:?} here")))
            })
            .collect()
    };
    match msg {
        ClientMessage::Subscribe {
            areas,
            fridges,
            orders,
            since,
            token,
        } => {
            let fridges = check_fridges(&fridges)?;
            let mut next = current.clone();
            add_areas(app, &mut next, areas)?;
            next.fridges.extend(fridges);
            let max = app.config.ws.max_subscriptions;
            if next.subscriptions() > max {
                return Err(refuse(
                    "too_many_subscriptions",
                    format!(
                        "a connection may follow at most {max} areas and fridges together; \
                         this would make {}",
                        next.subscriptions()
                    ),
                ));
            }
            if let Some(token) = token {
                let claims = verify(app, &token)?;
                if next.customer.as_ref().is_some_and(|c| *c != claims.sub) {
                    return Err(refuse(
                        "token_mismatch",
                        "this connection follows another customer's orders; unsubscribe first",
                    ));
                }
                auth.set(app, claims)?;
            }
            if orders {
                next.customer = Some(order_follower(auth.caller())?);
            }
            Ok((next, since))
        }
        ClientMessage::Unsubscribe {
            areas,
            fridges,
            orders,
        } => {
            let mut next = current.clone();
            next.areas.retain(|(a, _)| !areas.contains(a));
            let drop: BTreeSet<String> = fridges.into_iter().collect();
            next.fridges.retain(|f| !drop.contains(f.as_str()));
            if orders {
                next.customer = None;
            }
            Ok((next, None))
        }
        ClientMessage::Ping => Ok((current.clone(), None)),
        ClientMessage::Reauth { token } => {
            let claims = verify(app, &token)?;
            if let Some(Caller(old)) = auth.caller() {
                if (old.sub.as_str(), old.role) != (claims.sub.as_str(), claims.role) {
                    return Err(refuse(
                        "token_mismatch",
                        "reauth needs a token for the same subject and role",
                    ));
                }
            }
            auth.set(app, claims)?;
            Ok((current.clone(), None))
        }
    }
}

fn verify(app: &AppState, token: &str) -> Result<crate::auth::Claims, Refusal> {
    app.verifier
        .verify(token)
        .map_err(|e| refuse("unauthorized", e.to_string()))
}

/// Adds `areas` (each checked, none twice) to `next`.
fn add_areas(app: &AppState, next: &mut Interest, areas: Vec<AreaSpec>) -> Result<(), Refusal> {
    let max = app.config.limits.max_radius_m;
    for area in areas {
        let center =
            GeoPoint::new(area.lat, area.lon).map_err(|e| refuse("invalid_area", e.to_string()))?;
        if area.radius_m == 0 || area.radius_m > max {
            return Err(refuse(
                "invalid_area",
                format!("radius_m must be between 1 and {max}"),
            ));
        }
        if !next.areas.iter().any(|(a, _)| *a == area) {
            next.areas.push((area, cover(&center, area.radius_m)));
        }
    }
    Ok(())
}

/// Whose orders `caller` may follow: its own, and only as a customer. A POS
/// or kitchen token's `sub` names a terminal or a kitchen, not a customer
/// (HTTP refuses them the same way).
fn order_follower(caller: Option<&Caller>) -> Result<String, Refusal> {
    let who = caller.ok_or_else(|| {
        refuse(
            "unauthorized",
            "following orders needs a token (Authorization header or \"token\")",
        )
    })?;
    if who.0.role != crate::auth::Role::Customer {
        return Err(refuse(
            "forbidden",
            format!("a {} token may not follow orders", who.0.role),
        ));
    }
    Ok(who.0.sub.clone())
}

/// How long until `caller`'s token expires by the node's clock (leeway
/// included); `None` without a token.
fn token_left(app: &AppState, caller: Option<&Caller>) -> Option<Duration> {
    Some(app.verifier.time_left(&caller?.0))
}

/// Why a session ends.
enum Stop {
    /// The socket failed or the client went away.
    Gone,
    /// The hub cut the connection off: its queue was full.
    Kicked,
    /// Nothing heard from the client for the idle timeout.
    Idle,
    /// The token expired while the connection followed orders.
    TokenExpired,
}

/// Far enough to mean "never" for a connection without a token.
const NO_TOKEN_DEADLINE_SECS: u64 = 365 * 24 * 3600;

/// When the token timer is due: the token is gone by the node's clock
/// (`Err` for a connection that needs it), or the clock moved and the
/// timer is re-armed.
fn on_token_timer(
    app: &AppState,
    auth: &mut Auth,
    interest: &Interest,
    timer: &mut Pin<&mut Sleep>,
) -> Result<(), Stop> {
    if token_left(app, auth.caller()).is_some_and(|left| left.is_zero()) {
        if interest.customer.is_some() {
            return Err(Stop::TokenExpired);
        }
        auth.clear();
    }
    arm_token_timer(app, auth.caller(), timer);
    Ok(())
}

fn arm_token_timer(app: &AppState, caller: Option<&Caller>, timer: &mut Pin<&mut Sleep>) {
    let left = token_left(app, caller).unwrap_or(Duration::from_secs(NO_TOKEN_DEADLINE_SECS));
    // One second past the leeway's end while time is left (`exp` is in
    // whole seconds); at once when none is.
    let slack = if left.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + left + slack);
}

/// Writes one message, unless the hub cuts the connection off or the idle
/// deadline passes first: a client that stopped reading blocks the write,
/// and must not hold this task forever. No timer per message: the idle
/// deadline is one long-lived timer, the kick a `Notify`.
async fn deliver(
    socket: &mut WebSocket,
    msg: Message,
    kick: &Kick,
    idle: &mut Pin<&mut Sleep>,
) -> Result<(), Stop> {
    tokio::select! {
        r = socket.send(msg) => r.map_err(|_| Stop::Gone),
        _ = kick.notify.notified() => Err(Stop::Kicked),
        _ = idle.as_mut() => Err(Stop::Idle),
    }
}

/// [`write_queued`] for the hub's frames, bounded like [`deliver`].
async fn deliver_queued(
    socket: &mut WebSocket,
    first: Frame,
    frames: &mut mpsc::Receiver<Frame>,
    kick: &Kick,
    idle: &mut Pin<&mut Sleep>,
) -> Result<(), Stop> {
    tokio::select! {
        r = write_queued(socket, first, frames) => r.map(|_| ()).map_err(|_| Stop::Gone),
        _ = kick.notify.notified() => Err(Stop::Kicked),
        _ = idle.as_mut() => Err(Stop::Idle),
    }
}

/// Writes `first` and the frames queued behind it (at most
/// [`WS_WRITE_BATCH_FRAMES`]), then flushes once: when a change reaches
/// many clients, or several changes one client, each wakeup costs one
/// write syscall instead of one per frame. Frames keep their queue order.
/// Returns how many it wrote.
async fn write_queued<S>(
    sink: &mut S,
    first: Frame,
    frames: &mut mpsc::Receiver<Frame>,
) -> Result<usize, S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.feed(Message::Text(first.text())).await?;
    let mut written = 1;
    while written < WS_WRITE_BATCH_FRAMES {
        // Empty or closed: what is fed goes out now; a closed queue is
        // noticed by the next `recv`.
        let Ok(frame) = frames.try_recv() else { break };
        sink.feed(Message::Text(frame.text())).await?;
        written += 1;
    }
    sink.flush().await?;
    Ok(written)
}

/// Sends a close frame, then waits (bounded) for the client's answer.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let linger = Duration::from_secs(CLOSE_LINGER_SECS);
    match tokio::time::timeout(linger, socket.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let _ = tokio::time::timeout(linger, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn text(msg: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::try_from(msg.to_frame()).unwrap_or_default())
}

/// The other districts a subscription's areas reach into (a cell and a
/// prefix overlap when one extends the other), if any: the client
/// subscribes there too for the rest of its area.
fn elsewhere(app: &AppState, interest: &Interest) -> Option<ServerMessage> {
    let cells = interest.cells();
    let districts: Vec<ElsewhereDistrict> = super::catalog::other_districts(app)
        .into_iter()
        .filter(|(_, prefixes)| {
            cells.iter().any(|c| {
                prefixes
                    .iter()
                    .any(|p| c.starts_with(p.as_str()) || p.starts_with(*c))
            })
        })
        .map(|(l, _)| ElsewhereDistrict {
            district_id: l.district_id,
            url: l.url,
        })
        .collect();
    (!districts.is_empty()).then_some(ServerMessage::Elsewhere { districts })
}

/// A client's text frame: the new interest goes to the hub; the answer,
/// if any, back to the client.
async fn on_text(
    app: &AppState,
    conn: u64,
    interest: &mut Interest,
    auth: &mut Auth,
    text: &str,
) -> Option<ServerMessage> {
    let refused = |r: Refusal| ServerMessage::Error {
        code: r.code.into(),
        message: r.message,
    };
    match parse(text) {
        Ok(ClientMessage::Ping) => Some(ServerMessage::Pong),
        Ok(msg) => match next_interest(app, interest, auth, msg) {
            Ok((next, since)) => {
                *interest = next.clone();
                let elsewhere = elsewhere(app, &next);
                app.hub.follow(conn, next, since).await;
                elsewhere
            }
            Err(r) => Some(refused(r)),
        },
        Err(r) => Some(refused(r)),
    }
}

/// The task of one connection, for its whole life: what this future holds
/// is what an idle connection costs (see "Memory per connection" in
/// docs/websocket.md), so it keeps handles, not copies: `app` is one
/// pointer to the state every socket shares.
///
/// Not an `async fn`: one copies each argument into its body, so the
/// socket and the token would be held twice for the connection's life; an
/// `async move` block uses what it captured in place.
#[allow(clippy::manual_async_fn)] // its `async fn` is the copy this avoids
fn session(
    mut socket: WebSocket,
    app: AppState,
    mut auth: Auth,
    slot: Slot,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        run_session(&mut socket, &app, &mut auth).await;
        drop(slot);
    }
}

async fn run_session(socket: &mut WebSocket, app: &AppState, auth: &mut Auth) {
    let mut shutdown = app.shutdown.enlist("websocket");
    let Some(mut sub) = app.hub.connect().await else {
        // The hub has stopped: the node is going away.
        close(socket, CLOSE_GOING_AWAY, "server shutting down").await;
        return;
    };
    let idle_timeout = Duration::from_secs(app.config.ws.idle_timeout_secs);
    let mut ping = tokio::time::interval(Duration::from_secs(app.config.ws.ping_interval_secs));
    ping.tick().await;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let token_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(token_timer);
    arm_token_timer(app, auth.caller(), &mut token_timer);
    let mut interest = Interest::default();
    // One wait on the node's stop signal for the session's life: a fresh
    // `triggered()` each turn of the loop would register with the signal
    // (shared by every connection) and leave it again on every wakeup, i.e.
    // for every connection on every fan-out.
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    tracing::debug!(conn = sub.id, "websocket open");

    let stop = loop {
        let step = tokio::select! {
            frame = sub.frames.recv() => match frame {
                Some(frame) => deliver_queued(socket, frame, &mut sub.frames, &sub.kick, &mut idle).await,
                None if sub.kick.flag.load(Ordering::SeqCst) => Err(Stop::Kicked),
                None => {
                    close(socket, CLOSE_GOING_AWAY, "server shutting down").await;
                    break Stop::Gone;
                }
            },
            _ = sub.kick.notify.notified() => Err(Stop::Kicked),
            () = &mut stopping => {
                close(socket, CLOSE_GOING_AWAY, "server shutting down").await;
                break Stop::Gone;
            }
            _ = idle.as_mut() => Err(Stop::Idle),
            _ = token_timer.as_mut() => on_token_timer(app, auth, &interest, &mut token_timer),
            _ = ping.tick() => {
                // The node's clock may have jumped (dev clock): look again.
                match on_token_timer(app, auth, &interest, &mut token_timer) {
                    Ok(()) => deliver(socket, Message::Ping(Default::default()), &sub.kick, &mut idle).await,
                    Err(stop) => Err(stop),
                }
            }
            incoming = socket.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                match incoming {
                    None | Some(Ok(Message::Close(_))) => Err(Stop::Gone),
                    Some(Err(e)) => {
                        let text = e.to_string();
                        let (code, reason) = if text.contains("too long") || text.contains("Space limit") {
                            (CLOSE_TOO_BIG, "frame too big")
                        } else {
                            (CLOSE_PROTOCOL, "protocol error")
                        };
                        tracing::debug!(conn = sub.id, error = %e, "websocket read failed");
                        close(socket, code, reason).await;
                        break Stop::Gone;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Binary(_))) => {
                        let err = ServerMessage::Error {
                            code: "binary_not_supported".into(),
                            message: "send JSON text frames".into(),
                        };
                        deliver(socket, text(&err), &sub.kick, &mut idle).await
                    }
                    Some(Ok(Message::Text(t))) => {
                        // Boxed: a client's message is rare (a subscribe, a
                        // ping), and inline its state (~0.9 KiB, the hub's
                        // `follow` inside) would sit in every idle session.
                        let reply = Box::pin(on_text(app, sub.id, &mut interest, auth, t.as_str())).await;
                        arm_token_timer(app, auth.caller(), &mut token_timer);
                        match reply {
                            Some(reply) => deliver(socket, text(&reply), &sub.kick, &mut idle).await,
                            None => Ok(()),
                        }
                    }
                }
            }
        };
        if let Err(stop) = step {
            break stop;
        }
    };
    match stop {
        Stop::Kicked => close(socket, CLOSE_POLICY, "too slow: send queue full").await,
        Stop::Idle => close(socket, CLOSE_GOING_AWAY, "idle timeout").await,
        Stop::TokenExpired => close(socket, CLOSE_TOKEN_EXPIRED, "token expired").await,
        Stop::Gone => {}
    }
    app.hub.disconnect(sub.id);
    tracing::debug!(conn = sub.id, "websocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    /// A sink that records the texts it is fed and counts its flushes.
    #[derive(Default)]
    struct Recorder {
        fed: Vec<String>,
        flushes: usize,
        unflushed: usize,
    }

    impl Sink<Message> for Recorder {
        type Error = std::convert::Infallible;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            if let Message::Text(t) = item {
                self.fed.push(t.to_string());
            }
            self.unflushed += 1;
            Ok(())
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.flushes += 1;
            self.unflushed = 0;
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    fn text(n: usize) -> String {
        format!("{{\"type\":\"stock\",\"n\":{n}}}")
    }

    fn queue(n: usize) -> (mpsc::Sender<Frame>, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(n.max(1));
        for i in 0..n {
            tx.try_send(Frame::new(text(i).into())).unwrap();
        }
        (tx, rx)
    }

    /// The size of the future `f` returns, without calling it.
    fn future_size<F, A, B, C, D, Fut>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Most bytes a session's future may take. It lives in the
    /// connection's task for the connection's whole life, idle or not, and
    /// is the largest part of what an idle connection costs
    /// (docs/websocket.md, "Memory per connection"). It is 1,888 bytes
    /// (debug and release, Rust 1.95); the budget fails for each regression
    /// measured: the app state by value (its fields were ~4 KiB before
    /// `AppState` became one `Arc`; the session was 11,176 bytes and a
    /// connection cost 20 KiB of RSS), `session` as
    /// an `async fn` (2,408: each argument held twice), a client message's
    /// handling not boxed (2,360).
    const SESSION_FUTURE_BUDGET_BYTES: usize = 2048;

    #[test]
    fn a_session_future_stays_within_its_budget() {
        let size = future_size(session);
        assert!(
            size <= SESSION_FUTURE_BUDGET_BYTES,
            "a WebSocket session's future is {size} bytes (budget {SESSION_FUTURE_BUDGET_BYTES}): \
             every connection holds it for its life; keep large or rarely used state behind \
             a pointer (`AppState` is one, `Box::pin` of a rare path)"
        );
        assert_eq!(
            std::mem::size_of::<AppState>(),
            std::mem::size_of::<usize>(),
            "the app state a session holds must stay one pointer"
        );
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_order_with_one_flush() {
        let (_tx, mut rx) = queue(5);
        let first = rx.recv().await.unwrap();
        let mut sink = Recorder::default();
        let written = write_queued(&mut sink, first, &mut rx).await.unwrap();
        assert_eq!(written, 5);
        assert_eq!(sink.fed, (0..5).map(text).collect::<Vec<_>>());
        assert_eq!(
            (sink.flushes, sink.unflushed),
            (1, 0),
            "one flush, after all"
        );
        assert!(rx.try_recv().is_err(), "nothing left behind");
    }

    #[tokio::test]
    async fn a_long_queue_goes_out_in_bounded_batches_and_in_order() {
        let total = WS_WRITE_BATCH_FRAMES + 3;
        let (_tx, mut rx) = queue(total);
        let mut sink = Recorder::default();
        let first = rx.recv().await.unwrap();
        let written = write_queued(&mut sink, first, &mut rx).await.unwrap();
        assert_eq!(written, WS_WRITE_BATCH_FRAMES);
        assert_eq!(sink.flushes, 1);
        let first = rx.recv().await.unwrap();
        let written = write_queued(&mut sink, first, &mut rx).await.unwrap();
        assert_eq!(written, 3);
        assert_eq!(sink.flushes, 2);
        assert_eq!(sink.fed, (0..total).map(text).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn frames_queued_before_the_hub_closed_the_queue_are_still_written() {
        let (tx, mut rx) = queue(3);
        drop(tx);
        let first = rx.recv().await.unwrap();
        let mut sink = Recorder::default();
        assert_eq!(write_queued(&mut sink, first, &mut rx).await.unwrap(), 3);
        assert_eq!((sink.flushes, sink.unflushed), (1, 0));
        assert!(rx.recv().await.is_none(), "the close is seen next");
    }
}
