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
