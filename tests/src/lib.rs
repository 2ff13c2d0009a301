//! Test harness for black-box tests of the whole system.
//!
//! Starts the real `region-node` binary (built by `cargo build --workspace
//! --bins`, which the README's test command runs first) on a free port with
//! its own sled directory, and gives tests short helpers so each test reads
//! as a story: `node.admin().put_meal(..)`, `node.catalog(..)`, `node.kill()`.
//! Every child process is owned by a guard that kills it on drop, so a failing
//! test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub mod browser;
pub mod chaos;
pub mod disk;
pub mod fleet;
pub mod payments_bus;
pub mod report;
pub mod strace;
pub mod ws;
pub use disk::SmallFs;
pub use strace::Strace;
use strace::{command, STRACE};
pub use ws::WsClient;

/// How long a node may take to start listening.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// Polling step while awaiting a condition.
pub const POLL_STEP: Duration = Duration::from_millis(20);

/// The node flags of the load benchmarks (`larder-load`,
/// `larder-promo-load`): a long payment timeout, so a payment backlog
/// built on purpose is paid late rather than refused, and rate limits off,
/// since every client there is a till hammering on purpose
/// (`larder-abuse` measures the limits).
pub const LOAD_NODE_FLAGS: [&str; 4] = [
    "--payment-timeout-secs",
    "600",
    "--writes-per-sec-per-caller",
    "0",
];

/// Positional argument `i` of a bench binary as a number, or `default`.
pub fn arg_or(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary in the same target profile as the running
/// executable (a test in `target/<profile>/deps/` or a bin in
/// `target/<profile>/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("target dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

pub fn dev_config() -> PathBuf {
    workspace_root().join("deploy/dev/region-detroit.toml")
}

/// Files in `dir` named `*.<extension>` (0 when `dir` does not exist).
pub fn count_files(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == extension))
                .count()
        })
        .unwrap_or(0)
}

/// The dev config with `extra` (TOML tables it lacks) appended, written
/// as `dir/name`: a node started with `--config` on it.
pub fn dev_config_with(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(dev_config()).expect("dev config");
    text.push('\n');
    text.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Makes the command's process lead a new process group, for
/// [`ChildGuard::group`].
pub fn leads_a_group(cmd: &mut Command) -> &mut Command {
    std::os::unix::process::CommandExt::process_group(cmd, 0)
}

/// Kills the child on drop, whatever happened in the test.
pub struct ChildGuard {
    pub child: Option<Child>,
    /// The child leads its own process group, and the whole group is killed:
    /// a service started under `strace` is strace's child, and killing
    /// strace alone would only detach it and leave it running.
    group: bool,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard {
            child: Some(child),
            group: false,
        }
    }

    /// A child spawned as the leader of its own process group (see
    /// [`leads_a_group`]): the whole group is killed, so what it started
    /// (`region-node dev`'s NATS servers and payments) goes with it.
    pub fn group(child: Child) -> Self {
        ChildGuard {
            child: Some(child),
            group: true,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                // SAFETY: kill(2) with a negative pid signals a process group;
                // it touches no memory of ours.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            }
            let _ = child.kill(); // SIGKILL on Unix: no graceful shutdown.
            let _ = child.wait();
        }
    }

    /// Awaits the child's own exit (a crash) up to `deadline`; the status.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("the child is running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "still running after {deadline:?}"
            );
            tokio::time::sleep(POLL_STEP).await;
        }
    }

    /// Sends SIGTERM and awaits the exit (up to `deadline`); the status.
    /// `kill(1)` sends the signal: one command, no signal-handling crate.
    pub async fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the child is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                return status;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running {deadline:?} after SIGTERM");
            }
            tokio::time::sleep(POLL_STEP).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops this process and the children it starts from writing core files
/// (tests that abort a service on purpose; a debug binary's core is large).
pub fn no_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit(2) reads the struct we pass and nothing else.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    assert_eq!(
        set,
        0,
        "setrlimit(RLIMIT_CORE): {}",
        std::io::Error::last_os_error()
    );
}

/// Awaits `cond` until `deadline`, polling; panics with `what` on timeout.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_STEP).await;
    }
}

/// A running region node with its own data directory.
pub struct Node {
    pub base: String,
    pub data: tempfile::TempDir,
    /// The node's `--data-dir` (its sled log): `data/node` unless started
    /// with [`Node::start_at`].
    pub node_dir: PathBuf,
    pub http: reqwest::Client,
    child: ChildGuard,
    extra_args: Vec<String>,
    /// How long a restart may take to listen (replay grows with the log).
    start_deadline: Duration,
}

impl Node {
    /// A fresh node with the demo district loaded.
    pub async fn start_demo() -> Node {
        Node::start(&["--demo"]).await
    }

    /// A fresh, empty node.
    pub async fn start_empty() -> Node {
        Node::start(&[]).await
    }

    /// A node with the demo district, payments over `nats`, POS orders paid
    /// at once, the clock adjustable, and `extra` flags.
    pub async fn start_with_nats(nats: &Nats, extra: &[&str]) -> Node {
        let mut args = vec!["--demo", "--dev-clock", "--nats-url", nats.url.as_str()];
        args.extend_from_slice(extra);
        Node::start(&args).await
    }

    pub async fn start(args: &[&str]) -> Node {
        Node::start_traced(args, None).await
    }

    /// A fresh node with `args`, run under `strace` when `trace` is given.
    pub async fn start_traced(args: &[&str], trace: Option<&Strace>) -> Node {
        let data = tempfile::tempdir().expect("tempdir");
        let node_dir = node_data_dir(data.path());
        Node::spawn(data, node_dir, args, trace).await
    }

    /// A node on a data directory prepared beforehand (`data/node`, e.g. by
    /// `region-node restore`), with `args`.
    pub async fn start_in(data: tempfile::TempDir, args: &[&str]) -> Node {
        let node_dir = node_data_dir(data.path());
        Node::spawn(data, node_dir, args, None).await
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.node_dir.clone()
    }

    /// A fresh node whose log lives in `node_dir` (e.g. on a [`SmallFs`]).
    pub async fn start_at(node_dir: PathBuf, args: &[&str]) -> Node {
        let data = tempfile::tempdir().expect("tempdir");
        Node::spawn(data, node_dir, args, None).await
    }

    async fn spawn(
        data: tempfile::TempDir,
        node_dir: PathBuf,
        args: &[&str],
        trace: Option<&Strace>,
    ) -> Node {
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let started = NodeStart {
            data_dir: data.path(),
            node_dir: &node_dir,
            extra: &extra_args,
            env: &[],
            trace,
            deadline: START_DEADLINE,
        };
        let (child, base) = spawn_node(started).await;
        Node {
            base,
            data,
            node_dir,
            http: reqwest::Client::new(),
            child,
            extra_args,
            start_deadline: START_DEADLINE,
        }
    }

    /// Lets later restarts take up to `deadline` to listen: a node that
    /// replays a long log (a chaos run's) needs more than `START_DEADLINE`.
    pub fn set_start_deadline(&mut self, deadline: Duration) {
        self.start_deadline = deadline;
    }

    /// The node's process id (for benchmarks reading its memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown hook runs, like a power cut.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, as an orchestrator stops a node: awaits its exit (panics
    /// after `deadline`) and returns the exit status. `restart` works after.
    pub async fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.child.terminate(deadline).await
    }

    /// Starts the node again on the same data directory (a new port).
    pub async fn restart(&mut self) {
        self.restart_with_env(&[]).await;
    }

    /// [`Node::restart`] with extra environment variables (`FAILPOINTS`).
    pub async fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill();
        let args: Vec<String> = self
            .extra_args
            .iter()
            .filter(|a| *a != "--demo")
            .cloned()
            .collect();
        let (child, base) = spawn_node(NodeStart {
            data_dir: self.data.path(),
            node_dir: &self.node_dir,
            extra: &args,
            env,
            trace: None,
            deadline: self.start_deadline,
        })
        .await;
        self.child = child;
        self.base = base;
    }

    /// Awaits the node's own exit (a crash at a failpoint); its status.
    pub async fn await_crash(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.child.wait_exit(deadline).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn as_role(&self, role: &str, sub: &str) -> Client {
        Client {
            node_base: self.base.clone(),
            http: self.http.clone(),
            token: Some(token(role, sub, &[])),
        }
    }

    /// A kitchen's staff: a kitchen token scoped to `kitchen_id`.
    pub fn kitchen(&self, kitchen_id: &str) -> Client {
        Client {
            node_base: self.base.clone(),
            http: self.http.clone(),
            token: Some(token(
                "kitchen",
                &format!("staff-{kitchen_id}"),
                &["--kitchen-id", kitchen_id],
            )),
        }
    }

    /// The node's clock (`GET /v1/dev/clock`).
    pub async fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        let r = self.anonymous().get("/v1/dev/clock").await;
        serde_json::from_value(r.body["now"].clone()).expect("clock now")
    }

    pub fn admin(&self) -> Client {
        self.as_role("admin", "ops-1")
    }

    pub fn anonymous(&self) -> Client {
        Client {
            node_base: self.base.clone(),
            http: self.http.clone(),
            token: None,
        }
    }

    /// Log position of the last durable event, from `/readyz`.
    pub async fn log_seq(&self) -> u64 {
        let body: Value = self
            .http
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["log_seq"].as_u64().expect("log_seq")
    }

    /// A counter or gauge from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = match self.http.get(self.url("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    }

    pub async fn readyz(&self) -> Value {
        self.anonymous().get("/readyz").await.body
    }

    /// Waits until no payment request waits for its result (`/readyz`
    /// `outbox_pending` is 0); `false` if `deadline` passes first. For the
    /// load tools, which report a backlog that does not drain instead of
    /// panicking.
    pub async fn await_outbox_drained(&self, deadline: Duration) -> bool {
        let started = Instant::now();
        while self.readyz().await["outbox_pending"].as_u64() != Some(0) {
            if started.elapsed() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Moves the node's clock forward (node started with `--dev-clock`).
    pub async fn advance_clock(&self, seconds: i64) {
        let r = self
            .admin()
            .send(
                reqwest::Method::POST,
                "/v1/dev/clock",
                Some(RawBody::Json(json!({"seconds": seconds}))),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Available units of a meal in a fridge, as the catalog shows them.
    pub async fn available(&self, fridge_id: &str, meal_id: &str) -> u64 {
        let r = self
            .anonymous()
            .get(&format!(
                "/v1/catalog?lat={}&lon={}&radius_m=20000",
                DOWNTOWN.0, DOWNTOWN.1
            ))
            .await;
        r.body["fridges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["fridge_id"] == fridge_id)
            .flat_map(|f| f["meals"].as_array().cloned().unwrap_or_default())
            .find(|m| m["meal_id"] == meal_id)
            .and_then(|m| m["available"].as_u64())
            .unwrap_or(0)
    }

    /// Awaits an order reaching `status` (as seen by an admin); returns it.
    pub async fn await_status(&self, order_id: &str, status: &str, deadline: Duration) -> Value {
        let admin = self.admin();
        let start = Instant::now();
        loop {
            let r = admin.get(&format!("/v1/orders/{order_id}")).await;
            if r.body["status"] == status {
                return r.body;
            }
            assert!(
                start.elapsed() < deadline,
                "order {order_id} never reached {status}; last: {}",
                r.body
            );
            tokio::time::sleep(POLL_STEP).await;
        }
    }

    /// Moves the node's clock forward to the next 10:00 district time, so a
    /// subscription story starts at the same time of day whenever it runs:
    /// its "earliest date" must not move mid-test at the 18:00 change
    /// cutoff, and a day's pickup window must still be open on the day it
    /// reaches (after 23:00 UTC the wall clock is past both).
    pub async fn start_the_day(&self) {
        use chrono::Timelike;
        let now = self.clock_now().await;
        let since_midnight_secs = i64::from(now.num_seconds_from_midnight());
        let to_morning_secs =
            (i64::from(MORNING_UTC_HOUR) * 3600 - since_midnight_secs).rem_euclid(24 * 3600);
        if to_morning_secs > 0 {
            self.advance_clock(to_morning_secs).await;
        }
    }

    /// Sets `units` of every demo meal in every fridge of the catalog (for
    /// load benchmarks); returns the fridge ids and the meal ids.
    pub async fn stock_every_meal(&self, units: u32) -> (Vec<String>, Vec<String>) {
        let catalog = self.catalog(42.3316, -83.0466, 20_000).await;
        let fridges: Vec<String> = catalog["fridges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["fridge_id"].as_str().map(str::to_string))
            .collect();
        let demo: Value =
            serde_json::from_str(&std::fs::read_to_string(demo_file()).expect("demo file"))
                .expect("demo JSON");
        let meals: Vec<String> = demo["meals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["meal_id"].as_str().map(str::to_string))
            .collect();
        let admin = self.admin();
        for f in &fridges {
            let counts: Vec<(&str, u32)> = meals.iter().map(|m| (m.as_str(), units)).collect();
            let r = admin.set_stock(f, &counts).await;
            assert_eq!(r.status, 200, "stocking {f}: {}", r.body);
        }
        (fridges, meals)
    }

    pub async fn catalog(&self, lat: f64, lon: f64, radius_m: u32) -> Value {
        let resp = self
            .anonymous()
            .get(&format!(
                "/v1/catalog?lat={lat}&lon={lon}&radius_m={radius_m}"
            ))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.body
    }
}

/// Starts a service quietly (logs at `LARDER_TEST_LOG`, default warn) under
/// a kill-on-drop guard, and waits for the address it writes to `port_file`.
async fn spawn_service(
    cmd: &mut Command,
    port_file: &Path,
    what: &str,
    deadline: Duration,
) -> (ChildGuard, String) {
    let _ = std::fs::remove_file(port_file);
    let traced = cmd.get_program() == STRACE;
    if traced {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
    let child = cmd
        .env(
            "LARDER_LOG",
            std::env::var("LARDER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut guard = ChildGuard::new(child);
    guard.group = traced;
    let addr = await_file(port_file, &mut guard, what, deadline).await;
    (guard, format!("http://{}", addr.trim()))
}

/// Where a node keeps its data inside a test's temporary directory.
pub fn node_data_dir(dir: &Path) -> PathBuf {
    dir.join("node")
}

/// Runs one of the workspace's binaries to completion (a CLI command, off
/// the async threads) and returns its output.
pub async fn run_bin(name: &str, args: Vec<String>) -> std::process::Output {
    let path = bin(name);
    tokio::task::spawn_blocking(move || Command::new(&path).args(&args).output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Places the order `body` as fast as it can until told to stop or the
/// node stops answering; collects the ids of the acknowledged (201) ones.
pub async fn order_loop(
    client: Client,
    body: Value,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let token = client.token.clone().unwrap_or_default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let sent = client
            .http
            .post(format!("{}/v1/orders", client.node_base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        // Refused connections and 503s are the node going away: not acked.
        let Ok(resp) = sent else { return };
        if resp.status().as_u16() != 201 {
            continue;
        }
        let Ok(order) = resp.json::<Value>().await else {
            continue;
        };
        if let Some(id) = order["order_id"].as_str() {
            acked.lock().expect("acked").push(id.to_string());
        }
    }
}

/// How to run one region-node process.
struct NodeStart<'a> {
    /// The test's directory (port file).
    data_dir: &'a Path,
    /// The node's `--data-dir`.
    node_dir: &'a Path,
    extra: &'a [String],
    env: &'a [(&'a str, &'a str)],
    trace: Option<&'a Strace>,
    /// How long the node may take to announce its port.
    deadline: Duration,
}

async fn spawn_node(start: NodeStart<'_>) -> (ChildGuard, String) {
    let port_file = start.data_dir.join("http.addr");
    let mut cmd = command(&bin("region-node"), start.trace);
    cmd.arg("serve");
    // A test's own config (another district) replaces the dev config.
    if !start.extra.iter().any(|a| a == "--config") {
        cmd.arg("--config").arg(dev_config());
    }
    cmd.arg("--data-dir")
        .arg(start.node_dir)
        .args(["--http-addr", "127.0.0.1:0"])
        .arg("--port-file")
        .arg(&port_file)
        .args(start.extra)
        .envs(start.env.iter().copied());
    spawn_service(&mut cmd, &port_file, "region-node", start.deadline).await
}

/// Lifetime of the tokens the harness mints. Nodes judge `exp` by their own
/// clock, and tests move a `--dev-clock` by days (plan weeks, shelf lives):
/// the CLI's longest lifetime keeps expiry out of every test not about it.
pub const TEST_TOKEN_TTL: &str = "30d";
/// The same lifetime in seconds, for tokens signed in process.
pub const TEST_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Mints a token with the real binary and the dev config's key.
pub fn token(role: &str, sub: &str, extra: &[&str]) -> String {
    let out = Command::new(bin("region-node"))
        .args(["token", "--role", role, "--sub", sub, "--config"])
        .arg(dev_config())
        .args(["--ttl", TEST_TOKEN_TTL])
        .args(extra)
        .output()
        .expect("run region-node token");
    assert!(
        out.status.success(),
        "token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A token with arbitrary claims signed by the dev key (for expired tokens
/// and other cases the CLI rightly refuses to mint).
pub fn token_with_claims(claims: &Value) -> String {
    sign_claims(dev_private_key(), claims)
}

/// The dev config's private key (read once per process).
fn dev_private_key() -> &'static str {
    static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let config: toml::Value =
            toml::from_str(&std::fs::read_to_string(dev_config()).unwrap()).unwrap();
        config["auth"]["private_key_pem"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

/// A token for `role` and `sub` signed in process, living as long as the
/// CLI's test tokens: for load tools that need thousands of callers (one
/// `region-node token` process each would take minutes).
pub fn quick_token(role: &str, sub: &str) -> String {
    let now = unix_now();
    token_with_claims(&json!({
        "sub": sub, "role": role, "iat": now, "exp": now + TEST_TOKEN_TTL_SECS
    }))
}

/// A token signed by a key no node trusts.
pub fn foreign_token(role: &str) -> String {
    let pem = std::fs::read_to_string(workspace_root().join("tests/fixtures/foreign-ed25519.pem"))
        .unwrap();
    sign_claims(
        &pem,
        &json!({"sub": "mallory", "role": role, "exp": unix_now() + 3600}),
    )
}

fn sign_claims(pem: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .unwrap()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Where `Node::start_the_day` puts the dev clock: 10:00 at the dev
/// config's UTC−5 (its change cutoff is 18:00, 23:00 UTC).
pub const MORNING_UTC_HOUR: u32 = 15;

/// An HTTP client acting as one caller.
#[derive(Clone)]
pub struct Client {
    pub node_base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

/// A response with its status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of a JSON error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Client {
    /// GETs `path` until `done` holds for a 200 answer, within `deadline`;
    /// returns that answer's body (what settles off the request path: the
    /// ledger, the indexes).
    pub async fn await_get(
        &self,
        path: &str,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let r = self.get(path).await;
            if r.status == 200 && done(&r.body) {
                return r.body;
            }
            assert!(
                start.elapsed() < deadline,
                "{path} never answered as awaited; last: {} {}",
                r.status,
                r.body
            );
            tokio::time::sleep(POLL_STEP).await;
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<RawBody>) -> Resp {
        self.try_send(method, path, body).await.expect("request")
    }

    /// [`Client::send`] that returns a transport error (a node that
    /// crashed mid-request) instead of panicking.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<RawBody>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.node_base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        match body {
            Some(RawBody::Json(v)) => req = req.json(&v),
            Some(RawBody::Text(t)) => req = req.header("content-type", "application/json").body(t),
            None => {}
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::PUT, path, Some(RawBody::Json(body)))
            .await
    }
    pub async fn put_raw(&self, path: &str, body: &str) -> Resp {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(RawBody::Text(body.to_string())),
        )
        .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some(RawBody::Json(body)))
            .await
    }

    /// `POST /v1/subscriptions` with a weekly plan body.
    pub async fn create_plan(&self, body: Value) -> Resp {
        self.post("/v1/subscriptions", body).await
    }

    /// `POST /v1/subscriptions` with an `Idempotency-Key`.
    pub async fn create_plan_with_key(&self, body: Value, key: &str) -> Resp {
        self.post_with_key("/v1/subscriptions", body, Some(key))
            .await
    }

    /// `GET /v1/subscriptions`: plans, credit, earliest change date.
    /// The earliest date a plan made now may start (from the node's cutoff).
    pub async fn earliest_change_date(&self) -> chrono::NaiveDate {
        let r = self.plans().await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_value(r.body["earliest_change_date"].clone()).expect("a date")
    }

    pub async fn plans(&self) -> Resp {
        self.get("/v1/subscriptions").await
    }

    pub async fn change_plan(&self, plan_id: &str, body: Value) -> Resp {
        self.patch(&format!("/v1/subscriptions/{plan_id}"), body)
            .await
    }

    /// `DELETE /v1/subscriptions/{id}`, optionally `?from=YYYY-MM-DD`.
    pub async fn cancel_plan(&self, plan_id: &str, from: Option<&str>) -> Resp {
        let q = from.map(|f| format!("?from={f}")).unwrap_or_default();
        self.delete(&format!("/v1/subscriptions/{plan_id}{q}"))
            .await
    }

    /// `PUT /v1/admin/calendar/{date}`.
    pub async fn set_day(&self, date: &str, working: bool, kitchen_id: Option<&str>) -> Resp {
        self.put(
            &format!("/v1/admin/calendar/{date}"),
            json!({"working": working, "kitchen_id": kitchen_id, "note": "test"}),
        )
        .await
    }

    /// `POST /v1/kitchens/{kitchen_id}/events`: `stage` for the day's orders.
    pub async fn kitchen_event(&self, kitchen_id: &str, stage: &str, date: &str) -> Resp {
        self.post(
            &format!("/v1/kitchens/{kitchen_id}/events"),
            json!({"stage": stage, "date": date}),
        )
        .await
    }

    /// `GET /v1/kitchens/{kitchen_id}/prep?date=` as JSON.
    pub async fn prep(&self, kitchen_id: &str, date: &str) -> Resp {
        self.get(&format!("/v1/kitchens/{kitchen_id}/prep?date={date}"))
            .await
    }

    /// The same report with `Accept: text/csv`: status and body text.
    pub async fn prep_csv(&self, kitchen_id: &str, date: &str) -> (u16, String, String) {
        let mut req = self
            .http
            .get(format!(
                "{}/v1/kitchens/{kitchen_id}/prep?date={date}",
                self.node_base
            ))
            .header("accept", "text/csv");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, ctype, resp.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(RawBody::Json(body)))
            .await
    }

    /// Confirms an order: `items` as (meal, qty), with an optional idempotency key.
    pub async fn order(
        &self,
        fridge_id: &str,
        items: &[(&str, u32)],
        payment_method: &str,
        key: Option<&str>,
    ) -> Resp {
        let items: Vec<Value> = items
            .iter()
            .map(|(m, q)| json!({"meal_id": m, "qty": q}))
            .collect();
        let body =
            json!({"fridge_id": fridge_id, "items": items, "payment_method": payment_method});
        self.order_body(body, key).await
    }

    pub async fn order_body(&self, body: Value, key: Option<&str>) -> Resp {
        self.post_with_key("/v1/orders", body, key).await
    }

    /// POSTs JSON with an optional `Idempotency-Key` header.
    pub async fn post_with_key(&self, path: &str, body: Value, key: Option<&str>) -> Resp {
        self.try_post_with_key(path, body, key)
            .await
            .expect("request")
    }

    /// [`Client::post_with_key`] that returns a transport error (a node
    /// that crashed mid-request) instead of panicking.
    pub async fn try_post_with_key(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.node_base))
            .json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn cancel(&self, order_id: &str) -> Resp {
        self.post(&format!("/v1/orders/{order_id}/cancel"), Value::Null)
            .await
    }

    pub async fn pickup(&self, order_id: &str, code: &str) -> Resp {
        self.post(
            &format!("/v1/orders/{order_id}/pickup"),
            json!({ "pickup_code": code }),
        )
        .await
    }

    pub async fn put_meal(&self, meal_id: &str, spec: Value) -> Resp {
        self.put(&format!("/v1/admin/meals/{meal_id}"), spec).await
    }
    pub async fn put_fridge(&self, fridge_id: &str, spec: Value) -> Resp {
        self.put(&format!("/v1/admin/fridges/{fridge_id}"), spec)
            .await
    }
    pub async fn set_stock(&self, fridge_id: &str, counts: &[(&str, u32)]) -> Resp {
        let counts: Vec<Value> = counts
            .iter()
            .map(|(m, u)| json!({"meal_id": m, "units": u}))
            .collect();
        self.put(
            &format!("/v1/admin/fridges/{fridge_id}/stock"),
            json!({ "counts": counts }),
        )
        .await
    }
}

pub enum RawBody {
    Json(Value),
    Text(String),
}

/// A valid meal definition with the given price.
pub fn meal_spec(name: &str, price: i64) -> Value {
    json!({
        "name": name, "description": "test meal", "kitchen_id": "k-test", "price": price, "currency": "USD",
        "nutrition": {"kcal": 500, "protein_mg": 20000, "fat_mg": 15000, "carbs_mg": 60000, "sugar_mg": 5000, "salt_mg": 1200},
        "allergens": ["milk"], "ingredients": ["rice"], "tags": [], "shelf_life_hours": 48
    })
}

/// A valid fridge registration at a point inside the demo district.
pub fn fridge_spec(name: &str, lat: f64, lon: f64) -> Value {
    json!({"name": name, "address": "1 Test St", "lat": lat, "lon": lon, "vendor": "frostline-json"})
}

/// One page of `GET /v1/admin/log?after=&limit=` (admin), as
/// `(seq, record bytes)` from its `[u32 len][seq][u32 len][record]` frames.
pub async fn admin_log_page(node: &Node, after: u64, limit: usize) -> Vec<(u64, Vec<u8>)> {
    let page = node
        .http
        .get(node.url(&format!("/v1/admin/log?after={after}&limit={limit}")))
        .bearer_auth(admin_token())
        .send()
        .await
        .expect("log page");
    assert_eq!(page.status(), 200, "log page after {after}");
    let page = page.bytes().await.expect("log body");
    let len_at = |at: usize| u32::from_be_bytes(page[at..at + 4].try_into().unwrap()) as usize;
    let (mut out, mut at) = (vec![], 0);
    while at < page.len() {
        let key_len = len_at(at);
        let seq = u64::from_be_bytes(page[at + 4..at + 4 + key_len].try_into().unwrap());
        at += 4 + key_len;
        let value_len = len_at(at);
        out.push((seq, page[at + 4..at + 4 + value_len].to_vec()));
        at += 4 + value_len;
    }
    out
}

/// Campus Martius, downtown Detroit.
pub const DOWNTOWN: (f64, f64) = (42.3316, -83.0466);

/// Polls a file until it has content (a child's ready signal), for up to
/// `deadline`.
async fn await_file(path: &Path, child: &mut ChildGuard, what: &str, deadline: Duration) -> String {
    match try_await_file(path, child, what, deadline).await {
        Ok(s) => s,
        Err(status) => panic!("{what} exited during start-up: {status}"),
    }
}

/// [`await_file`], with the child's exit during start-up as `Err`.
async fn try_await_file(
    path: &Path,
    child: &mut ChildGuard,
    what: &str,
    deadline: Duration,
) -> Result<String, std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return Ok(s);
            }
        }
        if let Some(Ok(Some(status))) = child.child.as_mut().map(|c| c.try_wait()) {
            return Err(status);
        }
        assert!(
            start.elapsed() < deadline,
            "{what} did not start within {deadline:?}"
        );
        tokio::time::sleep(POLL_STEP).await;
    }
}

/// A real nats-server with JetStream (`sync_interval: always`) on a free port.
pub struct Nats {
    pub url: String,
    port: u16,
    /// The HTTP monitoring endpoint (a new free port after each restart).
    monitoring: String,
    dir: tempfile::TempDir,
    child: ChildGuard,
}

impl Nats {
    pub async fn start() -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, port, monitoring) = spawn_nats(dir.path(), None).await;
        Nats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            monitoring,
            dir,
            child,
        }
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Starts it again on the same port with the same JetStream store.
    pub async fn restart(&mut self) {
        self.child.kill();
        let (child, _, monitoring) = spawn_nats(self.dir.path(), Some(self.port)).await;
        self.child = child;
        self.monitoring = monitoring;
    }

    /// Messages every JetStream consumer still has to deliver or to see
    /// acknowledged (`num_pending + num_ack_pending`, from `/jsz`); `None`
    /// while the server does not answer. Zero means the bus is idle.
    pub async fn consumer_backlog(&self, http: &reqwest::Client) -> Option<u64> {
        let url = format!(
            "{}/jsz?accounts=true&streams=true&consumers=true",
            self.monitoring
        );
        let jsz: Value = http.get(url).send().await.ok()?.json().await.ok()?;
        let consumers = jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["consumer_detail"].as_array().cloned().unwrap_or_default());
        Some(
            consumers
                .map(|c| {
                    c["num_pending"].as_u64().unwrap_or(0)
                        + c["num_ack_pending"].as_u64().unwrap_or(0)
                })
                .sum(),
        )
    }
}

/// Starts nats-server; its guard, client port and monitoring URL.
async fn spawn_nats(dir: &Path, port: Option<u16>) -> (ChildGuard, u16, String) {
    let conf = workspace_root().join("deploy/nats/single.conf");
    let (guard, port, monitoring, _) =
        spawn_nats_with(&conf, Some(&dir.join("js")), &dir.join("ports"), port).await;
    (guard, port, monitoring)
}

/// Starts nats-server with `conf` (and `-sd store` if given) on 127.0.0.1,
/// on `port` or a free one; its guard, client port, monitoring URL and
/// ports file.
pub(crate) async fn spawn_nats_with(
    conf: &Path,
    store: Option<&Path>,
    ports_dir: &Path,
    port: Option<u16>,
) -> (ChildGuard, u16, String, Value) {
    match try_spawn_nats_with(conf, store, ports_dir, port).await {
        Ok(started) => started,
        Err(log) => panic!("nats-server exited during start-up; its log:\n{log}"),
    }
}

/// [`spawn_nats_with`], with a server that exits during start-up as `Err`
/// carrying its log (so a caller can tell a port taken meanwhile).
pub(crate) async fn try_spawn_nats_with(
    conf: &Path,
    store: Option<&Path>,
    ports_dir: &Path,
    port: Option<u16>,
) -> Result<(ChildGuard, u16, String, Value), String> {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let _ = std::fs::remove_dir_all(ports_dir);
    std::fs::create_dir_all(ports_dir).unwrap();
    let log_path = ports_dir.join("nats-server.log");
    let log = std::fs::File::create(&log_path).expect("nats-server log file");
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(conf)
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-m", "-1"]);
    if let Some(store) = store {
        cmd.arg("-sd").arg(store);
    }
    let child = cmd
        .arg("--ports_file_dir")
        .arg(ports_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin} ({e}); run scripts/ensure-nats or set NATS_SERVER")
        });
    let mut guard = ChildGuard::new(child);
    let pid = guard.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let ports_file = ports_dir.join(format!("nats-server_{pid}.ports"));
    let ports = try_await_file(&ports_file, &mut guard, "nats-server", START_DEADLINE)
        .await
        .map_err(|status| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("{status}\n{log}")
        })?;
    let ports: Value = serde_json::from_str(&ports).expect("ports file");
    let url = ports["nats"][0].as_str().expect("nats url");
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let monitoring = ports["monitoring"][0]
        .as_str()
        .expect("monitoring url")
        .to_string();
    Ok((guard, port, monitoring, ports))
}

/// The real payments service with the sandbox provider.
pub struct Payments {
    pub base: String,
    pub http: reqwest::Client,
    nats_url: String,
    dir: tempfile::TempDir,
    /// The service's `--data-dir` (its book): `dir/data` unless started
    /// with [`Payments::start_at`].
    data_dir: PathBuf,
    extra: Vec<String>,
    /// Environment of the next start (`FAILPOINTS`).
    env: Vec<(String, String)>,
    child: ChildGuard,
}

impl Payments {
    pub async fn start(nats: &Nats, extra: &[&str]) -> Payments {
        Payments::start_traced(nats, extra, None).await
    }

    /// The service with `extra` flags, run under `strace` when `trace` is given.
    pub async fn start_traced(nats: &Nats, extra: &[&str], trace: Option<&Strace>) -> Payments {
        Payments::start_with_env(nats, extra, &[], trace).await
    }

    /// The service with `extra` flags and environment variables (`FAILPOINTS`).
    pub async fn start_with_env(
        nats: &Nats,
        extra: &[&str],
        env: &[(&str, &str)],
        trace: Option<&Strace>,
    ) -> Payments {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Payments::spawn(&nats.url, dir, data_dir, extra, env, trace).await
    }

    /// The service on the NATS servers `urls` (comma-separated, e.g. a
    /// [`fleet::NatsCluster`]), with `extra` flags.
    pub async fn start_on(urls: &str, extra: &[&str]) -> Payments {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        Payments::spawn(urls, dir, data_dir, extra, vec![], None).await
    }

    /// The service with its book in `data_dir` (e.g. on a [`SmallFs`]).
    pub async fn start_at(nats: &Nats, data_dir: PathBuf) -> Payments {
        let dir = tempfile::tempdir().expect("tempdir");
        Payments::spawn(&nats.url, dir, data_dir, &[], vec![], None).await
    }

    async fn spawn(
        nats_url: &str,
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        extra: &[&str],
        env: Vec<(String, String)>,
        trace: Option<&Strace>,
    ) -> Payments {
        let mut payments = Payments {
            base: String::new(),
            http: reqwest::Client::new(),
            nats_url: nats_url.to_string(),
            dir,
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env,
            child: ChildGuard {
                child: None,
                group: false,
            },
        };
        payments.launch(trace).await;
        payments
    }

    /// Starts the process with the current flags and environment.
    async fn launch(&mut self, trace: Option<&Strace>) {
        let port_file = self.dir.path().join("http.addr");
        let mut cmd = command(&bin("payments"), trace);
        cmd.args(["--nats-url", &self.nats_url, "--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--public-key")
            .arg(dev_public_key(self.dir.path()))
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let (child, base) = spawn_service(&mut cmd, &port_file, "payments", START_DEADLINE).await;
        self.child = child;
        self.base = base;
    }

    /// Awaits the service's own exit (a crash at a failpoint); its status.
    pub async fn await_crash(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.child.wait_exit(deadline).await
    }

    /// Starts it again with the same data and flags, without the
    /// environment it was started with.
    pub async fn restart_plain(&mut self) {
        self.env.clear();
        self.restart(None).await;
    }

    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again with the same data and, optionally, other flags.
    pub async fn restart(&mut self, extra: Option<&[&str]>) {
        self.child.kill();
        if let Some(e) = extra {
            self.extra = e.iter().map(|s| s.to_string()).collect();
        }
        self.launch(None).await;
    }

    /// The service's data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// What the payments service saw and captured for an order.
    pub async fn ledger(&self, order_id: &str) -> Value {
        self.get_json(&format!("/v1/ledger/{order_id}")).await
    }

    /// Totals over every order.
    pub async fn totals(&self) -> Value {
        self.get_json("/v1/ledger").await
    }

    /// GET on the ledger API with `token` (None: no Authorization).
    pub async fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).bearer_auth(admin_token()).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

/// `region-node dev` as the README runs it: nats-server, payments and a
/// node with the demo district, all started by the one command. Its config
/// is the dev config with `http_addr` on a free port; it runs in the
/// workspace root (it finds `scripts/ensure-nats` and the NATS config
/// there) and leads its own process group, which is killed on drop, so a
/// failed test leaves none of its three services running.
pub struct Dev {
    pub base: String,
    /// Its `--state-dir` and config.
    pub dir: tempfile::TempDir,
    child: ChildGuard,
}

impl Dev {
    /// Starts `region-node dev --state-dir … extra`; returns once the node
    /// listens (after NATS and payments, which it starts first).
    pub async fn start(extra: &[&str]) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config: toml::Value =
            toml::from_str(&std::fs::read_to_string(dev_config()).expect("dev config"))
                .expect("toml");
        config["http_addr"] = toml::Value::String("127.0.0.1:0".into());
        let config_path = dir.path().join("region.toml");
        std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("config");
        let state_dir = dir.path().join("state");
        let mut cmd = Command::new(bin("region-node"));
        cmd.arg("dev")
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra)
            .current_dir(workspace_root())
            .env(
                "LARDER_LOG",
                std::env::var("LARDER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("spawn region-node dev");
        let mut child = ChildGuard {
            child: Some(child),
            group: true,
        };
        // NATS and payments come up first, each within START_DEADLINE.
        let deadline = 3 * START_DEADLINE;
        let addr = await_file(
            &state_dir.join("detroit-downtown.addr"),
            &mut child,
            "region-node dev",
            deadline,
        )
        .await;
        Dev {
            base: format!("http://{}", addr.trim()),
            dir,
            child,
        }
    }

    pub fn admin(&self) -> Client {
        Client {
            node_base: self.base.clone(),
            http: reqwest::Client::new(),
            token: Some(token("admin", "ops-1", &[])),
        }
    }

    /// SIGTERM, as Ctrl-C stops it: awaits its exit (panics after
    /// `deadline`). Its status, and whether any other process of its group
    /// (its NATS, its payments) outlived it; those are killed then.
    pub async fn terminate(&mut self, deadline: Duration) -> (std::process::ExitStatus, bool) {
        let pgid = self.child.child.as_ref().expect("running").id() as libc::pid_t;
        let status = self.child.terminate(deadline).await;
        // SAFETY: kill(2) on a process group; signal 0 only checks that it
        // still exists, and only then is it killed.
        let survived = unsafe { libc::kill(-pgid, 0) == 0 };
        if survived {
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        (status, survived)
    }
}

/// The dev config's public key as a PEM file in `dir`, for `payments --public-key`.
pub fn dev_public_key(dir: &Path) -> PathBuf {
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(dev_config()).expect("dev config")).expect("toml");
    let pem = config["auth"]["public_key_pem"]
        .as_str()
        .expect("public key");
    let path = dir.join("auth-public.pem");
    std::fs::write(&path, pem).expect("write public key");
    path
}

/// An admin token for the payments ledger (minted once per test process).
pub fn admin_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| token("admin", "ops", &[]))
}

/// Generous upper bound for a payment round trip in tests (CI machines are slow).
pub const PAYMENT_DEADLINE: Duration = Duration::from_secs(20);

// ---- Fridges (through the ACL) ----------------------------------------

/// The demo district file the node loads with `--demo`.
pub fn demo_file() -> PathBuf {
    workspace_root().join("deploy/demo/detroit.json")
}

/// A demo fridge as firmware would play it: its dialect and secret from
/// the demo district, its report counter at 0 (next report is 1).
pub fn demo_fridge(fridge_id: &str) -> fridge_sim::SimFridge {
    fridge_sim::Demo::load(&demo_file())
        .expect("demo district file")
        .fridge(fridge_id)
        .unwrap_or_else(|| panic!("{fridge_id} is not a demo fridge"))
        .fridge
        .clone()
}

impl Node {
    /// Uploads a signed telemetry batch the way the fridge does: raw body,
    /// HMAC headers, no bearer token.
    pub async fn telemetry(&self, batch: &fridge_sim::SignedBatch) -> Resp {
        let answer = fridge_sim::send(&self.http, &self.base, batch)
            .await
            .expect("telemetry request");
        Resp {
            status: answer.status,
            headers: reqwest::header::HeaderMap::new(),
            body: answer.body,
        }
    }
}
