//! One client connection: read frames, dispatch in order, write replies and pushes.

use std::net::SocketAddr;

use bytes::BytesMut;
use firefly_abi::{DispatchKind, codes};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Listener;
use super::forward::{Forwards, MAX_PIPELINE, write_answers};
use super::limits::Bucket;
use super::session_command::{After, Options, gate_command};
use super::transport::{Close, ReadError, Transport};

use crate::engine::{Batch, Lease};
use crate::protocol::session;
use crate::protocol::{ErrorReply, FrameError, HEADER_LEN};
use crate::routing::LocalRoute;
use crate::sessions::{Attached, KickReason, Outbound};

/// Replies are flushed once this much is buffered, even mid-batch.
const FLUSH_AT: usize = 64 * 1024;

/// Free space guaranteed to every read: the connection's initial buffer size, so an idle
/// connection holds no more than before (the bare echo baseline keeps 8 KiB).
const READ_SPARE: usize = 4096;

/// Most requests served by one batched entry into a module (each still has its own limits).
const MAX_BATCH: usize = 64;

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
        bucket: shared.settings.edge.rate_limit.map(Bucket::new),
        ..Scratch::default()
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
#[derive(Default)]
struct Scratch {
    /// The instance serving the current batch of frames; released when the batch is done, so
    /// an idle connection never holds one.
    lease: Option<Lease>,
    /// Consecutive requests for the lease's module version not yet served: served together
    /// (one entry into the guest) when a frame for something else arrives or the read is done.
    batch: Batch,
    /// Requests and errors since the last flush to the shared (striped) counters: counting
    /// per batch instead of per request keeps shared cache lines out of the hot loop.
    requests: u64,
    errors: u64,
    /// The session's request rate limit (`None`: unlimited). Per connection: a resumed
    /// session starts with a full bucket, which a reconnect loop cannot exploit past the
    /// per-address connection cap.
    bucket: Option<Bucket>,
    /// The connection's options (hello).
    options: Options,
}

impl Scratch {
    fn flush_stats(&mut self, shared: &Listener) {
        let stats = &shared.node.gate_stats;
        if self.requests > 0 {
            stats.requests.add(std::mem::take(&mut self.requests));
        }
        if self.errors > 0 {
            stats.errors.add(std::mem::take(&mut self.errors));
        }
    }
}

/// Dispatches every complete frame in `rbuf`, in order, appending replies to `wbuf`.
/// Returns why the connection must close, if it must.
///
/// Consecutive requests that go to the same remote node are pipelined: all are sent, then the
/// replies are written in order. That node runs one session's requests one at a time in
/// arrival order, and before a request goes anywhere else (another node, a local module) the
/// earlier ones are answered — so a session's requests still run one at a time, in order.
async fn process<T: Transport>(
    shared: &Listener,
    slot: &mut Attached,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    stream: &mut T,
    scratch: &mut Scratch,
) -> Option<End> {
    let error_command = shared.settings.error_command;
    let node = &shared.node;
    let mut fwd = Forwards::default();
    if let Some(bucket) = scratch.bucket.as_mut() {
        bucket.refill(Instant::now());
    }
    let close = loop {
        let session = slot.id;
        match shared.codec.decode(rbuf) {
            Ok(Some(frame)) => {
                let command = frame.command;
                if let Some(bucket) = scratch.bucket.as_mut()
                    && !bucket.take()
                {
                    // Answered in its place: what came before it is answered first.
                    if !serve_batch(shared, session, wbuf, stream, scratch).await {
                        break Some(End::Lost(Why::WriteError));
                    }
                    drain(shared, session, &mut fwd, wbuf, scratch).await;
                    rate_limited(shared, command, wbuf, scratch);
                    // A flood of tiny requests must not turn one read into a large buffer
                    // of refusals.
                    if wbuf.len() >= FLUSH_AT {
                        scratch.lease = None;
                        if stream.write(wbuf).await.is_err() {
                            break Some(End::Lost(Why::WriteError));
                        }
                        wbuf.clear();
                    }
                    continue;
                }
                if session::is_gate_command(command) {
                    if !serve_batch(shared, session, wbuf, stream, scratch).await {
                        break Some(End::Lost(Why::WriteError));
                    }
                    drain(shared, session, &mut fwd, wbuf, scratch).await;
                    scratch.lease = None;
                    scratch.requests += 1;
                    let (errors, options) = (&mut scratch.errors, &mut scratch.options);
                    let after =
                        gate_command(shared, slot, command, &frame.payload, wbuf, errors, options)
                            .await;
                    if after == After::LogOut {
                        break Some(End::Ended(Why::LoggedOut));
                    }
                    continue;
                }
                let route = node.local_route(command, scratch.lease.as_ref());
                if let LocalRoute::Other(version) = route {
                    // Requests queued for another module (or an older version) go first: a batch
                    // runs entirely on the version it leased.
                    if !fwd.is_empty() {
                        drain(shared, session, &mut fwd, wbuf, scratch).await;
                    }
                    if !serve_batch(shared, session, wbuf, stream, scratch).await {
                        break Some(End::Lost(Why::WriteError));
                    }
                    scratch.lease = Some(Lease::new(version));
                } else if matches!(route, LocalRoute::None) {
                    if !serve_batch(shared, session, wbuf, stream, scratch).await {
                        break Some(End::Lost(Why::WriteError));
                    }
                    if let Some(route) = node.remote_route(command) {
                        // Never hold a local instance while waiting on the network.
                        scratch.lease = None;
                        scratch.requests += 1;
                        let peer = match route.pick(session, &frame.payload) {
                            Ok(peer) => peer,
                            Err(why) => {
                                drain(shared, session, &mut fwd, wbuf, scratch).await;
                                refuse(shared, command, codes::BAD_REQUEST, why, wbuf, scratch);
                                continue;
                            }
                        };
                        if fwd.other_than(peer) {
                            drain(shared, session, &mut fwd, wbuf, scratch).await;
                        }
                        let payload = serde_bytes::ByteBuf::from(frame.payload.to_vec());
                        fwd.gather(peer, command, payload);
                        if fwd.pending >= MAX_PIPELINE {
                            drain(shared, session, &mut fwd, wbuf, scratch).await;
                        }
                        continue;
                    }
                    if !fwd.is_empty() {
                        drain(shared, session, &mut fwd, wbuf, scratch).await;
                    }
                    unknown_command(shared, command, wbuf, scratch);
                    continue;
                }
                scratch.batch.push(command, frame.payload);
                if (scratch.batch.len() >= MAX_BATCH || scratch.batch.queued_bytes() >= FLUSH_AT)
                    && !serve_batch(shared, session, wbuf, stream, scratch).await
                {
                    break Some(End::Lost(Why::WriteError));
                }
            }
            Ok(None) => break None,
            Err(FrameError::BadHeader) => break Some(End::Ended(Why::BadHeader)),
            Err(err) => {
                if !serve_batch(shared, slot.id, wbuf, stream, scratch).await {
                    break Some(End::Lost(Why::WriteError));
                }
                drain(shared, session, &mut fwd, wbuf, scratch).await;
                let (code, why) = match err {
                    FrameError::TooShort { .. } => (codes::BAD_FRAME, Why::BadFrame),
                    _ => (codes::FRAME_TOO_LARGE, Why::FrameTooLarge),
                };
                let reply = ErrorReply::new(0, code, err.to_string());
                shared
                    .codec
                    .encode(error_command, &reply.to_msgpack(), wbuf);
                scratch.errors += 1;
                break Some(End::Ended(why));
            }
        }
    };
    // Requests that arrived before the end of the batch (or a bad frame) are still answered.
    // (After a write error nothing can be answered any more: the queue is just dropped.)
    if !matches!(close, Some(End::Lost(_))) {
        serve_batch(shared, slot.id, wbuf, stream, scratch).await;
    }
    scratch.batch.clear();
    if !fwd.is_empty() {
        drain(shared, slot.id, &mut fwd, wbuf, scratch).await;
    }
    scratch.lease = None;
    close
}

/// Waits for every in-flight forwarded request, oldest first, and writes its answer.
async fn drain(
    shared: &Listener,
    session: u64,
    fwd: &mut Forwards<'_>,
    wbuf: &mut BytesMut,
    scratch: &mut Scratch,
) {
    fwd.send(session).await;
    while let Some((commands, peer, started)) = fwd.inflight.pop_front() {
        let answer = match started {
            Ok(pending) => pending.wait().await,
            Err(err) => Err(err),
        };
        fwd.pending = fwd.pending.saturating_sub(commands.len());
        let push_frames = scratch.options.push_frames;
        write_answers(
            shared,
            &commands,
            peer,
            answer,
            wbuf,
            &mut scratch.errors,
            push_frames,
        );
    }
    fwd.pending = 0;
}

/// Answers `command` with an error frame the gate decides itself.
fn refuse(
    shared: &Listener,
    command: u32,
    code: &str,
    why: String,
    wbuf: &mut BytesMut,
    scratch: &mut Scratch,
) {
    scratch.requests += 1;
    scratch.errors += 1;
    let reply = ErrorReply::new(command, code, why);
    shared
        .codec
        .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
}

/// Answers a request past the session's rate limit (it is not served).
fn rate_limited(shared: &Listener, command: u32, wbuf: &mut BytesMut, scratch: &mut Scratch) {
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
    refuse(
        shared,
        command,
        crate::protocol::edge::RATE_LIMITED,
        message,
        wbuf,
        scratch,
    );
}

/// Answers a request no module here (or on a routed node) handles.
fn unknown_command(shared: &Listener, command: u32, wbuf: &mut BytesMut, scratch: &mut Scratch) {
    scratch.requests += 1;
    scratch.errors += 1;
    let reply = shared.node.unknown_command(command);
    shared
        .codec
        .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
}

/// Serves the queued requests (`scratch.batch`) on `scratch.lease` and appends their pushes and
/// replies (or error frames) to `wbuf`, in request order. Flushes `wbuf` to the client when it
/// has grown past [`FLUSH_AT`]; false when that write failed.
async fn serve_batch<T: Transport>(
    shared: &Listener,
    session: u64,
    wbuf: &mut BytesMut,
    stream: &mut T,
    scratch: &mut Scratch,
) -> bool {
    if scratch.batch.is_empty() {
        return true;
    }
    let Some(lease) = scratch.lease.as_mut() else {
        // Unreachable: requests are queued only with a lease on their module.
        scratch.batch.clear();
        return true;
    };
    lease.call_batch(session, &mut scratch.batch).await;
    let module = lease.module();
    let codec = &shared.codec;
    for answer in scratch.batch.answers() {
        scratch.requests += 1;
        let command = answer.command;
        for (topic, payload) in answer.pushes {
            codec.encode_push(scratch.options.push_frames, *topic, payload, wbuf);
        }
        match answer.reply(session, module) {
            Ok(reply) => codec.encode(command, reply, wbuf),
            Err(reply) => {
                scratch.errors += 1;
                codec.encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
            }
        }
    }
    scratch.batch.clear();
    if wbuf.len() >= FLUSH_AT {
        // A slow reader must not keep an instance busy while we wait on it.
        scratch.lease = None;
        if stream.write(wbuf).await.is_err() {
            return false;
        }
        wbuf.clear();
    }
    true
}
