//! The district server.
//!
//! A region node owns one district's catalog, fridges, stock (and, as the
//! system grows, orders and schedules) in a local sled event log. Code map:
//! - [`domain`]: the pure decider (`decide`/`evolve`); no IO.
//! - [`store`]: the sled event log; append in batches, replay.
//! - [`writer`]: the one writer task (group commit) and the read snapshot.
//! - [`query`]: pure read functions over a snapshot.
//! - [`http`]: axum routes, extractors, the error mapping.
//! - [`push`]: what committed batches mean for WebSocket subscribers, and
//!   the hub task that fans them out (sockets live in `http::ws`).
//! - [`timers`]: fires due order timers; [`schedule_tick`]: plan charges
//!   and materialisation; [`nats`]: outbox relay and payment results over
//!   JetStream.
//! - [`auth`], [`config`], [`clock`], [`metrics`], [`demo`]: edges.

pub mod auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod push;
pub mod query;
pub mod schedule_tick;
pub mod store;
pub mod timers;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clock::Clock;
use config::Config;
use metrics::Metrics;
use store::EventLog;
use writer::{District, WriterSetup};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("nats: {0}")]
    Nats(String),
    #[error("demo data: {0}")]
    Demo(String),
}

/// Opens the store, replays it and starts the writer.
pub fn open_district(
    config: &Config,
    clock: Clock,
    metrics: Arc<Metrics>,
) -> Result<District, NodeError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let log = EventLog::open_with_stats(&config.data_dir.join("log"), metrics.store.clone())?;
    Ok(District::start(WriterSetup {
        district_id: config.district_id.clone(),
        area: config.area()?,
        log,
        clock,
        metrics,
        policy: config.orders.policy(),
        fridge_policy: config.fridges.policy(),
    })?)
}

/// What `serve` needs besides the config.
pub struct ServeOptions {
    pub clock: Clock,
    /// Load the demo district when the log is empty.
    pub demo: bool,
    /// Write the bound address here once listening (tests bind port 0).
    pub port_file: Option<PathBuf>,
}

/// Runs the node until `shutdown` resolves.
pub async fn serve(
    config: Config,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let metrics = Arc::new(Metrics::default());
    let district = open_district(&config, opts.clock.clone(), metrics.clone())?;
    if opts.demo {
        demo::seed_if_empty(&district).await?;
    }
    tokio::spawn(timers::run(
        district.clone(),
        opts.clock.clone(),
        config.fridges.policy(),
    ));
    tokio::spawn(schedule_tick::run(
        district.clone(),
        opts.clock.clone(),
        config.schedule_policy(),
    ));
    let nats = match &config.nats {
        Some(n) => Some(
            nats::NatsLink::start(&n.url, district.clone(), config.district_id.clone())
                .await
                .map_err(|e| NodeError::Nats(e.to_string()))?,
        ),
        None => None,
    };
    let hub = push::hub::Hub::start(
        district.clone(),
        push::hub::HubConfig {
            district_id: config.district_id.clone(),
            district_prefixes: config.geohash_prefixes.clone(),
            queue_frames: config.ws.queue_frames,
            resume_messages: config.ws.resume_messages,
        },
        metrics.clone(),
    );
    let verifier = auth::Verifier::from_pem(&config.auth.public_key_pem, config.auth.leeway_secs)?;
    let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
    let bound: SocketAddr = listener.local_addr()?;
    let state = http::AppState {
        area: config.area()?,
        config: Arc::new(config),
        district,
        verifier,
        metrics,
        clock: opts.clock,
        nats,
        hub,
        ws_connections: Arc::default(),
    };
    let app = http::router(state);
    if let Some(path) = &opts.port_file {
        // Write then rename so a reader never sees a half-written address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(addr = %bound, "listening");
    // No Nagle: pushes and answers are small, and waiting for an ACK before
    // sending the next one (with the peer's delayed ACK) adds up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}
