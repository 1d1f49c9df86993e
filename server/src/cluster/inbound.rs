//! What a node does with the messages its peers send: the seam between the transport (which
//! authenticates links, frames messages and keeps a session's forwarded requests in order) and
//! the features that answer them. The node implements it; the transport knows no feature.

use std::future::Future;

use bytes::Bytes;

use crate::protocol::{Answers, Collected};
use crate::sessions::{OpReply, SessionOp};

/// The receiving side of a node's links.
pub trait Inbound: Send + Sync + 'static {
    /// Runs requests forwarded for one session, `(command, payload)`, one at a time in order,
    /// handing their answers to `out` in order. Drains `requests`.
    fn serve_run(
        &self,
        session: u64,
        requests: &mut Vec<(u32, Bytes)>,
        out: &mut impl Answers,
    ) -> impl Future<Output = ()> + Send;

    /// Runs one forwarded request that belongs to no session (a module's `call_node`).
    fn serve_one(
        &self,
        session: u64,
        command: u32,
        payload: Bytes,
    ) -> impl Future<Output = Collected> + Send;

    /// Delivers a push to a session held here.
    fn push(&self, session: u64, topic: u32, payload: Bytes);

    /// A session of the sending gate connected (`connect`) or ended.
    fn session_event(&self, session: u64, connect: bool) -> impl Future<Output = ()> + Send;

    /// This node's status as JSON.
    fn status_json(&self) -> String;

    /// Makes `version` of `module` serve (its code in `wasm`, empty when the node retains
    /// it); the version that served before, or why not.
    fn deploy(
        &self,
        module: String,
        version: u32,
        wasm: Vec<u8>,
    ) -> impl Future<Output = Result<u32, String>> + Send;

    /// Serves a data request for the node that sent it: a `data_status` code and the body.
    fn data_request(&self, body: Vec<u8>) -> impl Future<Output = (u32, Vec<u8>)> + Send;

    /// Applies an operation peer `from` sent on the sessions held here.
    fn sessions_op(&self, from: &str, op: SessionOp) -> OpReply;

    /// Peer `peer` has no link to this node any more (its last one closed): what it held for
    /// the sessions here (rooms) is gone with it.
    fn peer_gone(&self, peer: &str);
}
