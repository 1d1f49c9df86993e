//! How a peer is reached ([`Route`]), and why a request to it failed ([`RpcError`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::nats::Fabric;

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The peer cannot be reached (connection refused, lost, or backing off).
    #[error("node `{node}` is unavailable: {reason}")]
    Unavailable {
        /// The peer.
        node: String,
        /// What happened.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("node `{node}` did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        node: String,
        /// The RPC timeout.
        timeout: Duration,
    },
    /// The peer answered with a message that does not answer the request.
    #[error("node `{node}` sent an unexpected answer ({got})")]
    Unexpected {
        /// The peer.
        node: String,
        /// The kind of message it sent.
        got: &'static str,
    },
}

impl RpcError {
    /// The error frame code a client is answered with.
    pub fn code(&self) -> &'static str {
        match self {
            RpcError::Unavailable { .. } => firefly_abi::codes::NODE_UNAVAILABLE,
            RpcError::Timeout { .. } => firefly_abi::codes::TIMEOUT,
            RpcError::Unexpected { .. } => firefly_abi::codes::INTERNAL,
        }
    }
}

/// Why a node link could not be opened (as the dialer) or was refused (as the listener).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The byte stream failed (connect, read, write), in the system's words.
    #[error("{0}")]
    Io(String),
    /// The stream ended before the handshake did.
    #[error("connection closed during the handshake")]
    Closed,
    /// A handshake message could not be read.
    #[error("undecodable handshake message: {0}")]
    Frame(String),
    /// The other side sent something else than the handshake's next message.
    #[error("the peer did not follow the handshake: {0}")]
    Protocol(&'static str),
    /// The other side belongs to another cluster.
    #[error("peer `{node}` belongs to cluster `{theirs}`, not `{ours}`")]
    OtherCluster {
        /// The peer's name, as it gave it (empty when it gave none yet).
        node: String,
        /// Its cluster.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The node answering is not the node the link was meant for.
    #[error("the node at {at} is `{found}`, not `{expected}`")]
    OtherNode {
        /// Where it was dialed.
        at: String,
        /// Who answered.
        found: String,
        /// Who was dialed.
        expected: String,
    },
    /// The listener refused the link, with its reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The other side's proof of who it is was refused.
    #[error(transparent)]
    Untrusted(#[from] crate::cluster::trust::Refusal),
    /// The transport could not carry a link to the peer (NATS down, the peer not announced).
    #[error(transparent)]
    Transport(#[from] crate::cluster::nats::NatsError),
    /// The node has copies: it is reached through its queue group, never by a link.
    #[error("`{0}` has copies: it is reached through its queue group, not a link")]
    HasCopies(String),
}

/// How a peer is reached: the direct mesh or NATS.
#[derive(Debug, Clone)]
pub enum Route {
    /// Its `rpc:` address.
    Tcp(SocketAddr),
    /// By name through this process's NATS fabric.
    Nats(Arc<Fabric>),
    /// A node with copies: each request to any one copy, through its NATS queue group
    /// ([`crate::cluster::nats::queue`]); no link.
    Queue(Arc<Fabric>),
    /// One copy of a node with copies, by its process instance (the master reaches each copy
    /// this way, to deploy to it and ask its status).
    Instance(Arc<Fabric>, String),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Tcp(addr) => write!(f, "{addr}"),
            Route::Nats(_) => f.write_str("NATS"),
            Route::Queue(_) => f.write_str("a NATS queue group"),
            Route::Instance(_, instance) => write!(f, "NATS (copy {instance})"),
        }
    }
}
