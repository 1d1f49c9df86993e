//! One client connection: read frames, dispatch in order, write replies and pushes.

use std::net::SocketAddr;

use bytes::BytesMut;
use firefly_abi::{DispatchKind, codes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Listener;
use std::collections::VecDeque;

use crate::cluster::wire::Msg;
use crate::cluster::{Peer, Pending, RpcError};
use crate::engine::Lease;
use crate::protocol::{ErrorReply, Frame, FrameError};
use crate::sessions::Outbound;

/// Replies are flushed once this much is buffered, even mid-batch.
const FLUSH_AT: usize = 64 * 1024;

pub(super) async fn run(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let node = &shared.node;
    let (session, mut outbound) = node.sessions.register();
    tracing::debug!(session, %peer, "connected");
    node.announce(session, true);
    node.session_event(DispatchKind::Connect, session).await;

    let idle = shared.settings.idle_timeout;
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut scratch = Scratch::default();
    let mut last_read = Instant::now();
    // Re-armed only when it fires, not on every read: resetting a timer per read costs more
    // than checking the last read time once per idle period.
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);

    let reason = loop {
        tokio::select! {
            biased;
            read = stream.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => break "closed by peer",
                    Err(_) => break "read error",
                    Ok(_) => {}
                }
                last_read = Instant::now();
                let close = process(shared, session, &mut rbuf, &mut wbuf, &mut stream, &mut scratch).await;
                scratch.flush_stats(shared);
                drain_outbound(shared, &mut outbound, &mut wbuf);
                if !wbuf.is_empty() && stream.write_all(&wbuf).await.is_err() {
                    break "write error";
                }
                wbuf.clear();
                if let Some(reason) = close {
                    break reason;
                }
                if rbuf.is_empty() && rbuf.capacity() > 256 * 1024 {
                    // A large frame passed through; do not keep its buffer for an idle client.
                    rbuf = BytesMut::with_capacity(4096);
                }
            }
            msg = outbound.recv() => {
                match msg {
                    Some(Outbound::Push { topic, payload }) => shared.codec.encode(topic, &payload, &mut wbuf),
                    Some(Outbound::Kick) | None => break "kicked",
                }
                if drain_outbound(shared, &mut outbound, &mut wbuf) {
                    let _ = stream.write_all(&wbuf).await;
                    break "kicked";
                }
                if stream.write_all(&wbuf).await.is_err() {
                    break "write error";
                }
                wbuf.clear();
            }
            () = &mut sleep => {
                let deadline = last_read + idle;
                if Instant::now() >= deadline {
                    break "idle timeout";
                }
                sleep.as_mut().reset(deadline);
            }
            _ = shutdown.changed() => break "node stopping",
        }
    };
    tracing::debug!(session, %peer, reason, "disconnected");
    node.sessions.remove(session);
    node.announce(session, false);
    let node = node.clone();
    tokio::spawn(async move { node.session_event(DispatchKind::Disconnect, session).await });
}

/// Moves queued pushes into the write buffer. Returns true when a kick was found.
fn drain_outbound(
    shared: &Listener,
    outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    wbuf: &mut BytesMut,
) -> bool {
    while let Ok(msg) = outbound.try_recv() {
        match msg {
            Outbound::Push { topic, payload } => shared.codec.encode(topic, &payload, wbuf),
            Outbound::Kick => return true,
        }
    }
    false
}

/// Per-connection working state reused across requests.
#[derive(Default)]
struct Scratch {
    /// Reply bytes; swapped with the instance's output buffer, so neither side reallocates.
    reply: Vec<u8>,
    /// The instance serving the current batch of frames; released when the batch is done, so
    /// an idle connection never holds one.
    lease: Option<Lease>,
    /// Requests and errors since the last flush to the shared (striped) counters: counting
    /// per batch instead of per request keeps shared cache lines out of the hot loop.
    requests: u64,
    errors: u64,
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

/// Most forwarded requests one connection keeps in flight to one node.
const MAX_PIPELINE: usize = 64;

/// Requests forwarded to one node whose replies are still to be written, oldest first.
type Inflight<'a> = VecDeque<(u32, &'a Peer, Result<Pending<'a>, RpcError>)>;

/// Dispatches every complete frame in `rbuf`, in order, appending replies to `wbuf`.
/// Returns why the connection must close, if it must.
///
/// Consecutive requests that go to the same remote node are pipelined: all are sent, then the
/// replies are written in order. That node runs one session's requests one at a time in
/// arrival order, and before a request goes anywhere else (another node, a local module) the
/// earlier ones are answered — so a session's requests still run one at a time, in order.
async fn process(
    shared: &Listener,
    session: u64,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    stream: &mut TcpStream,
    scratch: &mut Scratch,
) -> Option<&'static str> {
    let error_command = shared.settings.error_command;
    let node = &shared.node;
    let mut inflight: Inflight<'_> = VecDeque::new();
    let close = loop {
        match shared.codec.decode(rbuf) {
            Ok(Some(frame)) => {
                let command = frame.command;
                let local = node.lease_for(command, &mut scratch.lease);
                if !local && let Some(route) = node.remote_route(command) {
                    // Never hold a local instance while waiting on the network.
                    scratch.lease = None;
                    scratch.requests += 1;
                    let Some(peer) = route.pick(session) else {
                        continue;
                    };
                    if inflight
                        .front()
                        .is_some_and(|(_, p, _)| p.name != peer.name)
                    {
                        drain(shared, &mut inflight, wbuf, scratch).await;
                    }
                    let payload = serde_bytes::ByteBuf::from(frame.payload.to_vec());
                    let started = peer
                        .start(|id| Msg::Forward {
                            id,
                            session,
                            command,
                            payload,
                        })
                        .await;
                    inflight.push_back((command, peer.as_ref(), started));
                    if inflight.len() >= MAX_PIPELINE {
                        drain(shared, &mut inflight, wbuf, scratch).await;
                    }
                    continue;
                }
                if !inflight.is_empty() {
                    drain(shared, &mut inflight, wbuf, scratch).await;
                }
                dispatch(shared, session, frame, local, wbuf, scratch).await;
                if wbuf.len() >= FLUSH_AT {
                    // A slow reader must not keep an instance busy while we wait on it.
                    scratch.lease = None;
                    if stream.write_all(wbuf).await.is_err() {
                        break Some("write error");
                    }
                    wbuf.clear();
                }
            }
            Ok(None) => break None,
            Err(FrameError::BadHeader) => break Some("bad header"),
            Err(err) => {
                drain(shared, &mut inflight, wbuf, scratch).await;
                let code = match err {
                    FrameError::TooShort { .. } => codes::BAD_FRAME,
                    _ => codes::FRAME_TOO_LARGE,
                };
                let reply = ErrorReply::new(0, code, err.to_string());
                shared
                    .codec
                    .encode(error_command, &reply.to_msgpack(), wbuf);
                scratch.errors += 1;
                break Some("bad frame");
            }
        }
    };
    // Requests that arrived before the end of the batch (or a bad frame) are still answered.
    if !inflight.is_empty() {
        drain(shared, &mut inflight, wbuf, scratch).await;
    }
    scratch.lease = None;
    close
}

/// Waits for every in-flight forwarded request, oldest first, and writes its answer.
async fn drain(
    shared: &Listener,
    inflight: &mut Inflight<'_>,
    wbuf: &mut BytesMut,
    scratch: &mut Scratch,
) {
    while let Some((command, peer, started)) = inflight.pop_front() {
        let answer = match started {
            Ok(pending) => pending.wait().await,
            Err(err) => Err(err),
        };
        write_answer(shared, command, peer, answer, wbuf, scratch);
    }
}

/// Serves one frame with a local module: `scratch.lease` is already on the module that
/// handles it when `local` is true; otherwise no module here does.
async fn dispatch(
    shared: &Listener,
    session: u64,
    frame: Frame,
    local: bool,
    wbuf: &mut BytesMut,
    scratch: &mut Scratch,
) {
    let node = &shared.node;
    scratch.requests += 1;
    let command = frame.command;
    if !local {
        scratch.errors += 1;
        let reply = ErrorReply::new(
            command,
            codes::UNKNOWN_COMMAND,
            format!(
                "no module on node `{}` handles command {command}",
                node.name
            ),
        );
        shared
            .codec
            .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
        return;
    };
    let Some(lease) = scratch.lease.as_mut() else {
        return;
    };
    let outcome = lease
        .call(
            DispatchKind::Request,
            command,
            session,
            frame.payload,
            &mut scratch.reply,
        )
        .await;
    let module = lease.module();
    for (topic, payload) in &outcome.own_pushes {
        shared.codec.encode(*topic, payload, wbuf);
    }
    match outcome.result {
        Ok(()) => {
            tracing::trace!(
                session,
                command,
                module = module.name(),
                version = module.version(),
                "ok"
            );
            shared.codec.encode(command, &scratch.reply, wbuf);
        }
        Err(err) => {
            scratch.errors += 1;
            tracing::debug!(
                session, command, module = module.name(), version = module.version(),
                code = %err.code, "request failed: {}", err.message
            );
            let reply = ErrorReply {
                command,
                code: err.code,
                message: err.message,
                module: Some(module.name().to_owned()),
                version: Some(module.version()),
            };
            shared
                .codec
                .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
        }
    }
}

/// Writes what a forwarded request got back: its pushes and reply, or an error frame.
fn write_answer(
    shared: &Listener,
    command: u32,
    peer: &Peer,
    answer: Result<Msg, RpcError>,
    wbuf: &mut BytesMut,
    scratch: &mut Scratch,
) {
    let error_command = shared.settings.error_command;
    match answer {
        Ok(Msg::Reply { pushes, result, .. }) => {
            for (topic, payload) in &pushes {
                shared.codec.encode(*topic, payload, wbuf);
            }
            match result {
                Ok(reply) => shared.codec.encode(command, &reply, wbuf),
                Err(reply) => {
                    scratch.errors += 1;
                    shared
                        .codec
                        .encode(error_command, &reply.to_msgpack(), wbuf);
                }
            }
        }
        Ok(other) => {
            scratch.errors += 1;
            let reply = ErrorReply::new(
                command,
                codes::INTERNAL,
                format!("unexpected answer {other:?}"),
            );
            shared
                .codec
                .encode(error_command, &reply.to_msgpack(), wbuf);
        }
        Err(err) => {
            scratch.errors += 1;
            let code = match err {
                RpcError::Timeout { .. } => codes::TIMEOUT,
                RpcError::Unavailable { .. } => codes::NODE_UNAVAILABLE,
            };
            tracing::debug!(command, peer = %peer.name, "forward failed: {err}");
            let reply = ErrorReply::new(command, code, err.to_string());
            shared
                .codec
                .encode(error_command, &reply.to_msgpack(), wbuf);
        }
    }
}
