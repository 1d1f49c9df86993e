//! The node side of a hot update: validate a new version, then swap it in atomically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::engine::{LoadError, ModuleVersion};
use crate::routing::ModuleSlot;

/// How many previous versions of each module a node keeps for instant rollback. Retained
/// versions hold compiled code only (their instances are freed when they retire).
pub const RETAINED_VERSIONS: usize = 8;

/// Hot-update state of one node.
#[derive(Default)]
pub struct NodeUpdates {
    /// Held for the whole of a deploy: swaps on one node happen one at a time, so the router
    /// rebuilt after one always sees every slot's final version.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// Per module, versions that served before, oldest first.
    retained: Mutex<HashMap<String, Vec<Arc<ModuleVersion>>>>,
}

/// Why a node refused a version; the old version keeps serving in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The node does not host the module.
    #[error("node `{node}` does not host module `{module}`")]
    NotHosted {
        /// The node.
        node: String,
        /// The module asked for.
        module: String,
    },
    /// No wasm was sent and the version is not retained here.
    #[error("version {version} of `{module}` is not retained on this node and no wasm was sent")]
    Missing {
        /// The module.
        module: String,
        /// The version asked for.
        version: u32,
    },
    /// The new version failed validation.
    #[error("{0}")]
    Invalid(String),
}

/// What a successful deploy did on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    /// The version that served before.
    pub from: u32,
    /// The version serving now.
    pub to: u32,
    /// True when the version was already serving (nothing changed).
    pub unchanged: bool,
}

impl From<LoadError> for DeployError {
    fn from(err: LoadError) -> Self {
        DeployError::Invalid(err.to_string())
    }
}

/// Checks that `candidate` may replace `current` in `slot` on a node hosting `slots`: its name
/// is the module's and its commands are not already handled by another module here.
pub fn check_compatible(
    slot: &ModuleSlot,
    candidate: &ModuleVersion,
    slots: &[Arc<ModuleSlot>],
) -> Result<(), DeployError> {
    let declared = &candidate.manifest.name;
    if declared != slot.name() {
        return Err(DeployError::Invalid(format!(
            "the module describes itself as `{declared}`, not `{}` (deploy it under its own name)",
            slot.name()
        )));
    }
    for other in slots.iter().filter(|s| s.name() != slot.name()) {
        let theirs = other.current();
        if let Some(command) = candidate
            .manifest
            .commands
            .iter()
            .find(|c| theirs.manifest.commands.contains(c))
        {
            return Err(DeployError::Invalid(format!(
                "command {command} is already handled by module `{}` on this node",
                other.name()
            )));
        }
    }
    check_table_changes(slot.current_guard().as_ref(), candidate)
}

/// Refuses a version whose table declarations change in a way existing data cannot follow
/// (changing the key, removing or retyping a field, a new field that is neither nullable nor
/// defaulted): the same rule the data layer applies against the stored schema when the version
/// loads, checked here against the version serving now so the message names the deploy.
pub fn check_table_changes(
    current: &ModuleVersion,
    candidate: &ModuleVersion,
) -> Result<(), DeployError> {
    for new in &candidate.manifest.tables {
        if let Some(old) = current.manifest.tables.iter().find(|t| t.name == new.name) {
            crate::data::schema::check_upgrade(old, new)
                .map_err(|e| DeployError::Invalid(e.to_string()))?;
        }
    }
    Ok(())
}

impl NodeUpdates {
    pub(crate) fn retained(&self, module: &str, version: u32) -> Option<Arc<ModuleVersion>> {
        let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        retained
            .get(module)?
            .iter()
            .rev()
            .find(|v| v.version() == version)
            .cloned()
    }

    pub(crate) fn retain(&self, old: Arc<ModuleVersion>, current: u32) {
        let mut retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        let list = retained.entry(old.name().to_owned()).or_default();
        list.retain(|v| v.version() != old.version() && v.version() != current);
        list.push(old);
        if list.len() > RETAINED_VERSIONS {
            list.remove(0);
        }
    }

    /// Version numbers retained for `module`, oldest first.
    pub fn retained_versions(&self, module: &str) -> Vec<u32> {
        let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        retained
            .get(module)
            .map(|l| l.iter().map(|v| v.version()).collect())
            .unwrap_or_default()
    }
}
