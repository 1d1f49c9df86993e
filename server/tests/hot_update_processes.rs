//! Hot update on a real cluster started by `firefly up`: `firefly deploy`, `rollback`,
//! `versions` and `status`; refusals; the registry surviving a restart; a node that was down
//! during a deploy; and clients under continuous load across 20 deploys and rollbacks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::master::http_request_with_body;

mod common;

use common::topology::AutoRollback;
use common::{Running, Topology, Up, free_addr, node, status, workspace};

const TOKEN: &str = "hot-admin-token-0123456789";
const SECRET: &str = "hot-test-secret-0123456789";

/// A cluster: a gate routing 301-302 round-robin to two logic nodes that host `echo` and
/// `versioned`. Dropping it stops every `firefly up` it started.
struct Cluster {
    ups: Vec<Running>,
    gate: SocketAddr,
    admin: SocketAddr,
    /// The node-to-node port of logic-2, which one test starts on its own.
    logic2_rpc: SocketAddr,
    topology: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes the topology (with the master's `auto_rollback` rule, if any); starts nothing.
    fn new(rollback: Option<AutoRollback>) -> Cluster {
        let both: &[&str] = &["echo", "versioned"];
        Self::with(rollback, both, both)
    }

    /// [`Cluster::new`] with the logic nodes' module lists given.
    fn with(rollback: Option<AutoRollback>, logic1: &[&str], logic2: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (admin, g, a, b, gate) = (
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
            free_addr(),
        );
        let mut topology = Topology::new("hot")
            .admin(admin)
            .rpc_timeout("2s")
            .module("echo")
            .module("versioned")
            .node("gate", |n| {
                n.rpc(g).tcp(gate).modules(&["echo"]).route_by(
                    "301-302",
                    &["logic-1", "logic-2"],
                    "round_robin",
                )
            })
            .node("logic-1", |n| n.rpc(a).modules(logic1))
            .node("logic-2", |n| n.rpc(b).modules(logic2));
        if let Some(rule) = rollback {
            topology = topology.auto_rollback(rule);
        }
        let topology = topology.write(dir.path());
        Cluster {
            ups: Vec::new(),
            gate,
            admin,
            logic2_rpc: b,
            topology,
            dir,
        }
    }

    /// `firefly up` with `extra` arguments and this file's token and secret.
    fn up_command(&self, extra: &[&str]) -> Up {
        Up::new(&self.topology)
            .args(extra)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
    }

    /// Starts `firefly up` with `extra` arguments and waits until the master reports its
    /// `nodes` nodes healthy.
    fn up(&mut self, extra: &[&str], nodes: usize) {
        let up = self.up_command(extra);
        self.ups
            .push(up.ready_on_status(self.admin, TOKEN, nodes).start());
    }

    /// Starts logic-2 alone, with no admin API, and waits until its node-to-node port serves.
    fn up_logic2_without_admin(&mut self) {
        let up = self.up_command(&["--only", "logic-2", "--no-admin"]);
        self.ups.push(up.ready_on_rpc(&[self.logic2_rpc]).start());
    }

    /// Stops every `firefly up` it started.
    fn stop(&mut self) {
        for up in &mut self.ups {
            up.stop();
        }
        self.ups.clear();
    }

    fn firefly(&self, args: &[&str]) -> Output {
        common::firefly()
            .args(args)
            .arg("-c")
            .arg(&self.topology)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    async fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let (code, text) = http_request_with_body(
            self.admin,
            method,
            path,
            TOKEN,
            body,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
        (code, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Each node's version of `versioned`, from `/status`.
    async fn versions(&self) -> Vec<(String, Option<u64>)> {
        let status = status(self.admin, TOKEN).await;
        let mut out = Vec::new();
        for n in status["nodes"].as_array().unwrap() {
            let name = n["name"].as_str().unwrap().to_owned();
            if name == "gate" {
                continue;
            }
            let version = n["live"]["modules"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["name"] == "versioned"))
                .and_then(|m| m["version"].as_u64());
            out.push((name, version));
        }
        out
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn module_dir(name: &str) -> String {
    workspace().join("modules").join(name).display().to_string()
}

/// The wasm of module crate `name`, copied out of the build directory at once (the variants of
/// `versioned` are separate crates, so building one never overwrites another).
fn built(name: &str) -> Vec<u8> {
    let path = firefly::builder::build_module(&workspace().join("modules").join(name)).unwrap();
    std::fs::read(path).unwrap()
}

async fn whoami(client: &mut Client) -> String {
    let reply = client.request(301, b"hi").await.unwrap();
    String::from_utf8(reply.to_vec()).unwrap()
}

/// Waits until `cond` holds, polling, up to 60 s.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_refusals_and_restart_through_the_cli() {
    let mut cluster = Cluster::new(None);
    for (command, says) in [
        ("deploy", "--watch"),
        ("rollback", "--to <TO>"),
        ("versions", "<MODULE>"),
    ] {
        let out = common::firefly()
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && text(&out).contains(says),
            "{}",
            text(&out)
        );
    }
    cluster.up(&[], 3);
    let mut client = Client::connect(cluster.gate).await.unwrap();
    assert_eq!(whoami(&mut client).await, "v1:hi");

    // Deploy a crate: the CLI builds it, the master validates, stores and rolls it out.
    let out = cluster.firefly(&[
        "deploy",
        &module_dir("versioned-v2"),
        "--module",
        "versioned",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("versioned v2 (sha256 "), "{said}");
    assert!(said.contains("logic-1: ok (was v1)"), "{said}");
    assert!(said.contains("logic-2: ok (was v1)"), "{said}");
    // The same connection, both logic nodes (round robin): the new code, and its new command.
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "v2:hi");
        assert_eq!(&client.request(302, b"").await.unwrap()[..], b"new in v2");
    }
    let status = text(&cluster.firefly(&["status"]));
    assert!(status.contains("versioned@v2"), "{status}");
    assert!(!status.contains("versioned@v1"), "{status}");

    // Refusals: exact messages, nothing stored, v2 keeps serving.
    let junk = cluster.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a module").unwrap();
    let echo = firefly::builder::build_module(&workspace().join("modules/echo")).unwrap();
    let refusals = [
        (
            junk.display().to_string(),
            "refused: not a valid wasm module: ",
        ),
        (
            echo.display().to_string(),
            "refused: the module describes itself as `echo`, not `versioned` (deploy it under its own name)",
        ),
        (
            module_dir("versioned-clash"),
            "refused: command 1 is already handled by module `echo` on node `logic-1`",
        ),
    ];
    for (path, expected) in refusals {
        let out = cluster.firefly(&["deploy", &path, "--module", "versioned"]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains(expected), "expected {expected:?} in: {said}");
        assert_eq!(whoami(&mut client).await, "v2:hi");
    }
    let listed = text(&cluster.firefly(&["versions", "versioned"]));
    let rows: Vec<&str> = listed
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows[1].trim_end().ends_with('*'), "{listed}");
    assert!(!rows[0].trim_end().ends_with('*'), "{listed}");

    // Rollback to the previous version, then forward again with --to.
    let out = cluster.firefly(&["rollback", "versioned"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("versioned v1"), "{}", text(&out));
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "v1:hi");
    }
    let out = cluster.firefly(&["rollback", "versioned"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .contains("module `versioned` is at its first version (v1): nothing to roll back to"),
        "{}",
        text(&out)
    );
    let out = cluster.firefly(&["rollback", "versioned", "--to", "7"]);
    assert!(
        text(&out).contains("module `versioned` has no version 7 (versions: 1, 2)"),
        "{}",
        text(&out)
    );
    let out = cluster.firefly(&["rollback", "versioned", "--to", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(whoami(&mut client).await, "v2:hi");
    drop(client);

    // A restarted cluster serves the registry's active version, not the topology's crate.
    cluster.stop();
    cluster.up(&[], 3);
    let mut client = Client::connect(cluster.gate).await.unwrap();
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "v2:hi");
    }
    let registry = cluster.dir.path().join(".firefly/hot/registry/versioned");
    assert!(registry.join("v1.wasm").exists() && registry.join("v2.wasm").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_down_during_a_deploy_catch_up() {
    let mut cluster = Cluster::new(None);
    // logic-2 is not running at all when the deploy happens.
    cluster.up(&["--only", "gate,logic-1"], 2);
    let v2 = built("versioned-v2");
    let (code, answer) = cluster.api("POST", "/modules/versioned/deploy", &v2).await;
    assert_eq!(code, 200, "{answer}");
    let nodes = answer["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["node"], "logic-1");
    assert_eq!(nodes[0]["result"], "ok", "{answer}");
    assert_eq!(nodes[1]["node"], "logic-2");
    assert_eq!(nodes[1]["result"], "down", "{answer}");
    assert_eq!(nodes[1]["note"], "it serves v2 when it starts", "{answer}");

    // It comes back (started by another `firefly up` reading the same registry): v2.
    cluster.up_logic2_without_admin();
    let mut client = Client::connect(cluster.gate).await.unwrap();
    for _ in 0..4 {
        assert_eq!(whoami(&mut client).await, "v2:hi");
    }

    // A node killed after a deploy is restarted by the master on the deployed version.
    let (code, answer) = cluster
        .api("POST", "/modules/versioned/rollback", &[])
        .await;
    assert_eq!(code, 200, "{answer}");
    let pid = node(&status(cluster.admin, TOKEN).await, "logic-1")["pid"]
        .as_u64()
        .unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    eventually("logic-1 restarted", || async {
        let status = status(cluster.admin, TOKEN).await;
        status["nodes"].as_array().unwrap().iter().any(|n| {
            n["name"] == "logic-1"
                && n["ready"] == true
                && n["pid"].as_u64().is_some_and(|p| p != pid)
        })
    })
    .await;
    let versions = cluster.versions().await;
    assert!(versions.iter().all(|(_, v)| *v == Some(1)), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_under_continuous_load_across_20_deploys_and_rollbacks() {
    let mut cluster = Cluster::new(None);
    cluster.up(&[], 3);
    let v2 = built("versioned-v2");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served) = (stop.clone(), served.clone());
        let mut client = Client::connect(cluster.gate).await.unwrap();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = match client.request(301, b"x").await {
                    Ok(reply) => reply,
                    Err(err) => panic!("a request failed during the deploys: {err}"),
                };
                assert!(reply[..] == b"v1:x"[..] || reply[..] == b"v2:x"[..]);
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for round in 0..20u32 {
        let (code, answer) = if round % 2 == 0 {
            cluster.api("POST", "/modules/versioned/deploy", &v2).await
        } else {
            cluster
                .api("POST", "/modules/versioned/rollback?to=1", &[])
                .await
        };
        assert_eq!(code, 200, "round {round}: {answer}");
        for n in answer["nodes"].as_array().unwrap() {
            assert_eq!(n["result"], "ok", "round {round}: {answer}");
        }
        // Once the deploy has returned, every node answers with the new version.
        let expected = if round % 2 == 0 { "v2:hi" } else { "v1:hi" };
        let mut probe = Client::connect(cluster.gate).await.unwrap();
        for _ in 0..2 {
            assert_eq!(whoami(&mut probe).await, expected, "round {round}");
        }
        let version = answer["version"].as_u64();
        let versions = cluster.versions().await;
        assert!(
            versions.iter().all(|(_, v)| *v == version),
            "round {round}: {versions:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 0);
    // Ten deploys of v2 made versions 2..11; every rollback went back to 1.
    let (_, listed) = cluster.api("GET", "/modules/versioned/versions", &[]).await;
    assert_eq!(listed["versions"].as_array().unwrap().len(), 11, "{listed}");
    assert_eq!(listed["active"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_load_a_version_keeps_the_old_one_and_says_so() {
    // Only logic-2 also hosts `echo` (command 1), so `versioned-clash` loads on logic-1 only.
    let mut cluster = Cluster::with(None, &["versioned"], &["echo", "versioned"]);
    cluster.up(&["--only", "gate,logic-1"], 2);
    let (code, answer) = cluster
        .api(
            "POST",
            "/modules/versioned/deploy",
            &built("versioned-clash"),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["nodes"][0]["result"], "ok", "{answer}");
    assert_eq!(answer["nodes"][1]["result"], "down", "{answer}");

    // The whole cluster restarts, logic-2 with it: v2 does not load there, so it starts on v1
    // and the master records why.
    cluster.stop();
    cluster.up(&[], 3);
    let expected = "command 1 is already handled by module `echo` on this node";
    eventually("logic-2's failure is reported", || async {
        let status = status(cluster.admin, TOKEN).await;
        status["nodes"].as_array().unwrap().iter().any(|n| {
            n["name"] == "logic-2" && n["deploy_failures"]["versioned"]["error"] == expected
        })
    })
    .await;
    let versions = cluster.versions().await;
    assert_eq!(
        versions,
        vec![("logic-1".into(), Some(2)), ("logic-2".into(), Some(1))]
    );
    let table = text(&cluster.firefly(&["status"]));
    assert!(
        table.contains("versioned@v1 (v2 failed to load)"),
        "{table}"
    );
    assert!(
        table.contains(&format!("logic-2: versioned v2 failed to load: {expected}")),
        "{table}"
    );
    let mut client = Client::connect(cluster.gate).await.unwrap();
    for _ in 0..2 {
        client.request(301, b"hi").await.unwrap();
    }

    // A version every node can load clears the failure.
    let (code, answer) = cluster
        .api("POST", "/modules/versioned/deploy", &built("versioned-v2"))
        .await;
    assert_eq!(code, 200, "{answer}");
    for n in answer["nodes"].as_array().unwrap() {
        assert_eq!(n["result"], "ok", "{answer}");
    }
    let table = text(&cluster.firefly(&["status"]));
    assert!(!table.contains("failed"), "{table}");
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "v2:hi");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_traps_too_often_is_rolled_back_automatically() {
    let mut cluster = Cluster::new(Some(AutoRollback {
        window: "60s",
        min_calls: 6,
        max_failure_rate: "50%",
    }));
    cluster.up(&[], 3);
    let mut client = Client::connect(cluster.gate).await.unwrap();
    assert_eq!(whoami(&mut client).await, "v1:hi");
    let (code, answer) = cluster
        .api(
            "POST",
            "/modules/versioned/deploy",
            &built("versioned-trap"),
        )
        .await;
    assert_eq!(code, 200, "{answer}");

    // Every failure names the version that served it; then v1 is back on its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut traps = 0;
    loop {
        assert!(Instant::now() < deadline, "never rolled back");
        match client.request(301, b"hi").await {
            Ok(reply) if &reply[..] == b"v1:hi" && traps > 0 => break,
            Ok(reply) => assert_eq!(&reply[..], b"v1:hi"),
            Err(err) => {
                let frame = err.server().expect("the client stays connected");
                assert_eq!(frame.code, "trapped", "{frame:?}");
                assert_eq!(frame.module.as_deref(), Some("versioned"));
                assert_eq!(frame.version, Some(2), "{frame:?}");
                assert!(
                    frame.message.contains("this version is broken"),
                    "{frame:?}"
                );
                traps += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // One node serving v1 again does not mean the registry has recorded the rollback yet:
    // that happens once every node has answered the swap.
    eventually("the registry records the automatic rollback", || async {
        let (_, listed) = cluster.api("GET", "/modules/versioned/versions", &[]).await;
        listed["active"] == 1
    })
    .await;
    let (_, listed) = cluster.api("GET", "/modules/versioned/versions", &[]).await;
    assert_eq!(listed["active"], 1, "{listed}");
    assert_eq!(listed["rolled_back"][0]["version"], 2, "{listed}");
    assert_eq!(listed["rolled_back"][0]["to"], 1, "{listed}");
    let shown = text(&cluster.firefly(&["versions", "versioned"]));
    assert!(
        shown.contains("v2 was rolled back to v1 automatically"),
        "{shown}"
    );
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "v1:hi");
    }

    // A healthy version is left alone.
    let (code, answer) = cluster
        .api("POST", "/modules/versioned/deploy", &built("versioned-v2"))
        .await;
    assert_eq!(code, 200, "{answer}");
    for _ in 0..20 {
        assert_eq!(whoami(&mut client).await, "v2:hi");
    }
    let (_, listed) = cluster.api("GET", "/modules/versioned/versions", &[]).await;
    assert_eq!(listed["active"], 3, "{listed}");
}

/// A module crate outside the repository (a developer's own), serving as `versioned` and
/// answering `<tag>:<payload>`; it shares `modules/`'s lock file and target directory, so only
/// the crate itself is compiled.
fn write_watched_crate(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let sdk = workspace().join("guest-sdk");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"watched\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nfirefly-sdk = {{ path = \"{}\" }}\n\n[workspace]\n\n[profile.release]\nopt-level = 3\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = \"debuginfo\"\n",
            sdk.display()
        ),
    )
    .unwrap();
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(
            workspace().join("modules/Cargo.lock"),
            dir.join("Cargo.lock"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("src/lib.rs"),
        format!(
            "#[firefly_sdk::module(name = \"versioned\")]\nmod versioned {{\n    use firefly_sdk::prelude::*;\n\n    #[handler(301)]\n    fn whoami(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {{\n        let mut reply = b\"{tag}:\".to_vec();\n        reply.extend_from_slice(&payload.0);\n        Ok(Raw(reply))\n    }}\n}}\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_rebuilds_and_deploys_on_save() {
    let mut cluster = Cluster::new(None);
    cluster.up(&[], 3);
    let dir = cluster.dir.path().join("watched");
    write_watched_crate(&dir, "w1");
    let mut watcher = common::firefly()
        .args(["deploy", "--watch", "--module", "versioned", "-c"])
        .arg(&cluster.topology)
        .arg(&dir)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("CARGO_TARGET_DIR", workspace().join("modules/target"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[watch] {line}");
            let _ = tx.send(line);
        }
    });
    let deployed = |rx: &mpsc::Receiver<String>| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(240))
            .expect("the watcher never deployed");
        if line.contains("serving on every node") {
            return line;
        }
        assert!(!line.starts_with("not deployed"), "{line}");
    };
    // The first round deploys the sources as they are.
    let line = deployed(&rx);
    assert!(line.starts_with("v2 "), "{line}");
    let mut client = Client::connect(cluster.gate).await.unwrap();
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "w1:hi");
    }
    // A save: rebuilt, deployed, answering.
    write_watched_crate(&dir, "w2");
    let line = deployed(&rx);
    assert!(line.starts_with("v3 "), "{line}");
    for _ in 0..2 {
        assert_eq!(whoami(&mut client).await, "w2:hi");
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
}
