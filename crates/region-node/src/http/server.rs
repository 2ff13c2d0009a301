//! The HTTP/1.1 connection loop (hyper), in place of `axum::serve`, for two
//! reasons:
//! - hyper answers an over-long URI (414) or header block (431) itself,
//!   with an empty body, before any of our code runs. Here its limits are
//!   raised above ours, so [`super::guard_request_head`] meets the same
//!   conditions first and answers them with the JSON error shape. Only a
//!   request past hyper's hard limits ([`HYPER_MAX_HEADERS`],
//!   [`HYPER_MAX_HEAD_BYTES`], and its fixed 64 KiB URI) still gets hyper's
//!   empty answer.
//! - every request learns its peer's address (`ConnectInfo`), which the
//!   per-IP rate limit keys on.
//!
//! Shutdown: when `stop` fires the loop stops accepting and returns; each
//! connection, enlisted in the same lifecycle, finishes the request it is
//! serving (hyper's graceful shutdown) and ends, and the lifecycle awaits
//! them. Upgraded WebSockets are no longer hyper's: their sessions enlist
//! themselves.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::lifecycle::Shutdown;

/// Most header fields hyper parses in one request; our own limit
/// ([`super::MAX_HEADER_FIELDS`]) is lower and answered in JSON.
pub const HYPER_MAX_HEADERS: usize = 256;
/// Largest request head (request line and headers) hyper buffers, in bytes;
/// above our own [`super::MAX_HEADER_BYTES`] and [`super::MAX_URI_BYTES`].
pub const HYPER_MAX_HEAD_BYTES: usize = 256 * 1024;
/// Pause after a failed `accept` (out of file descriptors, mostly), so the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF_MS: u64 = 50;

/// Serves `app` on `listener` until `stop` fires.
pub async fn run(listener: TcpListener, app: Router, mut stop: Shutdown) -> std::io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_HEAD_BYTES);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.triggered() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                continue;
            }
        };
        // No Nagle: pushes and answers are small, and waiting for an ACK
        // before sending the next one (with the peer's delayed ACK) adds up
        // to 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let service = tower::service_fn(move |mut req: axum::extract::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = http1
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
            .with_upgrades();
        let mut conn_stop = stop.enlist("http connection");
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = conn_stop.triggered() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    Ok(())
}

/// The peer of a request served by [`run`].
pub fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
