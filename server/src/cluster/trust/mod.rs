//! Who a node is, and what it may do: the cluster secret and handshake nonces ([`auth`]),
//! the credentials the master issues to each node (its own key, certified for its name),
//! the proofs of the mutual handshake, the master's signature on cluster changes, and the
//! checks that refuse a forged, replayed or other cluster's message ([`authority`]).
//! Announcements over NATS, queue-group requests and shared session records are signed and
//! checked with the same credential.

/// How far a signed message's clock may be from ours before it is refused (announcements,
/// queue-group requests): machines are expected to run NTP. One bound for the cluster.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(30);

pub mod auth;
pub mod authority;

mod identity;
mod refusal;

pub use identity::Identity;
pub use refusal::Refusal;
