//! Fleet fixtures: a 3-node NATS JetStream cluster on free ports, district
//! configs for more than one node, and a node run expected to fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{bin, dev_config, eventually, try_spawn_nats_with, ChildGuard, START_DEADLINE};

/// The demo districts' prefixes: downtown (the dev config's) and west.
pub const DOWNTOWN_PREFIXES: [&str; 3] = ["dpsbv", "dpsby", "dpscj"];
pub const WEST_PREFIXES: [&str; 2] = ["dpsbg", "dpsbu"];
/// Well past a few heartbeats (1 s) and the TTL (3 s) of the test configs.
pub const DIRECTORY_DEADLINE: Duration = Duration::from_secs(15);
/// Starts of the seed server before giving up on free route ports.
const SEED_ATTEMPTS: usize = 5;

/// West Detroit (`dpsbg`, `dpsbu`): the second demo district's area.
pub const WEST: (f64, f64) = (42.3413, -83.1666);
/// A point no district serves (the Gulf of Guinea).
pub const NOWHERE: (f64, f64) = (0.08, 0.17);

/// Three nats-servers with JetStream, clustered over routes. The seed's
/// route port is taken free beforehand (a JetStream cluster needs a
/// configured route); every other port is the server's own pick (`-1`),
/// read back from its ports file.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    servers: Vec<Server>,
}

struct Server {
    client_port: u16,
    cluster_port: u16,
    monitoring: String,
    child: ChildGuard,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl NatsCluster {
    /// Starts a seed server, then two that route to it (gossip completes
    /// the mesh), and waits until JetStream has a meta leader.
    pub async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = NatsCluster {
            dir,
            servers: vec![],
        };
        for i in 0..3 {
            let server = cluster.spawn(i, None).await;
            cluster.servers.push(server);
        }
        cluster.await_leader().await;
        cluster
    }

    /// Starts server `i` (on `client_port` if given), routing to every
    /// other live server. The seed's route port is picked free beforehand,
    /// so another process may take it before the server binds it: then the
    /// seed starts again on another (at most [`SEED_ATTEMPTS`] times).
    async fn spawn(&self, i: usize, client_port: Option<u16>) -> Server {
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, s)| *j != i && s.child.child.is_some())
            .map(|(_, s)| format!("nats-route://127.0.0.1:{}", s.cluster_port))
            .collect();
        if !routes.is_empty() {
            let started = self.try_spawn(i, client_port, "-1", &routes).await;
            return started.unwrap_or_else(|log| panic!("nats-server n{i} exited: {log}"));
        }
        let mut last = String::new();
        for _ in 0..SEED_ATTEMPTS {
            let port = free_port();
            // The seed routes to itself (ignored by the server, but required).
            let own = [format!("nats-route://127.0.0.1:{port}")];
            match self
                .try_spawn(i, client_port, &port.to_string(), &own)
                .await
            {
                Ok(server) => return server,
                Err(log) if log.contains("address already in use") => last = log,
                Err(log) => panic!("nats-server n{i} exited: {log}"),
            }
        }
        panic!("nats-server n{i}: every route port was taken; last log: {last}")
    }

    /// One start of server `i` with its cluster listening on `listen` (a
    /// port, or `-1` for its own pick); `Err` with its log if it exits.
    async fn try_spawn(
        &self,
        i: usize,
        client_port: Option<u16>,
        listen: &str,
        routes: &[String],
    ) -> Result<Server, String> {
        let conf = self.dir.path().join(format!("n{i}.conf"));
        let store = self.dir.path().join(format!("js{i}"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{i}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 cluster {{ name: larder-test, listen: \"127.0.0.1:{listen}\", routes: [{}] }}\n",
                store.display(),
                routes.join(", ")
            ),
        )
        .expect("write nats conf");
        let ports_dir = self.dir.path().join(format!("ports{i}"));
        let (child, client_port, monitoring, ports) =
            try_spawn_nats_with(&conf, None, &ports_dir, client_port).await?;
        let cluster_port = ports["cluster"][0]
            .as_str()
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("cluster port in the ports file");
        Ok(Server {
            client_port,
            cluster_port,
            monitoring,
            child,
        })
    }

    /// Every server's client URL, comma-separated (as `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.servers[i].child.kill();
    }

    /// Kills every server.
    pub fn kill_all(&mut self) {
        for s in &mut self.servers {
            s.child.kill();
        }
    }

    /// Starts server `i` again on its client port with its store.
    pub async fn restart(&mut self, i: usize) {
        self.servers[i].child.kill();
        let port = self.servers[i].client_port;
        let server = self.spawn(i, Some(port)).await;
        self.servers[i] = server;
        self.await_leader().await;
    }

    /// Until some live server reports a JetStream meta leader with every
    /// live server a current peer of the meta group.
    async fn await_leader(&self) {
        let http = reqwest::Client::new();
        let urls: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.child.child.is_some())
            .map(|s| format!("{}/jsz", s.monitoring))
            .collect();
        let live = urls.len();
        eventually("a JetStream meta leader", START_DEADLINE, || {
            let (http, urls) = (http.clone(), urls.clone());
            async move {
                for url in urls {
                    let Ok(r) = http.get(&url).send().await else {
                        continue;
                    };
                    let Ok(jsz) = r.json::<Value>().await else {
                        continue;
                    };
                    // A leader, and every other live server a current peer:
                    // placing an R3 stream needs all three.
                    let meta = &jsz["meta_cluster"];
                    let peers = meta["replicas"].as_array().map_or(0, |r| {
                        r.iter()
                            .filter(|p| p["current"] == true && p["offline"] != true)
                            .count()
                    });
                    let led = meta["leader"].as_str().is_some_and(|l| !l.is_empty());
                    if led && peers + 1 >= live {
                        return true;
                    }
                }
                false
            }
        })
        .await;
    }
}

/// A config for district `id` serving `prefixes`: the dev config (keys,
/// policies) with its id, prefixes and static directory replaced, a short
/// directory heartbeat (1 s, TTL 3 s) and `replicas` copies of what the
/// node creates on NATS. Written into `dir`.
pub fn district_config(dir: &Path, id: &str, prefixes: &[&str]) -> PathBuf {
    let dev = std::fs::read_to_string(dev_config()).expect("dev config");
    let mut out = String::new();
    let mut skipping = false;
    for line in dev.lines() {
        let t = line.trim_start();
        if t.starts_with("[[directory]]") {
            skipping = true;
            continue;
        }
        if skipping && t.starts_with('[') {
            skipping = false;
        }
        if skipping {
            continue;
        }
        if t.starts_with("district_id =") {
            out.push_str(&format!("district_id = \"{id}\"\n"));
        } else if t.starts_with("geohash_prefixes =") {
            let list: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
            out.push_str(&format!("geohash_prefixes = [{}]\n", list.join(", ")));
        } else if t.starts_with("public_url =") {
            // The URL in the directory is the bound address.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n[fleet]\nheartbeat_secs = 1\nttl_secs = 3\njoin_timeout_secs = 5\n");
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, out).expect("write district config");
    path
}

/// Runs `region-node serve` with `config` until it exits (it must within
/// `START_DEADLINE`); its exit status and standard error.
pub async fn serve_until_exit(config: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let child = Command::new(bin("region-node"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data.path().join("node"))
        .args(["--http-addr", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn region-node");
    let mut guard = ChildGuard::new(child);
    // Read while it runs: a full pipe would stall the child.
    let pipe = guard.child.as_mut().and_then(|c| c.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let status = guard.wait_exit(START_DEADLINE).await;
    (status, reader.join().unwrap_or_default())
}

/// Polls `/readyz` until the node's directory copy holds `districts`.
pub async fn await_directory(node: &crate::Node, districts: &[&str], deadline: Duration) {
    let want: Vec<String> = districts.iter().map(|d| d.to_string()).collect();
    eventually("the directory to list every district", deadline, || {
        let (node, want) = (node, want.clone());
        async move {
            let ready = node.readyz().await;
            let mut have: Vec<String> = ready["directory"]["districts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            have.sort();
            let mut want = want;
            want.sort();
            have == want
        }
    })
    .await;
}

/// A node for district `id` serving `prefixes` on the cluster (its config
/// written into `configs`), creating R3 streams and buckets, with an
/// adjustable clock; with the demo data when `demo`.
pub async fn district_node(
    nats: &NatsCluster,
    configs: &tempfile::TempDir,
    id: &str,
    prefixes: &[&str],
    demo: bool,
) -> crate::Node {
    let config = district_config(configs.path(), id, prefixes);
    let urls = nats.urls();
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec![
        "--config",
        config,
        "--nats-url",
        &urls,
        "--nats-replicas",
        "3",
    ];
    // A dev clock everywhere: tests move a node past a grace window.
    args.push("--dev-clock");
    if demo {
        args.push("--demo");
    }
    crate::Node::start(&args).await
}

/// Two districts on one 3-node cluster, each already listing both in its
/// directory copy: downtown (with the demo data) and west (empty), both
/// with adjustable clocks.
pub struct TwoDistricts {
    pub nats: NatsCluster,
    pub configs: tempfile::TempDir,
    pub downtown: crate::Node,
    pub west: crate::Node,
}

impl TwoDistricts {
    pub async fn start() -> TwoDistricts {
        let nats = NatsCluster::start().await;
        let configs = tempfile::tempdir().expect("tempdir");
        let downtown = district_node(
            &nats,
            &configs,
            "detroit-downtown",
            &DOWNTOWN_PREFIXES,
            true,
        )
        .await;
        let west = district_node(&nats, &configs, "detroit-west", &WEST_PREFIXES, false).await;
        let both = ["detroit-downtown", "detroit-west"];
        await_directory(&downtown, &both, DIRECTORY_DEADLINE).await;
        await_directory(&west, &both, DIRECTORY_DEADLINE).await;
        TwoDistricts {
            nats,
            configs,
            downtown,
            west,
        }
    }
}

/// A fridge `f-west` at [`WEST`] with 5 `m-coney` (695), registered on a
/// west node started without demo data.
pub async fn stock_west_fridge(west: &crate::Node) {
    let admin = west.admin();
    let r = admin
        .put_meal("m-coney", crate::meal_spec("Coney", 695))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let (lat, lon) = WEST;
    let r = admin
        .put_fridge("f-west", crate::fridge_spec("West", lat, lon))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let r = admin.set_stock("f-west", &[("m-coney", 5)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
