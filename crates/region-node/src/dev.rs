//! `region-node dev`: the whole system on one machine, for development and
//! demos. Finds or installs nats-server (via `scripts/ensure-nats`), starts it
//! with JetStream, starts the payments service, runs this node with demo
//! data, prints where everything is, and stops it all on Ctrl-C (or SIGTERM;
//! the node stops gracefully, the children are killed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use region_node::auth::{self, Claims, Role};
use region_node::clock::Clock;
use region_node::config::{Config, NatsConfig};

/// How long a child service may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Lifetime of the tokens printed for the demo, in seconds (a working day).
const DEMO_TOKEN_TTL_SECS: u64 = 12 * 3600;
/// How often each demo fridge reports in `dev`, in milliseconds.
const DEMO_FRIDGE_INTERVAL_MS: u64 = 5_000;

/// Kills the child when dropped, so Ctrl-C or an error leaves nothing behind.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first would be kinder; both children are crash-safe, and
        // a prompt stop is what Ctrl-C asks for.
        let _ = self.0.kill();
        let _ = self.0.wait();
        tracing::info!(service = self.1, "stopped");
    }
}

fn wait_for_file(path: &Path, child: &mut Child, what: &str) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return Ok(s);
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start-up ({status})");
        }
        if start.elapsed() > START_DEADLINE {
            bail!("{what} did not start within {START_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nats_server_binary() -> anyhow::Result<String> {
    let script = Path::new("scripts/ensure-nats");
    if script.exists() {
        let out = Command::new("bash")
            .arg(script)
            .stderr(Stdio::inherit())
            .output()?;
        if out.status.success() {
            return Ok(String::from_utf8(out.stdout)?.trim().to_string());
        }
    }
    Ok(std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into()))
}

fn token(pem: &str, clock: &Clock, role: Role, sub: &str) -> anyhow::Result<String> {
    let now = u64::try_from(clock.now().timestamp())?;
    let claims = Claims {
        sub: sub.into(),
        role,
        iat: now,
        exp: now + DEMO_TOKEN_TTL_SECS,
        nbf: None,
        fridge_id: None,
        kitchen_id: None,
    };
    Ok(auth::mint(pem, &claims)?)
}

/// The demo fridges, played by `fridge-sim run` (next to this binary):
/// periodic scans, temperature samples and refills over signed telemetry.
/// Missing simulator or a failed start only costs the demo its live
/// fridges, so it is reported, not fatal.
fn start_fridges(state_dir: &Path, node_url: &str) -> Option<Guard> {
    let sim = std::env::current_exe().ok()?.with_file_name("fridge-sim");
    if !sim.exists() {
        tracing::warn!(path = %sim.display(), "fridge-sim not built; demo fridges stay silent");
        return None;
    }
    let demo = state_dir.join("demo-district.json");
    if let Err(e) = std::fs::write(&demo, region_node::demo::DETROIT_JSON) {
        tracing::warn!(error = %e, "cannot write the demo district for fridge-sim");
        return None;
    }
    let log = std::fs::File::create(state_dir.join("fridge-sim.log")).ok()?;
    match Command::new(&sim)
        .args(["run", "--node", node_url, "--demo"])
        .arg(&demo)
        .args(["--interval-ms", &DEMO_FRIDGE_INTERVAL_MS.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
    {
        Ok(child) => {
            println!(
                "  fridges      12 demo fridges report every {} s (log: {})\n",
                DEMO_FRIDGE_INTERVAL_MS / 1000,
                state_dir.join("fridge-sim.log").display()
            );
            Some(Guard(child, "fridge-sim"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "fridge-sim did not start");
            None
        }
    }
}

pub fn run(
    config_path: &Path,
    state_dir: PathBuf,
    fridges: bool,
    dev_clock: bool,
) -> anyhow::Result<()> {
    let mut cfg = Config::load(config_path)?;
    let pem = cfg.auth.private_key_pem.clone().context(
        "dev needs a config with a development private key (deploy/dev/region-detroit.toml)",
    )?;
    std::fs::create_dir_all(&state_dir)?;
    let (nats, nats_url) = start_nats(&state_dir)?;
    let (payments, pay_addr) = start_payments(&state_dir, &nats_url, &cfg.auth.public_key_pem)?;

    // This node, in process, with demo data.
    cfg.nats = Some(NatsConfig {
        url: nats_url.clone(),
        replicas: 1,
    });
    cfg.data_dir = state_dir.join("region");
    let node_addr_file = state_dir.join("region.addr");
    let _ = std::fs::remove_file(&node_addr_file);
    let clock = if dev_clock {
        std::fs::create_dir_all(&cfg.data_dir)?;
        Clock::adjustable_saved(cfg.data_dir.join(crate::DEV_CLOCK_FILE))
    } else {
        Clock::system()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let node_url = format!("http://{}", cfg.http_addr);
    let banner = banner(&cfg, &state_dir, &nats_url, &pay_addr, &pem, &clock)?;
    rt.block_on(async {
        // Installed before the node announces itself (see shutdown_signal).
        let stop = crate::shutdown_signal();
        let serve = region_node::serve(
            cfg,
            region_node::ServeOptions {
                clock,
                demo: true,
                port_file: Some(node_addr_file.clone()),
            },
            stop,
        );
        let announce = async {
            while !node_addr_file.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The banner is this command's output for the person at the terminal.
            println!("{banner}");
            fridges
                .then(|| start_fridges(&state_dir, &node_url))
                .flatten()
        };
        let (served, fridges) = tokio::join!(serve, announce);
        drop(fridges);
        served
    })?;
    drop(payments);
    drop(nats);
    Ok(())
}

/// NATS with JetStream on a free port; its client URL.
fn start_nats(state_dir: &Path) -> anyhow::Result<(Guard, String)> {
    let nats_bin = nats_server_binary()?;
    let nats_dir = state_dir.join("nats");
    let ports_dir = state_dir.join("nats-ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir)?;
    let nats_conf = Path::new("deploy/nats/single.conf");
    let mut nats = Command::new(&nats_bin);
    if nats_conf.exists() {
        nats.arg("-c").arg(nats_conf);
    } else {
        nats.arg("-js");
    }
    let nats = nats
        .args(["-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(&nats_dir)
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {nats_bin}"))?;
    let mut nats = Guard(nats, "nats-server");
    let ports_file = ports_dir.join(format!("nats-server_{}.ports", nats.0.id()));
    let ports: serde_json::Value =
        serde_json::from_str(&wait_for_file(&ports_file, &mut nats.0, "nats-server")?)?;
    let nats_url = ports["nats"][0]
        .as_str()
        .context("no client URL in the ports file")?
        .to_string();
    Ok((nats, nats_url))
}

/// The payments service, next to this binary; its HTTP address.
fn start_payments(
    state_dir: &Path,
    nats_url: &str,
    public_pem: &str,
) -> anyhow::Result<(Guard, String)> {
    // The ledger API takes admin tokens signed with the node's key.
    let public_key = state_dir.join("auth-public.pem");
    std::fs::write(&public_key, public_pem).context("writing the public key for payments")?;
    let payments_bin = std::env::current_exe()?.with_file_name("payments");
    if !payments_bin.exists() {
        bail!(
            "{} is missing: build with `cargo build --release --workspace --bins`",
            payments_bin.display()
        );
    }
    let pay_addr_file = state_dir.join("payments.addr");
    let _ = std::fs::remove_file(&pay_addr_file);
    let payments = Command::new(&payments_bin)
        .args([
            "--nats-url",
            nats_url,
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(state_dir.join("payments"))
        .arg("--port-file")
        .arg(&pay_addr_file)
        .arg("--public-key")
        .arg(public_key)
        .stdout(Stdio::null())
        .spawn()
        .context("starting payments")?;
    let mut payments = Guard(payments, "payments");
    let pay_addr = wait_for_file(&pay_addr_file, &mut payments.0, "payments")?;
    Ok((payments, pay_addr.trim().to_string()))
}

/// What the person at the terminal needs: URLs, tokens, a first order.
fn banner(
    cfg: &Config,
    state_dir: &Path,
    nats_url: &str,
    pay_addr: &str,
    pem: &str,
    clock: &Clock,
) -> anyhow::Result<String> {
    Ok(format!(
        "\nLarder is running (district {district}).\n\
         \n  region node  http://{http}   (catalog: /v1/catalog?lat=42.3316&lon=-83.0466&radius_m=1500)\
         \n  websocket    ws://{http}/v1/ws   (send {{\"type\":\"subscribe\",\"fridges\":[\"f-campus-martius\"]}})\
         \n  payments     http://{pay}   (ledger: /v1/ledger)\
         \n  nats         {nats_url}\
         \n  data         {dir}\
         \n\nTokens (valid {hours} h):\
         \n  export CUSTOMER={customer}\
         \n  export POS={pos}\
         \n  export ADMIN={admin}\
         \n\nTry:\
         \n  curl -s -X POST http://{http}/v1/orders -H \"Authorization: Bearer $CUSTOMER\" -H 'content-type: application/json' \\\
         \n       -H 'Idempotency-Key: demo-1' -d '{{\"fridge_id\":\"f-campus-martius\",\"items\":[{{\"meal_id\":\"m-greek-salad\",\"qty\":1}}],\"payment_method\":\"tok_visa\"}}'\
         \n  curl -s http://{http}/v1/orders -H \"Authorization: Bearer $CUSTOMER\"\
         \n\nCtrl-C stops everything.\n",
        district = cfg.district_id,
        http = cfg.http_addr,
        pay = pay_addr,
        dir = state_dir.display(),
        hours = DEMO_TOKEN_TTL_SECS / 3600,
        customer = token(pem, clock, Role::Customer, "demo-customer")?,
        pos = token(pem, clock, Role::Pos, "demo-pos")?,
        admin = token(pem, clock, Role::Admin, "demo-admin")?,
    ))
}
