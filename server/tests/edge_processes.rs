//! The hardened client edge of a real gate (`firefly up`, one node hosting `echo`), with real
//! clients over real sockets: connection caps per listener and per address, the per-session
//! rate limit, a client that never reads, `/metrics` behind a bearer token, and a seeded fuzz
//! of the framing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly::protocol::{Codec, ErrorReply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::topology::{Node, RateLimit, Tls};
use common::{Listener, Running, Topology, Up, free_addr};

/// The error frames' command id (the default).
const ERROR_COMMAND: u32 = u32::MAX;

/// A running one-node cluster: `gate`, hosting `echo`, with a plain TCP listener (`probe`,
/// default settings: the readiness probe's) and the listeners the test asked for.
struct Gate {
    up: Running,
    _dir: tempfile::TempDir,
    probe: SocketAddr,
}

/// Starts `gate` with `listeners` after the probe listener, and the node keys `extra` sets.
fn gate(cluster: &str, listeners: Vec<Listener>, extra: impl FnOnce(Node) -> Node) -> Gate {
    gate_in(tempfile::tempdir().unwrap(), cluster, listeners, extra)
}

impl Gate {
    /// The pid of the node process (the only child of `firefly up`; any of its threads may
    /// have spawned it).
    fn node_pid(&self) -> u32 {
        let up = self.up.pid();
        let mut children = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{up}/task")).unwrap() {
            let list =
                std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
            children.extend(list.split_whitespace().map(|p| p.parse::<u32>().unwrap()));
        }
        assert_eq!(
            children.len(),
            1,
            "firefly up ({up}) has children {children:?}"
        );
        children[0]
    }
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `GET /metrics` at `addr` with `authorization` (a whole header value, if any): the status
/// code and the body.
async fn scrape(addr: SocketAddr, authorization: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The value of the sample `series` (name and labels exactly as rendered) in `metrics`.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{metrics}"))
        .parse()
        .unwrap()
}

/// Echoes one request on `client`, asserting the reply.
async fn echo(client: &mut Client) {
    let reply = client.request(1, b"ping").await.unwrap();
    assert_eq!(&reply[..], b"ping");
}

/// The error frame the server sends first on a refused connection, then the close.
async fn expect_refused(addr: SocketAddr) -> ErrorReply {
    let mut client = Client::connect(addr).await.unwrap();
    client.set_timeout(Duration::from_secs(10));
    // A client that sends at once still gets the refusal (not a reset that would destroy it).
    let _ = client.send(1, b"hello?").await;
    let frame = client.recv_frame().await.unwrap();
    assert_eq!(frame.command, ERROR_COMMAND);
    let reply = ErrorReply::from_msgpack(&frame.payload).unwrap();
    assert_eq!(client.wait_closed().await.unwrap(), vec![]);
    reply
}

/// A client connected from `source` (another loopback address) to `addr`.
async fn connect_from(source: &str, addr: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    Client::from_stream(stream, &ProtocolSettings::default()).unwrap()
}

/// A deadline `within` from now, for polling loops.
fn deadline(within: Duration) -> Instant {
    Instant::now() + within
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_a_cap_are_refused_and_counted_and_metrics_need_the_token() {
    let (capped, per_ip, ws, metrics) = (free_addr(), free_addr(), free_addr(), free_addr());
    let token = "edge-metrics-token-0123456789abcdef";
    let listeners = vec![
        Listener {
            max_connections: Some(2),
            ..Listener::tcp(capped)
        },
        Listener {
            max_connections_per_ip: Some(2),
            ..Listener::tcp(per_ip)
        },
        Listener {
            max_connections: Some(1),
            ..Listener::ws(ws)
        },
    ];
    // The token file must exist before the node starts: write the topology's folder first.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics-token"), format!("{token}\n")).unwrap();
    let g = gate_in(dir, "edgecaps", listeners, |n| {
        n.metrics_with_token(metrics, "metrics-token")
    });

    // The listener cap: two connections are served, the third is told why and closed.
    let mut a = Client::connect(capped).await.unwrap();
    let mut b = Client::connect(capped).await.unwrap();
    echo(&mut a).await;
    echo(&mut b).await;
    let refused = expect_refused(capped).await;
    assert_eq!(refused.code, "too_many_connections", "{refused:?}");
    assert!(refused.message.contains("maximum of 2"), "{refused:?}");
    echo(&mut a).await;
    // A closed connection frees its place.
    drop(a);
    let until = deadline(Duration::from_secs(10));
    let mut c = loop {
        let mut client = Client::connect(capped).await.unwrap();
        client.set_timeout(Duration::from_secs(5));
        if client.request(1, b"again").await.is_ok() {
            break client;
        }
        assert!(
            Instant::now() < until,
            "a place freed by a closed connection is given to a new one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    echo(&mut c).await;

    // The per-address cap: a third connection from 127.0.0.1 is refused, 127.0.0.2 is not.
    let mut p1 = Client::connect(per_ip).await.unwrap();
    let mut p2 = Client::connect(per_ip).await.unwrap();
    echo(&mut p1).await;
    echo(&mut p2).await;
    let refused = expect_refused(per_ip).await;
    assert_eq!(refused.code, "too_many_connections");
    assert!(refused.message.contains("127.0.0.1"), "{refused:?}");
    let mut other = connect_from("127.0.0.2", per_ip).await;
    echo(&mut other).await;

    // WebSocket: the upgrade past the cap is answered 503.
    let url = format!("ws://{ws}/");
    let (_first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503 to the upgrade, got {other:?}"),
    }

    // `/metrics` wants the bearer token, and counts the refusals.
    assert_eq!(scrape(metrics, None).await.0, 401);
    assert_eq!(scrape(metrics, Some("Bearer wrong-token")).await.0, 401);
    assert_eq!(
        scrape(metrics, Some(&format!("Basic {token}"))).await.0,
        401
    );
    let (code, body) = scrape(metrics, Some(&format!("Bearer {token}"))).await;
    assert_eq!(code, 200, "{body}");
    let listener_cap = sample(
        &body,
        "firefly_connections_refused_total{node=\"gate\",cap=\"listener\"}",
    );
    assert!(listener_cap >= 2, "tcp and ws refusals: {listener_cap}");
    let ip_cap = sample(
        &body,
        "firefly_connections_refused_total{node=\"gate\",cap=\"ip\"}",
    );
    assert_eq!(ip_cap, 1);
    drop(g);
}

/// [`gate`] in a folder the test prepared.
fn gate_in(
    dir: tempfile::TempDir,
    cluster: &str,
    listeners: Vec<Listener>,
    extra: impl FnOnce(Node) -> Node,
) -> Gate {
    let probe = free_addr();
    let topology = Topology::new(cluster)
        .module("echo")
        .node("gate", |n| {
            let n = listeners.into_iter().fold(n.tcp(probe), Node::listen);
            extra(n.modules(&["echo"]))
        })
        .write(dir.path());
    let up = Up::new(&topology).ready_on_gate(&[probe]).start();
    Gate {
        up,
        _dir: dir,
        probe,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_rate_limit_get_rate_limited_and_the_connection_stays_open() {
    let (limited, metrics) = (free_addr(), free_addr());
    let listeners = vec![Listener {
        rate_limit: Some(RateLimit {
            per_second: 5,
            burst: 10,
        }),
        ..Listener::tcp(limited)
    }];
    let g = gate("edgerate", listeners, |n| n.metrics(metrics));
    let codec = Codec::new(&ProtocolSettings::default());
    let mut client = Client::connect(limited).await.unwrap();
    // Thirty requests at once: the burst is served, the rest answered `rate_limited`, each
    // in its place (one reply per request, in order).
    let mut burst = BytesMut::new();
    for i in 0..30u32 {
        codec.encode(1, &i.to_be_bytes(), &mut burst);
    }
    client.send_raw(&burst).await.unwrap();
    let (mut served, mut limited_count) = (0, 0);
    for i in 0..30u32 {
        let frame = client.recv_frame().await.unwrap();
        if frame.command == 1 {
            assert_eq!(
                &frame.payload[..],
                &i.to_be_bytes(),
                "replies in request order"
            );
            served += 1;
        } else {
            assert_eq!(frame.command, ERROR_COMMAND);
            let reply = ErrorReply::from_msgpack(&frame.payload).unwrap();
            assert_eq!(reply.code, "rate_limited", "{reply:?}");
            assert_eq!(reply.command, 1);
            assert!(
                i >= 10,
                "request {i} of the first 10 (the burst) was refused"
            );
            limited_count += 1;
        }
    }
    assert!(
        (10..=12).contains(&served),
        "served {served} of a burst of 10"
    );
    assert_eq!(served + limited_count, 30);
    // The connection stays open and is served again once tokens come back (5 a second).
    let until = deadline(Duration::from_secs(10));
    while client.request(1, b"later").await.is_err() {
        assert!(Instant::now() < until, "never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Other connections have their own bucket.
    let mut other = Client::connect(limited).await.unwrap();
    echo(&mut other).await;
    let (code, body) = scrape(metrics, None).await;
    assert_eq!(code, 200);
    let counted = sample(&body, "firefly_rate_limited_total{node=\"gate\"}");
    assert!(
        counted >= limited_count as u64,
        "{counted} < {limited_count}"
    );
    drop(g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_after_the_write_stall_and_memory_stays_bounded() {
    let (stalling, ws_stalling, metrics) = (free_addr(), free_addr(), free_addr());
    let listeners = vec![
        Listener {
            write_stall: Some("1s"),
            ..Listener::tcp(stalling)
        },
        Listener {
            write_stall: Some("1s"),
            ..Listener::ws(ws_stalling)
        },
    ];
    let g = gate("edgestall", listeners, |n| n.metrics(metrics));
    let pid = g.node_pid();
    let before = rss_kib(pid);

    // Pipelined 64 KiB echo requests, and never a read: the replies pile up in the sockets'
    // buffers until the gate's write stalls, then it must hang up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(stalling).await.unwrap();
    let codec = Codec::new(&ProtocolSettings::default());
    let mut frame = BytesMut::new();
    codec.encode(1, &vec![7u8; 64 << 10], &mut frame);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let cut_off = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&frame)).await {
            Ok(Ok(())) => sent += frame.len() as u64,
            Ok(Err(_)) => break true,
            // Our own writes stall too once the gate stops reading us: it should have hung
            // up by then; keep trying until the deadline tells.
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    let after = rss_kib(pid);
    eprintln!(
        "cut off after {:?} and {sent} bytes; gate RSS {before} KiB -> {after} KiB",
        started.elapsed()
    );
    assert!(
        cut_off,
        "the gate never hung up on a client that does not read"
    );
    assert!(
        sent < 512 << 20,
        "the gate took {sent} bytes from a client that never read"
    );
    assert!(
        after < before + 64 * 1024,
        "the gate's memory grew from {before} KiB to {after} KiB"
    );
    // One stall, counted once (it was waited out, and counted, twice: a second write after
    // the first stalled waited its own `write_stall`).
    let stalls_of =
        |body: &str| sample(body, "firefly_write_stall_disconnects_total{node=\"gate\"}");
    let (_, body) = scrape(metrics, None).await;
    assert_eq!(stalls_of(&body), 1, "one stalled TCP client");
    // The same over WebSocket: messages sent, none read.
    {
        use futures_util::SinkExt as _;
        use tokio_tungstenite::tungstenite::Message;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(ws_stalling).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{ws_stalling}/"), tcp)
            .await
            .unwrap();
        let started = Instant::now();
        let cut_off = loop {
            let message = Message::Binary(frame.clone().freeze());
            match tokio::time::timeout(Duration::from_secs(5), ws.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break true,
                Err(_) => {}
            }
            if started.elapsed() > Duration::from_secs(60) {
                break false;
            }
        };
        eprintln!("websocket cut off after {:?}", started.elapsed());
        assert!(
            cut_off,
            "the gate never hung up on a WebSocket client that does not read"
        );
    }
    let after_ws = rss_kib(pid);
    assert!(
        after_ws < before + 64 * 1024,
        "the gate's memory grew from {before} KiB to {after_ws} KiB"
    );

    // The gate still serves everyone else, and says what happened.
    let mut client = Client::connect(stalling).await.unwrap();
    echo(&mut client).await;
    let (_, body) = scrape(metrics, None).await;
    let stalls = stalls_of(&body);
    assert_eq!(stalls, 2, "{stalls} stalls counted for two stalled clients");
    drop(g);
}

/// A tiny deterministic generator (xorshift64*): the fuzz is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One fuzzed frame (or not quite a frame): valid, mutated, truncated, oversized or garbage.
fn fuzz_frame(rng: &mut Rng, codec: &Codec) -> Vec<u8> {
    let commands = [1, 2, 0, 0xFFFF_FF00, ERROR_COMMAND, rng.next() as u32];
    let command = commands[rng.below(commands.len() as u64) as usize];
    let len = rng.below(300) as usize;
    let payload = rng.bytes(len);
    let mut frame = BytesMut::new();
    codec.encode(command, &payload, &mut frame);
    let mut frame = frame.to_vec();
    match rng.below(8) {
        // Valid, as is.
        0..=2 => {}
        // A few bytes flipped anywhere (the header included).
        3 | 4 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(frame.len() as u64) as usize;
                frame[i] ^= 1 << rng.below(8);
            }
        }
        // A random length field.
        5 => {
            let len = match rng.below(3) {
                0 => rng.below(4) as u32,
                1 => u32::MAX - rng.below(16) as u32,
                _ => rng.next() as u32,
            };
            frame[9..13].copy_from_slice(&len.to_be_bytes());
        }
        // Cut short.
        6 => frame.truncate(rng.below(frame.len() as u64) as usize),
        // Garbage.
        _ => {
            let len = 1 + rng.below(64) as usize;
            frame = rng.bytes(len);
        }
    }
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_random_and_mutated_frames_never_take_the_gate_down() {
    let ws = free_addr();
    let g = gate("edgefuzz", vec![Listener::ws(ws)], |n| n);
    let pid = g.node_pid();
    let codec = Codec::new(&ProtocolSettings::default());
    let mut rng = Rng(0x5EED_F1EF_1700_0013);
    let started = Instant::now();
    let mut frames = 0;
    // 400 connections of up to 12 fuzzed frames each, 8 at a time: each writes its frames,
    // says it is done (half close) and reads until the gate hangs up.
    for _round in 0..50 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let mut bytes = Vec::new();
            for _ in 0..=rng.below(12) {
                bytes.extend(fuzz_frame(&mut rng, &codec));
                frames += 1;
            }
            let probe = g.probe;
            batch.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(probe).await.unwrap();
                // The gate may hang up mid-write (a bad header): that is its answer.
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                let mut sink = vec![0u8; 64 << 10];
                let read_all =
                    async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
                tokio::time::timeout(Duration::from_secs(20), read_all)
                    .await
                    .expect("the gate neither answered nor hung up");
            });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap();
        }
    }
    // The same over WebSocket: random binary messages, some of them text.
    for _ in 0..40 {
        use futures_util::SinkExt as _;
        use tokio_tungstenite::tungstenite::Message;
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/"))
            .await
            .unwrap();
        for _ in 0..=rng.below(8) {
            let frame = fuzz_frame(&mut rng, &codec);
            frames += 1;
            let message = if rng.below(10) == 0 {
                Message::Text(String::from_utf8_lossy(&frame).into_owned().into())
            } else {
                Message::Binary(frame.into())
            };
            if socket.send(message).await.is_err() {
                break;
            }
        }
        let _ = socket.close(None).await;
    }
    eprintln!("fuzzed {frames} frames in {:?}", started.elapsed());
    assert!(frames >= 2000, "{frames}");

    // The same node process still serves a well-behaved client.
    assert_eq!(g.node_pid(), pid, "the node was restarted");
    let mut client = Client::connect(g.probe).await.unwrap();
    for _ in 0..10 {
        echo(&mut client).await;
    }
    assert!(!g.up.logged(&["panicked"]), "a panic was logged");
    drop(g);
}

/// Runs `openssl` with `args` in `dir`, asserting it succeeds.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA in `dir` (`ca.pem`, `ca.key`).
fn make_ca(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=edge-test-ca",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
}

/// A certificate for `localhost` and 127.0.0.1 signed by the test CA, named `cn`, written to
/// `cert` and `key` in `dir` (by renames, as a certificate manager would).
fn make_leaf(dir: &std::path::Path, cn: &str, cert: &str, key: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "new.key",
            "-out",
            "new.csr",
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "new.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "new.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    std::fs::rename(dir.join("new.key"), dir.join(key)).unwrap();
    std::fs::rename(dir.join("new.pem"), dir.join(cert)).unwrap();
}

/// A rustls client trusting only the test CA in `dir`.
fn tls_connector(dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

type TlsClient = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `addr` for `localhost`, verified against the test CA.
async fn tls_connect(dir: &std::path::Path, addr: SocketAddr) -> TlsClient {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector(dir).connect(name, tcp).await.unwrap()
}

/// The subject CN of the certificate the server showed on `stream`.
fn peer_cn(stream: &TlsClient) -> String {
    let der = &stream.get_ref().1.peer_certificates().unwrap()[0];
    // The CN is the last printable string in a leaf this simple: find it by its value.
    let text = String::from_utf8_lossy(der.as_ref()).into_owned();
    ["first-cert", "second-cert"]
        .into_iter()
        .find(|cn| text.contains(cn))
        .unwrap_or("unknown")
        .to_owned()
}

/// One echo round trip of `payload` over a TLS stream.
async fn tls_echo(stream: &mut TlsClient, payload: &[u8]) {
    let codec = Codec::new(&ProtocolSettings::default());
    let mut buf = BytesMut::new();
    codec.encode(1, payload, &mut buf);
    stream.write_all(&buf).await.unwrap();
    stream.flush().await.unwrap();
    let mut rbuf = BytesMut::new();
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(frame) = codec.decode(&mut rbuf).unwrap() {
                return frame;
            }
            assert!(stream.read_buf(&mut rbuf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .unwrap();
    assert_eq!((frame.command, &frame.payload[..]), (1, payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_wss_listeners_serve_and_reload_their_certificate_without_dropping_anyone() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    make_ca(&d);
    make_leaf(&d, "first-cert", "cert.pem", "key.pem");
    let (tls, wss, metrics) = (free_addr(), free_addr(), free_addr());
    let pem = || {
        Some(Tls {
            cert: "cert.pem",
            key: "key.pem",
        })
    };
    let listeners = vec![
        Listener {
            tls: pem(),
            ..Listener::tcp(tls)
        },
        Listener {
            tls: pem(),
            ..Listener::ws(wss)
        },
    ];
    let g = gate_in(dir, "edgetls", listeners, |n| n.metrics(metrics));

    // A Rust client (rustls, verifying the chain and the name).
    let mut kept = tls_connect(&d, tls).await;
    assert_eq!(peer_cn(&kept), "first-cert");
    tls_echo(&mut kept, b"over tls").await;

    // `openssl s_client`, verifying against the CA: the same frames inside TLS.
    let codec = Codec::new(&ProtocolSettings::default());
    let mut request = BytesMut::new();
    codec.encode(1, b"from s_client", &mut request);
    let request = request.to_vec();
    let ca = d.join("ca.pem");
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-servername",
                "localhost",
            ])
            .arg("-connect")
            .arg(tls.to_string())
            .arg("-CAfile")
            .arg(&ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(&request).unwrap();
        let mut reply = vec![0u8; request.len()];
        let read = child.stdout.as_mut().unwrap().read_exact(&mut reply);
        let _ = child.kill();
        let _ = child.wait();
        read.map(|()| reply)
    })
    .await
    .unwrap()
    .expect("no echo through openssl s_client");
    let mut reply = BytesMut::from(&reply[..]);
    let frame = codec.decode(&mut reply).unwrap().unwrap();
    assert_eq!(
        (frame.command, &frame.payload[..]),
        (1, &b"from s_client"[..])
    );

    // A WebSocket client over wss:// (TLS, then the upgrade).
    let stream = tls_connect(&d, wss).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/", stream)
        .await
        .unwrap();
    let mut frame = BytesMut::new();
    codec.encode(1, b"over wss", &mut frame);
    ws.send(Message::Binary(frame.freeze())).await.unwrap();
    let answer = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(data))) => break data,
            Some(Ok(_)) => continue,
            other => panic!("no answer over wss: {other:?}"),
        }
    };
    let frame = codec
        .decode(&mut BytesMut::from(&answer[..]))
        .unwrap()
        .unwrap();
    assert_eq!(&frame.payload[..], b"over wss");

    // A renewed certificate is served to new handshakes; connections up keep going.
    make_leaf(&d, "second-cert", "cert.pem", "key.pem");
    let until = deadline(Duration::from_secs(30));
    loop {
        let fresh = tls_connect(&d, tls).await;
        if peer_cn(&fresh) == "second-cert" {
            break;
        }
        assert!(
            Instant::now() < until,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = tls_connect(&d, wss).await;
    assert_eq!(peer_cn(&fresh), "second-cert", "wss reloads too");
    tls_echo(&mut kept, b"still here").await;
    let mut frame = BytesMut::new();
    codec.encode(1, b"still over wss", &mut frame);
    ws.send(Message::Binary(frame.freeze())).await.unwrap();
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap(),
        Some(Ok(Message::Binary(_)))
    ));

    // A client speaking plain frames to a TLS listener fails the handshake, counted.
    let mut plain = Client::connect(tls).await.unwrap();
    plain.send(1, b"not tls").await.unwrap();
    // (It gets a TLS alert, not a frame, then the close.)
    let _ = plain.wait_closed().await;
    let until = deadline(Duration::from_secs(10));
    loop {
        let (_, body) = scrape(metrics, None).await;
        if sample(&body, "firefly_tls_handshake_failures_total{node=\"gate\"}") >= 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the failed handshake was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken pair is not taken: the last good certificate keeps serving.
    std::fs::write(d.join("key.pem"), "not a key").unwrap();
    let until = deadline(Duration::from_secs(30));
    while !g.up.logged(&["TLS certificate not reloaded"]) {
        assert!(Instant::now() < until, "the broken key was not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut still = tls_connect(&d, tls).await;
    assert_eq!(peer_cn(&still), "second-cert");
    tls_echo(&mut still, b"old cert still serves").await;
    drop(g);
}
