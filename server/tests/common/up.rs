//! The one way the process tests start `firefly up`: [`Up`] says what to run and how to know
//! it is ready; [`Up::start`] spawns it, echoes its log and waits; the [`Running`] it returns
//! stops it when dropped.
//!
//! Readiness is never read from the log. [`Up::start`] polls, with a deadline, one of:
//!
//! * [`Up::ready_on_status`]: the master's admin API. `GET /status` (bearer token) answers 200,
//!   lists exactly the nodes this `firefly up` supervises, and says `ready`: each node's
//!   process runs, answered the master's status request over the cluster link (it answers
//!   only once it has loaded its modules, opened its data store and bound all its listeners),
//!   and has linked, for each of its routes, to one of the route's targets. A gate's
//!   port is open before its links are up: requests sent then fail `node_unavailable`.
//! * [`Up::ready_when_linked`]: the same readiness, for a `firefly up --no-admin`, from the
//!   file `firefly up --ready-file` writes.
//! * [`Up::ready_on_rpc`]: for a `firefly up --no-admin` (no admin API on that host), each of
//!   these node-to-node ports sends the first message of the cluster handshake. A node binds
//!   that port after loading its modules and serves it at once, so this is the point the node
//!   is up. The probe never completes the handshake, so each node logs one "refused a
//!   node-to-node connection" warning for it.
//! * [`Up::ready_on_gate`]: for a node with neither (a lone node, no `rpc:`), each of these
//!   client listeners answers a request. Its port accepts connections from the moment it is
//!   bound, before the modules load, so a bare TCP connect would say nothing; the probe asks
//!   for a session ticket (the gate's reserved command, answered by the gate itself, with a
//!   ticket or `resume_disabled`).
//!
//! If `firefly up` exits before it is ready, or the deadline passes, the test fails with what
//! was seen last. Ports to poll come from the topology the test wrote, so tests that poll pick
//! them with [`super::free_addr`] rather than port 0.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use firefly::client::{Client, ClientError};
use firefly::master::http_request;

/// How long a `firefly up` may take to become ready. On a cold machine it first builds every
/// module crate and compiles it with a debug-built Cranelift: minutes.
const READY_WITHIN: Duration = Duration::from_secs(240);

/// How long [`Running::stop`] (and dropping) waits after SIGTERM before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Pause between two polls inside a deadline loop.
const POLL: Duration = Duration::from_millis(50);

/// A `firefly up -c <topology>` to start: arguments, environment, log tag and readiness.
#[must_use = "nothing runs until `start`"]
pub struct Up {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    tag: Option<String>,
    ready: Option<Ready>,
    /// The network namespace to run it in (`ip netns exec`), as on a machine of its own.
    netns: Option<String>,
}

/// What [`Up::start`] polls until it holds (see the module documentation).
enum Ready {
    Status {
        admin: SocketAddr,
        token: String,
        nodes: usize,
    },
    /// `--ready-file`: written by `firefly up` once its nodes run and are linked.
    File(std::path::PathBuf),
    Rpc(Vec<SocketAddr>),
    Gate(Vec<SocketAddr>),
}

impl Up {
    /// `firefly up -c topology`, its modules compiled into the suite's shared cache.
    pub fn new(topology: &Path) -> Up {
        Up {
            args: vec!["-c".into(), topology.into()],
            envs: Vec::new(),
            tag: None,
            ready: None,
            netns: None,
        }
    }

    /// One more argument after `-c <topology>` (`--host`, `--only`, `--no-admin`, ...).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Up {
        self.args.push(arg.into());
        self
    }

    /// More arguments, in order.
    pub fn args<I, S>(mut self, args: I) -> Up
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable of the `firefly up` process (and so of its nodes).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Up {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The prefix of its log lines on the test's stderr, `[tag] ...`. Default: `up` and the
    /// arguments after the topology.
    pub fn tag(mut self, tag: impl Into<String>) -> Up {
        self.tag = Some(tag.into());
        self
    }

    /// Runs it inside network namespace `ns` (see [`super::netns`]), as on another machine:
    /// it reaches, and is reached at, only that namespace's addresses.
    pub fn in_netns(mut self, ns: impl Into<String>) -> Up {
        self.netns = Some(ns.into());
        self
    }

    /// Ready when the master's `GET /status` at `admin` (with `token`) lists `nodes` nodes,
    /// every one healthy.
    pub fn ready_on_status(mut self, admin: SocketAddr, token: &str, nodes: usize) -> Up {
        self.ready = Some(Ready::Status {
            admin,
            token: token.to_owned(),
            nodes,
        });
        self
    }

    /// Ready when `firefly up` says so: every node it runs is up, has loaded its modules and
    /// is linked for each of its routes (`--ready-file`, at `path`). For a `firefly up
    /// --no-admin` whose peers are already running.
    pub fn ready_when_linked(mut self, path: &Path) -> Up {
        self.args.push("--ready-file".into());
        self.args.push(path.into());
        self.ready = Some(Ready::File(path.to_owned()));
        self
    }

    /// Ready when each of these node-to-node (`rpc:`) ports starts the cluster handshake.
    pub fn ready_on_rpc(mut self, rpc: &[SocketAddr]) -> Up {
        self.ready = Some(Ready::Rpc(rpc.to_vec()));
        self
    }

    /// Ready when each of these client listeners (TCP, default protocol settings) answers.
    pub fn ready_on_gate(mut self, listeners: &[SocketAddr]) -> Up {
        self.ready = Some(Ready::Gate(listeners.to_vec()));
        self
    }

    /// Spawns `firefly up`, echoes its stderr to the test's stderr under the tag, and returns
    /// once it is ready. Panics if it exits first or is not ready within the deadline (the
    /// process is stopped then too). Blocks the calling thread, so it may be called from a
    /// plain test or from inside a tokio runtime alike.
    pub fn start(self) -> Running {
        let Some(ready) = self.ready else {
            panic!("Up::start: say how to know it is ready (ready_on_status/rpc/gate)");
        };
        let tag = self.tag.unwrap_or_else(|| {
            let extra: Vec<String> = self.args[2..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            format!("up {}", extra.join(" ")).trim_end().to_owned()
        });
        let mut command = match &self.netns {
            Some(ns) => super::netns::firefly_in(ns),
            None => super::firefly(),
        };
        let mut child = command
            .arg("up")
            .args(&self.args)
            .envs(self.envs)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let echo = tag.clone();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{echo}] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        // Owned before waiting, so a failed wait stops the process as the panic unwinds.
        let mut running = Running { child, tag, log };
        running.wait_ready(&ready);
        running
    }
}

/// A started `firefly up`. Dropping it stops it (SIGTERM, then SIGKILL after a deadline).
pub struct Running {
    child: Child,
    tag: String,
    /// Every line of its log (its nodes' included) so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    /// Whether a line of its log so far (its nodes' included) contains every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        let log = self.log.lock().unwrap();
        log.iter()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop: it stops its nodes) and waits up to `within` for it to
    /// exit; its exit status, or `None` if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(within)
    }

    /// Waits up to `within` for it to exit (after `POST /stop`, say); its exit status, or
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would: it cannot stop its nodes (they notice and exit on their own).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it the way an operator would ([`Running::terminate`]), killing it if it has not
    /// exited after a while. Nothing happens if it has already exited.
    pub fn stop(&mut self) {
        if self.terminate(STOP_WITHIN).is_none() {
            eprintln!("[{}] still running after SIGTERM: killed", self.tag);
            self.kill();
        }
    }

    fn wait_ready(&mut self, ready: &Ready) {
        let deadline = Instant::now() + READY_WITHIN;
        // The admin and gate probes are async; a runtime of their own on a scoped thread
        // works whether or not the caller is already inside one.
        let last = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        loop {
                            let seen = match probe(ready).await {
                                Ok(()) => return None,
                                Err(seen) => seen,
                            };
                            if let Some(status) = self.child.try_wait().unwrap() {
                                return Some(format!("it exited ({status}) first; {seen}"));
                            }
                            if Instant::now() >= deadline {
                                return Some(format!("not within {READY_WITHIN:?}; {seen}"));
                            }
                            tokio::time::sleep(POLL).await;
                        }
                    })
                })
                .join()
                .unwrap()
        });
        if let Some(why) = last {
            panic!("[{}] never became ready: {why}", self.tag);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One poll: `Ok` when ready, else what was seen.
async fn probe(ready: &Ready) -> Result<(), String> {
    match ready {
        Ready::Status {
            admin,
            token,
            nodes,
        } => {
            let (code, body) = http_request(*admin, "GET", "/status", token)
                .await
                .map_err(|e| format!("GET /status at {admin}: {e}"))?;
            let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let listed = status["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if code == 200 && listed.len() == *nodes && status["ready"] == true {
                Ok(())
            } else {
                Err(format!(
                    "GET /status at {admin} ({code}), {nodes} ready nodes wanted: {body}"
                ))
            }
        }
        Ready::File(path) => match std::fs::read_to_string(path) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("ready file {}: {e}", path.display())),
        },
        Ready::Rpc(addrs) => {
            for addr in addrs {
                rpc_serves(*addr).map_err(|e| format!("node-to-node port {addr}: {e}"))?;
            }
            Ok(())
        }
        Ready::Gate(addrs) => {
            for addr in addrs {
                gate_answers(*addr)
                    .await
                    .map_err(|e| format!("client listener {addr}: {e}"))?;
            }
            Ok(())
        }
    }
}

/// Whether the node-to-node port at `addr` sends its handshake challenge.
fn rpc_serves(addr: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => Ok(()),
        Ok(_) => Err("closed without a word".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the gate at `addr` answers a session-ticket request (with a ticket or an error
/// frame: either way it is serving).
async fn gate_answers(addr: SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr).await.map_err(|e| e.to_string())?;
    client.set_timeout(Duration::from_secs(5));
    match client.session_ticket().await {
        Ok(_) | Err(ClientError::Server(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
