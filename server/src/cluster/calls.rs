//! Module calls to other nodes (`call_node`, `send_node`) over the cluster's links: the
//! engine's [`NodeCalls`] seam, implemented by the transport.

use std::future::Future;
use std::pin::Pin;

use firefly_abi::call_status;

use super::Cluster;
use super::RpcError;
use super::wire::Msg;
use crate::engine::{CallAnswer, NodeCalls};

impl NodeCalls for Cluster {
    fn call<'a>(
        &'a self,
        node: &'a str,
        session: u64,
        command: u32,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = CallAnswer> + Send + 'a>> {
        Box::pin(call(self, node, session, command, payload))
    }

    fn send(&self, node: &str, session: u64, command: u32, payload: Vec<u8>) -> u32 {
        let Some(peer) = self.peer(node) else {
            return call_status::UNKNOWN_NODE;
        };
        peer.send(Msg::Forward {
            id: 0,
            session,
            command,
            payload: serde_bytes::ByteBuf::from(payload),
        });
        call_status::OK
    }
}

/// Runs one `call_node`: the `call_status`, the answer bytes, and the pushes the callee made
/// to the calling session (delivered with the caller's own reply, keeping their order).
async fn call(
    cluster: &Cluster,
    node: &str,
    session: u64,
    command: u32,
    payload: Vec<u8>,
) -> CallAnswer {
    let Some(peer) = cluster.peer(node).cloned() else {
        return (
            call_status::UNKNOWN_NODE,
            format!("no node named `{node}`").into_bytes(),
            Vec::new(),
        );
    };
    let payload = serde_bytes::ByteBuf::from(payload);
    match peer
        .request(|id| Msg::Forward {
            id,
            session,
            command,
            payload,
        })
        .await
    {
        Ok(Msg::Reply {
            pushes,
            result: Ok(reply),
            ..
        }) => (call_status::OK, reply.into_vec(), pushes),
        Ok(Msg::Reply {
            pushes,
            result: Err(err),
            ..
        }) => {
            #[derive(serde::Serialize)]
            struct Failure<'a> {
                code: &'a str,
                message: &'a str,
            }
            let answer = rmp_serde::to_vec_named(&Failure {
                code: &err.code,
                message: &err.message,
            })
            .unwrap_or_default();
            (call_status::ERROR, answer, pushes)
        }
        Ok(other) => (
            call_status::UNAVAILABLE,
            format!("unexpected answer {other:?}").into_bytes(),
            Vec::new(),
        ),
        Err(err @ RpcError::Timeout { .. }) => (
            call_status::TIMEOUT,
            err.to_string().into_bytes(),
            Vec::new(),
        ),
        Err(err) => (
            call_status::UNAVAILABLE,
            err.to_string().into_bytes(),
            Vec::new(),
        ),
    }
}
