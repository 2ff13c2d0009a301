//! `region-node`: serve a district, mint development tokens, load demo
//! data, back up, restore and export the event log, plan capacity.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use region_node::auth::{self, Claims, Role, MAX_TOKEN_TTL_SECS};
use region_node::clock::Clock;
use region_node::config::Config;
use region_node::lifecycle::{Lifecycle, SHUTDOWN_GRACE_MS};

#[cfg(feature = "alloc-stats")]
mod alloc_stats;
mod backup;
mod capacity_cmd;
mod dev;
mod keys_cmd;

/// After `serve` returns, how long tasks it did not own (connection
/// handlers, the NATS client) may take to be dropped.
const RUNTIME_DROP_MS: u64 = 1_000;
/// In the data dir of a `--dev-clock` node: the clock's offset from the
/// system's, in milliseconds, so a restart resumes at the time reached.
const DEV_CLOCK_FILE: &str = "dev-clock-offset-ms";

/// The node's hot path allocates and frees many small, short-lived objects
/// (persistent-map nodes, envelopes, HTTP buffers) from several threads;
/// under load glibc's allocator spent ~45 % of the node's CPU (perf), most
/// of it in arena locks and chunk consolidation.
#[cfg(not(feature = "alloc-stats"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same allocator, counting live blocks by size (diagnostics only).
#[cfg(feature = "alloc-stats")]
#[global_allocator]
static ALLOCATOR: alloc_stats::Counting<mimalloc::MiMalloc> =
    alloc_stats::Counting(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(name = "region-node", version, about = "Larder district server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once at start-up; the size of `Serve`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Serve the district's HTTP API.
    Serve {
        #[arg(long, env = "LARDER_CONFIG")]
        config: PathBuf,
        /// Overrides `data_dir` from the config.
        #[arg(long, env = "LARDER_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Overrides `http_addr` from the config (port 0 picks a free port).
        #[arg(long, env = "LARDER_HTTP_ADDR")]
        http_addr: Option<std::net::SocketAddr>,
        /// Load the demo district if the log is empty.
        #[arg(long)]
        demo: bool,
        /// Write the bound HTTP address to this file once listening.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Let an admin advance this node's clock (demos, tests). Never in production.
        #[arg(long)]
        dev_clock: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Mint a token with the private key from the config (development only).
    Token {
        #[arg(long, env = "LARDER_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long)]
        fridge_id: Option<String>,
        #[arg(long)]
        kitchen_id: Option<String>,
    },
    /// Run the whole system locally: nats-server, payments, this node with demo data.
    Dev {
        #[arg(
            long,
            env = "LARDER_CONFIG",
            default_value = "deploy/dev/region-detroit.toml"
        )]
        config: PathBuf,
        /// Where NATS, payments and the node keep their data.
        #[arg(long, default_value = ".larder")]
        state_dir: PathBuf,
        /// Leave the demo fridges silent (to drive them by hand with fridge-sim).
        #[arg(long)]
        no_fridges: bool,
        /// Let an admin advance the node's clock (`POST /v1/dev/clock`).
        #[arg(long)]
        dev_clock: bool,
        /// Demo districts to run: 1 (downtown, one NATS server) or 2
        /// (downtown and west Detroit on a 3-node NATS cluster).
        #[arg(long, default_value_t = 1)]
        districts: usize,
        /// Overrides `http_addr` of the first district; the next listen on
        /// the following ports (port 0: each picks a free one).
        #[arg(long)]
        http_addr: Option<std::net::SocketAddr>,
    },
    /// Load the demo district into the data dir (node must not be running).
    Seed {
        #[arg(long, env = "LARDER_CONFIG")]
        config: PathBuf,
        #[arg(long, env = "LARDER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Back up a running node's event log to a new directory, consistent at
    /// the node's durable seq when it starts.
    Backup {
        /// The backup directory to create (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        remote: backup::Remote,
    },
    /// Restore a backup into a new, empty data directory (node stopped).
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// The config of the node to restore: its `data_dir` and district.
        #[arg(long, env = "LARDER_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `data_dir` from the config.
        #[arg(long, env = "LARDER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Forecast storage per district and bandwidth per channel from the
    /// measured sizes of real events and messages (docs/capacity.md).
    Capacity {
        /// A TOML scenario; flags override its values.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[command(flatten)]
        flags: capacity_cmd::ScenarioFlags,
        #[arg(long, value_enum, default_value = "table")]
        format: capacity_cmd::Format,
        /// Skip measuring sled's space on disk (a few seconds of appends
        /// to a temporary log).
        #[arg(long)]
        no_disk_probe: bool,
    },
    /// The issuer's public keys as global data (NATS KV bucket
    /// `larder-issuer-keys`): publish, delete, list.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCmd),
    /// Write a running node's events after a seq as JSON lines.
    Export {
        /// Events with a seq above this one (0: all).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Write here (whole, via a temporary file) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        remote: backup::Remote,
    },
}

/// Config values a flag or environment variable may override.
#[derive(clap::Args)]
struct Overrides {
    /// NATS server URL; enables payments over JetStream.
    #[arg(long, env = "LARDER_NATS_URL")]
    nats_url: Option<String>,
    /// Copies of the streams and buckets this node creates (3 on a cluster).
    #[arg(long, env = "LARDER_NATS_REPLICAS")]
    nats_replicas: Option<usize>,
    #[arg(long)]
    grace_window_secs: Option<u32>,
    #[arg(long)]
    pos_grace_window_secs: Option<u32>,
    #[arg(long)]
    payment_timeout_secs: Option<u32>,
    #[arg(long)]
    pickup_window_secs: Option<u32>,
    /// `[ws]` limits (see the config reference in the README).
    #[arg(long)]
    ws_max_connections: Option<usize>,
    #[arg(long)]
    ws_max_subscriptions: Option<usize>,
    #[arg(long)]
    ws_queue_frames: Option<usize>,
    #[arg(long)]
    ws_resume_messages: Option<usize>,
    #[arg(long)]
    ws_idle_timeout_secs: Option<u64>,
    #[arg(long)]
    ws_ping_interval_secs: Option<u64>,
    #[arg(long)]
    ws_max_connections_per_caller: Option<usize>,
    /// `[limits]` rates; 0 turns a limit off.
    #[arg(long)]
    writes_per_sec_per_caller: Option<u32>,
    #[arg(long)]
    write_burst_per_caller: Option<u32>,
    #[arg(long)]
    catalog_reads_per_sec_per_ip: Option<u32>,
    #[arg(long)]
    catalog_burst_per_ip: Option<u32>,
    /// `[limits]`: encoded catalog answers kept (0: no cache).
    #[arg(long)]
    catalog_cache_max_entries: Option<usize>,
    /// `[limits]`: bytes those answers may take.
    #[arg(long)]
    catalog_cache_max_bytes: Option<usize>,
    /// `[snapshots]`: events between two state snapshots.
    #[arg(long)]
    snapshot_every_events: Option<u64>,
    /// `[notifications]`: phone pushes go to this file (JSON lines).
    #[arg(long)]
    push_file: Option<std::path::PathBuf>,
    #[arg(long)]
    reminder_lead_minutes: Option<u32>,
    /// `[payments] max_backlog`: payment requests awaiting a result at
    /// which new orders are refused (503 `payments_backlog`).
    #[arg(long)]
    max_payments_backlog: Option<usize>,
}

impl Overrides {
    fn apply(self, cfg: &mut Config) -> anyhow::Result<()> {
        if let Some(url) = self.nats_url {
            let replicas = cfg.nats.as_ref().map_or(1, |n| n.replicas);
            cfg.nats = Some(region_node::config::NatsConfig { url, replicas });
        }
        if let (Some(n), Some(r)) = (cfg.nats.as_mut(), self.nats_replicas) {
            n.replicas = r;
        }
        let o = &mut cfg.orders;
        o.grace_window_secs = self.grace_window_secs.unwrap_or(o.grace_window_secs);
        o.pos_grace_window_secs = self
            .pos_grace_window_secs
            .unwrap_or(o.pos_grace_window_secs);
        o.payment_timeout_secs = self.payment_timeout_secs.unwrap_or(o.payment_timeout_secs);
        o.pickup_window_secs = self.pickup_window_secs.unwrap_or(o.pickup_window_secs);
        o.validate()?;
        let w = &mut cfg.ws;
        w.max_connections = self.ws_max_connections.unwrap_or(w.max_connections);
        w.max_subscriptions = self.ws_max_subscriptions.unwrap_or(w.max_subscriptions);
        w.queue_frames = self.ws_queue_frames.unwrap_or(w.queue_frames);
        w.resume_messages = self.ws_resume_messages.unwrap_or(w.resume_messages);
        w.idle_timeout_secs = self.ws_idle_timeout_secs.unwrap_or(w.idle_timeout_secs);
        w.ping_interval_secs = self.ws_ping_interval_secs.unwrap_or(w.ping_interval_secs);
        w.max_connections_per_caller = self
            .ws_max_connections_per_caller
            .unwrap_or(w.max_connections_per_caller);
        w.validate()?;
        let l = &mut cfg.limits;
        l.writes_per_sec_per_caller = self
            .writes_per_sec_per_caller
            .unwrap_or(l.writes_per_sec_per_caller);
        l.write_burst_per_caller = self
            .write_burst_per_caller
            .unwrap_or(l.write_burst_per_caller);
        l.catalog_reads_per_sec_per_ip = self
            .catalog_reads_per_sec_per_ip
            .unwrap_or(l.catalog_reads_per_sec_per_ip);
        l.catalog_burst_per_ip = self.catalog_burst_per_ip.unwrap_or(l.catalog_burst_per_ip);
        l.catalog_cache_max_entries = self
            .catalog_cache_max_entries
            .unwrap_or(l.catalog_cache_max_entries);
        l.catalog_cache_max_bytes = self
            .catalog_cache_max_bytes
            .unwrap_or(l.catalog_cache_max_bytes);
        let s = &mut cfg.snapshots;
        s.every_events = self.snapshot_every_events.unwrap_or(s.every_events);
        let n = &mut cfg.notifications;
        if let Some(path) = self.push_file {
            n.push = region_node::config::PushAdapter::File;
            n.push_file = Some(path);
        }
        n.reminder_lead_minutes = self
            .reminder_lead_minutes
            .unwrap_or(n.reminder_lead_minutes);
        n.validate()?;
        let p = &mut cfg.payments;
        p.max_backlog = self.max_payments_backlog.unwrap_or(p.max_backlog);
        p.validate()?;
        Ok(())
    }
}

fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("bad ttl {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("bad ttl unit in {s:?}; use s, m, h or d"),
    };
    if secs == 0 || secs > MAX_TOKEN_TTL_SECS {
        bail!("ttl must be between 1s and {MAX_TOKEN_TTL_SECS}s");
    }
    Ok(secs)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LARDER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves at SIGTERM (what orchestrators send) or Ctrl-C (SIGINT).
///
/// The handlers are installed here, when called, not when the future is
/// first polled: `serve` polls it only once the port is announced, and a
/// SIGTERM arriving in between would otherwise take the default action and
/// kill the node (an orchestrator may stop a node the moment it is ready).
/// Must be called inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
                }
            }
            (term, int) => {
                let e = term.err().or(int.err());
                tracing::warn!(error = ?e, "no signal handler; the node stops only when killed");
                std::future::pending::<()>().await;
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "alloc-stats")]
    alloc_stats::start();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve {
            config,
            data_dir,
            http_addr,
            demo,
            port_file,
            dev_clock,
            overrides,
        } => serve(
            &config, data_dir, http_addr, demo, port_file, dev_clock, overrides,
        ),
        Cmd::Token {
            config,
            role,
            sub,
            ttl,
            fridge_id,
            kitchen_id,
        } => mint_token(&config, role, sub, &ttl, fridge_id, kitchen_id),
        Cmd::Dev {
            config,
            state_dir,
            no_fridges,
            dev_clock,
            districts,
            http_addr,
        } => {
            init_tracing();
            let opts = dev::DevOptions {
                fridges: !no_fridges,
                dev_clock,
                districts,
                http_addr,
            };
            dev::run(&config, state_dir, &opts)
        }
        Cmd::Seed { config, data_dir } => seed(&config, data_dir),
        Cmd::Backup { to, remote } => backup::backup(&to, remote),
        Cmd::Restore {
            from,
            config,
            data_dir,
        } => backup::restore(&from, config.as_deref(), data_dir),
        Cmd::Export { since, out, remote } => backup::export(since, out.as_deref(), remote),
        Cmd::Keys(cmd) => keys_cmd::run(cmd),
        Cmd::Capacity {
            scenario,
            flags,
            format,
            no_disk_probe,
        } => capacity_cmd::run(scenario, &flags, format, !no_disk_probe),
    }
}

/// `region-node serve`: the node until SIGTERM or Ctrl-C.
fn serve(
    config: &std::path::Path,
    data_dir: Option<PathBuf>,
    http_addr: Option<std::net::SocketAddr>,
    demo: bool,
    port_file: Option<PathBuf>,
    dev_clock: bool,
    overrides: Overrides,
) -> anyhow::Result<()> {
    init_tracing();
    let failpoints = storage::failpoints::arm_from_env()?;
    if let Some(names) = &failpoints.names {
        tracing::warn!(failpoints = %names, "failpoints armed");
    }
    let mut cfg = Config::load(config)?;
    overrides.apply(&mut cfg)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(a) = http_addr {
        cfg.http_addr = a;
    }
    raise_fd_limit(cfg.ws.max_connections);
    let clock = if dev_clock {
        std::fs::create_dir_all(&cfg.data_dir)?;
        Clock::adjustable_saved(cfg.data_dir.join(DEV_CLOCK_FILE))
    } else {
        Clock::system()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let stop = {
        let _in_runtime = rt.enter();
        shutdown_signal()
    };
    let served = rt.block_on(region_node::serve(
        cfg,
        region_node::ServeOptions {
            clock,
            demo,
            port_file,
        },
        stop,
    ));
    // `serve` awaited its own tasks (bounded by SHUTDOWN_GRACE_MS);
    // what is left must not hold the exit either.
    rt.shutdown_timeout(Duration::from_millis(RUNTIME_DROP_MS));
    served?;
    Ok(())
}

/// Raises the soft open-file limit to the hard one (every connection is a
/// file descriptor) and warns when `ws.max_connections` would not fit.
fn raise_fd_limit(ws_max_connections: usize) {
    use region_node::fd_limit::{raise_to_hard, FD_HEADROOM};
    match raise_to_hard() {
        Ok(lim) => {
            tracing::info!(
                soft_before = lim.before,
                soft_after = lim.after,
                hard = lim.hard,
                "open-file limit (RLIMIT_NOFILE)"
            );
            if !lim.fits(ws_max_connections) {
                tracing::warn!(
                    open_files = lim.after,
                    ws_max_connections,
                    headroom = FD_HEADROOM,
                    "the open-file limit is below ws.max_connections plus headroom: \
                     connections beyond it will be refused by the kernel; raise the \
                     hard limit (docs/websocket.md)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// `region-node token`: mints a development token and prints it.
fn mint_token(
    config: &std::path::Path,
    role: Role,
    sub: String,
    ttl: &str,
    fridge_id: Option<String>,
    kitchen_id: Option<String>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let token = mint(&cfg, role, sub, parse_ttl(ttl)?, fridge_id, kitchen_id)?;
    // The token is the command's output, for shells and scripts.
    println!("{token}");
    Ok(())
}

/// A token signed with the config's private key (development configs).
fn mint(
    cfg: &Config,
    role: Role,
    sub: String,
    ttl_secs: u64,
    fridge_id: Option<String>,
    kitchen_id: Option<String>,
) -> anyhow::Result<String> {
    let pem = cfg.auth.private_key_pem.as_deref().context(
        "this config has no private_key_pem: tokens are minted only with development configs",
    )?;
    let now = u64::try_from(Clock::system().now().timestamp())?;
    let claims = Claims {
        sub,
        role,
        iat: now,
        exp: now + ttl_secs,
        nbf: None,
        fridge_id,
        kitchen_id,
    };
    Ok(auth::mint_with_kid(pem, cfg.auth.kid.as_deref(), &claims)?)
}

/// `region-node seed`: loads the demo district into an empty data dir.
fn seed(config: &std::path::Path, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let mut cfg = Config::load(config)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let metrics = std::sync::Arc::new(region_node::metrics::Metrics::default());
        let writer = Lifecycle::new();
        let (district, log) =
            region_node::open_district(&cfg, Clock::system(), metrics, writer.shutdown())?;
        drop(log);
        let loaded = region_node::demo::seed_if_empty(&district, cfg.district_id.as_str()).await?;
        // Close the log before exiting, not whenever the runtime drops it.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
        writer.stop(deadline).await?;
        tracing::info!(loaded, "seed finished");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
