//! What the `firefly` binary's tests share: the binary, the workspace, starting and stopping
//! `firefly up` ([`Up`]), the topology it runs ([`Topology`]), the master's status, free ports,
//! private networks of namespaces ([`netns`]). (These tests cannot use `firefly_testkit`, which
//! depends on this crate.)
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::panic,
    reason = "each test binary uses part of this; tests fail loudly on purpose"
)]

pub mod arena;
pub mod netns;
pub mod services;
pub mod topology;
pub mod up;

pub use topology::{Listener, Storage, Topology};
pub use up::{Running, Up};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `firefly` binary under test.
pub const FIREFLY: &str = env!("CARGO_BIN_EXE_firefly");

/// A `firefly` command whose modules compile into the cache the whole test suite shares
/// (`FIREFLY_CACHE_DIR`), so each module is compiled once per machine, not once per cluster.
pub fn firefly() -> Command {
    let mut command = Command::new(FIREFLY);
    command.env("FIREFLY_CACHE_DIR", cache_dir());
    command
}

/// The compiled-module cache the whole test suite shares.
pub fn cache_dir() -> PathBuf {
    workspace().join("target").join("firefly-test-cache")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A free port on `ip`, drawn from 20000-31999, below the kernel's ephemeral range, so parallel
/// tests binding port 0 can never be handed it (as `firefly_testkit::free_addr_on`).
pub fn free_addr_on(ip: &str) -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    // A port is free only until someone binds it: never hand the same one out twice in a
    // test (the admin API and a gate were once given one port, and `firefly up` refused).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind((ip, port)) {
            given.push(port);
            return l.local_addr().unwrap();
        }
    }
}

/// [`free_addr_on`] 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    free_addr_on("127.0.0.1")
}

/// The master's `GET /status` at `admin` (asserting it answers 200), as JSON.
pub async fn status(admin: SocketAddr, token: &str) -> serde_json::Value {
    let (code, body) = firefly::master::http_request(admin, "GET", "/status", token)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Node `name`'s entry in a [`status`] answer.
pub fn node<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node `{name}` in {status}"))
}

/// Whether process `pid` still exists (`kill -0`).
pub fn alive(pid: u64) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A node's `firefly_rpc_<what>_total` counter for `peer` (`calls`, `failures`), from its
/// `/metrics` at `metrics` (`token`: its bearer token, or "" on the loopback), 0 when the
/// series is not there yet.
pub async fn rpc_counter(metrics: SocketAddr, token: &str, what: &str, peer: &str) -> u64 {
    let (code, body) = firefly::master::http_request(metrics, "GET", "/metrics", token)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let series = format!("firefly_rpc_{what}_total{{");
    let label = format!("peer=\"{peer}\"}}");
    body.lines()
        .find(|l| l.starts_with(&series) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

/// `firefly deploy modules/<krate> --module <module> -c <topology>` with the admin `token`
/// (the master deploys it to every node hosting the module), asserting it succeeds.
pub fn deploy(krate: &str, module: &str, topology: &Path, token: &str) {
    let out = firefly()
        .arg("deploy")
        .arg(workspace().join("modules").join(krate))
        .args(["--module", module, "-c"])
        .arg(topology)
        .env("FIREFLY_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firefly deploy {krate}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
