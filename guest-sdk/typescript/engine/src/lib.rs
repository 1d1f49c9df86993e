//! The engine of TypeScript modules: QuickJS with Firefly's exports.
//!
//! A TypeScript module is this engine plus its bundled JavaScript, pre-initialised:
//! `firefly build` runs [`initialize`] once under Wizer with the bundle on stdin (first line:
//! the module's name), and snapshots the memory afterwards. The script has then run, its
//! handlers are registered in the QuickJS heap, and the manifest is computed; every instance
//! the host makes starts from that snapshot, so no JavaScript is parsed at run time.
//!
//! The exports are exactly those of a Rust module (`firefly_abi::EXPORT_*`): the host cannot
//! tell the languages apart. Handlers, payload conversion and errors live here; the JavaScript
//! side (`guest-sdk/typescript/index.js`) shapes the API on top of the `__firefly` object that
//! [`host`] installs.

mod codec;
mod host;
mod raw;
mod state;

use firefly_abi::{DispatchKind, Status};
use rquickjs::{Ctx, Value};

use crate::state::{Handler, with_engine};

/// Pre-initialisation entry (run by Wizer at build time, removed from the snapshot): reads the
/// bundle from stdin, evaluates it and keeps the runtime. A script that fails prints where to
/// stderr and traps, which fails the build with that message.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn initialize() {
    if let Err(message) = state::boot() {
        eprintln!("{message}");
        std::process::abort();
    }
}

/// `__firefly_describe`: writes the manifest computed at initialisation.
#[unsafe(no_mangle)]
pub extern "C" fn __firefly_describe() {
    with_engine(|engine| raw::write_output(&engine.manifest));
}

/// `__firefly_dispatch`: one request, event, timer firing or room call.
#[unsafe(no_mangle)]
pub extern "C" fn __firefly_dispatch(kind: u32, id: u32, session: u64, input_len: u32) -> u32 {
    let input = raw::read_input(input_len);
    with_engine(|engine| {
        engine
            .context
            .with(|ctx| run(&ctx, kind, id, session, &input))
    })
}

/// `__firefly_dispatch_batch`: every pipelined request of one session, one entry.
#[unsafe(no_mangle)]
pub extern "C" fn __firefly_dispatch_batch(session: u64) -> u32 {
    with_engine(|engine| {
        engine.context.with(|ctx| {
            loop {
                // SAFETY: no pointers cross; the host starts the next request of the batch.
                let next = unsafe { raw::ffi::request_next() };
                if next == firefly_abi::BATCH_END {
                    return 0;
                }
                let (id, input_len) = ((next >> 32) as u32, next as u32);
                let input = raw::read_input(input_len);
                let status = run(&ctx, DispatchKind::Request as u32, id, session, &input);
                // SAFETY: no pointers cross; the host ends the request it started.
                unsafe { raw::ffi::request_done(status) };
            }
        })
    })
}

/// Runs one call and reports its outcome to the host; returns the `Status`.
fn run(ctx: &Ctx<'_>, kind: u32, id: u32, session: u64, input: &[u8]) -> u32 {
    state::set_call(session, id);
    let Some(handler) = state::handler(kind, id) else {
        return Status::Unknown as u32;
    };
    match call(ctx, &handler, kind, input) {
        Ok(()) => Status::Ok as u32,
        Err((code, message)) => {
            raw::set_error(&code, &message);
            Status::Error as u32
        }
    }
}

/// Decodes the input, calls the handler with `(ctx, payload)`, and sets what it returned as
/// the output (encoded, or a raw handler's bytes straight from its `Uint8Array`).
fn call(ctx: &Ctx<'_>, handler: &Handler, kind: u32, input: &[u8]) -> Result<(), (String, String)> {
    let function = handler
        .function
        .clone()
        .restore(ctx)
        .map_err(|e| internal(format!("handler lost: {e}")))?;
    let argument: Value = match DispatchKind::from_u32(kind) {
        Some(DispatchKind::Connect | DispatchKind::Disconnect) => Value::new_undefined(ctx.clone()),
        _ if handler.raw => codec::bytes_value(ctx, input).map_err(|e| internal(e.to_string()))?,
        _ => codec::decode(ctx, input).map_err(|e| {
            (
                firefly_abi::codes::BAD_REQUEST.to_owned(),
                format!("the payload is not valid MessagePack: {e}"),
            )
        })?,
    };
    let this = state::context_object(ctx).map_err(|e| internal(format!("no context: {e}")))?;
    let result: Value = match function.call((this, argument)) {
        Ok(value) => value,
        Err(rquickjs::Error::Exception) => return Err(exception(ctx)),
        Err(e) => return Err(internal(e.to_string())),
    };
    match DispatchKind::from_u32(kind) {
        Some(DispatchKind::Request) => {}
        // A tick returning nothing keeps the room's state.
        Some(DispatchKind::RoomTick) if !result.is_undefined() && !result.is_null() => {}
        _ => return Ok(()),
    }
    if handler.raw {
        return match codec::with_bytes(&result, raw::write_output) {
            Some(()) => Ok(()),
            None => Err((
                firefly_abi::codes::HANDLER_FAILED.to_owned(),
                "a raw handler must return a Uint8Array".to_owned(),
            )),
        };
    }
    let reply = codec::encode(&result).map_err(|e| {
        (
            firefly_abi::codes::HANDLER_FAILED.to_owned(),
            format!("cannot encode the reply: {e}"),
        )
    })?;
    raw::write_output(&reply);
    Ok(())
}

fn internal(message: String) -> (String, String) {
    (firefly_abi::codes::INTERNAL.to_owned(), message)
}

/// The pending exception as `(code, message)`: a `FireflyError`'s own code, `handler_failed`
/// with the message and where it was thrown otherwise. Running out of memory traps instead:
/// the instance's heap is not to be trusted after a failed allocation, and the host then
/// reports `out_of_memory` and replaces the instance.
fn exception(ctx: &Ctx<'_>) -> (String, String) {
    let caught = ctx.catch();
    let text = |v: Result<Value, _>| -> Option<String> {
        v.ok()
            .and_then(|v: Value| v.as_string().and_then(|s| s.to_string().ok()))
    };
    if let Some(object) = caught.as_object() {
        let message = text(object.get("message")).unwrap_or_default();
        if message == "out of memory" {
            raw::log(firefly_abi::log_level::ERROR, "JavaScript heap exhausted");
            std::process::abort();
        }
        if let Some(code) = text(object.get("code")) {
            return (code, message);
        }
        let name = text(object.get("name")).unwrap_or_else(|| "Error".to_owned());
        let stack = text(object.get("stack")).unwrap_or_default();
        let at = stack.lines().next().map(str::trim).unwrap_or_default();
        let message = if at.is_empty() {
            format!("{name}: {message}")
        } else {
            format!("{name}: {message} ({at})")
        };
        return (firefly_abi::codes::HANDLER_FAILED.to_owned(), message);
    }
    let message = match caught.as_string().and_then(|s| s.to_string().ok()) {
        Some(s) => s,
        None => format!("a {} was thrown", caught.type_name()),
    };
    if message == "out of memory" {
        std::process::abort();
    }
    (firefly_abi::codes::HANDLER_FAILED.to_owned(), message)
}
