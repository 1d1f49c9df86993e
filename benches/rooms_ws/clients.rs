//! The load generator: light WebSocket clients, one task each, on the bench's own runtime.
//!
//! Firefly and the bare server speak Firefly's client protocol (one 17-byte-header frame per
//! binary message; join 521, input 522, state pushes on topic 5201). Colyseus clients speak
//! Colyseus 0.18's: a seat from `POST /matchmake/joinOrCreate/bench`, a WebSocket to
//! `/<processId>/<roomId>?sessionId=…`, the JOIN_ROOM acknowledgement, then `ROOM_DATA`
//! messages (`[13, "i", msgpack]` in, `[13, "s", msgpack]` out). Inputs to Firefly and the bare
//! server are requests and get a reply frame each (the protocol answers every request);
//! Colyseus inputs are one-way messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Join (or open) a room: `{room}`.
pub const JOIN: u32 = 521;
/// One input: `{room, x, y}`.
pub const INPUT: u32 = 522;
/// The room's state, pushed every tick.
pub const STATE_TOPIC: u32 = 5201;
/// Firefly's default error command.
pub const ERROR: u32 = 0xFFFF_FFFF;
/// Firefly's frame header length.
pub const HEADER: usize = 17;
/// Longest interval recorded (ms); longer ones land in the last bucket.
const BUCKETS: usize = 2001;

/// Which protocol the clients speak.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Firefly,
    Colyseus,
}

/// What every client adds to while it runs.
pub struct Stats {
    /// Broadcasts and intervals count only while this is set (the measured window).
    pub window: AtomicBool,
    /// Clients send inputs while this is set.
    pub sending: AtomicBool,
    pub broadcasts: AtomicU64,
    pub intervals: Vec<AtomicU64>,
    pub inputs_sent: AtomicU64,
    pub acks: AtomicU64,
    pub errors: AtomicU64,
    /// Size of a broadcast's payload (the room's state, without framing).
    pub state_bytes: AtomicU64,
    /// Per room, the `inputs` count of the last state its first member saw.
    pub applied: Vec<AtomicU64>,
}

impl Stats {
    pub fn new(rooms: usize) -> Arc<Stats> {
        Arc::new(Stats {
            window: AtomicBool::new(false),
            sending: AtomicBool::new(true),
            broadcasts: AtomicU64::new(0),
            intervals: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            inputs_sent: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            applied: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The `q` quantile of the recorded intervals, in ms.
    pub fn interval_quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .intervals
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let want = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return ms as u64;
            }
        }
        0
    }
}

#[derive(Serialize)]
struct Join<'a> {
    room: &'a str,
}

#[derive(Serialize)]
struct Input<'a> {
    room: &'a str,
    x: i32,
    y: i32,
}

#[derive(Serialize)]
struct ColyseusInput {
    x: i32,
    y: i32,
}

/// The one field of the state the clients read.
#[derive(Deserialize)]
struct Applied {
    inputs: u64,
}

#[derive(Deserialize)]
struct ErrorPayload {
    code: String,
}

#[derive(Deserialize)]
struct Seat {
    #[serde(rename = "sessionId")]
    session_id: String,
    #[serde(rename = "roomId")]
    room_id: String,
    #[serde(rename = "processId")]
    process_id: String,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Firefly frame: header, then `payload`.
pub fn frame(command: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&[0; 9]);
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&command.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The command id of a Firefly frame.
pub fn command_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(13..HEADER)?.try_into().ok()?))
}

/// Sends `req` on command `command` and waits for its reply (pushes before it are skipped);
/// an error frame's code is the error.
pub async fn request(ws: &mut Ws, command: u32, req: &impl Serialize) -> anyhow::Result<()> {
    let payload = rmp_serde::to_vec_named(req)?;
    ws.send(Message::binary(frame(command, &payload))).await?;
    while let Some(msg) = ws.next().await {
        let Message::Binary(bytes) = msg? else {
            continue;
        };
        match command_of(&bytes) {
            Some(c) if c == command => return Ok(()),
            Some(ERROR) => {
                let e: ErrorPayload = rmp_serde::from_slice(&bytes[HEADER..])?;
                anyhow::bail!("{}", e.code);
            }
            _ => {}
        }
    }
    anyhow::bail!("connection closed before the reply to {command}")
}

/// Connects one client to `addr` and joins room `room`.
pub async fn join(proto: Proto, addr: std::net::SocketAddr, room: &str) -> anyhow::Result<Ws> {
    match proto {
        Proto::Firefly => {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await?;
            request(&mut ws, JOIN, &Join { room }).await?;
            Ok(ws)
        }
        Proto::Colyseus => {
            let seat = reserve_seat(addr, room).await?;
            let url = format!(
                "ws://{addr}/{}/{}?sessionId={}",
                seat.process_id, seat.room_id, seat.session_id
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            // The server's JOIN_ROOM (code 10) first; the client acknowledges it with one byte.
            while let Some(msg) = ws.next().await {
                if let Message::Binary(bytes) = msg?
                    && bytes.first() == Some(&10)
                {
                    ws.send(Message::binary(vec![10u8])).await?;
                    return Ok(ws);
                }
            }
            anyhow::bail!("Colyseus closed the connection before JOIN_ROOM")
        }
    }
}

/// Colyseus' matchmaking: a seat in the room created for (or found by) option `room`.
async fn reserve_seat(addr: std::net::SocketAddr, room: &str) -> anyhow::Result<Seat> {
    let body = serde_json::json!({ "room": room }).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /matchmake/joinOrCreate/bench HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let (status, json) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer"))?;
    anyhow::ensure!(status.starts_with("HTTP/1.1 200"), "matchmaking: {text}");
    Ok(serde_json::from_str(json)?)
}

/// Runs one joined client until aborted: an input every 100 ms from `first_input`, counting
/// what arrives.
pub async fn run(
    proto: Proto,
    ws: Ws,
    room: String,
    room_index: usize,
    first_member: bool,
    first_input: tokio::time::Instant,
    stats: Arc<Stats>,
) {
    let (mut sink, mut stream) = ws.split();
    let mut inputs = tokio::time::interval_at(first_input, Duration::from_millis(100));
    inputs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    let mut n: i32 = 0;
    loop {
        tokio::select! {
            _ = inputs.tick() => {
                if !stats.sending.load(Ordering::Relaxed) {
                    continue;
                }
                n = n.wrapping_add(1);
                let (x, y) = (n % 3 - 1, 1);
                let bytes = match proto {
                    Proto::Firefly => frame(INPUT, &rmp_serde::to_vec_named(&Input { room: &room, x, y }).unwrap_or_default()),
                    Proto::Colyseus => {
                        let mut b = vec![13u8, 0xa1, b'i'];
                        b.extend(rmp_serde::to_vec_named(&ColyseusInput { x, y }).unwrap_or_default());
                        b
                    }
                };
                if sink.send(Message::binary(bytes)).await.is_err() {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                stats.inputs_sent.fetch_add(1, Ordering::Relaxed);
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let Message::Binary(bytes) = msg else { continue };
                let state = match proto {
                    Proto::Firefly => match command_of(&bytes) {
                        Some(STATE_TOPIC) => Some(&bytes[HEADER..]),
                        Some(INPUT) => {
                            stats.acks.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        Some(_) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        None => None,
                    },
                    Proto::Colyseus => bytes.starts_with(&[13, 0xa1, b's']).then(|| &bytes[3..]),
                };
                let Some(state) = state else { continue };
                let now = Instant::now();
                if stats.window.load(Ordering::Relaxed) {
                    stats.broadcasts.fetch_add(1, Ordering::Relaxed);
                    if let Some(prev) = last {
                        let ms = now.duration_since(prev).as_millis() as usize;
                        stats.intervals[ms.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
                    }
                }
                last = Some(now);
                if first_member {
                    stats.state_bytes.store(state.len() as u64, Ordering::Relaxed);
                    if let Ok(a) = rmp_serde::from_slice::<Applied>(state) {
                        stats.applied[room_index].store(a.inputs, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
