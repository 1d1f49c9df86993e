//! The contract between the Firefly host and its WebAssembly modules, declared once.
//!
//! Both sides build on this crate: the guest SDK turns [`for_each_import!`] into its
//! `extern "C"` block, and the host defines exactly the functions listed in [`IMPORTS`] (a
//! host test checks the linker against that table, signature by signature). Nothing here is
//! copied by hand on either side.
//!
//! # Shape of the ABI (version 1)
//! * Modules are core wasm modules built for `wasm32-wasip1`.
//! * Every host function lives in the import namespace [`IMPORT_MODULE`] (`firefly_v1`). The
//!   version is part of the name, so a module built for another ABI version fails validation
//!   with a message naming both versions instead of misbehaving at run time.
//! * A module exports [`EXPORT_DESCRIBE`], which writes its [`Manifest`] (MessagePack, named
//!   fields) through `output_write`, and [`EXPORT_DISPATCH`], the single entry point for every
//!   request, node call and session event.
//! * A module may also export [`EXPORT_DISPATCH_BATCH`]: the host then serves several pipelined
//!   requests of one session with one entry into the guest, which pulls each request with
//!   `request_next` and reports each outcome with `request_done`. Modules without it (built by
//!   an older SDK) are served one `__firefly_dispatch` call per request, as before.
//! * Payloads never cross as pointers owned by the other side: the guest pulls the request with
//!   `input_read` and pushes results with `output_write` / `error_set`. A host import costs about
//!   9 ns, so this is cheaper than a guest allocator export round trip.
//!
//! Adding an import to the v1 list is compatible (old modules do not import it). Changing or
//! removing one needs `firefly_v2`.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;

/// The import namespace every host function lives in. Carries [`ABI_VERSION`].
pub const IMPORT_MODULE: &str = "firefly_v1";

/// The prefix shared by every Firefly import namespace, whatever its version.
pub const IMPORT_MODULE_PREFIX: &str = "firefly_v";

/// Export: `() -> ()`. Writes the module's [`Manifest`] with `output_write`.
pub const EXPORT_DESCRIBE: &str = "__firefly_describe";

/// Export: `(kind: u32, id: u32, session: u64, input_len: u32) -> u32`.
///
/// `kind` is a [`DispatchKind`], `id` the command id (requests) or event id, `session` the
/// session the call runs for (0 for none), `input_len` the size of the payload the guest can
/// read with `input_read`. Returns a [`Status`].
pub const EXPORT_DISPATCH: &str = "__firefly_dispatch";

/// Optional export: `(session: u64) -> u32`. Serves a batch of client requests of `session`
/// in one entry into the guest.
///
/// The guest loops: `request_next()` starts the next request of the batch and returns
/// `(command << 32) | input_len` ([`BATCH_END`] when the batch is over); the guest reads the
/// input with `input_read`, runs the handler, sets the reply or error exactly as in a
/// [`EXPORT_DISPATCH`] call, and reports the [`Status`] with `request_done(status)`. Every
/// request gets its own time limit, CPU budget and output, reset by `request_next`. Returns 0.
///
/// If the guest traps, the requests already reported keep their replies, the one in progress
/// fails, and the host serves the rest on another instance: no request is lost or run twice.
pub const EXPORT_DISPATCH_BATCH: &str = "__firefly_dispatch_batch";

/// The custom section of a module's `.wasm` describing its commands' request and reply types
/// and its push topics, as JSON, for typed clients (`firefly client-gen`). Written at compile
/// time by the Rust SDK (`firefly_sdk::schema`); the host never reads it to run a module.
pub const SCHEMA_SECTION: &str = "firefly.schema";

/// The version of that description's format (its `format` field).
pub const SCHEMA_FORMAT: u32 = 1;

/// What `request_next` returns when the batch has no more requests.
pub const BATCH_END: u64 = u64::MAX;

/// What a dispatch call carries.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchKind {
    /// A client request: `id` is the command id.
    Request = 0,
    /// A session connected (`id` is 0).
    Connect = 1,
    /// A session ended (`id` is 0).
    Disconnect = 2,
    /// A timer fired: `id` is the index of its tag in [`Manifest::timers`], `session` is 0 and
    /// the input is a MessagePack [`TimerFiring`].
    Timer = 3,
    /// A room ticked: `id` is 0, `session` 0, the input a MessagePack [`rooms::RoomTick`];
    /// the output (if any) is the room's new state.
    RoomTick = 4,
    /// A room's membership changed: `id` is 0, `session` the member, the input a MessagePack
    /// [`rooms::RoomEvent`].
    RoomEvent = 5,
}

impl DispatchKind {
    /// Decodes a raw kind, `None` when unknown.
    pub fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Request),
            1 => Some(Self::Connect),
            2 => Some(Self::Disconnect),
            3 => Some(Self::Timer),
            4 => Some(Self::RoomTick),
            5 => Some(Self::RoomEvent),
            _ => None,
        }
    }
}

/// The result of a dispatch call.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success; the reply (possibly empty) is whatever `output_write` set.
    Ok = 0,
    /// The handler returned an error; `error_set` holds its code and message.
    Error = 1,
    /// The module has no handler for this id.
    Unknown = 2,
}

impl Status {
    /// Decodes a raw status, `None` when unknown.
    pub fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Ok),
            1 => Some(Self::Error),
            2 => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// Result codes returned by host functions that can fail.
pub mod host_status {
    /// Success.
    pub const OK: u32 = 0;
    /// The target session does not exist (any more).
    pub const NO_SUCH_SESSION: u32 = 1;
    /// The target's buffer is full; the message was not queued.
    pub const BACKPRESSURE: u32 = 2;
    /// The topic is one of the framework's ([`super::RESERVED_TOPICS`] and up).
    pub const RESERVED_TOPIC: u32 = 3;
}

/// Push topics from this one up belong to the framework (the session command `0xFFFFFF00`,
/// the `room_lost` push `0xFFFFFF01`, the default error command `0xFFFFFFFF`): the host
/// refuses module pushes on them, so a client can trust what arrives there.
pub const RESERVED_TOPICS: u32 = 0xFFFF_FF00;

/// Outcomes of `call_node` / `send_node`.
pub mod call_status {
    /// The answer is the callee's reply payload.
    pub const OK: u32 = 0;
    /// The callee failed; the answer is a MessagePack map `{code, message}`.
    pub const ERROR: u32 = 1;
    /// The node cannot be reached; the answer is a UTF-8 explanation.
    pub const UNAVAILABLE: u32 = 2;
    /// The node did not answer in time; the answer is a UTF-8 explanation.
    pub const TIMEOUT: u32 = 3;
    /// No node of that name (or this node is not part of a cluster); the answer explains.
    pub const UNKNOWN_NODE: u32 = 4;
}

/// Outcomes of the session imports (`group_join`, `user_bind`, `session_kick`, ...).
pub mod session_status {
    /// Done (for a broadcast: queued or sent to the gates).
    pub const OK: u32 = 0;
    /// The session does not exist (any more).
    pub const NO_SUCH_SESSION: u32 = 1;
    /// The session's queue is full.
    pub const BACKPRESSURE: u32 = 2;
    /// The gate holding the session cannot be reached.
    pub const UNAVAILABLE: u32 = 3;
    /// A name or id is empty or too long (at most 256 bytes).
    pub const INVALID: u32 = 4;
    /// The topic is one of the framework's ([`super::RESERVED_TOPICS`] and up).
    pub const RESERVED_TOPIC: u32 = 5;
}

/// Log levels understood by the `log` import.
pub mod log_level {
    /// Error.
    pub const ERROR: u32 = 1;
    /// Warning.
    pub const WARN: u32 = 2;
    /// Info.
    pub const INFO: u32 = 3;
    /// Debug.
    pub const DEBUG: u32 = 4;
    /// Trace.
    pub const TRACE: u32 = 5;
}

/// Error codes that appear in error frames and in guest errors. Modules may use their own
/// codes too (for example `not_enough_gold`); these are the ones the framework produces.
pub mod codes {
    /// No module on this node handles the command id.
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    /// The request payload could not be decoded into the handler's request type.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The handler returned an error without a code of its own.
    pub const HANDLER_FAILED: &str = "handler_failed";
    /// The module trapped (a panic, `unreachable`, a stack overflow...).
    pub const TRAPPED: &str = "trapped";
    /// The module tried to grow its memory past its limit.
    pub const OUT_OF_MEMORY: &str = "out_of_memory";
    /// The request ran past its time limit.
    pub const TIMEOUT: &str = "timeout";
    /// Every instance of the module is busy and none freed up in time.
    pub const OVERLOADED: &str = "overloaded";
    /// The node that should serve the request cannot be reached.
    pub const NODE_UNAVAILABLE: &str = "node_unavailable";
    /// The frame's length field is below 4.
    pub const BAD_FRAME: &str = "bad_frame";
    /// The frame's length field is over the listener's maximum.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// The host failed for a reason that is not the module's fault.
    pub const INTERNAL: &str = "internal";
}

/// What a module declares about itself, written by [`EXPORT_DESCRIBE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The ABI version the module was built against.
    pub abi: u32,
    /// The version of the SDK crate that built it.
    pub sdk: String,
    /// The module's name (the crate name unless overridden).
    pub name: String,
    /// Command ids the module handles, sorted.
    pub commands: Vec<u32>,
    /// Events the module wants: `"connect"`, `"disconnect"`, `"room_tick"`.
    #[serde(default)]
    pub events: Vec<String>,
    /// Tables the module declares (cached database objects). Absent in modules built before
    /// tables existed, which therefore still load.
    #[serde(default)]
    pub tables: Vec<data::TableSchema>,
    /// Timer tags the module handles (`#[timer("tag")]`), sorted; a firing's dispatch `id` is
    /// the tag's index here. Absent in modules built before timers existed.
    #[serde(default)]
    pub timers: Vec<String>,
}

/// The input of a [`DispatchKind::Timer`] call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFiring {
    /// The timer's id (what `timer_start` returned).
    pub timer: u64,
    /// Its tag.
    pub tag: String,
    /// The session that started it (0: none). It may have ended since.
    pub session: u64,
    /// Which firing this is: 1 for the first, +1 per period.
    pub firing: u64,
    /// How late this firing runs, in milliseconds past its scheduled time (a node that was
    /// down or overloaded fires late, never twice).
    pub late_ms: u64,
    /// Whether the timer fires again (a periodic timer not cancelled).
    pub repeats: bool,
    /// The payload given when the timer started.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Flags of `timer_start`.
pub mod timer_flags {
    /// Persist the timer through the data layer: it fires after a node restart.
    pub const DURABLE: u32 = 1;
}

/// Status codes in the top 16 bits of `timer_start`'s result.
pub mod timer_status {
    /// Started; the low 48 bits are the timer's id.
    pub const OK: u64 = 0;
    /// The module has as many pending timers as its limit allows.
    pub const LIMIT: u64 = 1;
    /// A bad tag, delay, period or payload size.
    pub const INVALID: u64 = 2;
    /// A durable timer could not be stored (no storage on this node, or it is unreachable).
    pub const UNAVAILABLE: u64 = 3;
}

/// Timer ids are below this (they fill the low 48 bits of `timer_start`'s result).
pub const TIMER_ID_BITS: u32 = 48;

pub mod data;
pub mod rooms;

/// The value type of an ABI function parameter or result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValKind {
    /// wasm `i32` (Rust `u32`).
    I32,
    /// wasm `i64` (Rust `u64`).
    I64,
}

/// One host function of the ABI: its name and wasm signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSig {
    /// The function's name within [`IMPORT_MODULE`].
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValKind],
    /// Result types.
    pub results: &'static [ValKind],
}

/// Invokes `$callback!` with the import namespace (`module = "firefly_v1";`) and the list of
/// every host function of ABI v1.
///
/// This list is the single source of truth: the guest SDK declares its imports from it and the
/// host's linker is checked against [`IMPORTS`], which is generated from it too.
#[macro_export]
macro_rules! for_each_import {
    ($callback:path) => {
        $callback! {
            module = "firefly_v1";
            /// Copies the current call's input payload (`len` bytes) to guest memory at `ptr`.
            fn input_read(ptr: u32, len: u32);
            /// Sets the current call's output (reply payload, or manifest) to `len` bytes at `ptr`.
            fn output_write(ptr: u32, len: u32);
            /// Marks the current call failed with an error code and a message (UTF-8).
            fn error_set(code_ptr: u32, code_len: u32, msg_ptr: u32, msg_len: u32);
            /// Pushes `len` bytes at `ptr` to `session` with command id `topic`. Returns a
            /// `host_status` code.
            fn push(session: u64, topic: u32, ptr: u32, len: u32) -> u32;
            /// Writes a UTF-8 log line at a `log_level`, tagged with the module and version.
            fn log(level: u32, ptr: u32, len: u32);
            /// Wall-clock time in microseconds since the Unix epoch.
            fn time_now_micros() -> u64;
            /// Fills `len` bytes at `ptr` with cryptographically secure random bytes.
            fn random_fill(ptr: u32, len: u32);
            /// Runs `command` on node `node` (UTF-8 name) with `len` bytes at `ptr`, for the
            /// current session, and waits for the answer (up to the cluster's rpc timeout).
            /// Returns `(call_status << 32) | answer_len`; `call_reply_read` fetches the answer.
            fn call_node(node_ptr: u32, node_len: u32, command: u32, ptr: u32, len: u32) -> u64;
            /// Copies the answer of the last `call_node` (`len` bytes) to `ptr`.
            fn call_reply_read(ptr: u32, len: u32);
            /// Sends `command` to node `node` without waiting. Returns a `call_status`.
            fn send_node(node_ptr: u32, node_len: u32, command: u32, ptr: u32, len: u32) -> u32;
            // --- Cached database objects (see `data`) ---
            /// Runs one data operation: `len` bytes at `ptr` are a MessagePack [`data::DataOp`].
            /// Returns `(data_status << 32) | answer_len`; `data_reply_read` fetches the answer
            /// (the operation's result on `OK`, a UTF-8 explanation otherwise).
            fn data_call(ptr: u32, len: u32) -> u64;
            /// Copies the answer of the last `data_call` (`len` bytes) to `ptr`.
            fn data_reply_read(ptr: u32, len: u32);
            // --- Sessions across the cluster: broadcasts, groups, users, kicks. ---
            /// Pushes `len` bytes at `ptr` on `topic` to each of the `count` session ids at
            /// `ids_ptr` (little-endian u64s), wherever they are connected; sessions that are
            /// gone are skipped. Returns a `session_status`.
            fn push_sessions(ids_ptr: u32, count: u32, topic: u32, ptr: u32, len: u32) -> u32;
            /// Pushes to every member of group `name` (UTF-8), on every gate.
            fn push_group(name_ptr: u32, name_len: u32, topic: u32, ptr: u32, len: u32) -> u32;
            /// Pushes to every session of the cluster.
            fn push_all(topic: u32, ptr: u32, len: u32) -> u32;
            /// Pushes to every session bound to user id `user` (UTF-8), on every gate.
            fn push_user(user_ptr: u32, user_len: u32, topic: u32, ptr: u32, len: u32) -> u32;
            /// Adds `session` to group `name` (`join` 1) or removes it (`join` 0). Returns a
            /// `session_status`.
            fn group_join(session: u64, name_ptr: u32, name_len: u32, join: u32) -> u32;
            /// Binds user id `user` (UTF-8) to `session`; an empty id unbinds. A second login
            /// kicks the user's other sessions where the listener says `single_login`.
            /// Returns a `session_status`.
            fn user_bind(session: u64, user_ptr: u32, user_len: u32) -> u32;
            /// The user bound to `session`: `(session_status << 32) | len` (len 0: none); the
            /// id is fetched with `call_reply_read`.
            fn user_of(session: u64) -> u64;
            /// Ends `session`: its client gets a `kicked` error frame, its connection closes
            /// and its disconnect event fires. Returns a `session_status`.
            fn session_kick(session: u64) -> u32;
            // --- Timers, owned by the host (see `DispatchKind::Timer`). ---
            /// Starts a timer firing the module's `#[timer]` handler for tag `tag` (UTF-8) after
            /// `delay_ms`, then every `period_ms` if that is not 0, with the `len` bytes at `ptr`
            /// as its payload; `flags` are `timer_flags`. Returns `(timer_status << 48) | id`.
            fn timer_start(tag_ptr: u32, tag_len: u32, delay_ms: u64, period_ms: u64, flags: u32, ptr: u32, len: u32) -> u64;
            /// Cancels timer `id` of this module. Returns 1 if it was pending, 0 otherwise.
            fn timer_cancel(id: u64) -> u32;
            // --- Rooms, held by the host (see `rooms`). ---
            /// Runs one room operation: `len` bytes at `ptr` are a MessagePack
            /// [`rooms::RoomOp`]. Returns `(room_status << 32) | answer_len`; the answer is
            /// fetched with `call_reply_read`.
            fn room_call(ptr: u32, len: u32) -> u64;
            // --- Batched dispatch (see `EXPORT_DISPATCH_BATCH`). ---
            /// Starts the next request of the current batch: `(command << 32) | input_len`, or
            /// `BATCH_END` when none is left. Resets the per-request state (input, output,
            /// error, time limit, CPU budget).
            fn request_next() -> u64;
            /// Ends the request `request_next` started, with a `Status`.
            fn request_done(status: u32);
        }
    };
}

macro_rules! val_kind {
    (u32) => {
        ValKind::I32
    };
    (u64) => {
        ValKind::I64
    };
}

macro_rules! import_table {
    (module = $module:literal; $( $(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:tt),*) $(-> $ret:tt)?; )*) => {
        /// The import namespace as the list declares it (equal to [`IMPORT_MODULE`]).
        pub const LISTED_MODULE: &str = $module;

        /// Every host function of ABI v1, generated from [`for_each_import!`].
        pub const IMPORTS: &[ImportSig] = &[
            $( ImportSig {
                name: stringify!($name),
                params: &[$(val_kind!($ty)),*],
                results: &[$(val_kind!($ret))?],
            }, )*
        ];
    };
}

for_each_import!(import_table);

/// Looks up an import of ABI v1 by name.
pub fn import(name: &str) -> Option<&'static ImportSig> {
    IMPORTS.iter().find(|sig| sig.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_list() {
        let push = import("push").unwrap();
        assert_eq!(
            push.params,
            &[ValKind::I64, ValKind::I32, ValKind::I32, ValKind::I32]
        );
        assert_eq!(push.results, &[ValKind::I32]);
        assert_eq!(import("time_now_micros").unwrap().results, &[ValKind::I64]);
        assert!(import("nope").is_none());
        assert!(IMPORT_MODULE.starts_with(IMPORT_MODULE_PREFIX));
        assert_eq!(LISTED_MODULE, IMPORT_MODULE);
        assert!(IMPORT_MODULE.ends_with(&alloc::format!("{ABI_VERSION}")));
    }

    #[test]
    fn codes_round_trip() {
        for s in [Status::Ok, Status::Error, Status::Unknown] {
            assert_eq!(Status::from_u32(s as u32), Some(s));
        }
        for k in [
            DispatchKind::Request,
            DispatchKind::Connect,
            DispatchKind::Disconnect,
        ] {
            assert_eq!(DispatchKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(Status::from_u32(9), None);
    }
}
