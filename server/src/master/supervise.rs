//! One supervised node process: start it, prefix its output, restart it when it dies.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::config::MasterConfig;
use crate::cluster::auth::SECRET_ENV;

/// Restart delays grow from this...
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// ...up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A node that ran this long before dying restarts after the first delay again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// What the master knows about one node process.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How the last process ended, if one did.
    pub last_exit: Option<String>,
    /// Drained (`firefly drain`): stopped after handing its rooms over, not restarted.
    pub drained: bool,
}

/// (pid, started at, restarts, last exit) of one supervised node.
type ProcessState = (Option<u32>, Option<Instant>, u32, Option<String>);

/// One node the master keeps running, and what it knows of its current process.
pub(crate) struct Supervised {
    name: String,
    state: Mutex<ProcessState>,
    /// Set by a drain: the node stops gracefully (handing its rooms over) and stays down.
    drained: std::sync::atomic::AtomicBool,
    drain: tokio::sync::Notify,
}

impl Supervised {
    /// A node not started yet.
    pub fn new(name: String) -> Self {
        Self {
            name,
            state: Mutex::new((None, None, 0, None)),
            drained: Default::default(),
            drain: tokio::sync::Notify::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drains it: its process stops gracefully (a node hands its rooms to other nodes
    /// first) and is not restarted. Returns at once; [`Supervised::state`] shows the
    /// process gone once it is.
    pub fn drain(&self) {
        self.drained
            .store(true, std::sync::atomic::Ordering::Release);
        self.drain.notify_one();
    }

    /// A snapshot of the node's process state.
    pub fn state(&self) -> NodeState {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        NodeState {
            name: self.name.clone(),
            pid: s.0,
            uptime_secs: s.1.map(|t| t.elapsed().as_secs()),
            restarts: s.2,
            last_exit: s.3.clone(),
            drained: self.drained.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    fn set(&self, f: impl FnOnce(&mut ProcessState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// How to start one node.
pub(crate) struct NodeCommand {
    exe: std::path::PathBuf,
    node: String,
    topology: std::path::PathBuf,
    /// Each module's build from the topology (used only if the registry cannot say).
    modules: Vec<(String, std::path::PathBuf)>,
    /// Says which version of each module the node serves; read at every (re)start, so a node
    /// that was down during a deploy comes back on the deployed version.
    registry: Arc<crate::hot::Registry>,
    /// The node's own credential (never the cluster secret: see cluster/trust/authority.rs).
    credential: crate::cluster::authority::Credential,
}

impl NodeCommand {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "node".to_owned(),
            self.node.clone(),
            "-c".to_owned(),
            self.topology.display().to_string(),
        ];
        for (name, built) in &self.modules {
            let (version, path) = match self.registry.serving(name, &self.node) {
                Ok(Some(serving)) => serving,
                Ok(None) => (1, built.clone()),
                Err(err) => {
                    tracing::error!(node = %self.node, module = %name, "registry unreadable, starting the topology's build: {err:#}");
                    (1, built.clone())
                }
            };
            args.push("--wasm".into());
            args.push(format!("{name}={}", path.display()));
            args.push("--module-version".into());
            args.push(format!("{name}={version}"));
            if let Ok(Some((v, path))) = self.registry.fallback(name, &self.node) {
                args.push("--fallback".into());
                args.push(format!("{name}={v}:{}", path.display()));
            }
        }
        args
    }
}

/// How to start `node` of `config`, on the versions `registry` says at each start.
pub(crate) fn command(
    config: &MasterConfig,
    node: &str,
    registry: Arc<crate::hot::Registry>,
) -> NodeCommand {
    let mut modules: Vec<_> = config
        .wasm
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    modules.sort();
    NodeCommand {
        exe: config.exe.clone(),
        node: node.to_owned(),
        topology: config.topology_path.clone(),
        modules,
        registry,
        credential: crate::cluster::authority::Credential::issue(
            config.secret.as_bytes(),
            &config.topology.cluster,
            node,
        ),
    }
}

/// Starts one process of `node`, its output prefixed with the node's name.
fn spawn(node: &Supervised, cmd: &NodeCommand) -> std::io::Result<Child> {
    let mut command = Command::new(&cmd.exe);
    command
        .args(cmd.args())
        // A node gets its own credential only: not the cluster secret (which would let it
        // sign as the master) nor the admin token, even when this master was given them.
        .env_remove(SECRET_ENV)
        .env_remove(super::secrets::ADMIN_TOKEN_ENV)
        .envs(cmd.credential.to_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl` is async-signal-safe and touches only the child being set up. A node
    // whose master dies (even by SIGKILL) gets SIGTERM and stops gracefully, instead of living
    // on as an orphan that a restarted master would collide with.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    // Each node's output, line by line, prefixed with its name.
    if let Some(out) = child.stdout.take() {
        let name = node.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("[{name}] {line}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let name = node.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
    }
    Ok(child)
}

/// Sends `child` signal `sig`: SIGTERM asks it to stop gracefully, SIGUSR1 to drain (hand
/// its rooms to other nodes, then stop).
fn signal(child: &Child, sig: i32) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: sending a signal to a process id we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// How long a draining node may take to hand its rooms over and stop.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// Keeps `node` running until `stop`.
pub(crate) async fn run(
    node: Arc<Supervised>,
    cmd: NodeCommand,
    grace: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        if node.drained.load(std::sync::atomic::Ordering::Acquire) {
            // Drained: stays down until the cluster stops.
            let _ = stop.changed().await;
            return;
        }
        let mut child = match spawn(&node, &cmd) {
            Ok(child) => child,
            Err(err) => {
                tracing::error!(node = %node.name, "cannot start: {err}");
                node.set(|s| s.3 = Some(format!("could not start: {err}")));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let started = Instant::now();
        let pid = child.id();
        tracing::info!(node = %node.name, pid, "started");
        node.set(|s| {
            s.0 = pid;
            s.1 = Some(started);
        });
        tokio::select! {
            status = child.wait() => {
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                node.set(|s| {
                    s.0 = None;
                    s.1 = None;
                    s.2 += 1;
                    s.3 = Some(how.clone());
                });
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(node = %node.name, "exited ({how}); restarting in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = node.drain.notified() => {
                tracing::info!(node = %node.name, "draining: its rooms go to other nodes, then it stops");
                end(&node, &mut child, DRAIN_WAIT, libc::SIGUSR1).await;
                node.set(|s| s.3 = Some("drained".to_owned()));
            }
            _ = stop.changed() => {
                end(&node, &mut child, grace, libc::SIGTERM).await;
                return;
            }
        }
    }
}

/// Stops `child` with signal `sig` (SIGTERM: gracefully, SIGUSR1: draining), killing it
/// after `grace`.
async fn end(node: &Supervised, child: &mut Child, grace: Duration, sig: i32) {
    signal(child, sig);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            let how = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            tracing::info!(node = %node.name, "stopped ({how})");
        }
        Err(_) => {
            tracing::warn!(node = %node.name, "did not stop within {grace:?}; killing it");
            let _ = child.kill().await;
        }
    }
    node.set(|s| {
        s.0 = None;
        s.1 = None;
    });
}
