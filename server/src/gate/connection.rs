//! One client connection: read frames, dispatch in order, write replies and pushes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use firefly_abi::{DispatchKind, codes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Listener;
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
    node.session_event(DispatchKind::Connect, session).await;

    let idle = shared.settings.idle_timeout;
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::with_capacity(4096);
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
                let close = process(shared, session, &mut rbuf, &mut wbuf, &mut stream).await;
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

/// Dispatches every complete frame in `rbuf`, in order, appending replies to `wbuf`.
/// Returns why the connection must close, if it must.
async fn process(
    shared: &Listener,
    session: u64,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    stream: &mut TcpStream,
) -> Option<&'static str> {
    let error_command = shared.settings.error_command;
    loop {
        match shared.codec.decode(rbuf) {
            Ok(Some(frame)) => {
                dispatch(shared, session, frame, wbuf).await;
                if wbuf.len() >= FLUSH_AT {
                    if stream.write_all(wbuf).await.is_err() {
                        return Some("write error");
                    }
                    wbuf.clear();
                }
            }
            Ok(None) => return None,
            Err(FrameError::BadHeader) => return Some("bad header"),
            Err(err) => {
                let code = match err {
                    FrameError::TooShort { .. } => codes::BAD_FRAME,
                    _ => codes::FRAME_TOO_LARGE,
                };
                let reply = ErrorReply::new(0, code, err.to_string());
                shared
                    .codec
                    .encode(error_command, &reply.to_msgpack(), wbuf);
                shared
                    .node
                    .gate_stats
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
                return Some("bad frame");
            }
        }
    }
}

async fn dispatch(shared: &Listener, session: u64, frame: Frame, wbuf: &mut BytesMut) {
    let node = &shared.node;
    let stats = &node.gate_stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let command = frame.command;
    let Some(slot) = node.route(command) else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
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
    let module = slot.current();
    let outcome = module
        .call(DispatchKind::Request, command, session, frame.payload)
        .await;
    for (topic, payload) in &outcome.own_pushes {
        shared.codec.encode(*topic, payload, wbuf);
    }
    match outcome.result {
        Ok(reply) => {
            tracing::trace!(
                session,
                command,
                module = module.name(),
                version = module.version(),
                "ok"
            );
            shared.codec.encode(command, &reply, wbuf);
        }
        Err(err) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
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
