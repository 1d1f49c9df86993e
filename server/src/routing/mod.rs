//! Routing: which code serves a request. The [`Router`] maps command ids to local module
//! slots, a [`RemoteRoute`] sends command ranges to other nodes, and the [`Dispatcher`] runs a
//! session's requests (from a gate connection or a forwarded run) and events.

mod dispatch;
mod remote;
mod router;

pub use dispatch::{Dispatcher, EdgeStats, GateStats, LocalRoute};
pub use remote::RemoteRoute;
pub use router::{ModuleSlot, RouteError, Router};
