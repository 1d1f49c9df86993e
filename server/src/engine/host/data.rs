//! The host side of cached database objects: `data_call` and `data_reply_read`.
//!
//! The operation runs against the node's [`Data`](crate::data::Data) handle: the local store
//! on the data-owning node, a request to it elsewhere. Every expected failure comes back as a
//! `data_status` code with a message; only a guest handing the host a bad memory range traps.

use firefly_abi::IMPORT_MODULE;
use firefly_abi::data::data_status;
use wasmtime::{Caller, Linker};

use super::state::{HostState, memory, range};

/// How long one data operation may take before the module is told the storage is unavailable.
const DATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Defines the data functions of `firefly_v1` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;
    linker.func_wrap_async(
        m,
        "data_call",
        |mut caller: Caller<'_, HostState>, (ptr, len): (u32, u32)| {
            Box::new(async move {
                let (op, data) = {
                    let (mem, state) = memory(&mut caller)?;
                    let r = range(mem.len(), ptr, len, "data_call")?;
                    (mem[r].to_vec(), state.env.data.clone())
                };
                let (status, answer) = match data {
                    None => (
                        data_status::UNAVAILABLE,
                        b"this node has no storage configured".to_vec(),
                    ),
                    Some(data) => match tokio::time::timeout(DATA_TIMEOUT, data.call(&op)).await {
                        Ok(Ok(answer)) => (data_status::OK, answer),
                        Ok(Err(e)) => (e.status(), e.to_string().into_bytes()),
                        Err(_) => (
                            data_status::UNAVAILABLE,
                            format!("the storage did not answer within {DATA_TIMEOUT:?}")
                                .into_bytes(),
                        ),
                    },
                };
                let state = caller.data_mut();
                let len = u64::try_from(answer.len()).unwrap_or(u64::MAX);
                state.call.data_reply = answer;
                wasmtime::Result::Ok((u64::from(status) << 32) | len)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "data_reply_read",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let reply = &state.call.data_reply;
            if len as usize > reply.len() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::data_reply_read: asked for {len} bytes, the answer has {}",
                    reply.len()
                );
            }
            let r = range(mem.len(), ptr, len, "data_reply_read")?;
            mem[r].copy_from_slice(&reply[..len as usize]);
            Ok(())
        },
    )?;
    Ok(())
}
