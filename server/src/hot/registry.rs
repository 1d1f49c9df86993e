//! The module registry: every deployed version of every module, persisted on disk.
//!
//! Layout, under `<state dir>/registry/` (the cluster's own state directory, by default
//! `<topology dir>/.firefly/<cluster>/`, see config/state_dir.rs):
//! * `<module>/v<N>.wasm`: the bytes of version N, never rewritten;
//! * `<module>/index.json`: the versions (number, time, SHA-256, size), the active version,
//!   per-node pins (a `--nodes` deploy, or a node that failed to load the active version and
//!   keeps its old one) and the last deploy failure of each node.
//!
//! Every write goes to a temporary file that is then renamed over the target, so a crash
//! leaves either the old or the new index, never a torn one. The index is re-read on every
//! operation: two `firefly up --host` invocations on one machine share it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Version number, from 1.
    pub version: u32,
    /// When it was deployed (seconds since the Unix epoch, UTC).
    pub time: u64,
    /// SHA-256 of the wasm, hex.
    pub sha256: String,
    /// Size of the wasm in bytes.
    pub size: u64,
}

/// A node's last failed attempt to load a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The version it could not load.
    pub version: u32,
    /// Why.
    pub message: String,
}

/// An automatic rollback the master made (the safety net).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The version that was rolled back.
    pub version: u32,
    /// The version serving since.
    pub to: u32,
    /// When (seconds since the Unix epoch).
    pub time: u64,
    /// What the master saw.
    pub reason: String,
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the registry knows about one module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleIndex {
    /// The version every node serves unless pinned (0: none registered).
    pub active: u32,
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Nodes that serve another version than `active`.
    #[serde(default)]
    pub pins: BTreeMap<String, u32>,
    /// Per node, its last failure to load a deployed version (cleared by a successful one).
    #[serde(default)]
    pub failures: BTreeMap<String, Failure>,
    /// Per node, the last version it was seen serving: what it falls back to when the version
    /// it should serve does not load at start.
    #[serde(default)]
    pub good: BTreeMap<String, u32>,
    /// Automatic rollbacks, oldest first.
    #[serde(default)]
    pub rolled_back: Vec<RolledBack>,
    /// A deploy or rollback being rolled out now, and until when (ms since the Unix epoch) it
    /// may take: nodes may serve either version meanwhile, so no master catches one up (with
    /// several `firefly up`s on one registry, one's catch-up once undid another's deploy).
    #[serde(default)]
    pub rolling: Option<Rolling>,
}

/// A roll-out in progress (see [`ModuleIndex::rolling`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rolling {
    /// The version being rolled out.
    pub version: u32,
    /// When the roll-out is given up as over (its master died mid-way), ms since the epoch.
    pub until_ms: u64,
}

impl ModuleIndex {
    /// Whether a roll-out is in progress now.
    pub fn rolling_out(&self) -> bool {
        self.rolling
            .as_ref()
            .is_some_and(|r| r.until_ms > crate::wall::now_ms())
    }

    /// The version `node` should serve.
    pub fn serving(&self, node: &str) -> u32 {
        self.pins.get(node).copied().unwrap_or(self.active)
    }

    /// What `node` starts on if `wanted` does not load: the last version it served, else the
    /// newest one before `wanted`.
    pub fn fallback(&self, node: &str, wanted: u32) -> Option<u32> {
        match self.good.get(node) {
            Some(&good) if good != wanted && self.get(good).is_some() => Some(good),
            _ => self
                .versions
                .iter()
                .map(|v| v.version)
                .filter(|v| *v < wanted)
                .max(),
        }
    }

    /// The stored version `version`.
    pub fn get(&self, version: u32) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// The registry of one topology.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    /// Serialises read-modify-write cycles of indexes within this process.
    lock: Mutex<()>,
}

impl Registry {
    /// The registry of the cluster whose state directory is `state_dir`.
    pub fn for_topology(state_dir: &Path) -> Self {
        Self::at(state_dir.join("registry"))
    }

    /// The registry in `dir`.
    pub fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            lock: Mutex::new(()),
        }
    }

    /// Where it lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The wasm file of `version` of `module`.
    pub fn wasm_path(&self, module: &str, version: u32) -> PathBuf {
        self.dir.join(module).join(format!("v{version}.wasm"))
    }

    /// The index of `module` (empty when nothing is registered).
    pub fn index(&self, module: &str) -> anyhow::Result<ModuleIndex> {
        let path = self.dir.join(module).join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("registry index {} is corrupt", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ModuleIndex::default()),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Reads, changes and writes back the index of `module`, returning what `change` returned.
    pub fn update<T>(
        &self,
        module: &str,
        change: impl FnOnce(&mut ModuleIndex) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.index(module)?;
        let out = change(&mut index)?;
        let bytes = serde_json::to_vec_pretty(&index)?;
        write_atomic(&self.dir.join(module).join("index.json"), &bytes)?;
        Ok(out)
    }

    /// Stores `wasm` as the next version of `module` (not yet active) and returns it.
    pub fn add(&self, module: &str, wasm: &[u8]) -> anyhow::Result<VersionInfo> {
        self.update(module, |index| {
            let version = index.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
            write_atomic(&self.wasm_path(module, version), wasm)?;
            let info = VersionInfo {
                version,
                time: now(),
                sha256: hex::encode(Sha256::digest(wasm)),
                size: wasm.len() as u64,
            };
            index.versions.push(info.clone());
            Ok(info)
        })
    }

    /// Registers `wasm_file` as version 1 of `module` when the registry has no version of it.
    /// Returns the version nodes serve (the active one when versions exist already).
    pub fn ensure_initial(&self, module: &str, wasm_file: &Path) -> anyhow::Result<u32> {
        let index = self.index(module)?;
        if index.active != 0 {
            let file_hash = std::fs::read(wasm_file)
                .map(|w| hex::encode(Sha256::digest(w)))
                .unwrap_or_default();
            if index
                .get(index.active)
                .is_some_and(|v| v.sha256 != file_hash)
            {
                tracing::info!(
                    module,
                    active = index.active,
                    "serving registry version {} (the topology's build differs: `firefly deploy` it to serve it)",
                    index.active
                );
            }
            return Ok(index.active);
        }
        let wasm = std::fs::read(wasm_file)
            .with_context(|| format!("cannot read {}", wasm_file.display()))?;
        let info = self.add(module, &wasm)?;
        self.update(module, |index| {
            index.active = info.version;
            Ok(())
        })?;
        tracing::info!(
            module,
            version = info.version,
            "registered the topology's build"
        );
        Ok(info.version)
    }

    /// The version `node` should serve of `module` and its wasm file, if any is registered.
    pub fn serving(&self, module: &str, node: &str) -> anyhow::Result<Option<(u32, PathBuf)>> {
        let index = self.index(module)?;
        let version = index.serving(node);
        if version == 0 {
            return Ok(None);
        }
        Ok(Some((version, self.wasm_path(module, version))))
    }

    /// The version `node` falls back to for `module` (see [`ModuleIndex::fallback`]).
    pub fn fallback(&self, module: &str, node: &str) -> anyhow::Result<Option<(u32, PathBuf)>> {
        let index = self.index(module)?;
        Ok(index
            .fallback(node, index.serving(node))
            .map(|v| (v, self.wasm_path(module, v))))
    }

    /// The wasm bytes of `version` of `module`.
    pub fn wasm(&self, module: &str, version: u32) -> anyhow::Result<Vec<u8>> {
        let path = self.wasm_path(module, version);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("registry path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc_string(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_stored_and_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(dir.path().to_path_buf());
        let file = dir.path().join("m.wasm");
        std::fs::write(&file, b"one").unwrap();
        assert_eq!(reg.ensure_initial("m", &file).ok(), Some(1));
        let v2 = reg.add("m", b"two").unwrap();
        assert_eq!((v2.version, v2.size), (2, 3));
        reg.update("m", |i| {
            i.active = 2;
            i.pins.insert("a".into(), 1);
            Ok(())
        })
        .unwrap();
        // Registering again changes nothing: the registry wins over the topology's file.
        assert_eq!(reg.ensure_initial("m", &file).ok(), Some(2));
        let index = reg.index("m").unwrap();
        assert_eq!((index.serving("a"), index.serving("b")), (1, 2));
        assert_eq!(reg.wasm("m", 2).ok().as_deref(), Some(&b"two"[..]));
        assert_eq!(utc_string(0), "1970-01-01 00:00:00");
        assert_eq!(utc_string(1_764_615_600), "2025-12-01 19:00:00");
    }
}
