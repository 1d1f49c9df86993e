//! What the `firefly` binary's tests share: the binary, the workspace, stopping a cluster,
//! free ports. (These tests cannot use `firefly_testkit`, which depends on this crate.)
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test binary uses part of this; tests fail loudly on purpose"
)]

pub mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The `firefly` binary under test.
pub const FIREFLY: &str = env!("CARGO_BIN_EXE_firefly");

/// A `firefly` command whose modules compile into the cache the whole test suite shares
/// (`FIREFLY_CACHE_DIR`), so each module is compiled once per machine, not once per cluster.
pub fn firefly() -> Command {
    let mut command = Command::new(FIREFLY);
    command.env(
        "FIREFLY_CACHE_DIR",
        workspace().join("target").join("firefly-test-cache"),
    );
    command
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Stops a `firefly up` the way an operator would (SIGTERM: it stops its nodes), killing it
/// only if it has not exited after a while.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A free port on `ip`, drawn from 20000-31999, below the kernel's ephemeral range, so parallel
/// tests binding port 0 can never be handed it (as `firefly_testkit::free_addr_on`).
pub fn free_addr_on(ip: &str) -> SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if let Ok(l) = std::net::TcpListener::bind((ip, port)) {
            return l.local_addr().unwrap();
        }
    }
}

/// [`free_addr_on`] 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    free_addr_on("127.0.0.1")
}

/// Starts `firefly up -c topology` with `envs` and waits until `ready` nodes have logged
/// "listening for nodes on" (their client listeners are bound by then). Its log lines are
/// echoed to the test's stderr, prefixed `[up]`.
pub fn up_and_wait(topology: &Path, envs: &[(&str, &str)], ready: usize) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = firefly()
        .args(["up", "-c"])
        .arg(topology)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[up] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = 0;
    while seen < ready {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap();
        if line.contains("listening for nodes on") {
            seen += 1;
        }
    }
    // Keep the reader thread's channel open so it keeps echoing.
    std::mem::forget(rx);
    child
}
