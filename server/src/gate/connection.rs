//! One client connection: read frames, dispatch in order, write replies and pushes.

use std::net::SocketAddr;

use bytes::BytesMut;
use firefly_abi::{DispatchKind, codes};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Listener;
use super::limits::Bucket;
use super::session_command::{After, Options, gate_command};
use super::transport::{Close, ReadError, Transport};

use crate::protocol::session;
use crate::protocol::{Answers, ErrorReply, FrameError, HEADER_LEN};
use crate::routing::Run;
use crate::sessions::{Attached, KickReason, Outbound};

/// Replies are flushed once this much is buffered, even mid-batch.
const FLUSH_AT: usize = 64 * 1024;

/// Free space guaranteed to every read: the connection's initial buffer size, so an idle
/// connection holds no more than before (the bare echo baseline keeps 8 KiB).
const READ_SPARE: usize = 4096;

/// Serves one client connection over `stream` until it closes, then detaches its session
/// (parked when resumable, else ended).
pub(super) async fn run<T: Transport>(
    mut stream: T,
    peer: SocketAddr,
    shared: &Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = &shared.node;
    let mut slot = node.sessions.attach_new(shared.settings.sessions.clone());
    let first = slot.id;
    tracing::debug!(session = first, %peer, "connected");
    node.announce(first, true);
    node.session_event(DispatchKind::Connect, first).await;

    let idle = shared.settings.idle_timeout;
    let mut rbuf = BytesMut::with_capacity(READ_SPARE);
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut scratch = Scratch {
        run: Run::new(node, first),
        requests: 0,
        errors: 0,
        bucket: shared.settings.edge.rate_limit.map(Bucket::new),
        options: Options::default(),
    };
    let mut last_read = Instant::now();
    // Re-armed only when it fires, not on every read: resetting a timer per read costs more
    // than checking the last read time once per idle period.
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);

    let end = loop {
        // Every read gets room for a few pipelined batches. Without this the spare capacity
        // shrinks as frames are split off the front, and reads near the end of the buffer
        // return a frame or two (or half of one) each: more reads, more wake-ups, smaller
        // batches. Once the frames of the last read are dropped this reclaims the same
        // allocation instead of growing.
        rbuf.reserve(READ_SPARE);
        tokio::select! {
            biased;
            read = stream.read(&mut rbuf) => {
                match read {
                    Ok(0) => break End::Lost(Why::ClosedByPeer),
                    Err(ReadError::Io(err)) => {
                        tracing::debug!(session = slot.id, %peer, "read failed: {err}");
                        break End::Lost(Why::ReadError);
                    }
                    Err(ReadError::Text) => break End::Ended(Why::TextMessage),
                    Err(ReadError::TooLarge { size, max }) => {
                        // As an oversized frame: an error frame, then close.
                        let payload = size.saturating_sub(HEADER_LEN);
                        let max = max.saturating_sub(HEADER_LEN);
                        let message = format!("message of {payload} payload bytes exceeds the maximum of {max}");
                        let reply = ErrorReply::new(0, codes::FRAME_TOO_LARGE, message);
                        shared.codec.encode(shared.settings.error_command, &reply.to_msgpack(), &mut wbuf);
                        shared.node.gate_stats.errors.add(1);
                        let _ = stream.write(&wbuf).await;
                        break End::Ended(Why::FrameTooLarge);
                    }
                    Ok(_) => {}
                }
                last_read = Instant::now();
                // What was queued for this session before these frames arrived goes first: a
                // session kicked meanwhile (say its user logged in elsewhere) must not have
                // them served, and pushes keep their order ahead of the replies.
                if let Some(end) = drain_outbound(shared, &mut slot.rx, &mut wbuf, &scratch.options) {
                    let _ = stream.write(&wbuf).await;
                    break end;
                }
                let close = process(shared, &mut slot, &mut rbuf, &mut wbuf, &mut stream, &mut scratch).await;
                scratch.flush_stats(shared);
                let kicked = drain_outbound(shared, &mut slot.rx, &mut wbuf, &scratch.options);
                if !wbuf.is_empty() && stream.write(&wbuf).await.is_err() {
                    break End::Lost(Why::WriteError);
                }
                wbuf.clear();
                if let Some(end) = kicked.or(close) {
                    break end;
                }
                if rbuf.is_empty() && rbuf.capacity() > 256 * 1024 {
                    // A large frame passed through; do not keep its buffer for an idle client.
                    rbuf = BytesMut::with_capacity(READ_SPARE);
                }
            }
            msg = slot.rx.recv() => {
                let mut kicked = match msg {
                    Some(Outbound::Push { topic, payload }) => {
                        let tagged = scratch.options.push_frames;
                        shared.codec.encode_push(tagged, topic, &payload, &mut wbuf);
                        None
                    }
                    Some(Outbound::Kick(reason)) => Some(kick_frame(shared, reason, &mut wbuf)),
                    // The session went to another connection (a resume), or was ended.
                    None => break End::Lost(Why::TakenOver),
                };
                if kicked.is_none() {
                    kicked = drain_outbound(shared, &mut slot.rx, &mut wbuf, &scratch.options);
                }
                let written = stream.write(&wbuf).await;
                wbuf.clear();
                if let Some(end) = kicked {
                    break end;
                }
                if written.is_err() {
                    break End::Lost(Why::WriteError);
                }
            }
            () = &mut sleep => {
                let deadline = last_read + idle;
                if Instant::now() >= deadline {
                    break End::Lost(Why::IdleTimeout);
                }
                sleep.as_mut().reset(deadline);
            }
            _ = shutdown.changed() => break End::Ended(Why::NodeStopping),
        }
    };
    let (why, ended) = match end {
        End::Lost(w) => (w, false),
        End::Ended(w) => (w, true),
    };
    tracing::debug!(session = slot.id, %peer, reason = why.text(), "disconnected");
    stream.close(why.close()).await;
    node.sessions.detach(slot, ended);
}

/// How a connection ended.
enum End {
    /// The connection went away; a resumable session is parked.
    Lost(Why),
    /// The session ends with it (kicked, logged out, bad input, node stopping).
    Ended(Why),
}

/// Why a connection ended: for the log and, on WebSocket, the close frame.
#[derive(Debug, Clone, Copy)]
enum Why {
    ClosedByPeer,
    ReadError,
    WriteError,
    TakenOver,
    IdleTimeout,
    LoggedOut,
    NodeStopping,
    Kicked,
    BadHeader,
    BadFrame,
    FrameTooLarge,
    TextMessage,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Why::ClosedByPeer => "closed by peer",
            Why::ReadError => "read error",
            Why::WriteError => "write error",
            Why::TakenOver => "session taken over",
            Why::IdleTimeout => "idle timeout",
            Why::LoggedOut => "logged out",
            Why::NodeStopping => "node stopping",
            Why::Kicked => "kicked",
            Why::BadHeader => "bad header",
            Why::BadFrame => "bad frame",
            Why::FrameTooLarge => "frame too large",
            Why::TextMessage => "text message",
        }
    }

    /// The WebSocket close code and reason (README "WebSocket"); `None` when the peer is gone.
    fn close(self) -> Option<Close> {
        let (code, reason) = match self {
            Why::ClosedByPeer | Why::ReadError | Why::WriteError => return None,
            Why::TakenOver => (1000, "the session was resumed on another connection"),
            Why::IdleTimeout => (1000, "idle timeout"),
            Why::LoggedOut => (1000, "logged out"),
            Why::NodeStopping => (1001, "the node is stopping"),
            Why::Kicked => (4000, "kicked"),
            Why::BadHeader => (1002, "frame header does not match this listener"),
            Why::BadFrame => (1002, "bad frame: length below 4"),
            Why::FrameTooLarge => (1009, "frame too large"),
            Why::TextMessage => (
                1003,
                "text messages are refused: Firefly frames are binary messages",
            ),
        };
        Some(Close { code, reason })
    }
}

/// Writes the `kicked` error frame.
fn kick_frame(shared: &Listener, reason: KickReason, wbuf: &mut BytesMut) -> End {
    let reply = ErrorReply::new(0, session::KICKED, reason.message());
    shared
        .codec
        .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
    End::Ended(Why::Kicked)
}

/// Moves queued pushes into the write buffer. Returns how the connection ends when a kick
/// was found (its error frame is written).
fn drain_outbound(
    shared: &Listener,
    outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    wbuf: &mut BytesMut,
    options: &Options,
) -> Option<End> {
    while let Ok(msg) = outbound.try_recv() {
        match msg {
            Outbound::Push { topic, payload } => {
                shared
                    .codec
                    .encode_push(options.push_frames, topic, &payload, wbuf);
            }
            Outbound::Kick(reason) => return Some(kick_frame(shared, reason, wbuf)),
        }
    }
    None
}

/// Per-connection working state reused across requests.
struct Scratch<'a> {
    /// The session's requests being served: batched into module entries, forwarded, answered
    /// in order. Holds an instance only while a read's requests are being served.
    run: Run<'a>,
    /// Requests and errors the gate answered itself since the last flush to the shared
    /// (striped) counters (the run counts its own): counting per read instead of per request
    /// keeps shared cache lines out of the hot loop.
    requests: u64,
    errors: u64,
    /// The session's request rate limit (`None`: unlimited). Per connection: a resumed
    /// session starts with a full bucket, which a reconnect loop cannot exploit past the
    /// per-address connection cap.
    bucket: Option<Bucket>,
    /// The connection's options (hello).
    options: Options,
}

impl Scratch<'_> {
    fn flush_stats(&mut self, shared: &Listener) {
        let stats = &shared.node.gate_stats;
        let (requests, errors) = self.run.take_counts();
        let requests = requests + std::mem::take(&mut self.requests);
        let errors = errors + std::mem::take(&mut self.errors);
        if requests > 0 {
            stats.requests.add(requests);
        }
        if errors > 0 {
            stats.errors.add(errors);
        }
    }
}

/// A connection's answers: client frames appended to its write buffer.
struct ClientOut<'a> {
    shared: &'a Listener,
    wbuf: &'a mut BytesMut,
    push_frames: bool,
}

impl<'a> ClientOut<'a> {
    fn new(shared: &'a Listener, wbuf: &'a mut BytesMut, options: &Options) -> Self {
        Self {
            shared,
            wbuf,
            push_frames: options.push_frames,
        }
    }
}

impl Answers for ClientOut<'_> {
    fn push(&mut self, topic: u32, payload: &[u8]) {
        let codec = &self.shared.codec;
        codec.encode_push(self.push_frames, topic, payload, self.wbuf);
    }

    fn reply(&mut self, command: u32, payload: &[u8]) {
        self.shared.codec.encode(command, payload, self.wbuf);
    }

    fn error(&mut self, reply: &ErrorReply) {
        let command = self.shared.settings.error_command;
        self.shared
            .codec
            .encode(command, &reply.to_msgpack(), self.wbuf);
    }
}

/// Dispatches every complete frame in `rbuf`, in order, appending replies to `wbuf`.
/// Returns why the connection must close, if it must.
///
/// Requests go to the session's [`Run`], which serves them in order wherever they run (local
/// modules, other nodes); what the gate answers itself (gate commands, rate limits, bad
/// frames) waits for every earlier request's answer.
async fn process<T: Transport>(
    shared: &Listener,
    slot: &mut Attached,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    stream: &mut T,
    scratch: &mut Scratch<'_>,
) -> Option<End> {
    if let Some(bucket) = scratch.bucket.as_mut() {
        bucket.refill(Instant::now());
    }
    // A gate command may have resumed another session since the last read.
    scratch.run.set_session(slot.id);
    let close = loop {
        match shared.codec.decode(rbuf) {
            Ok(Some(frame)) => {
                let command = frame.command;
                let mut out = ClientOut::new(shared, wbuf, &scratch.options);
                if let Some(bucket) = scratch.bucket.as_mut()
                    && !bucket.take()
                {
                    // Answered in its place: what came before it is answered first.
                    let reply = rate_limited(shared, command);
                    scratch.run.answer_here(&reply, &mut out).await;
                } else if session::is_gate_command(command) {
                    scratch.run.finish(&mut out).await;
                    scratch.requests += 1;
                    let (errors, options) = (&mut scratch.errors, &mut scratch.options);
                    let after =
                        gate_command(shared, slot, command, &frame.payload, wbuf, errors, options)
                            .await;
                    scratch.run.set_session(slot.id);
                    if after == After::LogOut {
                        break Some(End::Ended(Why::LoggedOut));
                    }
                    continue;
                } else {
                    scratch.run.request(command, frame.payload, &mut out).await;
                }
                if wbuf.len() >= FLUSH_AT {
                    // A slow reader must not keep an instance busy while we wait on it, and a
                    // flood of tiny requests must not turn one read into a large buffer.
                    let mut out = ClientOut::new(shared, wbuf, &scratch.options);
                    scratch.run.settle(&mut out).await;
                    scratch.run.release();
                    if stream.write(wbuf).await.is_err() {
                        break Some(End::Lost(Why::WriteError));
                    }
                    wbuf.clear();
                }
            }
            Ok(None) => break None,
            Err(FrameError::BadHeader) => break Some(End::Ended(Why::BadHeader)),
            Err(err) => {
                let mut out = ClientOut::new(shared, wbuf, &scratch.options);
                let (code, why) = match err {
                    FrameError::TooShort { .. } => (codes::BAD_FRAME, Why::BadFrame),
                    _ => (codes::FRAME_TOO_LARGE, Why::FrameTooLarge),
                };
                let reply = ErrorReply::new(0, code, err.to_string());
                scratch.run.answer_here(&reply, &mut out).await;
                break Some(End::Ended(why));
            }
        }
    };
    // Requests that arrived before the end of the read (or a bad frame) are still answered.
    // (After a write error nothing can be answered any more: they are just dropped.)
    if matches!(close, Some(End::Lost(_))) {
        scratch.run.abandon();
    } else {
        let mut out = ClientOut::new(shared, wbuf, &scratch.options);
        scratch.run.finish(&mut out).await;
    }
    close
}

/// The answer to a request past the session's rate limit (it is not served).
fn rate_limited(shared: &Listener, command: u32) -> ErrorReply {
    let edge = &shared.node.gate_stats.edge;
    edge.rate_limited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let message = match shared.settings.edge.rate_limit {
        Some(l) => format!(
            "more than {} requests per second (burst {}): this request was not served",
            l.per_second, l.burst
        ),
        None => "rate limited".to_owned(),
    };
    ErrorReply::new(command, crate::protocol::edge::RATE_LIMITED, message)
}
