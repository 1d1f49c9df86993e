//! The node link: one authenticated, ordered byte stream from one node to another, and the
//! node messages framed on it. It is the same whatever carries the bytes (a TCP connection
//! of the direct mesh, or a pair of NATS subjects, [`crate::cluster::nats`]).
//!
//! * [`wire`]: the messages and their framing (u32 length + MessagePack), the bounded queue
//!   and the writer task every link uses;
//! * `runs`: the forwarding path's `ForwardRun`/`ReplyRun` in a binary form of their own
//!   (payloads read as slices of the frame, answers encoded as they are produced);
//! * [`route`]: how a peer is reached (the mesh, NATS, a queue group) and why a request to
//!   it failed;
//! * `stream`: what a link runs on, and one message read or written during the handshake;
//! * [`peer`]: the outbound side, a node's link to one peer: the handshake as the dialer,
//!   requests with ids and timeouts, reconnects with backoff, and the keeper that holds the
//!   links a node needs; `outbound`: the connection under it (waiters by request id, the
//!   loops that write messages and hand replies to their waiters);
//! * [`listen`]: the inbound side: accepting links (TCP listener, NATS), the handshake as the
//!   listener, then every message handed to [`crate::cluster::serve`].

pub mod listen;
mod outbound;
pub mod peer;
pub mod route;
mod runs;
pub(crate) mod stream;
pub mod wire;
