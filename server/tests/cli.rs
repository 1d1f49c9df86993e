//! The `firefly` binary as a user runs it: `up`, `call`, `new`, `build`, as real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{stop, workspace};

/// A running `firefly up`, killed on drop.
struct Up {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn topology(dir: &Path) -> PathBuf {
    let modules = workspace().join("modules");
    let text = format!(
        "version: 1\ncluster: clitest\nmodules:\n  echo:\n    crate: {m}/echo\n  lobby:\n    crate: {m}/lobby\nnodes:\n  game:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [echo, lobby]\n",
        m = modules.display()
    );
    let path = dir.join("topology.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `firefly up -c <topology>` and waits for its listener address in the log.
fn up(topology: &Path) -> Up {
    let (tx, rx) = mpsc::channel();
    let mut up = Up {
        child: common::firefly()
            .args(["up", "-c"])
            .arg(topology)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        addr: String::new(),
        lines: rx,
    };
    let stderr = up.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[firefly up] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = up
            .lines
            .recv_timeout(left)
            .expect("firefly up never listened");
        if let Some(rest) = line.split("listening on tcp://").nth(1) {
            up.addr = rest.split_whitespace().next().unwrap().to_owned();
            return up;
        }
    }
}

fn call(addr: &str, args: &[&str]) -> (bool, String) {
    let out = common::firefly()
        .arg("call")
        .arg(addr)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn up_then_call_prints_replies_and_error_frames_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = up(&topology(dir.path()));

    let (ok, out) = call(&node.addr, &["1", r#""asdfe""#]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), r#""asdfe""#);

    let (ok, out) = call(&node.addr, &["103", r#"{"a": 40, "b": 2}"#]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sum"], 42);

    let (ok, out) = call(&node.addr, &["1", "raw bytes", "--raw"]);
    assert!(ok);
    assert_eq!(out.trim(), "raw bytes");

    let (ok, out) = call(&node.addr, &["4242"]);
    assert!(!ok, "an error frame must fail the command");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["code"], "unknown_command");
    assert_eq!(v["error"]["command"], 4242);

    let (ok, _) = call(&node.addr, &["1", "{not json"]);
    assert!(!ok);

    // SIGTERM: a graceful stop, exit status 0.
    let pid = node.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "firefly up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn up_refuses_an_invalid_topology_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(
        &path,
        "version: 1\ncluster: x\nmodules: {}\nnodes: {}\nbogus: 1\n",
    )
    .unwrap();
    let out = common::firefly()
        .args(["up", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn new_scaffolds_a_module_that_builds_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::firefly()
        .args(["new", "hello_mod", "--command", "1234", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.path().join("hello_mod");
    // A shared target dir so the SDK's dependencies compile once per machine, not per run.
    let out = common::firefly()
        .arg("build")
        .arg(&crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target").join("scaffold-test"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(wasm.exists(), "{}", wasm.display());

    let topo = dir.path().join("topology.yaml");
    std::fs::write(
        &topo,
        format!(
            "version: 1\ncluster: scaffold\nmodules:\n  hello_mod:\n    wasm: {}\nnodes:\n  game:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [hello_mod]\n",
            wasm.display()
        ),
    )
    .unwrap();
    let node = up(&topo);
    let (ok, out) = call(&node.addr, &["1234", r#"{"text": "hi"}"#]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["text"], "hi");
    assert!(v["session"].as_u64().unwrap() > 0);

    // Inside a module workspace, `new` adds the crate to its members.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"a\"]\n",
    )
    .unwrap();
    let out = common::firefly()
        .args(["new", "second", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"members = ["a", "second"]"#),
        "{manifest}"
    );

    // Names that are not valid crate/module names are refused.
    let out = common::firefly()
        .args(["new", "Bad-Name", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
