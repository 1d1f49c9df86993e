//! The plain imports of `firefly_v1`: the request's input and reply, errors, logging, time and
//! randomness.

use firefly_abi::{IMPORT_MODULE, log_level};
use wasmtime::{Caller, Linker};

use super::state::{HostState, guest_str, memory, range};
use crate::engine::outcome::GuestError;

/// Defines the request, log, time and randomness imports in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    add_request(linker)?;
    add_log(linker)?;
    add_time_and_randomness(linker)
}

/// `input_read`, `output_write`, `error_set`: the current request's bytes in and out.
fn add_request(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap(
        m,
        "input_read",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let input = &state.call.input;
            if len as usize > input.len() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::input_read: asked for {len} bytes, input has {}",
                    input.len()
                );
            }
            let r = range(mem.len(), ptr, len, "input_read")?;
            mem[r].copy_from_slice(&input[..len as usize]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "output_write",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "output_write")?;
            state.call.output.truncate(state.call.output_base);
            state.call.output.extend_from_slice(&mem[r]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "error_set",
        |mut caller: Caller<'_, HostState>,
         code_ptr: u32,
         code_len: u32,
         msg_ptr: u32,
         msg_len: u32|
         -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let code = guest_str(mem, code_ptr, code_len.min(128), "error_set")?;
            let message = guest_str(mem, msg_ptr, msg_len.min(8192), "error_set")?;
            state.call.error = Some(GuestError { code, message });
            Ok(())
        },
    )?;
    Ok(())
}

/// `log`: a guest's log line, tagged with its module, version and session.
fn add_log(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap(
        m,
        "log",
        |mut caller: Caller<'_, HostState>,
         level: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let text = guest_str(mem, ptr, len.min(16 * 1024), "log")?;
            let (module, version, session) =
                (&*state.env.name, state.env.version, state.call.session);
            match level {
                log_level::ERROR => {
                    tracing::error!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::WARN => {
                    tracing::warn!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::INFO => {
                    tracing::info!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::DEBUG => {
                    tracing::debug!(target: "firefly::guest", module, version, session, "{text}")
                }
                _ => tracing::trace!(target: "firefly::guest", module, version, session, "{text}"),
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// `time_now_micros` and `random_fill`.
fn add_time_and_randomness(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap(m, "time_now_micros", || -> u64 {
        crate::wall::now_micros()
    })?;

    linker.func_wrap(
        m,
        "random_fill",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, _) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "random_fill")?;
            getrandom::fill(&mut mem[r])
                .map_err(|e| wasmtime::format_err!("host randomness unavailable: {e}"))
        },
    )?;
    Ok(())
}
