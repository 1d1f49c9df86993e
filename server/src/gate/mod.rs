//! The client-facing side of a node: listeners speaking the Firefly protocol.
//!
//! One task per connection reads frames, runs them one at a time in arrival order (so replies
//! come back in request order) and writes the replies of everything that arrived together in
//! one write. Different connections run in parallel on tokio's worker threads.

mod connection;
mod limits;
mod origin;
mod session_command;
mod stall;
mod tls;
mod transport;

pub use tls::Tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::{ListenerKind, ProtocolSettings};
use crate::protocol::{Codec, HEADER_LEN};
use crate::routing::Dispatcher;

pub use crate::routing::GateStats;

pub(crate) struct Listener {
    pub codec: Codec,
    pub settings: ProtocolSettings,
    pub node: Arc<Dispatcher>,
}

/// How long a refused connection is given to take its refusal before it is dropped.
const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Most refusals being told at once per listener; past that a refused connection is closed
/// without a word, so a flood of connections cannot hold file descriptors open through them.
const MAX_REFUSALS: usize = 256;

/// How long a client has to complete its TLS handshake, and then its WebSocket upgrade.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` turns true, then waits for every
/// connection to finish the request it is running and close. `kind` says whether clients
/// speak plain TCP or WebSocket (the same frames either way), `tls` whether inside TLS (the
/// certificate is reloaded while the listener runs, see [`tls`]).
pub(crate) async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    settings: ProtocolSettings,
    tls: Option<Tls>,
    node: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
    }
    let caps = limits::Caps::new(&settings.edge);
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS));
    let shared = Arc::new(Listener {
        codec: Codec::new(&settings),
        settings,
        node,
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admitted = match caps.admit(peer.ip()) {
                        Ok(admitted) => admitted,
                        Err(why) => {
                            let told = if tls.is_some() { None } else { refusals.clone().try_acquire_owned().ok() };
                            refuse(stream, peer, kind, told, why, &shared);
                            continue;
                        }
                    };
                    let stats = &shared.node.gate_stats;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let (shared, shutdown) = (shared.clone(), shutdown.clone());
                    let acceptor = tls.as_ref().map(Tls::acceptor);
                    tokio::spawn(async move {
                        // Counted against the caps until the connection is done.
                        let _admitted = admitted;
                        let _ = stream.set_nodelay(true);
                        match acceptor {
                            None => serve_stream(stream, peer, kind, &shared, shutdown).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => serve_stream(tls, peer, kind, &shared, shutdown).await,
                                    Ok(Err(err)) => {
                                        tls_failed(&shared);
                                        tracing::debug!(%peer, "TLS handshake failed: {err}");
                                    }
                                    Err(_) => {
                                        tls_failed(&shared);
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                    }
                                }
                            }
                        }
                        let stats = &shared.node.gate_stats;
                        if stats.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
                            stats.idle.notify_waiters();
                        }
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(err) => {
                    tracing::warn!(%addr, "accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    tracing::debug!(%addr, "listener closed");
}

fn tls_failed(shared: &Listener) {
    let edge = &shared.node.gate_stats.edge;
    edge.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
}

/// Serves one connection over `stream` (TCP, or TLS over TCP): frames directly, or inside
/// WebSocket messages after the upgrade. Every write is bounded by the listener's
/// `write_stall`.
async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    kind: ListenerKind,
    shared: &Listener,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    S: transport::Transport,
{
    let stall = shared.settings.edge.write_stall;
    let node = shared.node.clone();
    match kind {
        ListenerKind::Tcp => {
            let stream = stall::Stall::new(stream, stall, node);
            connection::run(stream, peer, shared, shutdown).await;
        }
        ListenerKind::Ws => {
            let limit = shared.settings.max_frame as usize + HEADER_LEN;
            let config = WebSocketConfig::default()
                .read_buffer_size(8 * 1024)
                .max_message_size(Some(limit))
                .max_frame_size(Some(limit));
            let check = origin::Check(shared.settings.origins.clone());
            let upgrade =
                tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
                Ok(Ok(ws)) => {
                    let stream = stall::Stall::new(transport::Ws(ws), stall, node);
                    connection::run(stream, peer, shared, shutdown).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, "websocket upgrade failed: {err}"),
                Err(_) => tracing::debug!(%peer, "websocket upgrade timed out"),
            }
        }
    }
}

/// Turns away a connection past a cap: counted, told why where the transport can say it
/// before the handshake (a `too_many_connections` error frame on TCP, a 503 to a WebSocket
/// upgrade), then closed. The telling runs in its own task, bounded in time, so a client that
/// does not read cannot hold up the accept loop, and holds one of the listener's
/// [`MAX_REFUSALS`] permits (`told`; `None`: closed at once without a word, as on TLS, where a
/// handshake would cost what the cap saves).
fn refuse(
    mut stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    told: Option<tokio::sync::OwnedSemaphorePermit>,
    why: limits::Refusal,
    shared: &Listener,
) {
    let edge = &shared.node.gate_stats.edge;
    let (counter, message) = match why {
        limits::Refusal::Listener => (
            &edge.refused_listener_cap,
            format!(
                "the listener holds its maximum of {} connections",
                shared.settings.edge.max_connections
            ),
        ),
        limits::Refusal::Ip => (
            &edge.refused_ip_cap,
            format!(
                "{} holds its maximum of {} connections",
                peer.ip(),
                shared.settings.edge.max_connections_per_ip
            ),
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, "connection refused: {message}");
    let Some(permit) = told else {
        return;
    };
    let bytes = match kind {
        ListenerKind::Tcp => {
            let reply = crate::protocol::ErrorReply::new(
                0,
                crate::protocol::edge::TOO_MANY_CONNECTIONS,
                message,
            );
            let mut buf = bytes::BytesMut::new();
            shared
                .codec
                .encode(shared.settings.error_command, &reply.to_msgpack(), &mut buf);
            buf.to_vec()
        }
        ListenerKind::Ws => format!(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{message}",
            message.len()
        )
        .into_bytes(),
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            // Read (and drop) what the client still sends until it hangs up: closing with its
            // input unread would reset the connection, and a reset can destroy the refusal
            // before the client has read it (a WebSocket client sends its upgrade at once).
            let mut sink = [0u8; 2048];
            while stream.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        })
        .await;
    });
}

/// The address a listener is bound to, for logs.
pub(crate) fn describe(kind: ListenerKind, tls: bool, addr: &SocketAddr) -> String {
    match (kind, tls) {
        (ListenerKind::Tcp, false) => format!("tcp://{addr}"),
        (ListenerKind::Tcp, true) => format!("tls://{addr}"),
        (ListenerKind::Ws, false) => format!("ws://{addr}"),
        (ListenerKind::Ws, true) => format!("wss://{addr}"),
    }
}
