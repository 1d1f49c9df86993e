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
