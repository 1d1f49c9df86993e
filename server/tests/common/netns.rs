//! A private network of "machines" for process tests ([`Lab`]): one network namespace per
//! host, each with its own `lo` and one address on a /24 that exists only for the test, joined
//! by a bridge in the test's own namespace. The bridge's address is where the test's services
//! listen ([`super::services::private_nats_at`], [`super::services::private_redis_at`],
//! [`Relay`] for a database the machine runs on its loopback); the test's clients reach the
//! hosts' addresses over the bridge; a host is cut off by setting its link down.
//!
//! Needs root (network namespaces, veth pairs and a bridge) and iproute2's `ip`. Names carry
//! the test's pid, so parallel runs never meet; dropping the [`Lab`] (a panic included) kills
//! every process left in its namespaces and removes them, the veths and the bridge, and a new
//! `Lab` first removes what a run killed before its drop left behind.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Every name this module gives starts with this, then the pid.
const PREFIX: &str = "ffn";

/// The `ip` program: on the `PATH`, else where Debian puts it.
fn ip_program() -> &'static str {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("ip").is_file()));
    if on_path { "ip" } else { "/usr/sbin/ip" }
}

/// Runs `ip args`, panicking with its error and what the test needs if it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new(ip_program())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip ({e}): this test needs iproute2's `ip`"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}. This test makes network namespaces, veths and a bridge: it needs \
         root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip args` for cleaning up: whether it worked, errors ignored.
fn ip_quiet(args: &[&str]) -> bool {
    Command::new(ip_program())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`super::firefly`] run inside network namespace `ns`. `ip netns exec` enters it and execs
/// the program, so the child's pid is `firefly`'s own.
pub fn firefly_in(ns: &str) -> Command {
    let mut command = Command::new(ip_program());
    command
        .args(["netns", "exec", ns])
        .arg(super::FIREFLY)
        .env("FIREFLY_CACHE_DIR", super::cache_dir());
    command
}

/// One "machine": a network namespace with `lo` and one address.
pub struct Host {
    /// The namespace's name (for [`super::Up::in_netns`]).
    pub ns: String,
    /// Its address on the lab's network.
    pub ip: String,
    /// The bridge's end of its link (in the test's namespace): down cuts the host off.
    veth: String,
}

/// A bridge in the test's namespace and one namespace per host on it (module documentation).
pub struct Lab {
    bridge: String,
    /// The bridge's address: the test's own end of the network, where its services listen.
    pub services_ip: String,
    /// The hosts, in order.
    pub hosts: Vec<Host>,
}

impl Lab {
    /// A network of `hosts` namespaces, `<subnet>.11`, `.12`, ... on a /24 of `10.213.0.0/16`
    /// no interface of this machine uses, with the bridge at `<subnet>.1`.
    pub fn new(hosts: usize) -> Lab {
        remove_leftovers();
        let pid = std::process::id();
        let subnet = free_subnet(pid);
        let mut lab = Lab {
            bridge: format!("{PREFIX}{pid}b"),
            services_ip: format!("{subnet}.1"),
            hosts: Vec::new(),
        };
        // From here on, dropping `lab` (a failed `ip` panics) removes what was made so far.
        ip(&["link", "add", &lab.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.services_ip),
            "dev",
            &lab.bridge,
        ]);
        ip(&["link", "set", &lab.bridge, "up"]);
        for i in 1..=hosts {
            let host = Host {
                ns: format!("{PREFIX}{pid}h{i}"),
                ip: format!("{subnet}.{}", 10 + i),
                veth: format!("{PREFIX}{pid}v{i}"),
            };
            ip(&["netns", "add", &host.ns]);
            lab.hosts.push(host);
            let host = &lab.hosts[i - 1];
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns",
                &host.ns,
            ]);
            ip(&["link", "set", &host.veth, "master", &lab.bridge, "up"]);
            let ns = ["-n", host.ns.as_str()];
            ip(&[&ns[..], &["link", "set", "lo", "up"]].concat());
            let addr = format!("{}/24", host.ip);
            ip(&[&ns[..], &["addr", "add", &addr, "dev", "eth0"]].concat());
            ip(&[&ns[..], &["link", "set", "eth0", "up"]].concat());
        }
        lab.wait_reachable();
        lab
    }

    /// Cuts host `i` (0-based) off the network: its link goes down, so nothing it sends
    /// arrives and nothing reaches it (no reset, no error: packets just vanish).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "down"]);
    }

    /// Puts host `i` back on the network.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].veth, "up"]);
    }

    /// Kills every process in host `i`'s namespace with SIGKILL (a machine losing power);
    /// how many there were.
    pub fn kill_all(&self, i: usize) -> usize {
        kill_all_in(&self.hosts[i].ns)
    }

    /// Waits until each host answers from the test's namespace (a bridge port starts
    /// forwarding a moment after it is up): a TCP connect to a closed port is refused, which
    /// proves the host reachable.
    fn wait_reachable(&self) {
        for host in &self.hosts {
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr: SocketAddr = format!("{}:9", host.ip).parse().unwrap();
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => assert!(
                        Instant::now() < deadline,
                        "host {} ({}) unreachable over the bridge: {e}",
                        host.ns,
                        host.ip
                    ),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            kill_all_in(&host.ns);
            ip_quiet(&["netns", "del", &host.ns]);
            // Gone with the namespace's end already, unless a process kept that alive.
            ip_quiet(&["link", "del", &host.veth]);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

/// SIGKILLs every process in namespace `ns` until none is left (10 s at most); how many.
fn kill_all_in(ns: &str) -> usize {
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new(ip_program())
            .args(["netns", "pids", ns])
            .output();
        let pids: Vec<String> = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if pids.is_empty() || Instant::now() >= deadline {
            return killed;
        }
        let _ = Command::new("kill").arg("-9").args(&pids).status();
        killed += pids.len();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the namespaces, veths and bridge of earlier runs whose process is gone (killed
/// before their `Lab` was dropped).
fn remove_leftovers() {
    let Ok(out) = Command::new(ip_program()).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((pid, host)) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('h'))
        else {
            continue;
        };
        let (Ok(running), Ok(_)) = (pid.parse::<u64>(), host.parse::<u64>()) else {
            continue;
        };
        if super::alive(running) {
            continue;
        }
        kill_all_in(name);
        ip_quiet(&["netns", "del", name]);
        ip_quiet(&["link", "del", &format!("{PREFIX}{pid}v{host}")]);
        ip_quiet(&["link", "del", &format!("{PREFIX}{pid}b")]);
    }
}

/// `10.213.k` for a `k` no address of this machine is in, starting from one the pid picks.
fn free_subnet(pid: u32) -> String {
    let used = ip(&["-4", "-o", "addr", "show"]);
    (0..256u32)
        .map(|n| format!("10.213.{}", (pid + n) % 256))
        .find(|subnet| !used.contains(&format!(" {subnet}.")))
        .expect("every 10.213.k.0/24 is in use on this machine")
}

/// A TCP relay from the lab's network to a service this machine runs on its loopback (a
/// database shared with the other tests): what a machine's firewall or proxy would do.
/// Stopped when dropped (connections already relayed end when either side closes).
pub struct Relay {
    /// Where the hosts connect.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on a free port of `ip` and relays each connection to `target` (`host:port`).
    pub fn start(ip: &str, target: &str) -> Relay {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let target = target.to_owned();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(inbound), Ok(outbound)) = (inbound, TcpStream::connect(&target)) else {
                    continue;
                };
                let (a, b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                std::thread::spawn(move || pipe(inbound, outbound));
                std::thread::spawn(move || pipe(b, a));
            }
        });
        Relay { addr, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copies `from` to `to` until either ends, then closes both (so the other direction ends).
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
