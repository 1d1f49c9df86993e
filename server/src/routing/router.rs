//! Command routing: which module version serves a command id.
//!
//! Each hosted module sits in a [`ModuleSlot`] whose current version can be swapped
//! atomically; the [`Router`] maps command ids to slots. A request loads the slot's current
//! version once (an `Arc`), so it finishes on the version it started with even if a swap
//! happens meanwhile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::engine::ModuleVersion;

/// A hosted module: its name and its current version.
#[derive(Debug)]
pub struct ModuleSlot {
    name: String,
    current: ArcSwap<ModuleVersion>,
}

impl ModuleSlot {
    /// A slot serving `version`.
    pub fn new(version: Arc<ModuleVersion>) -> Self {
        Self {
            name: version.name().to_owned(),
            current: ArcSwap::new(version),
        }
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version serving new requests.
    pub fn current(&self) -> Arc<ModuleVersion> {
        self.current.load_full()
    }

    /// The version serving new requests, borrowed: no reference count is touched unless the
    /// caller keeps it (`arc_swap::Guard::into_inner`).
    pub fn current_guard(&self) -> arc_swap::Guard<Arc<ModuleVersion>> {
        self.current.load()
    }

    /// Makes `version` serve every request that starts from now on; returns the old one.
    pub fn swap(&self, version: Arc<ModuleVersion>) -> Arc<ModuleVersion> {
        self.current.swap(version)
    }
}

/// Command ids are small dense integers chosen by developers: hashing them is wasted work.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

/// Why a routing table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Two modules on one node claim the same command id.
    #[error("command {command} is handled by both `{first}` and `{second}` on this node")]
    Conflict {
        /// The contested command id.
        command: u32,
        /// The module that claimed it first.
        first: String,
        /// The module that claimed it again.
        second: String,
    },
}

/// Command id → module slot, plus the modules that want session events.
#[derive(Debug, Default)]
pub struct Router {
    routes: HashMap<u32, Arc<ModuleSlot>, BuildHasherDefault<IdHasher>>,
    on_connect: Vec<Arc<ModuleSlot>>,
    on_disconnect: Vec<Arc<ModuleSlot>>,
}

impl Router {
    /// Builds the table from the slots' current manifests.
    pub fn build(slots: &[Arc<ModuleSlot>]) -> Result<Self, RouteError> {
        let mut router = Router::default();
        for slot in slots {
            let version = slot.current();
            for &command in &version.manifest.commands {
                if let Some(prev) = router.routes.insert(command, slot.clone()) {
                    return Err(RouteError::Conflict {
                        command,
                        first: prev.name().to_owned(),
                        second: slot.name().to_owned(),
                    });
                }
            }
            for event in &version.manifest.events {
                match event.as_str() {
                    "connect" => router.on_connect.push(slot.clone()),
                    "disconnect" => router.on_disconnect.push(slot.clone()),
                    // Served by the node's rooms (`crate::node`), not routed.
                    "room_tick" | "room_event" => {}
                    other => {
                        tracing::warn!(module = slot.name(), "ignoring unknown event `{other}`")
                    }
                }
            }
        }
        Ok(router)
    }

    /// The slot serving `command`.
    pub fn get(&self, command: u32) -> Option<&Arc<ModuleSlot>> {
        self.routes.get(&command)
    }

    /// Modules that want connect events.
    pub fn on_connect(&self) -> &[Arc<ModuleSlot>] {
        &self.on_connect
    }

    /// Modules that want disconnect events.
    pub fn on_disconnect(&self) -> &[Arc<ModuleSlot>] {
        &self.on_disconnect
    }

    /// Every routed command id, sorted.
    pub fn commands(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.routes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
