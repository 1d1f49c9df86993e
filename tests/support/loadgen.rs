//! An end-to-end load generator: closed-loop clients that each keep `depth` requests in flight.
//!
//! What it measures: requests per second and send-to-reply latency of a server speaking the
//! Firefly framing, as seen by `connections` clients on the caller's tokio runtime. The same
//! generator measures the bare echo baseline and Firefly, so their ratio is what a benchmark
//! reports (STYLE.md habit 10).
//!
//! How:
//!
//! - **Connect first.** All connections are opened (with `TCP_NODELAY`) before the clock
//!   starts; connect time is in neither the throughput nor any latency.
//! - **Closed loop, fixed depth.** Each connection queues `depth` requests, then one more for
//!   every reply it reads, so exactly `depth` are outstanding until the deadline. The requests
//!   that one read makes due are written as one batch. Reads and writes are driven together
//!   (`select!` on the two halves), so large payloads cannot deadlock client and server.
//! - **Latency** runs from the moment a request is queued for writing (taken once per batch;
//!   when the socket accepts the batch at once, as it normally does, that is the moment it is
//!   written) to the moment the read that completed its reply returned. Replies come back in
//!   request order on a connection (SPEC, "Ordering"), so a FIFO of send times, never longer
//!   than `depth`, matches them. Latencies go into a log-linear [`Histogram`] per connection
//!   (1 µs buckets below 1.024 ms, buckets under 0.8% of their value wide above), merged at
//!   the end.
//! - **Which requests count.** Time runs: connect, warm-up (`warmup`), measured window
//!   (`duration`), drain. A request counts if it was *sent* inside the measured window;
//!   warm-up requests are sent and answered but never counted. At the end of the window each
//!   connection stops sending and drains: it waits for the replies to its counted requests
//!   still in flight (they are counted, with their latency) for at most [`DRAIN_GRACE`].
//!   Counting by send time over a window of exactly `duration` makes `rps` the rate at which
//!   the server absorbed requests in steady state, with no edge error of `connections ×
//!   depth` requests either way.
//! - **Errors.** A reply on `settings.error_command` counts as a request and as an error (its
//!   latency is recorded too). A counted request still unanswered when the drain grace runs
//!   out counts as an error only. A reply on any other command id, a bad frame, or the server
//!   closing a connection fails the whole run: FIFO matching, and so every number, would be
//!   meaningless after it.
//! - **TLS.** With [`LoadConfig::tls`], each connection makes its TLS handshake (rustls) while
//!   connecting, so handshakes are outside the clock too; then the same loop runs inside TLS.
//! - **Bounded.** Every loop ends by the drain deadline; memory per connection is the FIFO
//!   (`depth` entries), the buffers (about `depth` frames each way) and one histogram
//!   (~30 KiB).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::{Bytes, BytesMut};
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long after the measured window a connection waits for its outstanding counted replies
/// before it counts them as errors.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Spare read-buffer room kept before each read, so a read is never starved to a few bytes.
const READ_RESERVE: usize = 16 * 1024;

/// What load to apply, where.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server's client address.
    pub addr: SocketAddr,
    /// Concurrent connections (at least 1), each its own task.
    pub connections: usize,
    /// Requests in flight per connection (at least 1); 1 is a plain request/response loop.
    pub depth: usize,
    /// Length of the measured window (not zero).
    pub duration: Duration,
    /// Load applied, not counted, after connecting and before the measured window.
    pub warmup: Duration,
    /// Command id of every request; replies must carry it (or `settings.error_command`).
    pub command: u32,
    /// Payload of every request (at most `settings.max_frame` bytes).
    pub payload: Vec<u8>,
    /// Header settings of the server's listener (magic, versions, maximum frame, error id).
    pub settings: ProtocolSettings,
    /// Speak TLS to the listener (`None`: plain TCP).
    pub tls: Option<TlsClient>,
}

/// How the load generator's connections speak TLS: a connector trusting the server's
/// certificate, and the name to verify it for.
#[derive(Clone)]
pub struct TlsClient {
    /// The rustls connector.
    pub connector: tokio_rustls::TlsConnector,
    /// The server name the certificate must be valid for.
    pub name: rustls::pki_types::ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One load connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// What was measured over the window (see the module doc for exactly which requests count).
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Counted requests that got a reply (error frames included).
    pub requests: u64,
    /// Counted requests answered with an error frame or left unanswered after the drain.
    pub errors: u64,
    /// The measured window: the time in which the counted requests were sent.
    pub elapsed: Duration,
    /// `requests / elapsed`, in requests per second.
    pub rps: f64,
    /// Median latency (the upper bound of its histogram bucket, at most `max`).
    pub p50: Duration,
    /// 99th percentile latency (likewise).
    pub p99: Duration,
    /// 99.9th percentile latency (likewise).
    pub p999: Duration,
    /// Largest latency, exact to the microsecond.
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

/// Latencies below `LINEAR_US` µs get one bucket per µs.
const LINEAR_BITS: u32 = 10;
const LINEAR_US: u64 = 1 << LINEAR_BITS;
/// Buckets per power of two above the linear range: a bucket is at most 1/128 of its value.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// The last bucket also holds every latency of 2^32 µs (~71 min) and more (`max` stays exact).
const TOP_BITS: u32 = 32;
const BUCKETS: usize = (LINEAR_US + (TOP_BITS - LINEAR_BITS) as u64 * SUB) as usize;

/// A log-linear (HDR-style) latency histogram with microsecond resolution.
///
/// 1 µs buckets below 1.024 ms; above, 128 buckets per power of two, so a bucket is at most
/// 1/128 (0.8%) of its value wide. Fixed size (~30 KiB), no allocation after creation.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    /// The bucket holding `us`.
    fn index(us: u64) -> usize {
        if us < LINEAR_US {
            return us as usize;
        }
        // `us >= 2^10`, so `exp` is in 10..=63 and the shift below is non-negative.
        let exp = 63 - us.leading_zeros();
        if exp >= TOP_BITS {
            return BUCKETS - 1;
        }
        let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
        (LINEAR_US + u64::from(exp - LINEAR_BITS) * SUB + sub) as usize
    }

    /// The largest value (µs) that lands in bucket `index`.
    fn upper(index: usize) -> u64 {
        let i = index as u64;
        if i < LINEAR_US {
            return i;
        }
        if index >= BUCKETS - 1 {
            return u64::MAX;
        }
        let exp = (i - LINEAR_US) / SUB + u64::from(LINEAR_BITS);
        let sub = (i - LINEAR_US) % SUB;
        let width = 1u64 << (exp - u64::from(SUB_BITS));
        (1u64 << exp) + sub * width + (width - 1)
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(count) = self.counts.get_mut(Self::index(us)) {
            *count += 1;
        }
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds the counts of `other` to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest recorded latency (zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The latency at quantile `q` (clamped to 0..=1): the upper bound of the bucket holding
    /// the `ceil(q × count)`-th smallest latency, never above [`Histogram::max`]. Zero when
    /// empty; non-decreasing in `q`.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        // Float-to-integer `as` saturates; the rank is clamped to 1..=total either way.
        let rank = ((self.total as f64) * q.clamp(0.0, 1.0)).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(Self::upper(index).min(self.max_us));
            }
        }
        self.max()
    }
}

/// What every connection task shares: the encoded request and the timeline.
#[derive(Debug)]
struct Plan {
    codec: Codec,
    /// One encoded request frame, copied into the write buffer for every send.
    request: Bytes,
    command: u32,
    error_command: u32,
    depth: usize,
    /// Requests sent from here on are counted...
    start: Instant,
    /// ...and none are sent from here on.
    end: Instant,
    /// Counted requests not answered by then are errors.
    drain_deadline: Instant,
}

/// One connection's share of the report.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    errors: u64,
    latencies: Histogram,
}

/// Applies the load described by `cfg` on the current tokio runtime and reports on the
/// measured window. Takes connect time, then `warmup + duration`, then the drain (normally
/// one round trip, at most [`DRAIN_GRACE`]).
///
/// Fails if the configuration is unusable, a connection cannot be opened, or the server breaks
/// the protocol (closes a connection, sends a bad frame or a reply on an unexpected command).
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    ensure!(cfg.connections > 0, "connections must be at least 1");
    ensure!(cfg.depth > 0, "depth must be at least 1");
    ensure!(!cfg.duration.is_zero(), "duration must not be zero");
    let codec = Codec::new(&cfg.settings);
    ensure!(
        u32::try_from(cfg.payload.len()).is_ok_and(|len| len <= codec.max_frame()),
        "payload of {} bytes exceeds the maximum frame of {} bytes",
        cfg.payload.len(),
        codec.max_frame()
    );

    let mut connecting = JoinSet::new();
    for _ in 0..cfg.connections {
        let (addr, tls) = (cfg.addr, cfg.tls.clone());
        connecting.spawn(async move {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            anyhow::Ok(match tls {
                None => Conn::Plain(stream),
                Some(tls) => Conn::Tls(Box::new(
                    tls.connector
                        .connect(tls.name, stream)
                        .await
                        .with_context(|| format!("TLS handshake with {addr}"))?,
                )),
            })
        });
    }
    let mut streams = Vec::with_capacity(cfg.connections);
    while let Some(stream) = connecting.join_next().await {
        streams.push(stream??);
    }

    // The clock starts once every connection is open.
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let plan = Arc::new(Plan {
        request: codec.encode_to_bytes(cfg.command, &cfg.payload),
        codec,
        command: cfg.command,
        error_command: cfg.settings.error_command,
        depth: cfg.depth,
        start,
        end,
        drain_deadline: end + DRAIN_GRACE,
    });
    // Dropping the set (on an early return) aborts the other connections.
    let mut running = JoinSet::new();
    for (n, stream) in streams.into_iter().enumerate() {
        let plan = plan.clone();
        let addr = cfg.addr;
        running.spawn(async move {
            let tally = match stream {
                Conn::Plain(mut stream) => {
                    let (reader, writer) = stream.split();
                    drive(reader, writer, &plan).await
                }
                Conn::Tls(stream) => {
                    let (reader, writer) = tokio::io::split(stream);
                    drive(reader, writer, &plan).await
                }
            };
            tally.with_context(|| format!("load connection {n} to {addr}"))
        });
    }
    let mut total = Tally::default();
    while let Some(tally) = running.join_next().await {
        let tally = tally??;
        total.requests += tally.requests;
        total.errors += tally.errors;
        total.latencies.merge(&tally.latencies);
    }

    let elapsed = cfg.duration;
    Ok(LoadReport {
        requests: total.requests,
        errors: total.errors,
        elapsed,
        rps: total.requests as f64 / elapsed.as_secs_f64(),
        p50: total.latencies.quantile(0.50),
        p99: total.latencies.quantile(0.99),
        p999: total.latencies.quantile(0.999),
        max: total.latencies.max(),
    })
}

/// Runs one connection's closed loop until its drain ends; see the module doc.
async fn drive(
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    plan: &Plan,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    // Send times of the requests in flight, oldest first (so non-decreasing); never longer
    // than `depth`. A request counts as sent when it is queued in `wbuf`.
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(plan.depth);
    let mut rbuf = BytesMut::with_capacity(READ_RESERVE);
    let mut wbuf = BytesMut::with_capacity(plan.request.len() * plan.depth);

    let now = Instant::now();
    for _ in 0..plan.depth {
        wbuf.extend_from_slice(&plan.request);
        in_flight.push_back(now);
    }
    // Wakes the loop at the end of the window even if the server has gone quiet, then again
    // at the drain deadline.
    let timer = tokio::time::sleep_until(plan.end);
    tokio::pin!(timer);
    // False from the end of the window on: no new requests, only the drain.
    let mut sending = true;

    loop {
        // Every request was sent before `end`, so the newest one tells whether any counted
        // request is still outstanding.
        if !sending && in_flight.back().is_none_or(|&sent| sent < plan.start) {
            break;
        }
        tokio::select! {
            // Queued requests go out before the next read, so a batch is written at once.
            biased;
            written = writer.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if written.context("writing requests")? == 0 {
                    bail!("the server stopped accepting data");
                }
            }
            read = reader.read_buf(&mut rbuf) => {
                if read.context("reading replies")? == 0 {
                    bail!("the server closed the connection");
                }
                let now = Instant::now();
                // Checked here too: while replies keep arriving, `timer` may not get polled.
                // The drain then gets its full grace: the timer moves to the drain deadline
                // (left at the window's end, it would fire at once and count every reply
                // still in flight as lost).
                if now >= plan.end && sending {
                    sending = false;
                    timer.as_mut().reset(plan.drain_deadline);
                }
                while let Some(reply) = plan.codec.decode(&mut rbuf)? {
                    let Some(sent) = in_flight.pop_front() else {
                        bail!("a reply on command {} with no request in flight", reply.command);
                    };
                    let is_error = reply.command == plan.error_command;
                    if !is_error && reply.command != plan.command {
                        bail!(
                            "a reply on command {} to a request on command {}",
                            reply.command,
                            plan.command
                        );
                    }
                    if sent >= plan.start {
                        tally.requests += 1;
                        tally.errors += u64::from(is_error);
                        tally.latencies.record(now - sent);
                    }
                    if sending {
                        wbuf.extend_from_slice(&plan.request);
                        in_flight.push_back(now);
                    }
                }
                // Decoded replies are dropped by now, so this reuses the same allocation.
                rbuf.reserve(READ_RESERVE);
            }
            () = &mut timer => {
                if sending {
                    // Requests already queued stay queued: they were sent inside the window
                    // (and a half-written frame must be finished anyway).
                    sending = false;
                    timer.as_mut().reset(plan.drain_deadline);
                } else {
                    let unanswered = in_flight.iter().filter(|&&sent| sent >= plan.start).count();
                    tally.errors += unanswered as u64;
                    break;
                }
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bare_echo;

    fn config(addr: SocketAddr) -> LoadConfig {
        LoadConfig {
            addr,
            connections: 4,
            depth: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            command: 1,
            payload: vec![0x5a; 64],
            settings: ProtocolSettings::default(),
            tls: None,
        }
    }

    #[test]
    fn buckets_tile_the_range_with_bounded_width() {
        // Linear range: one bucket per µs.
        for us in 0..LINEAR_US {
            assert_eq!(Histogram::index(us), us as usize);
            assert_eq!(Histogram::upper(us as usize), us);
        }
        // Above: consecutive, gap-free buckets, each at most 1/128 of its value wide.
        let mut lower = LINEAR_US;
        for index in LINEAR_US as usize..BUCKETS - 1 {
            let upper = Histogram::upper(index);
            assert_eq!(Histogram::index(lower), index);
            assert_eq!(Histogram::index(upper), index);
            assert!(
                (upper - lower + 1) * 128 <= lower,
                "bucket {index}: {lower}..={upper}"
            );
            lower = upper + 1;
        }
        // The last bucket is the top of the range and everything above it.
        assert_eq!(lower, (1 << TOP_BITS) - (1 << (TOP_BITS - 1 - SUB_BITS)));
        assert_eq!(Histogram::index(lower), BUCKETS - 1);
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
        assert_eq!(Histogram::upper(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_are_ordered_and_close() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        for us in 1..=10_000 {
            h.record(Duration::from_micros(us));
        }
        let mut other = Histogram::default();
        other.record(Duration::from_secs(2));
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.quantile(0.0), Duration::from_micros(1));
        let p50 = h.quantile(0.5).as_micros() as f64;
        assert!((p50 - 5_001.0).abs() <= 5_001.0 / 128.0, "p50 = {p50}");
        assert!(h.quantile(0.5) <= h.quantile(0.99));
        assert!(h.quantile(0.99) <= h.quantile(0.999));
        assert_eq!(h.quantile(1.0), Duration::from_secs(2));
        assert_eq!(h.max(), Duration::from_secs(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measures_the_bare_echo() {
        let server = bare_echo::spawn(ProtocolSettings::default()).await.unwrap();
        let report = run(&config(server.addr)).await.unwrap();
        assert!(report.requests > 0, "{report}");
        assert_eq!(report.errors, 0, "{report}");
        assert!(report.p50 <= report.p99, "{report}");
        assert!(report.p99 <= report.p999, "{report}");
        assert!(report.p999 <= report.max, "{report}");
        assert_eq!(report.elapsed, Duration::from_millis(300));
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_error_frames_as_errors() {
        let server = bare_echo::spawn(ProtocolSettings::default()).await.unwrap();
        // The echo answers on the request's id; asking on the error id makes every reply one.
        let cfg = LoadConfig {
            command: ProtocolSettings::default().error_command,
            connections: 2,
            duration: Duration::from_millis(100),
            ..config(server.addr)
        };
        let report = run(&cfg).await.unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.errors, report.requests);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fails_when_the_server_closes() {
        // A server with other magic bytes closes every connection on its first frame.
        let server = bare_echo::spawn(ProtocolSettings {
            magic: [1, 2, 3, 4],
            ..ProtocolSettings::default()
        })
        .await
        .unwrap();
        let err = run(&config(server.addr)).await.unwrap_err();
        assert!(format!("{err:#}").contains("closed"), "{err:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fails_on_a_reply_to_another_command() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers the first request on command 2.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let codec = Codec::new(&ProtocolSettings::default());
            let mut buf = BytesMut::new();
            while codec.decode(&mut buf).unwrap().is_none() {
                assert_ne!(s.read_buf(&mut buf).await.unwrap(), 0);
            }
            s.write_all(&codec.encode_to_bytes(2, b"")).await.unwrap();
            // Hold the connection open until the client gives up on it.
            while s.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let cfg = LoadConfig {
            connections: 1,
            ..config(addr)
        };
        let err = run(&cfg).await.unwrap_err();
        assert!(format!("{err:#}").contains("command 2"), "{err:#}");
        server.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_unusable_configs() {
        // Nothing listens there, and nothing is reached: the config is checked first.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for cfg in [
            LoadConfig {
                depth: 0,
                ..config(addr)
            },
            LoadConfig {
                connections: 0,
                ..config(addr)
            },
            LoadConfig {
                payload: vec![0; (1 << 20) + 1],
                ..config(addr)
            },
        ] {
            let err = run(&cfg).await.unwrap_err();
            assert!(!format!("{err:#}").contains("connecting"), "{err:#}");
        }
    }
}

#[cfg(test)]
mod slow_server_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes every frame `delay` after it arrived, as a pipeline: replies stream back
    /// continuously while many are still in flight — the case where the window's end is seen
    /// by the read branch rather than the timer.
    async fn slow_echo(delay: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mut reader, mut writer) = stream.into_split();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, BytesMut)>();
                tokio::spawn(async move {
                    while let Some((due, out)) = rx.recv().await {
                        tokio::time::sleep_until(due).await;
                        if writer.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let codec = Codec::new(&ProtocolSettings::default());
                    let mut rbuf = BytesMut::new();
                    loop {
                        match reader.read_buf(&mut rbuf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let mut out = BytesMut::new();
                        while let Ok(Some(f)) = codec.decode(&mut rbuf) {
                            codec.encode(f.command, &f.payload, &mut out);
                        }
                        if tx.send((Instant::now() + delay, out)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_in_flight_at_the_deadline_get_the_drain_grace() {
        let addr = slow_echo(Duration::from_millis(40)).await;
        let report = run(&LoadConfig {
            addr,
            connections: 16,
            depth: 32,
            duration: Duration::from_millis(300),
            warmup: Duration::ZERO,
            command: 1,
            payload: vec![3; 16],
            settings: ProtocolSettings::default(),
            tls: None,
        })
        .await
        .unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.errors, 0, "{report}");
    }
}
