//! `payments`: the global payments service (sandbox provider by default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use payments::book::Book;
use payments::provider::{Sandbox, SandboxRules};
use payments::service::Service;

/// Same reason as the region node: many small short-lived allocations from
/// several threads, which glibc's allocator serves poorly under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "payments",
    version,
    about = "Larder payments service",
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Cmd>,
    #[arg(long, env = "LARDER_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Copies of the payment streams if this service creates them: 3 on a
    /// NATS cluster, 1 on a single server.
    #[arg(long, env = "LARDER_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
    #[arg(
        long,
        env = "LARDER_PAYMENTS_DATA_DIR",
        default_value = DEFAULT_DATA_DIR
    )]
    data_dir: PathBuf,
    #[arg(
        long,
        env = "LARDER_PAYMENTS_HTTP_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    http_addr: SocketAddr,
    /// PEM file with the EdDSA public key the region nodes trust: the
    /// ledger API accepts only admin tokens signed with its private key.
    /// (Required to serve; `Option` only because the commands need none.)
    #[arg(long, env = "LARDER_PAYMENTS_PUBLIC_KEY", required = true)]
    public_key: Option<PathBuf>,
    /// Write the bound HTTP address here once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Sandbox: simulated processor latency per call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sandbox_latency_ms: u64,
    /// Sandbox: decline charges above this many minor units.
    #[arg(long, default_value_t = 50_000)]
    sandbox_amount_limit: i64,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Back up the book (service stopped) to a new directory.
    Backup {
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "LARDER_PAYMENTS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Restore a backup into a new, empty data directory.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "LARDER_PAYMENTS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

const DEFAULT_DATA_DIR: &str = "./data/payments";

/// `payments backup` / `payments restore`; each prints its report for the
/// operator.
async fn run_command(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Backup { to, data_dir } => {
            let m = payments::backup::backup(&data_dir, &to)?;
            println!(
                "backed up {} records to {}",
                m.meta.record_count,
                to.display()
            );
        }
        Cmd::Restore { from, data_dir } => {
            let n = payments::backup::restore(&from, &data_dir).await?;
            println!("restored {n} records into {}", data_dir.display());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.command.take() {
        return run_command(cmd).await;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LARDER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let failpoints = storage::failpoints::arm_from_env()?;
    if let Some(names) = &failpoints.names {
        tracing::warn!(failpoints = %names, "failpoints armed");
    }

    // clap requires it whenever no command is given.
    let public_key = cli.public_key.unwrap_or_default();
    let public_pem = std::fs::read_to_string(&public_key)
        .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", public_key.display()))?;
    let auth = Arc::new(payments::http::AdminAuth::from_pem(&public_pem)?);
    std::fs::create_dir_all(&cli.data_dir)?;
    let book = Book::open(&cli.data_dir)?;
    let rules = SandboxRules {
        latency: Duration::from_millis(cli.sandbox_latency_ms),
        amount_limit: cli.sandbox_amount_limit,
    };
    let sandbox = Arc::new(Sandbox::new(book.db(), rules)?);
    // Several servers of a cluster are separated by commas.
    let servers: Vec<&str> = cli
        .nats_url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .name("larder-payments")
        .retry_on_initial_connect()
        .connect(servers.as_slice())
        .await?;
    let service = Arc::new(
        Service::new(client.clone(), book.clone(), sandbox.clone())?
            .with_replicas(cli.nats_replicas),
    );
    let seen = book.db().open_tree("requests_seen")?;
    tokio::spawn(service.run());

    // Both signals, installed before the port file says we are up: a
    // container runtime stops us with SIGTERM, a terminal with Ctrl-C.
    let stop = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(cli.http_addr).await?;
    let bound = listener.local_addr()?;
    if let Some(path) = &cli.port_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(addr = %bound, nats = %cli.nats_url, "payments listening");
    let app = payments::http::router(payments::http::Ops {
        book,
        sandbox,
        seen,
        nats: client,
        auth,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}
