//! The README's run command: `region-node dev --districts 2` brings up a
//! 3-node NATS cluster, payments and two demo districts that find each
//! other, and Ctrl-C stops it all.

use std::process::{Command, Stdio};
use std::time::Duration;

use larder_tests::fleet::WEST;
use larder_tests::*;
use serde_json::Value;

const UP_DEADLINE: Duration = Duration::from_secs(60);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test]
async fn dev_runs_two_districts_that_route_to_each_other_and_stops_on_ctrl_c() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin("region-node"));
    // Its NATS servers and payments die with it if the test fails.
    let child = leads_a_group(&mut cmd)
        .current_dir(workspace_root())
        .args(["dev", "--districts", "2", "--no-fridges", "--dev-clock"])
        .args(["--http-addr", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .env("LARDER_LOG", "error")
        .spawn()
        .expect("spawn region-node dev");
    let mut dev = ChildGuard::group(child);
    let http = reqwest::Client::new();
    let mut bases = vec![];
    for district in ["detroit-downtown", "detroit-west"] {
        let file = state.path().join(format!("{district}.addr"));
        let mut addr = String::new();
        eventually(&format!("{district} to listen"), UP_DEADLINE, || {
            addr = std::fs::read_to_string(&file).unwrap_or_default();
            std::future::ready(!addr.trim().is_empty())
        })
        .await;
        bases.push(format!("http://{}", addr.trim()));
    }
    for base in &bases {
        eventually("both districts in the directory", UP_DEADLINE, || {
            let (http, url) = (http.clone(), format!("{base}/readyz"));
            async move {
                let ready = get(&http, &url).await.unwrap_or_default();
                ready["directory"]["districts"].as_array().map(Vec::len) == Some(2)
            }
        })
        .await;
    }
    // Downtown sends a west point on to the west node, which has its own
    // demo fridges.
    let (lat, lon) = WEST;
    let located = get(
        &http,
        &format!("{}/v1/locate?lat={lat}&lon={lon}", bases[0]),
    )
    .await;
    assert_eq!(
        located.as_ref().map(|l| (&l["district_id"], &l["url"])),
        Some((
            &Value::from("detroit-west"),
            &Value::from(bases[1].as_str())
        ))
    );
    let catalog = get(
        &http,
        &format!("{}/v1/catalog?lat={lat}&lon={lon}&radius_m=3000", bases[1]),
    )
    .await
    .unwrap_or_default();
    assert!(
        catalog["fridges"].as_array().is_some_and(|f| !f.is_empty()),
        "west has demo fridges: {catalog}"
    );
    // Ctrl-C: everything stops, the command exits 0.
    let pid = dev.child.as_ref().map(|c| c.id()).expect("pid");
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()));
    assert!(dev.wait_exit(Duration::from_secs(20)).await.success());
    for base in &bases {
        assert!(
            http.get(format!("{base}/healthz")).send().await.is_err(),
            "{base} still answers"
        );
    }
}
