//! What the load benchmarks share: their flags ([`LoadArgs`]: `--connections N`, `--depth 1,16`,
//! `--duration SECS`, `--payload BYTES`, and switches without a value such as `--two-hop`;
//! unknown words are kept as switches, `cargo bench` passes `--bench`) and their two runtimes
//! ([`runtimes`]).

use std::time::Duration;

/// Parsed load flags.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    /// Concurrent connections.
    pub connections: usize,
    /// Requests in flight per connection, one run each.
    pub depths: Vec<usize>,
    /// Measured window of each run.
    pub duration: Duration,
    /// Payload bytes of each request.
    pub payload: usize,
    /// Every other word on the command line.
    pub switches: Vec<String>,
}

impl LoadArgs {
    /// This process's command line over the defaults: `connections` connections, depths 1 and
    /// 16, 5 s, 64-byte payloads.
    pub fn from_env(connections: usize) -> LoadArgs {
        let mut args = LoadArgs {
            connections,
            depths: vec![1, 16],
            duration: Duration::from_secs(5),
            payload: 64,
            switches: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_default();
            match flag.as_str() {
                "--connections" => args.connections = value().parse().unwrap_or(args.connections),
                "--depth" => {
                    args.depths = value().split(',').filter_map(|d| d.parse().ok()).collect();
                }
                "--duration" => {
                    args.duration = Duration::from_secs_f64(value().parse().unwrap_or(5.0));
                }
                "--payload" => args.payload = value().parse().unwrap_or(args.payload),
                _ => args.switches.push(flag),
            }
        }
        args
    }

    /// Whether switch `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.switches.iter().any(|s| s == flag)
    }

    /// The load of one run at `depth` against `addr`: the echo command (1) with these
    /// connections, window and payload, after a 1 s warm-up, default framing, plain TCP.
    pub fn echo(&self, addr: std::net::SocketAddr, depth: usize) -> crate::loadgen::LoadConfig {
        crate::loadgen::LoadConfig {
            addr,
            connections: self.connections,
            depth,
            duration: self.duration,
            warmup: Duration::from_secs(1),
            command: 1,
            payload: vec![0x5a; self.payload],
            settings: firefly::config::ProtocolSettings::default(),
            tls: None,
        }
    }
}

/// The server's and the load generator's runtimes, 2 workers each: on a 2-core machine they
/// share the cores, identically for a baseline and for Firefly.
pub fn runtimes() -> std::io::Result<(tokio::runtime::Runtime, tokio::runtime::Runtime)> {
    let build = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    Ok((build()?, build()?))
}

/// The value of flag `name` on this process's command line (`--rooms 1000`), or `default`.
pub fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process so far, in microseconds (from `/proc/self/stat`,
/// 10 ms resolution).
pub fn cpu_micros() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // After the command name: utime and stime are fields 14 and 15 (1-based in proc(5)).
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000
}
