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
    demo_token(pem, clock, role, sub, None)
}

/// A demo token; a kitchen's names its kitchen (the kitchen view reads it).
fn demo_token(
    pem: &str,
    clock: &Clock,
    role: Role,
    sub: &str,
    kitchen_id: Option<&str>,
) -> anyhow::Result<String> {
    let now = u64::try_from(clock.now().timestamp())?;
    let claims = Claims {
        sub: sub.into(),
        role,
        iat: now,
        exp: now + DEMO_TOKEN_TTL_SECS,
        nbf: None,
        fridge_id: None,
        kitchen_id: kitchen_id.map(str::to_owned),
    };
    Ok(auth::mint(pem, &claims)?)
}

/// The demo fridges of one district, played by `fridge-sim run` (next to
/// this binary): periodic scans, temperature samples and refills over
/// signed telemetry. Missing simulator or a failed start only costs the
/// demo its live fridges, so it is reported, not fatal.
fn start_fridges(state_dir: &Path, cfg: &Config, node_url: &str) -> Option<Guard> {
    let sim = std::env::current_exe().ok()?.with_file_name("fridge-sim");
    if !sim.exists() {
        tracing::warn!(path = %sim.display(), "fridge-sim not built; demo fridges stay silent");
        return None;
    }
    let id = cfg.district_id.as_str();
    let demo = state_dir.join(format!("demo-{id}.json"));
    if let Err(e) = std::fs::write(&demo, district::demo::json_for(id)) {
        tracing::warn!(error = %e, "cannot write the demo district for fridge-sim");
        return None;
    }
    let log_path = state_dir.join(format!("fridge-sim-{id}.log"));
    let log = std::fs::File::create(&log_path).ok()?;
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
                "  fridges      {id}: demo fridges report every {} s (log: {})",
                DEMO_FRIDGE_INTERVAL_MS / 1000,
                log_path.display()
            );
            Some(Guard(child, "fridge-sim"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "fridge-sim did not start");
            None
        }
    }
}

/// The demo districts `dev --districts N` can run: downtown (the config's
/// own district) and west Detroit.
pub const MAX_DEMO_DISTRICTS: usize = 2;

/// The config of demo district `i`: 0 is the given config (its district,
/// address and prefixes); 1 is west Detroit on the next port. Every node
/// uses `nats_url` with `replicas` copies and keeps its data in
/// `state_dir`.
fn district_config(
    base: &Config,
    i: usize,
    state_dir: &Path,
    nats_url: &str,
    replicas: usize,
) -> anyhow::Result<Config> {
    let mut cfg = base.clone();
    cfg.nats = Some(NatsConfig {
        url: nats_url.to_string(),
        replicas,
    });
    if i == 0 {
        cfg.data_dir = state_dir.join("region");
        return Ok(cfg);
    }
    cfg.district_id = "detroit-west".parse()?;
    cfg.geohash_prefixes = district::demo::WEST_PREFIXES
        .iter()
        .map(|p| p.to_string())
        .collect();
    // Port 0 stays 0 (a free port; the directory names the bound one).
    if base.http_addr.port() != 0 {
        let port = base
            .http_addr
            .port()
            .checked_add(1)
            .context("http_addr port")?;
        cfg.http_addr.set_port(port);
        cfg.public_url = Some(format!("http://{}", cfg.http_addr));
    } else {
        cfg.public_url = None;
    }
    cfg.data_dir = state_dir.join("detroit-west");
    // The live region directory says who serves where.
    cfg.directory.clear();
    cfg.area()?;
    Ok(cfg)
}

/// `dev`'s flags.
#[derive(Clone, Copy)]
pub struct DevOptions {
    /// Play the demo fridges with fridge-sim.
    pub fridges: bool,
    pub dev_clock: bool,
    pub districts: usize,
    /// The first district's address (the config's by default).
    pub http_addr: Option<std::net::SocketAddr>,
}

pub fn run(config_path: &Path, state_dir: PathBuf, opts: &DevOptions) -> anyhow::Result<()> {
    let DevOptions {
        fridges,
        dev_clock,
        districts,
        http_addr,
    } = *opts;
    if !(1..=MAX_DEMO_DISTRICTS).contains(&districts) {
        bail!("--districts must be 1 to {MAX_DEMO_DISTRICTS} (detroit-downtown, detroit-west)");
    }
    let mut base = Config::load(config_path)?;
    if let Some(addr) = http_addr {
        base.http_addr = addr;
        base.public_url = None;
    }
    let pem = base.auth.private_key_pem.clone().context(
        "dev needs a config with a development private key (deploy/dev/region-detroit.toml)",
    )?;
    std::fs::create_dir_all(&state_dir)?;
    // One district: one NATS server. More: a 3-node cluster, as deployed.
    let (nats, nats_url, replicas) = if districts == 1 {
        let (guard, url) = start_nats(&state_dir)?;
        (vec![guard], url, 1)
    } else {
        let (guards, urls) = start_nats_cluster(&state_dir)?;
        (guards, urls, 3)
    };
    let (payments, pay_addr) =
        start_payments(&state_dir, &nats_url, replicas, &base.auth.public_key_pem)?;
    let configs = (0..districts)
        .map(|i| district_config(&base, i, &state_dir, &nats_url, replicas))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Installed before any node announces itself (see shutdown_signal).
        let stop = futures::FutureExt::shared(crate::shutdown_signal());
        let mut nodes = vec![];
        for cfg in configs {
            nodes.push(serve_one(
                cfg,
                &state_dir,
                dev_clock,
                fridges,
                stop.clone(),
            )?);
        }
        let banner = banner(&nodes, &state_dir, &nats_url, &pay_addr, &pem)?;
        let (served, _) = tokio::join!(
            futures::future::join_all(nodes.into_iter().map(|n| n.run)),
            async {
                // The banner is this command's output for the person at the terminal.
                println!("{banner}");
            }
        );
        served.into_iter().collect::<Result<Vec<()>, _>>()
    })?;
    drop(payments);
    drop(nats);
    Ok(())
}

/// One demo node of `dev`, ready to run.
struct DevNode {
    cfg_summary: (String, String),
    clock: Clock,
    run: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>,
}

/// Prepares district `cfg` in process with its demo data, then (once it
/// listens) its demo fridges.
fn serve_one(
    cfg: Config,
    state_dir: &Path,
    dev_clock: bool,
    fridges: bool,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<DevNode> {
    let addr_file = state_dir.join(format!("{}.addr", cfg.district_id));
    let _ = std::fs::remove_file(&addr_file);
    let clock = if dev_clock {
        std::fs::create_dir_all(&cfg.data_dir)?;
        Clock::adjustable_saved(cfg.data_dir.join(crate::DEV_CLOCK_FILE))
    } else {
        Clock::system()
    };
    let node_url = format!("http://{}", cfg.http_addr);
    let summary = (cfg.district_id.to_string(), node_url.clone());
    let (sim_dir, sim_cfg) = (state_dir.to_path_buf(), cfg.clone());
    let serve = region_node::serve(
        cfg,
        region_node::ServeOptions {
            clock: clock.clone(),
            demo: true,
            port_file: Some(addr_file.clone()),
        },
        stop,
    );
    let run = async move {
        let fridges_once_up = async {
            while !addr_file.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            fridges
                .then(|| start_fridges(&sim_dir, &sim_cfg, &node_url))
                .flatten()
        };
        let (served, sims) = tokio::join!(serve, fridges_once_up);
        drop(sims);
        served.map_err(anyhow::Error::from)
    };
    Ok(DevNode {
        cfg_summary: summary,
        clock,
        run: Box::pin(run),
    })
}

/// Starts `nats-server` with `conf` (or `-js` without one) on free ports;
/// its guard and ports file.
fn spawn_nats(
    conf: Option<&Path>,
    store: Option<&Path>,
    ports_dir: &Path,
) -> anyhow::Result<(Guard, serde_json::Value)> {
    let nats_bin = nats_server_binary()?;
    let _ = std::fs::remove_dir_all(ports_dir);
    std::fs::create_dir_all(ports_dir)?;
    let mut nats = Command::new(&nats_bin);
    match conf {
        Some(c) => nats.arg("-c").arg(c),
        None => nats.arg("-js"),
    };
    if let Some(store) = store {
        nats.arg("-sd").arg(store);
    }
    let nats = nats
        .args(["-a", "127.0.0.1", "-p", "-1"])
        .arg("--ports_file_dir")
        .arg(ports_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {nats_bin}"))?;
    let mut nats = Guard(nats, "nats-server");
    let ports_file = ports_dir.join(format!("nats-server_{}.ports", nats.0.id()));
    let ports = serde_json::from_str(&wait_for_file(&ports_file, &mut nats.0, "nats-server")?)?;
    Ok((nats, ports))
}

fn client_url(ports: &serde_json::Value) -> anyhow::Result<String> {
    Ok(ports["nats"][0]
        .as_str()
        .context("no client URL in the ports file")?
        .to_string())
}

/// NATS with JetStream on a free port; its client URL.
fn start_nats(state_dir: &Path) -> anyhow::Result<(Guard, String)> {
    let conf = Path::new("deploy/nats/single.conf");
    let conf = conf.exists().then_some(conf);
    let store = state_dir.join("nats");
    let (guard, ports) = spawn_nats(conf, Some(&store), &state_dir.join("nats-ports"))?;
    Ok((guard, client_url(&ports)?))
}

/// Server `i`'s config: JetStream (`sync_interval: always`) in `store`,
/// routes listening on `listen` (a port or `-1`), routed to the seed.
fn cluster_conf(i: usize, store: &Path, listen: &str, seed_route: u16) -> String {
    let store = store.display();
    let route = format!("nats-route://127.0.0.1:{seed_route}");
    [
        format!("server_name: larder-dev-{i}"),
        format!("jetstream {{ store_dir: \"{store}\", sync_interval: always }}"),
        format!(
            "cluster {{ name: larder-dev, listen: \"127.0.0.1:{listen}\", routes: [\"{route}\"] }}"
        ),
    ]
    .join("\n")
        + "\n"
}

/// Three NATS servers with JetStream (`sync_interval: always`) in one
/// cluster on free ports: a seed (its route port picked here, since a
/// JetStream cluster needs a configured route) and two routed to it.
/// Their client URLs, comma-separated.
fn start_nats_cluster(state_dir: &Path) -> anyhow::Result<(Vec<Guard>, String)> {
    let seed_route = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut guards = vec![];
    let mut urls = vec![];
    for i in 0..3 {
        let dir = state_dir.join(format!("nats-{i}"));
        std::fs::create_dir_all(&dir)?;
        let listen = if i == 0 {
            seed_route.to_string()
        } else {
            "-1".into()
        };
        let conf = dir.join("nats.conf");
        std::fs::write(&conf, cluster_conf(i, &dir.join("js"), &listen, seed_route))?;
        let (guard, ports) = spawn_nats(Some(&conf), None, &dir.join("ports"))?;
        urls.push(client_url(&ports)?);
        guards.push(guard);
    }
    Ok((guards, urls.join(",")))
}

/// The payments service, next to this binary; its HTTP address.
fn start_payments(
    state_dir: &Path,
    nats_url: &str,
    replicas: usize,
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
        .args(["--nats-replicas", &replicas.to_string()])
        .arg("--public-key")
        .arg(public_key)
        .stdout(Stdio::null())
        .spawn()
        .context("starting payments")?;
    let mut payments = Guard(payments, "payments");
    let pay_addr = wait_for_file(&pay_addr_file, &mut payments.0, "payments")?;
    Ok((payments, pay_addr.trim().to_string()))
}

/// The demo kitchen whose token the banner prints for the kitchen view.
const DEMO_KITCHEN: &str = "k-midtown-greens";

/// What the person at the terminal needs: URLs, tokens, a first order.
fn banner(
    nodes: &[DevNode],
    state_dir: &Path,
    nats_url: &str,
    pay_addr: &str,
    pem: &str,
) -> anyhow::Result<String> {
    let first = nodes.first().context("no district")?;
    let (district, http) = &first.cfg_summary;
    let http = http.trim_start_matches("http://");
    let clock = &first.clock;
    let mut others = String::new();
    for n in &nodes[1..] {
        others.push_str(&format!(
            "\n  region node  {}   (district {}; catalog: /v1/catalog?lat=42.3413&lon=-83.1666&radius_m=3000)",
            n.cfg_summary.1, n.cfg_summary.0
        ));
    }
    Ok(format!(
        "\nLarder is running ({count} district{s}).\n\
         \n  region node  http://{http}   (district {district}; catalog: /v1/catalog?lat=42.3316&lon=-83.0466&radius_m=1500){others}\
         \n  websocket    ws://{http}/v1/ws   (send {{\"type\":\"subscribe\",\"fridges\":[\"f-campus-martius\"]}})\
         \n  locate       http://{http}/v1/locate?lat=42.3413&lon=-83.1666   (which node serves a point)\
         \n  payments     http://{pay}   (ledger: /v1/ledger)\
         \n  nats         {nats_url}\
         \n  data         {dir}\
         \n\nTokens (valid {hours} h, on every node):\
         \n  export CUSTOMER={customer}\
         \n  export POS={pos}\
         \n  export ADMIN={admin}\
         \n\nWeb apps (the token rides in the URL fragment, never sent to a server):\
         \n  customer     http://{http}/#token={customer}\
         \n  operations   http://{http}/ops#token={admin}\
         \n  kitchen      http://{http}/kitchen#token={kitchen}   (kitchen {DEMO_KITCHEN})\
         \n\nTry:\
         \n  curl -s -X POST http://{http}/v1/orders -H \"Authorization: Bearer $CUSTOMER\" -H 'content-type: application/json' \\\
         \n       -H 'Idempotency-Key: demo-1' -d '{{\"fridge_id\":\"f-campus-martius\",\"items\":[{{\"meal_id\":\"m-greek-salad\",\"qty\":1}}],\"payment_method\":\"tok_visa\"}}'\
         \n  curl -s http://{http}/v1/orders -H \"Authorization: Bearer $CUSTOMER\"\
         \n\nCtrl-C stops everything.\n",
        count = nodes.len(),
        s = if nodes.len() == 1 { "" } else { "s" },
        pay = pay_addr,
        dir = state_dir.display(),
        hours = DEMO_TOKEN_TTL_SECS / 3600,
        customer = token(pem, clock, Role::Customer, "demo-customer")?,
        pos = token(pem, clock, Role::Pos, "demo-pos")?,
        admin = token(pem, clock, Role::Admin, "demo-admin")?,
        kitchen = demo_token(pem, clock, Role::Kitchen, "demo-kitchen", Some(DEMO_KITCHEN))?,
    ))
}
