//! The timer imports of `firefly_v1`: `timer_start` and `timer_cancel`, through the runtime's
//! [`TimerHost`](crate::engine::TimerHost) (the node's scheduler, which owns every timer).

use bytes::Bytes;
use firefly_abi::{IMPORT_MODULE, TIMER_ID_BITS, timer_flags, timer_status};
use wasmtime::{Caller, Linker};

use super::state::{HostState, guest_str, memory, range};
use crate::engine::timers::{NewTimer, TimerRefused, timer_limits};

/// Defines `timer_start` and `timer_cancel` in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;
    linker.func_wrap_async(
        m,
        "timer_start",
        |mut caller: Caller<'_, HostState>,
         (tag_ptr, tag_len, delay_ms, period_ms, flags, ptr, len): (
            u32,
            u32,
            u64,
            u64,
            u32,
            u32,
            u32,
        )| {
            Box::new(async move {
                let status = |s: u64| wasmtime::Result::Ok(s << TIMER_ID_BITS);
                let (timer, host, cap) = {
                    let (mem, state) = memory(&mut caller)?;
                    if tag_len as usize > timer_limits::MAX_TAG
                        || len as usize > timer_limits::MAX_PAYLOAD
                    {
                        return status(timer_status::INVALID);
                    }
                    let tag = guest_str(mem, tag_ptr, tag_len, "timer_start")?;
                    if tag.starts_with("__") {
                        // Reserved for the host's own timers (room ticks).
                        return status(timer_status::INVALID);
                    }
                    let r = range(mem.len(), ptr, len, "timer_start")?;
                    let timer = NewTimer {
                        module: state.env.name.clone(),
                        tag,
                        delay_ms,
                        period_ms,
                        durable: flags & timer_flags::DURABLE != 0,
                        session: state.call.session,
                        payload: Bytes::copy_from_slice(&mem[r]),
                    };
                    (timer, state.env.timers.clone(), state.env.timer_cap)
                };
                let Some(host) = host else {
                    return status(timer_status::UNAVAILABLE);
                };
                match host.start(timer, cap).await {
                    Ok(id) => Ok(id),
                    Err(TimerRefused::Limit(_)) => status(timer_status::LIMIT),
                    Err(TimerRefused::Invalid(_)) => status(timer_status::INVALID),
                    Err(TimerRefused::Unavailable(reason)) => {
                        tracing::warn!(module = %caller.data().env.name, "timer refused: {reason}");
                        status(timer_status::UNAVAILABLE)
                    }
                }
            })
        },
    )?;
    linker.func_wrap(
        m,
        "timer_cancel",
        |caller: Caller<'_, HostState>, id: u64| -> u32 {
            let env = &caller.data().env;
            match &env.timers {
                Some(host) => u32::from(host.cancel(&env.name, id)),
                None => 0,
            }
        },
    )?;
    Ok(())
}
