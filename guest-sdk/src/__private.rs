//! Support for the code `#[firefly_sdk::module]` generates. Not a public API.

use std::cell::RefCell;
use std::sync::Once;

use firefly_abi::{ABI_VERSION, DispatchKind, Manifest, Status};

use crate::ctx::Ctx;
use crate::error::Result;
use crate::payload::{FromPayload, IntoPayload};
use crate::raw;

pub use firefly_abi::log_level;

/// The signature of session event handlers.
pub type EventFn = fn(&mut Ctx) -> Result<()>;

thread_local! {
    // Reused across calls: instances are reused, so the input buffer grows once.
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes a log line through the host.
pub fn log(level: u32, text: &str) {
    // SAFETY: the pointer and length describe `text`, which the host only reads.
    unsafe { raw::log(level, text.as_ptr() as u32, text.len() as u32) }
}

fn write_output(bytes: &[u8]) {
    // SAFETY: the pointer and length describe `bytes`, which the host only reads.
    unsafe { raw::output_write(bytes.as_ptr() as u32, bytes.len() as u32) }
}

fn set_error(code: &str, message: &str) {
    // SAFETY: both pointer/length pairs describe live strings the host only reads.
    unsafe {
        raw::error_set(
            code.as_ptr() as u32,
            code.len() as u32,
            message.as_ptr() as u32,
            message.len() as u32,
        )
    }
}

/// Runs one typed (or raw) handler: decode, call, encode.
pub fn handle<Req: FromPayload, Resp: IntoPayload>(
    ctx: &mut Ctx,
    input: &[u8],
    handler: impl FnOnce(&mut Ctx, Req) -> Result<Resp>,
) -> Result<Vec<u8>> {
    let request = Req::from_payload(input)?;
    handler(ctx, request)?.into_payload()
}

/// Runs one `#[timer]` handler: decode the firing, call.
pub fn handle_timer<T: FromPayload>(
    ctx: &mut Ctx,
    input: &[u8],
    handler: impl FnOnce(&mut Ctx, crate::timers::Fired<T>) -> Result<()>,
) -> Result<Vec<u8>> {
    handler(ctx, crate::timers::decode(input)?)?;
    Ok(Vec::new())
}

/// The signature of the generated room tick entry.
pub type RoomTickFn = fn(&mut Ctx, &[u8]) -> Result<Vec<u8>>;

/// Runs a `#[room_tick]` handler: decode the tick, call, encode the new state (nothing when
/// the handler keeps the old one).
pub fn handle_room_tick<S: FromPayload + serde::Serialize>(
    ctx: &mut Ctx,
    input: &[u8],
    handler: impl FnOnce(&mut Ctx, crate::rooms::Tick<S>) -> Result<Option<S>>,
) -> Result<Vec<u8>> {
    match handler(ctx, crate::rooms::decode(input)?)? {
        Some(state) => state.into_payload(),
        None => Ok(Vec::new()),
    }
}

/// The signature of a `#[room_event]` handler.
pub type RoomEventFn = fn(&mut Ctx, crate::rooms::RoomEvent) -> Result<()>;

/// Runs a `#[room_event]` handler.
pub fn handle_room_event(ctx: &mut Ctx, input: &[u8], handler: RoomEventFn) -> Result<Vec<u8>> {
    handler(ctx, crate::rooms::decode_event(input)?)?;
    Ok(Vec::new())
}

/// Writes the module manifest.
pub fn describe(name: &str, commands: &[u32], events: &[&str]) {
    describe_with_tables(name, commands, events, &[], &[]);
}

/// Writes the module manifest, with the schemas of the tables the module declares and the tags
/// of its timer handlers (sorted: a firing's id is its tag's index).
pub fn describe_with_tables(
    name: &str,
    commands: &[u32],
    events: &[&str],
    tables: &[fn() -> crate::data::TableSchema],
    timers: &[&str],
) {
    let manifest = Manifest {
        abi: ABI_VERSION,
        sdk: env!("CARGO_PKG_VERSION").to_owned(),
        name: name.to_owned(),
        commands: commands.to_vec(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        tables: tables.iter().map(|schema| schema()).collect(),
        timers: timers.iter().map(|t| (*t).to_owned()).collect(),
    };
    match rmp_serde::to_vec_named(&manifest) {
        Ok(bytes) => write_output(&bytes),
        Err(e) => set_error("internal", &format!("cannot encode the manifest: {e}")),
    }
}

/// A generated router: `(ctx, id, input)` to the handler of `id`, `None` when there is none.
pub type RouteFn = fn(&mut Ctx, u32, &[u8]) -> Option<Result<Vec<u8>>>;

/// Where a module's calls go: its request router, its session event handlers and its timer
/// router (by tag index).
pub struct Routes {
    /// Client requests and node calls, by command id.
    pub requests: RouteFn,
    /// `#[on_connect]`.
    pub on_connect: Option<EventFn>,
    /// `#[on_disconnect]`.
    pub on_disconnect: Option<EventFn>,
    /// `#[timer]` handlers, by the index of their tag in the manifest.
    pub timers: RouteFn,
    /// `#[room_tick]`.
    pub room_tick: Option<RoomTickFn>,
    /// `#[room_event]`.
    pub room_event: Option<RoomEventFn>,
}

/// Routes one call and reports its outcome to the host.
pub fn dispatch(kind: u32, id: u32, session: u64, input_len: u32, routes: &Routes) -> u32 {
    install_panic_hook();
    run_one(kind, id, session, input_len, routes)
}

/// Serves every request of a batch (the `__firefly_dispatch_batch` export): one entry into the
/// module for several pipelined requests, each pulled with `request_next` and reported with
/// `request_done`, exactly as if each were its own `dispatch` call.
pub fn dispatch_batch(session: u64, routes: &Routes) -> u32 {
    install_panic_hook();
    loop {
        // SAFETY: no pointers cross; the host starts the next request of the batch.
        let next = unsafe { raw::request_next() };
        if next == firefly_abi::BATCH_END {
            return 0;
        }
        let (id, input_len) = ((next >> 32) as u32, next as u32);
        let kind = DispatchKind::Request as u32;
        let status = run_one(kind, id, session, input_len, routes);
        // SAFETY: no pointers cross; the host ends the request it started.
        unsafe { raw::request_done(status) };
    }
}

fn run_one(kind: u32, id: u32, session: u64, input_len: u32, routes: &Routes) -> u32 {
    let mut ctx = Ctx {
        session,
        command: id,
    };
    let result = INPUT.with(|cell| {
        let mut input = cell.borrow_mut();
        input.clear();
        input.resize(input_len as usize, 0);
        // SAFETY: `input` is exactly `input_len` bytes long; the host writes within it.
        unsafe { raw::input_read(input.as_mut_ptr() as u32, input_len) };
        match DispatchKind::from_u32(kind) {
            Some(DispatchKind::Request) => (routes.requests)(&mut ctx, id, &input),
            Some(DispatchKind::Connect) => {
                routes.on_connect.map(|f| f(&mut ctx).map(|()| Vec::new()))
            }
            Some(DispatchKind::Disconnect) => routes
                .on_disconnect
                .map(|f| f(&mut ctx).map(|()| Vec::new())),
            Some(DispatchKind::Timer) => (routes.timers)(&mut ctx, id, &input),
            Some(DispatchKind::RoomTick) => routes.room_tick.map(|f| f(&mut ctx, &input)),
            Some(DispatchKind::RoomEvent) => routes
                .room_event
                .map(|f| handle_room_event(&mut ctx, &input, f)),
            None => None,
        }
    });
    match result {
        None => Status::Unknown as u32,
        Some(Ok(reply)) => {
            write_output(&reply);
            Status::Ok as u32
        }
        Some(Err(err)) => {
            set_error(&err.code, &err.message);
            Status::Error as u32
        }
    }
}

/// Reports panics to the host before the abort turns them into a trap, so the error frame
/// says what panicked and where.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = format!("module panicked: {info}");
            log(log_level::ERROR, &message);
            set_error(firefly_abi::codes::TRAPPED, &message);
        }));
    });
}
