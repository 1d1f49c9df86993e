//! What `call_node` / `send_node` reach: the other nodes of the cluster, as the engine sees
//! them. The engine declares the seam; the cluster transport implements it
//! (`cluster::calls`), so the engine knows nothing of links, wire messages or peers.

use std::future::Future;
use std::pin::Pin;

/// The answer to one `call_node`: the `firefly_abi::call_status`, the answer bytes (the reply,
/// or a MessagePack `{code, message}` failure, or a plain-text reason), and the pushes the
/// callee made to the calling session, to deliver before the caller's own reply.
pub type CallAnswer = (u32, Vec<u8>, Vec<(u32, serde_bytes::ByteBuf)>);

/// Calls from a module to other nodes.
pub trait NodeCalls: Send + Sync {
    /// Runs `command` on `node` for `session` and waits for its answer (bounded by the
    /// transport's own timeout).
    fn call<'a>(
        &'a self,
        node: &'a str,
        session: u64,
        command: u32,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = CallAnswer> + Send + 'a>>;

    /// Sends `command` to `node` one-way; returns `call_status::OK` or
    /// `call_status::UNKNOWN_NODE`. A message to an unreachable node is dropped and logged.
    fn send(&self, node: &str, session: u64, command: u32, payload: Vec<u8>) -> u32;
}
