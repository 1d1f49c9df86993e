//! Why a peer, or a message it signed, was refused: one typed reason for every check of the
//! trust layer (link handshakes, announcements, queue-group requests, shared session records),
//! so callers and tests match on the reason rather than on its wording.

use std::time::Duration;

/// Why a peer's claim or a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The public key it showed is not a key.
    #[error("peer claiming to be `{node}` sent no valid public key")]
    NoKey {
        /// The name it claimed.
        node: String,
    },
    /// Its key carries no certificate from this cluster's master for the name it claimed
    /// (another cluster's secret, or a node posing as another).
    #[error(
        "peer claiming to be `{node}` has no certificate from this cluster's master for that name"
    )]
    NoCertificate {
        /// The name it claimed.
        node: String,
    },
    /// Its signature is not a signature.
    #[error("peer claiming to be `{node}` sent a malformed proof")]
    MalformedProof {
        /// The name it claimed.
        node: String,
    },
    /// Its signature does not sign this message with its key.
    #[error("peer claiming to be `{node}` failed its proof")]
    FailedProof {
        /// The name it claimed.
        node: String,
    },
    /// Its time stamp is further from our clock than [`super::CLOCK_SKEW`] (or it is old).
    #[error("`{node}`'s clock is off by more than {skew:?} (or the message is old)")]
    ClockSkew {
        /// The sender.
        node: String,
        /// The bound.
        skew: Duration,
    },
    /// The same signed message was seen before.
    #[error("`{node}`: a replayed message")]
    Replayed {
        /// The sender.
        node: String,
    },
    /// The message is not what it should be (undecodable, a short nonce, a bad name).
    #[error("malformed: {0}")]
    Malformed(String),
}
