//! Hot update: replacing a module's code on running nodes without failing a request.
//!
//! * [`swap`] holds the node side's rules: the checks a new version must pass against what the
//!   node hosts, and the versions a node retains; the swap itself is `Node::deploy`
//!   (`node/deploy.rs`), which puts the version into the module's
//!   [`crate::routing::ModuleSlot`]. Calls already running finish on the version they started
//!   on (each holds an `Arc` to it); new batches take the new one (the dispatcher's
//!   `local_route` sees the slot changed). Previous versions are retained, without
//!   instances, so a rollback is one more swap.
//! * [`registry`] is the master side: every deployed version of every module, on disk under
//!   `.firefly/registry/`, with which version each node should serve; nodes started (or
//!   restarted) by the master load what the registry says, never the topology's original file.

pub mod registry;
pub mod swap;

pub use registry::{Registry, VersionInfo};
pub use swap::{DeployError, NodeUpdates, Swapped};
