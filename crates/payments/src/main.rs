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
#[command(name = "payments", version, about = "Larder payments service")]
struct Cli {
    #[arg(long, env = "LARDER_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(
        long,
        env = "LARDER_PAYMENTS_DATA_DIR",
        default_value = "./data/payments"
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
    #[arg(long, env = "LARDER_PAYMENTS_PUBLIC_KEY")]
    public_key: PathBuf,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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

    let public_pem = std::fs::read_to_string(&cli.public_key)
        .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", cli.public_key.display()))?;
    let auth = Arc::new(payments::http::AdminAuth::from_pem(&public_pem)?);
    std::fs::create_dir_all(&cli.data_dir)?;
    let book = Book::open(&cli.data_dir)?;
    let rules = SandboxRules {
        latency: Duration::from_millis(cli.sandbox_latency_ms),
        amount_limit: cli.sandbox_amount_limit,
    };
    let sandbox = Arc::new(Sandbox::new(book.db(), rules)?);
    let client = async_nats::ConnectOptions::new()
        .name("larder-payments")
        .retry_on_initial_connect()
        .connect(&cli.nats_url)
        .await?;
    let service = Arc::new(Service::new(client.clone(), book.clone(), sandbox.clone())?);
    let seen = book.db().open_tree("requests_seen")?;
    tokio::spawn(service.run());

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
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
