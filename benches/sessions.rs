//! Sessions at scale, against bare tokio servers measured in the same run:
//!
//! * **broadcast**: time from one client's `push_all` request (lobby 111) until every one of
//!   `--broadcast` real TCP connections has received the push; the baseline is a bare tokio
//!   server that fans one frame out to all its connections through per-connection queues.
//! * **memory**: resident memory per idle session, from the server process's RSS before and
//!   after `--idle` connections (each made one request, so its session exists); the baseline is
//!   a bare tokio server holding the same number of idle connections.
//!
//! The server runs in a child process (this binary re-executed), so client and server each
//! stay under the per-process file-descriptor limit; clients spread over 127.0.0.1-127.0.0.4
//! as source addresses.
//!
//! Run: `cargo bench --bench sessions -- [--broadcast 10000] [--idle 18000] [--rounds 5]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]
#![allow(missing_docs, reason = "a benchmark binary")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};

const TOPIC: u32 = 7007;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- the server side (child process) -----

/// A bare tokio server: every connection has a queue drained by its task; any request frame
/// is answered and then fanned out as one push to every connection.
async fn bare_server(listener: TcpListener) {
    let codec = Arc::new(Codec::new(&ProtocolSettings::default()));
    let all: Arc<std::sync::RwLock<Vec<mpsc::Sender<Bytes>>>> = Arc::default();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
        all.write().unwrap().push(tx.clone());
        let (codec, all) = (codec.clone(), all.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut rbuf = BytesMut::with_capacity(4096);
            loop {
                tokio::select! {
                    read = stream.read_buf(&mut rbuf) => {
                        if !matches!(read, Ok(n) if n > 0) { break; }
                        while let Ok(Some(frame)) = codec.decode(&mut rbuf) {
                            let mut out = BytesMut::new();
                            codec.encode(frame.command, &frame.payload, &mut out);
                            let _ = tx.try_send(out.freeze());
                            if frame.command == 111 {
                                let mut push = BytesMut::new();
                                codec.encode(TOPIC, b"\x81\xa4text\xa3all", &mut push);
                                let push = push.freeze();
                                for q in all.read().unwrap().iter() {
                                    let _ = q.try_send(push.clone());
                                }
                            }
                        }
                    }
                    Some(bytes) = rx.recv() => {
                        if stream.write_all(&bytes).await.is_err() { break; }
                    }
                }
            }
        });
    }
}

/// The child: serves `kind` (`firefly` or `bare`) on 127.0.0.1, prints its address, and
/// exits when stdin closes.
fn child(kind: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = if kind == "firefly" {
            let node = firefly_testkit::start_node(&["lobby"]).await;
            let addr = firefly_testkit::addr(&node);
            std::mem::forget(node);
            addr
        } else {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(bare_server(listener));
            addr
        };
        println!("ADDR {addr}");
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
    });
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(kind: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--child", kind])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("child exited").unwrap();
            if let Some(a) = line.strip_prefix("ADDR ") {
                break a.parse().unwrap();
            }
        };
        Server { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ----- the client side -----

/// Opens `n` connections (source addresses 127.0.0.1-4 in turn); each makes one request
/// (lobby 105, or any frame for the bare server) so its session exists.
async fn connect_all(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let codec = Codec::new(&ProtocolSettings::default());
    let mut request = BytesMut::new();
    codec.encode(105, b"\xc0", &mut request);
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        let source: SocketAddr = format!("127.0.0.{}:0", 1 + i % 4).parse().unwrap();
        socket.bind(source).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(&request).await.unwrap();
        streams.push(stream);
    }
    // Every reply read: every session is registered.
    for stream in &mut streams {
        let mut buf = BytesMut::new();
        while codec.decode(&mut buf).unwrap().is_none() {
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    }
    streams
}

/// Median time from the trigger until all `n` connections have read one push, over `rounds`.
async fn broadcast(kind: &str, n: usize, rounds: usize) -> Duration {
    let server = Server::spawn(kind);
    let streams = connect_all(server.addr, n).await;
    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let (go_tx, _) = tokio::sync::broadcast::channel::<()>(4);
    let mut tasks = Vec::new();
    for mut stream in streams {
        let (received, done) = (received.clone(), done.clone());
        let mut go = go_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let codec = Codec::new(&ProtocolSettings::default());
            let mut buf = BytesMut::with_capacity(256);
            for _ in 0..rounds {
                if go.recv().await.is_err() {
                    return;
                }
                loop {
                    match codec.decode(&mut buf).unwrap() {
                        Some(f) if f.command == TOPIC => break,
                        Some(_) => continue,
                        None => {
                            assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
                        }
                    }
                }
                if received.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    done.notify_one();
                }
            }
        }));
    }
    let codec = Codec::new(&ProtocolSettings::default());
    let mut trigger = TcpStream::connect(server.addr).await.unwrap();
    trigger.set_nodelay(true).unwrap();
    let mut shout = BytesMut::new();
    // {"topic": 7007, "text": "all"}
    codec.encode(111, b"\x82\xa5topic\xcd\x1b\x5f\xa4text\xa3all", &mut shout);
    let mut times = Vec::new();
    for _ in 0..rounds {
        received.store(0, Ordering::Release);
        go_tx.send(()).unwrap();
        // Let every client task wait on its socket before the trigger.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let all = done.notified();
        trigger.write_all(&shout).await.unwrap();
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("not every client got the push");
        times.push(started.elapsed());
    }
    for t in tasks {
        let _ = t.await;
    }
    times.sort();
    times[times.len() / 2]
}

/// RSS of the server per idle connection (KiB), and the connections it was measured with.
async fn idle_rss(kind: &str, n: usize) -> f64 {
    let server = Server::spawn(kind);
    // Warm up: one connection, so lazily built state (instances, buffers) is counted in the
    // "before" figure rather than spread over the sessions.
    let warm = connect_all(server.addr, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let streams = connect_all(server.addr, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    drop((streams, warm));
    (after.saturating_sub(before)) as f64 / n as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1]);
    }
    let n_broadcast = arg("--broadcast", 10_000);
    let n_idle = arg("--idle", 18_000);
    let rounds = arg("--rounds", 5);
    // Both child servers are built before timing anything.
    let _ = firefly_testkit::module_wasm("lobby");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bare = broadcast("bare", n_broadcast, rounds).await;
        let ff = broadcast("firefly", n_broadcast, rounds).await;
        println!(
            "broadcast to {n_broadcast} connected sessions (median of {rounds}): firefly {:.2} ms, bare tokio {:.2} ms, ratio bare/firefly {:.2}",
            ff.as_secs_f64() * 1e3,
            bare.as_secs_f64() * 1e3,
            bare.as_secs_f64() / ff.as_secs_f64()
        );
        let bare = idle_rss("bare", n_idle).await;
        let ff = idle_rss("firefly", n_idle).await;
        println!(
            "RSS per idle session with {n_idle} connected on one gate: firefly {ff:.1} KiB, bare tokio {bare:.1} KiB, ratio firefly/bare {:.2}; 50,000 sessions at this rate: {:.0} MiB",
            ff / bare,
            ff * 50_000.0 / 1024.0
        );
    });
}
