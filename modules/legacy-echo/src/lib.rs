//! `legacy-echo`: command 21 returns its payload unchanged, in a module shaped like those the
//! SDK built before batched dispatch existed: it exports only `__firefly_describe` and
//! `__firefly_dispatch` (written out by hand here instead of by `#[firefly_sdk::module]`), no
//! `__firefly_dispatch_batch`. Tests use it to prove such modules are still served, one call
//! per request.

use firefly_sdk::__private;
use firefly_sdk::{Raw, Result};

fn echo(_ctx: &mut firefly_sdk::Ctx, payload: Raw) -> Result<Raw> {
    Ok(payload)
}

fn route(ctx: &mut firefly_sdk::Ctx, id: u32, input: &[u8]) -> Option<Result<Vec<u8>>> {
    match id {
        21 => Some(__private::handle(ctx, input, echo)),
        _ => None,
    }
}

fn no_timers(_: &mut firefly_sdk::Ctx, _: u32, _: &[u8]) -> Option<Result<Vec<u8>>> {
    None
}

/// The manifest: one command, 21.
#[unsafe(no_mangle)]
pub extern "C" fn __firefly_describe() {
    __private::describe("legacy-echo", &[21], &[]);
}

/// The single-call entry point, as older SDKs generated it.
#[unsafe(no_mangle)]
pub extern "C" fn __firefly_dispatch(kind: u32, id: u32, session: u64, input_len: u32) -> u32 {
    let routes = __private::Routes {
        requests: route,
        on_connect: None,
        on_disconnect: None,
        timers: no_timers,
        room_tick: None,
        room_event: None,
    };
    __private::dispatch(kind, id, session, input_len, &routes)
}
