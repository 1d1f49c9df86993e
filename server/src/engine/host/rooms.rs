//! The room import of `firefly_v1`: `room_call`, through the runtime's
//! [`RoomHost`](crate::engine::RoomHost). The answer is read with `call_reply_read`.

use firefly_abi::IMPORT_MODULE;
use firefly_abi::rooms::{RoomOp, room_status};
use wasmtime::{Caller, Linker};

use super::state::{HostState, memory, range};

/// Defines `room_call` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap_async(
        IMPORT_MODULE,
        "room_call",
        |mut caller: Caller<'_, HostState>, (ptr, len): (u32, u32)| {
            Box::new(async move {
                let (op, env, tick) = {
                    let (mem, state) = memory(&mut caller)?;
                    let r = range(mem.len(), ptr, len, "room_call")?;
                    let op = rmp_serde::from_slice::<RoomOp>(&mem[r]);
                    (op, state.env.clone(), state.call.tick_room.clone())
                };
                let (status, answer) = match (op, &env.rooms) {
                    (Err(e), _) => (
                        room_status::INVALID,
                        format!("undecodable room operation: {e}").into_bytes(),
                    ),
                    (Ok(_), None) => (room_status::UNAVAILABLE, b"this node has no rooms".to_vec()),
                    (Ok(op), Some(rooms)) => rooms.call(&env.name, tick.as_deref(), op).await,
                };
                let len = u64::try_from(answer.len()).unwrap_or(u64::MAX);
                caller.data_mut().call.call_reply = answer;
                wasmtime::Result::Ok((u64::from(status) << 32) | len)
            })
        },
    )?;
    Ok(())
}
