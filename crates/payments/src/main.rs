//! `payments`: the global payments service (sandbox provider by default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use payments::book::Book;
use payments::provider::{Provider, Sandbox, SandboxRules};
use payments::remote::HttpProcessor;
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
    long_about = "Larder payments service: consumes payment requests from JetStream in \
batches, charges or refunds once per request id, records each outcome in its book \
(synced) and publishes the result.\n\nOne instance charges through the in-process \
sandbox. Several instances may share the request consumer, but then they must share \
one processor (--processor-url, e.g. a `payments sandbox-processor`): each instance's \
book only knows what it answered, and the processor's idempotency key is what keeps \
an order from being charged twice.",
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
    /// Charge through this shared processor (`http://host:port` of a
    /// `payments sandbox-processor`) instead of the in-process sandbox.
    /// Required when several instances share the request consumer.
    #[arg(long, env = "LARDER_PAYMENTS_PROCESSOR_URL")]
    processor_url: Option<String>,
    /// How long a delivered request may stay unacknowledged before
    /// JetStream hands it out again, in milliseconds (the request
    /// consumer's ack wait; set at each start, so run every instance with
    /// the same value).
    #[arg(long, env = "LARDER_PAYMENTS_ACK_WAIT_MS", default_value_t = bus::ACK_WAIT_SECS * 1000)]
    ack_wait_ms: u64,
    /// In-process sandbox: simulated processor latency per call, in
    /// milliseconds.
    #[arg(long, default_value_t = 0)]
    sandbox_latency_ms: u64,
    /// In-process sandbox: decline charges above this many minor units.
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
    /// Serve the sandbox card processor over HTTP, for several payments
    /// instances to share (`payments --processor-url`): idempotent charge,
    /// refund and capture lookup per key, its ledger synced before each
    /// answer. No authentication and no money: keep it on loopback.
    SandboxProcessor {
        /// Address to listen on (loopback: it has no authentication).
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: SocketAddr,
        /// Where its ledger lives (sled; `payments backup --data-dir` copies
        /// it like a book).
        #[arg(long, default_value = "./data/sandbox-processor")]
        data_dir: PathBuf,
        /// Write the bound address here once listening.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Simulated processor latency per call, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Decline charges above this many minor units.
        #[arg(long, default_value_t = 50_000)]
        amount_limit: i64,
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
        Cmd::SandboxProcessor {
            listen,
            data_dir,
            port_file,
            latency_ms,
            amount_limit,
        } => {
            init_tracing();
            let rules = SandboxRules {
                latency: Duration::from_millis(latency_ms),
                amount_limit,
            };
            sandbox_processor(listen, &data_dir, port_file.as_deref(), rules).await?;
        }
    }
    Ok(())
}

/// `payments sandbox-processor`: the sandbox's ledger served over HTTP
/// until SIGTERM or Ctrl-C.
async fn sandbox_processor(
    listen: SocketAddr,
    data_dir: &Path,
    port_file: Option<&Path>,
    rules: SandboxRules,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = Book::open(data_dir)?;
    let sandbox = Arc::new(Sandbox::new(store.db(), rules)?);
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    if let Some(path) = port_file {
        write_port_file(path, bound)?;
    }
    tracing::info!(addr = %bound, "sandbox processor listening");
    let app = payments::processor::router(payments::processor::Processor { sandbox, store });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LARDER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM (a container runtime) or SIGINT (a terminal).
/// Installed before the port file says we are up.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
        }
    })
}

/// Writes the bound address where a test or script waits for it (renamed
/// into place, so a reader never sees half of it).
fn write_port_file(path: &Path, bound: SocketAddr) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bound.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Starts the consumer loop with `provider`.
fn spawn_service<P: Provider>(
    cli: &Cli,
    client: &async_nats::Client,
    book: &Book,
    provider: Arc<P>,
) -> anyhow::Result<()> {
    let service = Service::new(client.clone(), book.clone(), provider)?
        .with_replicas(cli.nats_replicas)
        .with_ack_wait(Duration::from_millis(cli.ack_wait_ms));
    tokio::spawn(Arc::new(service).run());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.command.take() {
        return run_command(cmd).await;
    }
    init_tracing();
    let failpoints = storage::failpoints::arm_from_env()?;
    if let Some(names) = &failpoints.names {
        tracing::warn!(failpoints = %names, "failpoints armed");
    }

    // clap requires it whenever no command is given.
    let public_key = cli.public_key.clone().unwrap_or_default();
    let public_pem = std::fs::read_to_string(&public_key)
        .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", public_key.display()))?;
    let auth = Arc::new(payments::http::AdminAuth::from_pem(&public_pem)?);
    std::fs::create_dir_all(&cli.data_dir)?;
    let book = Book::open(&cli.data_dir)?;
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
    let sandbox = match &cli.processor_url {
        Some(url) => {
            tracing::info!(processor = %url, "payments: charging through a shared processor");
            spawn_service(&cli, &client, &book, Arc::new(HttpProcessor::new(url)?))?;
            None
        }
        None => {
            let rules = SandboxRules {
                latency: Duration::from_millis(cli.sandbox_latency_ms),
                amount_limit: cli.sandbox_amount_limit,
            };
            let sandbox = Arc::new(Sandbox::new(book.db(), rules)?);
            spawn_service(&cli, &client, &book, sandbox.clone())?;
            Some(sandbox)
        }
    };
    let seen = book.db().open_tree("requests_seen")?;

    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(cli.http_addr).await?;
    let bound = listener.local_addr()?;
    if let Some(path) = &cli.port_file {
        write_port_file(path, bound)?;
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
