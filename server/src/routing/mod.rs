//! Routing: which code serves a request. The [`Router`] maps command ids to local module
//! slots, a [`RemoteRoute`] sends command ranges to other nodes, and the [`Dispatcher`] holds
//! them; a [`Run`] serves a session's requests in order (from a gate connection or a forwarded
//! run), and the dispatcher its events.

mod dispatch;
mod remote;
mod router;
mod run;

pub use dispatch::{Dispatcher, EdgeStats, GateStats, LocalRoute};
pub use remote::RemoteRoute;
pub use router::{ModuleSlot, RouteError, Router};
pub use run::{MAX_PIPELINE, Run};
