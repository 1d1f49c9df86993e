//! Hot update: replacing a module's code on running nodes without failing a request.
//!
//! * [`swap`] is the node side: load a new version off the request path, validate it against
//!   what the node hosts, then swap it into the module's [`crate::router::ModuleSlot`]. Calls
//!   already running finish on the version they started on (each holds an `Arc` to it); new
//!   batches take the new one (`NodeCore::lease_for` notices the swap). Previous versions are
//!   retained, without instances, so a rollback is one more swap.
//! * [`registry`] is the master side: every deployed version of every module, on disk under
//!   `.firefly/registry/`, with which version each node should serve; nodes started (or
//!   restarted) by the master load what the registry says, never the topology's original file.

pub mod registry;
pub mod swap;

pub use registry::{Registry, VersionInfo};
pub use swap::{DeployError, NodeUpdates, Swapped};
