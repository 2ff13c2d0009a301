//! The district server.
//!
//! A region node owns one district's catalog, fridges, stock (and, as the
//! system grows, orders and schedules) in a local sled event log. Code map:
//! - [`domain`]: the pure decider (`decide`/`evolve`); no IO.
//! - [`store`]: the sled event log; append in batches, replay.
//! - [`snapshot`]: state snapshots, start-up from the newest one plus the
//!   log's tail, and the task that writes them.
//! - [`writer`]: the one writer task (group commit) and the read snapshot.
//! - [`query`]: pure read functions over a snapshot.
//! - [`http`]: axum routes, extractors, the error mapping.
//! - [`catalog_cache`]: encoded (and compressed) catalog answers per
//!   rounded point and radius, for the current catalog version.
//! - [`push`]: what committed batches mean for WebSocket subscribers, and
//!   the hub task that fans them out (sockets live in `http::ws`).
//! - [`notify`]: phone pushes of notifications for customers with no live
//!   socket (the push-provider boundary, quiet hours).
//! - [`timers`]: fires due order timers; [`schedule_tick`]: plan charges
//!   and materialisation; [`nats`]: outbox relay and payment results over
//!   JetStream.
//! - [`webhooks`]: the webhook outbox fed by the committed feed, and one
//!   sender per endpoint (signed, retried, in order per stream).
//! - [`insights`]: the reporting projection fed by the committed feed, and
//!   the fleet board of every district's daily aggregate.
//! - [`lifecycle`]: the stop signal every background task receives, and
//!   the wait for them at shutdown.
//! - [`capacity`]: the capacity planner (measured sizes × scenario).
//! - [`auth`], [`config`], [`clock`], [`metrics`], [`demo`]: edges.

pub mod archive;
pub mod archive_tick;
pub mod auth;
pub mod capacity;
pub mod catalog_cache;
pub mod clock;
pub mod config;
pub mod demo;
pub mod fd_limit;
pub mod fleet;
pub mod http;
pub mod insights;
pub mod lifecycle;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod notify;
pub mod push;
pub mod schedule_tick;
pub mod snapshot;
pub mod store;
pub mod tick;
pub mod timers;
pub mod waitlist_tick;
pub mod webhooks;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clock::Clock;
use config::Config;
use lifecycle::{Lifecycle, Shutdown, SHUTDOWN_GRACE_MS};
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
    #[error(transparent)]
    Unfinished(#[from] lifecycle::Unfinished),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    #[error("http client for other districts: {0}")]
    Peers(#[from] reqwest::Error),
    #[error("recording the loyalty rules: {0}")]
    LoyaltyRules(writer::WriteError),
    #[error("webhook outbox: {0}")]
    Webhooks(String),
}

/// Opens the store, recovers the state and starts the writer, which runs
/// until `shutdown`. Also returns a handle of the log for readers (the
/// snapshot task); sled closes the log when the last handle is dropped.
pub fn open_district(
    config: &Config,
    clock: Clock,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(District, EventLog), NodeError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let log = EventLog::open_with_stats(&config.data_dir.join("log"), metrics.store.clone())?
        .with_segment_records(config.snapshots.seal_segment_records)
        .with_archive_flush_entries(config.orders.archive_flush_entries);
    // Before the node answers anything: the snapshot task updates it later.
    metrics
        .log_sealed_seq
        .store(log.sealed_upto(), std::sync::atomic::Ordering::Relaxed);
    let district = District::start(
        WriterSetup {
            district_id: config.district_id.clone(),
            area: config.area()?,
            log: log.clone(),
            clock,
            metrics,
            policy: config.orders.policy(),
            fridge_policy: config.fridges.policy(),
            utc_offset_minutes: config.subscriptions.utc_offset_minutes,
            schedule_policy: config.subscriptions.policy(),
            snapshots: config.snapshots.store(&config.data_dir),
        },
        shutdown,
    )?;
    Ok((district, log))
}

/// The writer always gets this long to commit its last batch and close the
/// log, even when other tasks used up [`SHUTDOWN_GRACE_MS`].
pub const WRITER_CLOSE_MS: u64 = 2_000;

/// What `serve` needs besides the config.
pub struct ServeOptions {
    pub clock: Clock,
    /// Load the demo district when the log is empty.
    pub demo: bool,
    /// Write the bound address here once listening (tests bind port 0).
    pub port_file: Option<PathBuf>,
}

/// Runs the node until `shutdown` resolves, then stops it in two steps,
/// within [`SHUTDOWN_GRACE_MS`] (plus at most [`WRITER_CLOSE_MS`]):
/// 1. stop accepting connections and signal every task: requests in flight
///    are answered, sockets close with 1001, timers and the relay end their
///    round, the result consumer finishes the results it holds;
/// 2. then the writer, which nothing submits to any more: it commits the
///    batch in flight and closes the log.
///
/// `Err(Unfinished)` names what did not stop in time.
pub async fn serve(
    config: Config,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let metrics = Arc::new(Metrics::default());
    // The writer has its own lifecycle: it stops last, after everything
    // that submits to it.
    let writer = Lifecycle::new();
    let tasks = Lifecycle::new();
    // Bound first (the directory entry names the URL), announced last.
    let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
    // Before the district is opened: a node refused for an overlapping
    // prefix writes nothing.
    let fleet = join_fleet(&config, listener.local_addr()?, &opts.clock, &tasks).await?;
    let (district, log) = open_district(
        &config,
        opts.clock.clone(),
        metrics.clone(),
        writer.shutdown(),
    )?;
    if opts.demo {
        demo::seed_if_empty(&district, config.district_id.as_str()).await?;
    }
    // For `GET /v1/admin/log`. It keeps the tree open as long as the HTTP
    // server holds its state, which `stop` waits for before the writer.
    let log_reader = log.reader();
    if let Some(f) = &fleet {
        // From the next heartbeat on, the entry lists our fridges.
        f.list_fridges_of(&district);
    }
    start_snapshots(&config, &district, log, &metrics, &tasks);
    let (nats, hub) = start_tasks(&config, &opts, &district, &metrics, &tasks).await?;
    let customers = start_customer_index(fleet.as_ref(), &district, &config, &tasks);
    let profiles = fleet.as_ref().map(fleet::Fleet::profiles);
    record_loyalty_rules(&config, &district).await?;
    let ledger = start_points_ledger(fleet.as_ref(), &district, &opts.clock, &tasks);
    // Webhooks read the committed feed and, to catch up, the log.
    let webhooks = webhooks::Webhooks::start(
        &config.data_dir,
        district.clone(),
        log_reader.clone(),
        opts.clock.clone(),
        metrics.clone(),
        &tasks,
    )?;
    let (insights, insight_board) = start_insights(
        &config,
        &opts,
        &district,
        &log_reader,
        fleet.as_ref(),
        &tasks,
    );
    let verifier = start_verifier(&config, &opts.clock, fleet.as_ref(), &tasks)?;
    announce(&listener, opts.port_file.as_deref())?;
    let state = http::AppState::new(http::Services {
        public_url: public_url(&config, listener.local_addr()?),
        fleet,
        customers,
        profiles,
        ledger,
        peers: http::me::peer_client()?,
        area: config.area()?,
        rate_limits: Arc::new(http::limits::RateLimits::new(&config.limits)),
        catalog_cache: Arc::new(catalog_cache::CatalogCache::new(
            config.limits.catalog_cache_max_entries,
            config.limits.catalog_cache_max_bytes,
        )),
        ws_per_caller: Arc::default(),
        config: Arc::new(config),
        district,
        verifier,
        metrics,
        clock: opts.clock,
        nats,
        hub,
        ws_connections: Arc::default(),
        pickup_attempts: Arc::default(),
        shutdown: tasks.shutdown(),
        log: log_reader,
        webhooks,
        insights,
        insight_board,
    });
    let app = http::router(state);
    let server = http::server::run(listener, app, tasks.shutdown());
    let mut server = std::pin::pin!(server);
    let served = tokio::select! {
        r = &mut server => Some(r),
        () = shutdown => None,
    };
    stop(served, server, tasks, writer).await
}

/// The customer index's writer (NATS KV), when the node is in a fleet.
fn start_customer_index(
    fleet: Option<&fleet::Fleet>,
    district: &District,
    config: &Config,
    tasks: &Lifecycle,
) -> Option<fleet::CustomerIndex> {
    fleet.map(|f| {
        let index = f.customer_index();
        let (i, d, id) = (index.clone(), district.clone(), config.district_id.clone());
        tasks.spawn("customer-index", |s| fleet::customers::run(i, d, id, s));
        index
    })
}

/// The global points ledger and its task, when the node is in a fleet.
fn start_points_ledger(
    fleet: Option<&fleet::Fleet>,
    district: &District,
    clock: &Clock,
    tasks: &Lifecycle,
) -> Option<fleet::points::Ledger> {
    fleet.map(|f| {
        let ledger = f.ledger();
        let (l, d, c) = (ledger.clone(), district.clone(), clock.clone());
        tasks.spawn("points-ledger", |s| fleet::points::run(l, d, c, s));
        ledger
    })
}

/// The token verifier: the configured keys, joined in a fleet by the
/// issuer's keys published as global data (kept current by a task).
fn start_verifier(
    config: &Config,
    clock: &Clock,
    fleet: Option<&fleet::Fleet>,
    tasks: &Lifecycle,
) -> Result<auth::Verifier, NodeError> {
    let verifier = auth::Verifier::from_config(&config.auth, clock.clone())?;
    if let Some(f) = fleet {
        let (keys, v) = (f.issuer_keys(), verifier.clone());
        tasks.spawn("issuer-keys", |s| fleet::issuer_keys::run(keys, v, s));
    }
    Ok(verifier)
}

/// The snapshot task, if snapshots are on; it owns `log` (nobody else may
/// keep the log open past the writer, so without it `log` is dropped).
fn start_snapshots(
    config: &Config,
    district: &District,
    log: EventLog,
    metrics: &Arc<Metrics>,
    tasks: &Lifecycle,
) {
    if let Some(store) = config.snapshots.store(&config.data_dir) {
        let (d, policy, m) = (district.clone(), config.snapshots.policy(), metrics.clone());
        tasks.spawn("snapshots", |s| snapshot::run(d, log, store, policy, m, s));
    }
}

/// The reporting projection on the committed feed (it catches up from the
/// log first) and, with a fleet, the task that puts this district's daily
/// aggregate on the fleet board, and the board the fleet view reads.
fn start_insights(
    config: &Config,
    opts: &ServeOptions,
    district: &District,
    log: &store::LogReader,
    fleet: Option<&fleet::Fleet>,
    tasks: &Lifecycle,
) -> (insights::Insights, Option<insights::fleet::Board>) {
    let projection = insights::Insights::start(
        district.clone(),
        log.clone(),
        config.subscriptions.utc_offset_minutes,
        tasks,
    );
    let board = fleet.map(fleet::Fleet::insights_board);
    if let Some(board) = &board {
        insights::fleet::Publisher {
            board: board.clone(),
            insights: projection.clone(),
            district_id: config.district_id.clone(),
            clock: opts.clock.clone(),
            every: config.insights.publish_every(),
        }
        .start(tasks);
    }
    (projection, board)
}

/// Records the config's loyalty rules, only when they changed: a restart
/// with the same config submits nothing (and so never waits on the writer
/// to start).
async fn record_loyalty_rules(config: &Config, district: &District) -> Result<(), NodeError> {
    let rules = config.loyalty.rules();
    if district.state().loyalty().rules() != Some(&rules) {
        let define = district::PromotionCommand::DefineLoyaltyRules { rules };
        district
            .submit(district::Command::Promotion(define))
            .await
            .map_err(NodeError::LoyaltyRules)?;
    }
    Ok(())
}

/// The background tasks that feed the writer or read its feed: timers,
/// the schedule tick, NATS (relay and results) and the push hub.
async fn start_tasks(
    config: &Config,
    opts: &ServeOptions,
    district: &District,
    metrics: &Arc<Metrics>,
    tasks: &Lifecycle,
) -> Result<(Option<nats::NatsLink>, push::hub::Hub), NodeError> {
    let (d, clock, policy) = (
        district.clone(),
        opts.clock.clone(),
        config.fridges.policy(),
    );
    let utc_offset_minutes = config.subscriptions.utc_offset_minutes;
    let lead = config.notifications.reminder_lead();
    tasks.spawn("timers", move |s| {
        timers::run_with(d, clock, policy, utc_offset_minutes, Some(lead), s)
    });
    let (d, clock, policy) = (
        district.clone(),
        opts.clock.clone(),
        config.schedule_policy(),
    );
    tasks.spawn("schedule-tick", |s| schedule_tick::run(d, clock, policy, s));
    let (d, clock, policy) = (
        district.clone(),
        opts.clock.clone(),
        config.waitlist.policy(),
    );
    tasks.spawn("waitlist-tick", |s| waitlist_tick::run(d, clock, policy, s));
    let (d, clock, retention) = (
        district.clone(),
        opts.clock.clone(),
        config.orders.policy().retention,
    );
    tasks.spawn("archive-tick", move |s| {
        archive_tick::run(d, clock, retention, s)
    });
    let nats = match &config.nats {
        Some(n) => Some(
            nats::NatsLink::start(
                &n.servers(),
                n.replicas,
                district.clone(),
                config.district_id.clone(),
                metrics.clone(),
                &tasks.shutdown(),
            )
            .await
            .map_err(|e| NodeError::Nats(e.to_string()))?,
        ),
        None => None,
    };
    let link = push::hub::NotifyLink {
        clock: opts.clock.clone(),
        offline: Some(notify::start(
            &config.notifications,
            district.clone(),
            opts.clock.clone(),
            config.subscriptions.utc_offset_minutes,
            metrics.clone(),
            tasks,
        )),
    };
    let hub = push::hub::Hub::start_with(
        district.clone(),
        push::hub::HubConfig {
            district_id: config.district_id.clone(),
            district_prefixes: config.geohash_prefixes.clone(),
            utc_offset_minutes: config.subscriptions.utc_offset_minutes,
            queue_frames: config.ws.queue_frames,
            resume_messages: config.ws.resume_messages,
        },
        metrics.clone(),
        link,
        &tasks.shutdown(),
    );
    Ok((nats, hub))
}

/// The URL clients reach this node at: `public_url`, or the bound address.
pub fn public_url(config: &Config, bound: SocketAddr) -> String {
    config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"))
}

/// Registers the district in the region directory when NATS is set and
/// `[fleet]` enabled; an overlapping district or an unreachable NATS stops
/// the start (an unknown directory could hide an overlap).
async fn join_fleet(
    config: &Config,
    bound: SocketAddr,
    clock: &Clock,
    tasks: &Lifecycle,
) -> Result<Option<fleet::Fleet>, NodeError> {
    let Some(nats) = config.nats.as_ref().filter(|_| config.fleet.enabled) else {
        return Ok(None);
    };
    let me = fleet::Registration {
        district_id: config.district_id.clone(),
        url: public_url(config, bound),
        geohash_prefixes: config.geohash_prefixes.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        instance: clock.ulid().to_string(),
        // Listed by the heartbeat once the district is open.
        fridge_ids: vec![],
    };
    let joined = fleet::join(
        &nats.servers(),
        nats.replicas,
        me,
        &config.fleet,
        &tasks.shutdown(),
    )
    .await?;
    Ok(Some(joined))
}

/// Announces the bound address in `port_file`, if any.
fn announce(
    listener: &tokio::net::TcpListener,
    port_file: Option<&std::path::Path>,
) -> Result<(), NodeError> {
    let bound: SocketAddr = listener.local_addr()?;
    if let Some(path) = port_file {
        // Write then rename so a reader never sees a half-written address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(addr = %bound, "listening");
    Ok(())
}

/// The two shutdown steps of [`serve`]: every task (and the HTTP server),
/// then the writer.
async fn stop(
    served: Option<std::io::Result<()>>,
    server: std::pin::Pin<&mut (impl Future<Output = std::io::Result<()>> + ?Sized)>,
    tasks: Lifecycle,
    writer: Lifecycle,
) -> Result<(), NodeError> {
    tracing::info!("shutting down");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    tasks.trigger();
    let served = match served {
        Some(r) => Ok(r),
        // Stops accepting at once; returns when every connection is done.
        None => tokio::time::timeout_at(deadline, server).await,
    };
    let mut unfinished = vec![];
    if let Err(e) = tasks.stop(deadline).await {
        unfinished.extend(e.0);
    }
    let writer_deadline =
        deadline.max(tokio::time::Instant::now() + Duration::from_millis(WRITER_CLOSE_MS));
    if let Err(e) = writer.stop(writer_deadline).await {
        unfinished.extend(e.0);
    }
    match served {
        Ok(r) => r?,
        Err(_) => tracing::warn!("HTTP connections still open at the shutdown deadline"),
    }
    if unfinished.is_empty() {
        tracing::info!("stopped");
        Ok(())
    } else {
        let e = lifecycle::Unfinished(unfinished);
        tracing::error!(error = %e, "shutdown incomplete");
        Err(e.into())
    }
}
