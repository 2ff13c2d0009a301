//! `region-node keys`: the issuer's public keys as global data (the NATS
//! KV bucket `larder-issuer-keys`, see `fleet::issuer_keys`). Every node
//! of the fleet watches the bucket: a published key verifies tokens on
//! all of them within moments, a deleted one stops as fast.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use region_node::fleet::issuer_keys::IssuerKeys;

/// Longest wait for NATS to answer one command.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// Publish (or replace) the issuer's public key `kid`.
    Publish {
        #[command(flatten)]
        nats: Nats,
        #[arg(long)]
        kid: String,
        /// The Ed25519 public key, SPKI PEM (`openssl pkey -pubout`).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Delete the issuer's key `kid`: its tokens stop verifying.
    Delete {
        #[command(flatten)]
        nats: Nats,
        #[arg(long)]
        kid: String,
    },
    /// List the published kids.
    List {
        #[command(flatten)]
        nats: Nats,
    },
}

#[derive(clap::Args)]
pub struct Nats {
    /// NATS server URLs, comma-separated.
    #[arg(long, env = "LARDER_NATS_URL")]
    nats_url: String,
    /// Copies of the bucket if this command creates it (3 on a cluster).
    #[arg(long, env = "LARDER_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
}

pub fn run(cmd: KeysCmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(NATS_TIMEOUT, execute(cmd))
            .await
            .context("NATS did not answer in time")?
    })
}

async fn execute(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Publish {
            nats,
            kid,
            public_key,
        } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("read {}", public_key.display()))?;
            region_node::fleet::issuer_keys::check_kid(&kid)?;
            region_node::fleet::issuer_keys::parse_key(pem.as_bytes())?;
            nats.keys().await?.publish(&kid, &pem).await?;
            eprintln!("published issuer key {kid}");
        }
        KeysCmd::Delete { nats, kid } => {
            nats.keys().await?.delete(&kid).await?;
            eprintln!("deleted issuer key {kid}");
        }
        KeysCmd::List { nats } => {
            for kid in nats.keys().await?.kids().await? {
                println!("{kid}");
            }
        }
    }
    Ok(())
}

impl Nats {
    async fn keys(&self) -> anyhow::Result<IssuerKeys> {
        let servers: Vec<&str> = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let client = async_nats::connect(servers)
            .await
            .context("connect to NATS")?;
        Ok(IssuerKeys::new(client, self.nats_replicas))
    }
}
