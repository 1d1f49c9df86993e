//! Firefly: a distributed game server framework whose game logic runs as WebAssembly modules.
//!
//! The request path, top to bottom (each layer uses only the ones below it):
//! * [`gate`] accepts client connections and reads [`protocol`] frames;
//! * [`routing`]'s dispatcher picks what serves each command id: a local module version
//!   (its router) or another node (a remote route over [`cluster`] links);
//! * [`engine`] runs it in a sandboxed, pooled wasmtime instance whose host functions
//!   (`engine::host`) reach [`sessions`] for pushes, [`data`] for cached database objects, and
//!   other nodes through the `engine::NodeCalls` seam that [`cluster`] implements;
//! * [`cluster`] carries forwarded requests, pushes and events between nodes and hands what
//!   arrives to the node through its `Inbound` seam;
//! * [`timers`] holds every timer modules start and [`rooms`] every room they open (both
//!   implement what the engine declares: `engine::TimerHost`, `engine::RoomHost`), so time and
//!   room state outlive module instances and versions;
//! * [`node`] wires these together from a [`config::Topology`] entry (it is the only place that
//!   knows every layer), with [`metrics`] on the side and [`hot`] update rules for deploys;
//! * [`master`] starts and supervises node processes and serves the admin API.
//!
//! [`client`] speaks the same protocol (and the admin API) from the other side; [`clientgen`]
//! writes typed clients from a module's description; [`builder`]
//! compiles module crates; [`counter`] is the striped counter the request path bumps; [`logs`]
//! keeps warnings that outsiders can trigger from flooding the log; [`wall`] is the one wall
//! clock.

pub mod builder;
pub mod client;
pub mod clientgen;
pub mod cluster;
pub mod config;
pub mod counter;
pub mod data;
pub mod engine;
pub mod gate;
pub mod hot;
pub mod logs;
pub mod master;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod rooms;
pub mod routing;
pub mod sessions;
pub mod timers;
pub mod wall;

pub use node::{Node, NodeConfig, Sockets};

/// The allocator Firefly's processes run on (the `firefly` binary, and the tests and benches
/// through their kit): mimalloc, whose per-thread heaps avoid the arena lock waits and
/// consolidation passes glibc's malloc showed in profiles of the request path. A program
/// embedding the library picks its own with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

/// The integration tests' services (URLs, private nats-servers), for the unit tests too.
#[cfg(test)]
#[path = "../tests/common/services.rs"]
#[allow(
    dead_code,
    reason = "shared with the integration tests; each unit test uses part"
)]
pub(crate) mod test_services;
