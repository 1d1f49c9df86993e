//! Firefly: a distributed game server framework whose game logic runs as WebAssembly modules.
//!
//! The request path, top to bottom:
//! * [`gate`] accepts client connections and reads [`protocol`] frames;
//! * [`router`] picks the module that serves a command id;
//! * [`engine`] runs it in a sandboxed, pooled wasmtime instance whose host functions
//!   (`engine::host`) reach [`sessions`] for pushes;
//! * [`node`] ties these together from a [`config::Topology`] entry.
//!
//! [`client`] speaks the same protocol from the other side; [`builder`] compiles module crates.

pub mod builder;
pub mod client;
pub mod cluster;
pub mod config;
pub mod counter;
pub mod data;
pub mod engine;
pub mod gate;
pub mod hot;
pub mod master;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod routing;
pub mod sessions;

pub use node::{Node, NodeConfig};

/// The allocator Firefly's processes run on (the `firefly` binary, and the tests and benches
/// through their kit): mimalloc, whose per-thread heaps avoid the arena lock waits and
/// consolidation passes glibc's malloc showed in profiles of the request path. A program
/// embedding the library picks its own with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;
