//! The connection under an outbound link ([`super::peer`]): the waiters of its requests by
//! id, and the loops that write its messages and hand each reply to its waiter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::route::RpcError;
use super::wire::{self, Msg};

pub(super) struct Link {
    pub(super) tx: wire::LinkTx,
    /// The listener's handshake nonce: the master's deploy signatures name it, so they are
    /// good on this link only.
    pub(super) nonce: Vec<u8>,
    pub(super) pending: Mutex<HashMap<u64, oneshot::Sender<Answered>>>,
    pub(super) next_id: AtomicU64,
    pub(super) alive: AtomicBool,
}

impl Link {
    pub(super) fn fail_all(&self) {
        self.alive.store(false, Ordering::Release);
        // Dropping the senders wakes every waiter with "connection lost".
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// What a request's waiter is given: the reply, or (over a queue group) why there is none.
pub(super) type Answered = Result<Msg, RpcError>;

pub(super) async fn write_loop(
    writer: impl AsyncWrite + Unpin,
    rx: mpsc::Receiver<Msg>,
    link: Arc<Link>,
) {
    wire::write_loop(writer, rx).await;
    link.fail_all();
}

pub(super) async fn read_loop(
    mut reader: impl AsyncRead + Unpin,
    mut buf: BytesMut,
    link: Arc<Link>,
    peer: String,
) {
    'read: loop {
        loop {
            match wire::decode(&mut buf) {
                Ok(Some(msg)) => {
                    let id = match &msg {
                        Msg::Reply { id, .. }
                        | Msg::ReplyRun { id, .. }
                        | Msg::StatusReply { id, .. }
                        | Msg::DeployReply { id, .. }
                        | Msg::DataReply { id, .. } => *id,
                        other => {
                            crate::logs::warn_limited!(%peer, "unexpected message on an outbound link: {other:?}");
                            continue;
                        }
                    };
                    let waiter = link
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Ok(msg));
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    crate::logs::warn_limited!(%peer, "bad frame from peer: {err}");
                    break 'read;
                }
            }
        }
        buf.reserve(wire::READ_SPARE);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    tracing::info!(%peer, "link lost");
    link.fail_all();
}
