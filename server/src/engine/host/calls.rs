//! The node-call imports of `firefly_v1`: `call_node` (awaits the answer), `call_reply_read`
//! and `send_node` (one-way), through the runtime's [`NodeCalls`](crate::engine::NodeCalls).

use bytes::Bytes;
use firefly_abi::{IMPORT_MODULE, call_status};
use wasmtime::{Caller, Linker};

use super::state::{HostState, guest_str, memory, range};

/// Defines `call_node`, `call_reply_read` and `send_node` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap_async(
        m,
        "call_node",
        |mut caller: Caller<'_, HostState>,
         (node_ptr, node_len, command, ptr, len): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let (node, payload, session, calls) = {
                    let (mem, state) = memory(&mut caller)?;
                    let node = guest_str(mem, node_ptr, node_len.min(256), "call_node")?;
                    let r = range(mem.len(), ptr, len, "call_node")?;
                    (
                        node,
                        mem[r].to_vec(),
                        state.call.session,
                        state.env.calls.clone(),
                    )
                };
                let (status, answer, pushes) = match &calls {
                    Some(calls) => calls.call(&node, session, command, payload).await,
                    None => (
                        call_status::UNKNOWN_NODE,
                        b"this node is not part of a cluster".to_vec(),
                        Vec::new(),
                    ),
                };
                let state = caller.data_mut();
                for (topic, p) in pushes {
                    state
                        .call
                        .own_pushes
                        .push((topic, Bytes::from(p.into_vec())));
                }
                state.call.call_reply = answer;
                let len = u64::try_from(state.call.call_reply.len()).unwrap_or(u64::MAX);
                wasmtime::Result::Ok((u64::from(status) << 32) | len)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "call_reply_read",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let reply = &state.call.call_reply;
            if len as usize > reply.len() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::call_reply_read: asked for {len} bytes, the answer has {}",
                    reply.len()
                );
            }
            let r = range(mem.len(), ptr, len, "call_reply_read")?;
            mem[r].copy_from_slice(&reply[..len as usize]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "send_node",
        |mut caller: Caller<'_, HostState>,
         node_ptr: u32,
         node_len: u32,
         command: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            let (mem, state) = memory(&mut caller)?;
            let node = guest_str(mem, node_ptr, node_len.min(256), "send_node")?;
            let r = range(mem.len(), ptr, len, "send_node")?;
            let Some(calls) = &state.env.calls else {
                return Ok(call_status::UNKNOWN_NODE);
            };
            // One-way: the answer (if any) is not awaited.
            Ok(calls.send(&node, state.call.session, command, mem[r].to_vec()))
        },
    )?;
    Ok(())
}
