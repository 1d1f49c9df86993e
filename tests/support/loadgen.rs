//! An end-to-end load generator: N connections, each keeping `depth` requests in flight.
//!
//! Each connection sends `depth` requests, then one more for every reply it reads, so exactly
//! `depth` are outstanding at any time (replies come back in order, so a FIFO of send times
//! matches them). Latency is send-to-reply per request, recorded in a log-linear histogram
//! (1 µs buckets below 1 ms, ~1.6% relative precision above). Requests answered during the
//! warm-up are not counted; at the deadline the connections stop sending and count only the
//! replies that arrived before it. Bounded: every loop ends at the deadline.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Unmeasured warm-up before it.
    pub warmup: Duration,
    /// Command id to send.
    pub command: u32,
    /// Payload of every request.
    pub payload: Vec<u8>,
    /// Frame header settings.
    pub settings: ProtocolSettings,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Replies counted in the measured window.
    pub requests: u64,
    /// Of which error frames.
    pub errors: u64,
    /// Measured window.
    pub elapsed: Duration,
    /// Replies per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// 99.9th percentile latency.
    pub p999: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rps={:.0} p50={}µs p99={}µs p999={}µs max={}µs errors={}",
            self.rps,
            self.p50.as_micros(),
            self.p99.as_micros(),
            self.p999.as_micros(),
            self.max.as_micros(),
            self.errors
        )
    }
}

/// A log-linear latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    max_us: u64,
    total: u64,
}

const LINEAR: u64 = 1024; // 1 µs buckets below ~1 ms
const SUB: u64 = 64; // buckets per power of two above

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; (LINEAR + 64 * SUB) as usize],
            max_us: 0,
            total: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < LINEAR {
            return us as usize;
        }
        let exp = 63 - u64::from(us.leading_zeros()); // >= 10
        let frac = (us >> (exp - 6)) & (SUB - 1);
        (LINEAR + (exp - 10) * SUB + frac) as usize
    }

    fn value(index: usize) -> u64 {
        let i = index as u64;
        if i < LINEAR {
            return i;
        }
        let exp = (i - LINEAR) / SUB + 10;
        let frac = (i - LINEAR) % SUB;
        (1 << exp) + (frac << (exp - 6))
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = Self::index(us).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.max_us = self.max_us.max(us);
        self.total += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.total += other.total;
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(Self::value(i).min(self.max_us));
            }
        }
        Duration::from_micros(self.max_us)
    }
}

struct ConnResult {
    requests: u64,
    errors: u64,
    hist: Histogram,
}

async fn connection(cfg: LoadConfig, start: Instant, end: Instant) -> anyhow::Result<ConnResult> {
    let codec = Codec::new(&cfg.settings);
    let mut stream = TcpStream::connect(cfg.addr).await?;
    stream.set_nodelay(true)?;
    let mut frame = BytesMut::new();
    codec.encode(cfg.command, &cfg.payload, &mut frame);
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut sent = std::collections::VecDeque::with_capacity(cfg.depth);
    let mut result = ConnResult {
        requests: 0,
        errors: 0,
        hist: Histogram::default(),
    };
    let now = Instant::now();
    for _ in 0..cfg.depth {
        wbuf.extend_from_slice(&frame);
        sent.push_back(now);
    }
    stream.write_all(&wbuf).await?;
    loop {
        let read = tokio::time::timeout_at(end, stream.read_buf(&mut rbuf)).await;
        let Ok(read) = read else { break };
        if read? == 0 {
            anyhow::bail!("server closed the connection");
        }
        let now = Instant::now();
        wbuf.clear();
        while let Some(reply) = codec.decode(&mut rbuf)? {
            let Some(at) = sent.pop_front() else {
                anyhow::bail!("a reply nobody asked for");
            };
            if now >= end {
                break;
            }
            if at >= start {
                result.requests += 1;
                result.hist.record(now - at);
                if reply.command == cfg.settings.error_command {
                    result.errors += 1;
                } else if reply.command != cfg.command {
                    anyhow::bail!(
                        "reply on command {} to a request on {}",
                        reply.command,
                        cfg.command
                    );
                }
            }
            wbuf.extend_from_slice(&frame);
            sent.push_back(now);
        }
        if now >= end {
            break;
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
        }
    }
    Ok(result)
}

/// Runs the load and reports what was measured. Uses the caller's tokio runtime.
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|_| tokio::spawn(connection(cfg.clone(), start, end)))
        .collect();
    let mut hist = Histogram::default();
    let (mut requests, mut errors) = (0, 0);
    for t in tasks {
        let r = t.await??;
        requests += r.requests;
        errors += r.errors;
        hist.merge(&r.hist);
    }
    let elapsed = cfg.duration;
    Ok(LoadReport {
        requests,
        errors,
        elapsed,
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50: hist.quantile(0.50),
        p99: hist.quantile(0.99),
        p999: hist.quantile(0.999),
        max: Duration::from_micros(hist.max_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_close() {
        let mut last = 0;
        for us in [0u64, 1, 999, 1023, 1024, 1500, 10_000, 123_456, 9_999_999] {
            let i = Histogram::index(us);
            assert!(i >= last);
            last = i;
            let v = Histogram::value(i);
            assert!(v <= us && us - v <= us / 60 + 1, "{us} -> {v}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measures_the_bare_echo() {
        let server = crate::bare_echo::spawn(ProtocolSettings::default())
            .await
            .unwrap();
        let report = run(&LoadConfig {
            addr: server.addr,
            connections: 4,
            depth: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            command: 1,
            payload: vec![1; 64],
            settings: ProtocolSettings::default(),
        })
        .await
        .unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.errors, 0);
        assert!(report.p50 <= report.p99 && report.p99 <= report.max);
    }
}
