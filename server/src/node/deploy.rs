//! Hot update on this node: a new version of a hosted module loaded, checked against what
//! the node hosts, and swapped in (see [`crate::hot`]).

use sha2::{Digest, Sha256};

use super::NodeCore;
use crate::engine::ModuleVersion;
use crate::hot::swap::check_compatible;
use crate::hot::{DeployError, Swapped};
use crate::routing::Router;

impl NodeCore {
    /// Makes `version` of `module` serve every request that starts from now on.
    ///
    /// A version retained here with the same content is swapped back in at once; otherwise
    /// `wasm` is compiled (off the async workers), validated and described first. Nothing
    /// changes unless every check passes.
    pub async fn deploy(
        &self,
        module: &str,
        version: u32,
        wasm: Option<&[u8]>,
    ) -> Result<Swapped, DeployError> {
        let Some(slot) = self.slot(module) else {
            return Err(DeployError::NotHosted {
                node: self.name.clone(),
                module: module.to_owned(),
            });
        };
        let _one_at_a_time = self.updates.lock.lock().await;
        let current = slot.current();
        let hash = wasm.map(|w| hex::encode(Sha256::digest(w)));
        let same_content = |v: &ModuleVersion| hash.as_ref().is_none_or(|h| *h == v.hash);
        if current.version() == version && same_content(&current) {
            return Ok(Swapped {
                from: version,
                to: version,
                unchanged: true,
            });
        }
        let candidate = match self.updates.retained(module, version) {
            Some(v) if same_content(&v) => v,
            _ => {
                let Some(wasm) = wasm else {
                    return Err(DeployError::Missing {
                        module: module.to_owned(),
                        version,
                    });
                };
                self.runtime
                    .load(module, version, wasm, current.limits())
                    .await?
            }
        };
        if let Err(err) = check_compatible(slot, &candidate, &self.slots) {
            tracing::warn!(
                node = %self.name, module, version, "refused version {version}: {err}"
            );
            return Err(err);
        }
        candidate.reinstate();
        let routes_changed = candidate.manifest.commands != current.manifest.commands
            || candidate.manifest.events != current.manifest.events;
        let old = slot.swap(candidate.clone());
        if routes_changed {
            // Commands were checked against every other slot above, so this cannot conflict;
            // should it anyway, the previous table keeps serving.
            match Router::build(&self.slots) {
                Ok(router) => self.dispatch.set_router(router),
                Err(err) => tracing::error!(node = %self.name, "routing not updated: {err}"),
            }
        }
        old.retire();
        let from = old.version();
        self.updates.retain(old, version);
        tracing::info!(
            node = %self.name, module, from, to = version, hash = &candidate.hash[..12],
            "module version swapped: new requests run v{version}, in-flight ones finish on v{from}"
        );
        Ok(Swapped {
            from,
            to: version,
            unchanged: false,
        })
    }
}
