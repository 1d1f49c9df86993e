//! The batch imports of `firefly_v1`: `request_next` starts the next request of the batch being
//! served (see `engine/batch.rs`), `request_done` ends it with its status.

use bytes::Bytes;
use firefly_abi::{BATCH_END, IMPORT_MODULE};
use wasmtime::{AsContextMut, Caller, Linker};

use super::state::HostState;
use crate::engine::batch::Outcome;
use crate::engine::outcome::status_result;
use crate::metrics::clock;

/// Defines `request_next` and `request_done`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "request_next",
        |mut caller: Caller<'_, HostState>| -> wasmtime::Result<u64> {
            let state = caller.data_mut();
            let b = &mut state.batch;
            if b.open.is_some() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::request_next: the previous request was not ended with `request_done`"
                );
            }
            let Some((command, payload)) = b.batch.requests.get_mut(b.next) else {
                return Ok(BATCH_END);
            };
            let command = *command;
            // A started request is never run again, so its payload is not needed any more.
            let input = std::mem::take(payload);
            b.next += 1;
            b.open = Some(clock::ticks());
            let len = u64::try_from(input.len()).unwrap_or(u64::MAX) & u64::from(u32::MAX);
            let call = &mut state.call;
            call.session = b.session;
            call.input = input;
            call.error = None;
            call.own_pushes.clear();
            call.output_base = call.output.len();
            state.cpu_ticks = 0;
            state.deadline_ms = state.env.clock.now_ms() + b.timeout_ms;
            state.wall_timeout = false;
            caller.as_context_mut().set_epoch_deadline(1);
            Ok((u64::from(command) << 32) | len)
        },
    )?;

    linker.func_wrap(
        IMPORT_MODULE,
        "request_done",
        |mut caller: Caller<'_, HostState>, status: u32| -> wasmtime::Result<()> {
            let HostState {
                batch: b,
                call,
                env,
                ..
            } = caller.data_mut();
            let Some(started) = b.open.take() else {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::request_done: no request in progress (call `request_next` first)"
                );
            };
            let command = b.next.checked_sub(1).and_then(|i| b.batch.requests.get(i));
            let command = command.map_or(0, |(c, _)| *c);
            let result = match status_result(status, &mut call.error, &env.name, command) {
                Ok(()) => Ok(call.output_base..call.output.len()),
                Err(err) => {
                    call.output.truncate(call.output_base);
                    Err(err)
                }
            };
            call.input = Bytes::new();
            b.batch.outcomes.push(Outcome {
                pushes: std::mem::take(&mut call.own_pushes),
                result,
                micros: clock::micros_between(started, clock::ticks()),
            });
            Ok(())
        },
    )?;
    Ok(())
}
