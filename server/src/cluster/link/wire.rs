//! Node-to-node messages and their framing: a u32 big-endian length, then MessagePack.
//!
//! Every node runs the same binary, so the encoding is the compact (array) form.

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorReply;

/// The largest node-to-node frame accepted.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A pushed payload and its topic.
pub type PushItem = (u32, serde_bytes::ByteBuf);

/// The answer to one forwarded request: pushes to the session first, then the reply or the
/// error frame.
pub type Answer = (Vec<PushItem>, Result<serde_bytes::ByteBuf, ErrorReply>);

use super::runs::Decoded;
pub use super::runs::RunReplies;

/// Everything nodes say to each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Server → client, first: prove who you are.
    Challenge {
        /// The server's cluster name.
        cluster: String,
        /// Random bytes to sign (also binds the master's deploy signatures to this link).
        nonce: serde_bytes::ByteBuf,
    },
    /// Client → server: who I am, and the proof (see [`crate::cluster::trust::authority`]).
    Hello {
        /// The client's cluster name.
        cluster: String,
        /// The client's node name (`master` for the master).
        node: String,
        /// The client's own random bytes, which the server's proof must sign.
        nonce: serde_bytes::ByteBuf,
        /// The client's ed25519 public key.
        key: serde_bytes::ByteBuf,
        /// The master's certificate of that key for that node name.
        cert: serde_bytes::ByteBuf,
        /// The client's signature over the handshake (both nonces, names).
        proof: serde_bytes::ByteBuf,
    },
    /// Server → client: accepted, and the server's own proof (the link is mutual).
    Welcome {
        /// The server's node name.
        node: String,
        /// The server's ed25519 public key.
        key: serde_bytes::ByteBuf,
        /// The master's certificate of that key for that node name.
        cert: serde_bytes::ByteBuf,
        /// The server's signature over the handshake.
        proof: serde_bytes::ByteBuf,
    },
    /// Server → client: refused; the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// A client request routed by a gate, or a call from a module: run `command`.
    Forward {
        /// Request id on this link.
        id: u64,
        /// The client session it runs for (0: none).
        session: u64,
        /// Command id.
        command: u32,
        /// Payload.
        payload: serde_bytes::ByteBuf,
    },
    /// The answer to a `Forward` or `Status`.
    Reply {
        /// The request id.
        id: u64,
        /// Pushes the handler made to the calling session, to deliver before the reply.
        pushes: Vec<PushItem>,
        /// The reply payload or the error frame to send.
        result: Result<serde_bytes::ByteBuf, ErrorReply>,
    },
    /// One-way: deliver a push to a session held by the receiving gate.
    Push {
        /// Session id.
        session: u64,
        /// Topic id.
        topic: u32,
        /// Payload.
        payload: serde_bytes::ByteBuf,
    },
    /// One-way: a session connected (`connect: true`) or ended on the sending gate.
    Event {
        /// Session id.
        session: u64,
        /// Connect or disconnect.
        connect: bool,
    },
    /// Ask for the node's status (the master does, for `firefly status`).
    Status {
        /// Request id.
        id: u64,
    },
    /// The answer to `Status`: a JSON document.
    StatusReply {
        /// The request id.
        id: u64,
        /// The node's status, JSON.
        json: String,
    },
    // Hot update.
    /// Master → node: make `version` of `module` serve new requests (compiling `wasm` unless
    /// that version is retained on the node). Answered with `DeployReply`.
    Deploy {
        /// Request id.
        id: u64,
        /// The module.
        module: String,
        /// Its version number in the master's registry.
        version: u32,
        /// The module's code (empty: use the retained copy).
        wasm: serde_bytes::ByteBuf,
        /// The master's ed25519 signature over [`crate::cluster::trust::authority::deploy_digest`]; a node
        /// refuses a deploy without a valid one. Filled in by the master's link when sent.
        authority: serde_bytes::ByteBuf,
    },
    /// The answer to `Deploy`: the version that served before, or why the node refused (it
    /// keeps serving the old version then).
    DeployReply {
        /// The request id.
        id: u64,
        /// `Ok(previous version)` or the refusal.
        result: Result<u32, String>,
    },
    /// To the data-owning node: a data operation or a table registration (`data::Request`,
    /// MessagePack).
    DataRequest {
        /// Request id.
        id: u64,
        /// The encoded request.
        body: serde_bytes::ByteBuf,
    },
    /// The answer to `DataRequest`.
    DataReply {
        /// The request id.
        id: u64,
        /// A `data_status` code.
        status: u32,
        /// The answer (on OK) or a UTF-8 explanation.
        body: serde_bytes::ByteBuf,
    },
    /// A gate's run of consecutive client requests of one session for this node: run them one
    /// at a time, in order, exactly as if each were its own `Forward`. Answered by one
    /// `ReplyRun` (one message each way per run, not per request).
    ///
    /// Framed in a binary form of its own ([`super::runs`]), not MessagePack.
    #[serde(skip)]
    ForwardRun {
        /// Request id on this link (one for the whole run).
        id: u64,
        /// The client session they run for.
        session: u64,
        /// `(command, payload)`, in arrival order (received: slices of the frame).
        requests: Vec<(u32, bytes::Bytes)>,
    },
    /// The answers to a `ForwardRun`, one per request, in its order (pushes first).
    ///
    /// Framed in a binary form of its own ([`super::runs`]), not MessagePack.
    #[serde(skip)]
    ReplyRun {
        /// The run's id.
        id: u64,
        /// One answer per request.
        replies: RunReplies,
    },
    /// A session operation for the receiving gate's sessions (broadcast, group, user, kick).
    /// `id` 0 is one-way; otherwise the gate answers with a `Reply` carrying an
    /// [`OpReply`](crate::sessions::OpReply) (MessagePack).
    Sessions {
        /// Request id (0: no answer wanted).
        id: u64,
        /// The operation.
        op: crate::sessions::SessionOp,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Oversized frame.
    #[error("frame of {0} bytes exceeds the node-to-node maximum")]
    TooLarge(usize),
    /// Undecodable frame.
    #[error("undecodable frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A malformed run frame (`ForwardRun`, `ReplyRun`).
    #[error("malformed run frame: {0}")]
    Run(String),
}

/// Appends one framed message to `out`.
pub fn encode(msg: &Msg, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    match msg {
        Msg::ForwardRun {
            id,
            session,
            requests,
        } => super::runs::encode_forward(*id, *session, requests, out),
        Msg::ReplyRun { id, replies } => super::runs::encode_replies(*id, replies, out),
        // Writing into a BytesMut cannot fail for these types.
        _ => {
            let _ = rmp_serde::encode::write(&mut (&mut *out).writer(), msg);
        }
    }
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Free space a node link's reader makes before each read. Links are few and busy: reading
/// up to this much per syscall takes a burst of runs (100 sessions' runs of 16 small requests
/// are ~150 KiB) in a few reads instead of one read per 4 KiB or less.
pub const READ_SPARE: usize = 64 * 1024;

/// Messages a node link queues for its writer at most. A peer that stops reading fills its
/// socket buffers and then this queue; past it, requests fail at once ("its link's queue is
/// full") and one-way messages are dropped and logged, instead of growing memory without end.
pub const LINK_QUEUE: usize = 65_536;

/// The sending half of a link's queue.
pub type LinkTx = tokio::sync::mpsc::Sender<Msg>;

/// A link's queue: [`LINK_QUEUE`] messages.
pub fn link_queue() -> (LinkTx, tokio::sync::mpsc::Receiver<Msg>) {
    tokio::sync::mpsc::channel(LINK_QUEUE)
}

/// Why a message could not be queued on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unqueued {
    /// The link's writer is gone (the link closed).
    Closed,
    /// [`LINK_QUEUE`] messages are waiting: the peer is not reading.
    Full,
}

/// Queues `msg` on a link without waiting; a full queue logs and drops it (see
/// [`LINK_QUEUE`]).
pub fn queue(tx: &LinkTx, msg: Msg) -> Result<(), Unqueued> {
    use tokio::sync::mpsc::error::TrySendError;
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(_)) => Err(Unqueued::Closed),
        Err(TrySendError::Full(msg)) => {
            tracing::warn!(
                "a node link's queue is full ({LINK_QUEUE} messages: its peer is not reading); dropped a {}",
                msg.kind()
            );
            Err(Unqueued::Full)
        }
    }
}

impl Msg {
    /// The request or reply id of a message that has one.
    pub fn id_mut(&mut self) -> Option<&mut u64> {
        match self {
            Msg::Forward { id, .. }
            | Msg::Reply { id, .. }
            | Msg::Status { id }
            | Msg::StatusReply { id, .. }
            | Msg::Deploy { id, .. }
            | Msg::DeployReply { id, .. }
            | Msg::DataRequest { id, .. }
            | Msg::DataReply { id, .. }
            | Msg::ForwardRun { id, .. }
            | Msg::ReplyRun { id, .. }
            | Msg::Sessions { id, .. } => Some(id),
            Msg::Challenge { .. }
            | Msg::Hello { .. }
            | Msg::Welcome { .. }
            | Msg::Refused { .. }
            | Msg::Push { .. }
            | Msg::Event { .. } => None,
        }
    }

    /// The message's kind, for logs (never its contents).
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Challenge { .. } => "Challenge",
            Msg::Hello { .. } => "Hello",
            Msg::Welcome { .. } => "Welcome",
            Msg::Refused { .. } => "Refused",
            Msg::Forward { .. } => "Forward",
            Msg::Reply { .. } => "Reply",
            Msg::Push { .. } => "Push",
            Msg::Event { .. } => "Event",
            Msg::Status { .. } => "Status",
            Msg::StatusReply { .. } => "StatusReply",
            Msg::Deploy { .. } => "Deploy",
            Msg::DeployReply { .. } => "DeployReply",
            Msg::DataRequest { .. } => "DataRequest",
            Msg::DataReply { .. } => "DataReply",
            Msg::ForwardRun { .. } => "ForwardRun",
            Msg::ReplyRun { .. } => "ReplyRun",
            Msg::Sessions { .. } => "Sessions",
        }
    }
}

/// Writes every message sent on `rx` to `writer`, coalescing what is queued into one write,
/// until the channel closes or a write fails.
pub async fn write_loop(
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
) {
    use tokio::io::AsyncWriteExt as _;
    let mut buf = BytesMut::with_capacity(4096);
    while let Some(msg) = rx.recv().await {
        encode(&msg, &mut buf);
        // Woken by the first message of a burst (a gate forwarding a pipelined read, a node
        // answering a run): let its sender queue the rest before writing, so a burst goes out
        // in one write instead of one syscall per message.
        tokio::task::yield_now().await;
        while let Ok(more) = rx.try_recv() {
            encode(&more, &mut buf);
            if buf.len() > 256 * 1024 {
                break;
            }
        }
        if writer.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
}

/// Takes one message off the front of `buf`; `Ok(None)` means "need more bytes".
pub fn decode(buf: &mut BytesMut) -> Result<Option<Msg>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let body = buf.split_to(len);
    if body.first() == Some(&super::runs::RUN_MARK) {
        return match super::runs::decode(body.freeze()).map_err(WireError::Run)? {
            Decoded::Forward {
                id,
                session,
                requests,
            } => Ok(Some(Msg::ForwardRun {
                id,
                session,
                requests,
            })),
            Decoded::Replies { id, replies } => Ok(Some(Msg::ReplyRun { id, replies })),
        };
    }
    Ok(Some(rmp_serde::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_queue_its_peer_does_not_drain_refuses_past_its_bound() {
        let (tx, mut rx) = link_queue();
        let push = || Msg::Push {
            session: 1,
            topic: 2,
            payload: serde_bytes::ByteBuf::from(vec![0; 16]),
        };
        for _ in 0..LINK_QUEUE {
            assert_eq!(queue(&tx, push()), Ok(()));
        }
        assert_eq!(queue(&tx, push()), Err(Unqueued::Full));
        // Drained by one, it takes one more; closed, it says so.
        assert!(rx.try_recv().is_ok());
        assert_eq!(queue(&tx, push()), Ok(()));
        drop(rx);
        assert_eq!(queue(&tx, push()), Err(Unqueued::Closed));
    }

    #[test]
    fn round_trips_in_pieces() {
        let msgs = vec![
            Msg::Forward {
                id: 7,
                session: 1 << 48 | 3,
                command: 101,
                payload: serde_bytes::ByteBuf::from(b"hi".to_vec()),
            },
            Msg::Reply {
                id: 7,
                pushes: vec![(9, serde_bytes::ByteBuf::from(vec![1, 2]))],
                result: Err(ErrorReply::new(101, "node_unavailable", "down")),
            },
            // A run frame (binary, not MessagePack) between two MessagePack ones.
            Msg::ForwardRun {
                id: 8,
                session: 1 << 48 | 3,
                requests: vec![(101, bytes::Bytes::from_static(b"hi"))],
            },
            Msg::Event {
                session: 1 << 48 | 3,
                connect: false,
            },
        ];
        let mut wire = BytesMut::new();
        for m in &msgs {
            encode(m, &mut wire);
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(m) = decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(decode(&mut huge), Err(WireError::TooLarge(_))));
    }
}
