//! The dispatcher: the request path's handle, shared by a node's gate connections and by
//! the forwarded runs other nodes send. It knows which local module version serves a
//! command (through the [`Router`], swapped on hot update), which node serves a command
//! routed elsewhere ([`RemoteRoute`]), and runs a session's requests and events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use arc_swap::ArcSwap;
use bytes::Bytes;
use firefly_abi::DispatchKind;
use tokio::sync::Notify;

use super::{ModuleSlot, RemoteRoute, Router};
use crate::counter::Counter;
use crate::engine::Lease;
use crate::protocol::ErrorReply;
use crate::sessions::Sessions;

/// Live counters of a node's request path, shared by its connections and forwarded runs.
#[derive(Debug, Default)]
pub struct GateStats {
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Requests served: client frames that parsed, plus requests other nodes forwarded here.
    pub requests: Counter,
    /// Of those, answered with an error.
    pub errors: Counter,
    /// The client edge's refusals and disconnects (connection caps, rate limit, stalls).
    pub edge: EdgeStats,
    /// Notified when the last connection closes (a graceful stop waits on it).
    pub(crate) idle: Notify,
}

/// What the client edge refused or cut off since start (`/metrics`). Rare events, so plain
/// atomics rather than striped counters.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Connections refused because their listener was at `max_connections`.
    pub refused_listener_cap: AtomicU64,
    /// Connections refused because their IP address was at `max_connections_per_ip`.
    pub refused_ip_cap: AtomicU64,
    /// Requests answered `rate_limited`.
    pub rate_limited: AtomicU64,
    /// Connections closed because the client read nothing for `write_stall`.
    pub write_stalls: AtomicU64,
    /// TLS handshakes that failed or timed out (bad client, scanner, expired certificate).
    pub tls_handshake_failures: AtomicU64,
}

/// The request path of one node.
pub struct Dispatcher {
    /// The node's name, for error messages.
    pub(crate) name: String,
    /// Command ranges this node sends to other nodes.
    pub(crate) remote_routes: Vec<RemoteRoute>,
    /// The sessions this node holds.
    pub(crate) sessions: Arc<Sessions>,
    /// Command id -> module slot; replaced whole (never edited) when a deploy changes the
    /// commands a module serves, so a look-up never takes a lock.
    pub(crate) router: ArcSwap<Router>,
    /// The request counters.
    pub(crate) gate_stats: GateStats,
}

/// Which local module version serves a command, relative to a lease already held.
pub enum LocalRoute {
    /// No module on this node handles the command.
    None,
    /// The version the lease is on.
    Same,
    /// Another version (another module, or a newer version after a hot update).
    Other(Arc<crate::engine::ModuleVersion>),
}

impl Dispatcher {
    /// A dispatcher over `router` and `remote_routes` for the sessions of `sessions`.
    pub fn new(
        name: String,
        router: Router,
        remote_routes: Vec<RemoteRoute>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self {
            name,
            remote_routes,
            sessions,
            router: ArcSwap::from_pointee(router),
            gate_stats: GateStats::default(),
        }
    }

    /// The counters of the request path.
    pub fn stats(&self) -> &GateStats {
        &self.gate_stats
    }

    /// The sessions held here.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Makes `router` serve every request that starts from now on.
    pub(crate) fn set_router(&self, router: Router) {
        self.router.store(Arc::new(router));
    }

    /// The module version serving `command` now, compared with the one `lease` is on. When the
    /// lease's version still serves it (the common case in a pipelined run) no router look-up
    /// is made; otherwise a borrowed look-up that touches no reference count when it is the same.
    pub(crate) fn local_route(&self, command: u32, lease: Option<&Lease>) -> LocalRoute {
        if lease.is_some_and(|l| l.module().serves(command)) {
            return LocalRoute::Same;
        }
        let router = self.router.load();
        let Some(slot) = router.get(command) else {
            return LocalRoute::None;
        };
        let current = slot.current_guard();
        if lease.is_some_and(|l| Arc::ptr_eq(l.module(), &current)) {
            LocalRoute::Same
        } else {
            LocalRoute::Other(arc_swap::Guard::into_inner(current))
        }
    }

    /// The route that sends `command` to another node, if any.
    pub fn remote_route(&self, command: u32) -> Option<&RemoteRoute> {
        self.remote_routes.iter().find(|r| r.covers(command))
    }

    /// Tells every node this gate routes to that a session connected or ended.
    pub fn announce(&self, session: u64, connect: bool) {
        let mut told: Vec<&str> = Vec::new();
        for route in &self.remote_routes {
            for peer in route.peers() {
                if !told.contains(&peer.name.as_str()) {
                    told.push(&peer.name);
                    peer.session_event(session, connect);
                }
            }
        }
    }

    /// Runs requests another node forwarded here for one session, `(command, payload)`, one
    /// at a time in order, handing their answers to `out` in order. They are served by local
    /// modules only: a forwarded request is never forwarded again, so no two nodes' routes can
    /// send a request back and forth.
    pub async fn serve_forwarded(
        &self,
        session: u64,
        requests: impl Iterator<Item = (u32, Bytes)> + Send,
        out: &mut impl crate::protocol::Answers,
    ) {
        let mut run = super::Run::local_only(self, session);
        for (command, payload) in requests {
            run.request(command, payload, out).await;
        }
        run.finish(out).await;
        let (requests, errors) = run.take_counts();
        self.gate_stats.requests.add(requests);
        if errors > 0 {
            self.gate_stats.errors.add(errors);
        }
    }

    /// The error frame for a command no module on this node handles.
    pub(crate) fn unknown_command(&self, command: u32) -> ErrorReply {
        ErrorReply::new(
            command,
            firefly_abi::codes::UNKNOWN_COMMAND,
            format!(
                "no module on node `{}` handles command {command}",
                self.name
            ),
        )
    }

    /// Delivers a session event to every module that asked for it. Failures are logged: there
    /// is no client request to answer.
    pub async fn session_event(&self, kind: DispatchKind, session: u64) {
        let slots: Vec<Arc<ModuleSlot>> = {
            let router = self.router.load();
            match kind {
                DispatchKind::Connect => router.on_connect().to_vec(),
                _ => router.on_disconnect().to_vec(),
            }
        };
        for slot in slots {
            let module = slot.current();
            let outcome = module.call_event(kind, 0, session, Bytes::new()).await;
            if let Err(err) = outcome.result {
                tracing::warn!(
                    session,
                    module = module.name(),
                    version = module.version(),
                    "{kind:?} handler failed: {} ({})",
                    err.message,
                    err.code
                );
            }
        }
    }
}
