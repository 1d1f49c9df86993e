//! Where a cluster keeps its state, and the check that it is this cluster's.
//!
//! ```yaml
//! state_dir: .firefly/demo   # default: .firefly/<cluster>/ next to the topology file
//! ```
//!
//! The state directory holds the module registry (`registry/`), the cluster secret, the admin
//! token, and by default the embedded cache's journal and the SQLite database. Two topologies
//! in one folder with different `cluster:` names therefore never share a registry (a version
//! deployed to one is never served by the other). A file `cluster` in it names the cluster
//! that owns it; a cluster refuses to start on a directory another cluster owns. The compile
//! cache (`.firefly/cache`) stays shared: its entries are keyed by content.
//!
//! Earlier versions kept all of this directly in `.firefly/`, naming no cluster. Such state is
//! not adopted silently (it may be another cluster's): the master refuses to start and says
//! how to move it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{ConfigError, Topology};

/// The marker file naming the cluster that owns a state directory.
pub const MARKER: &str = "cluster";

/// What an earlier version kept directly in `.firefly/` (state of an unknown cluster).
const LEGACY: &[&str] = &["registry", "cluster-secret", "admin-token", "data.db"];

/// The state directory of cluster `cluster` for `state_dir:` (relative to `base_dir`).
pub(super) fn resolve(
    raw: Option<&str>,
    base_dir: &Path,
    cluster: &str,
) -> Result<PathBuf, ConfigError> {
    match raw {
        Some(path) if path.trim().is_empty() => Err(ConfigError::invalid(
            "state_dir",
            "is empty (omit it for .firefly/<cluster>)",
        )),
        Some(path) => Ok(base_dir.join(path)),
        None => Ok(base_dir.join(".firefly").join(cluster)),
    }
}

impl Topology {
    /// Makes sure the state directory is this cluster's, creating it and its marker when
    /// new; refuses another cluster's directory, and state of the earlier one-per-folder
    /// layout, with what to do about it.
    pub fn claim_state_dir(&self) -> anyhow::Result<()> {
        let dir = &self.state_dir;
        let marker = dir.join(MARKER);
        match std::fs::read_to_string(&marker) {
            Ok(owner) if owner.trim() == self.cluster => return Ok(()),
            Ok(owner) => anyhow::bail!(
                "{} holds the state of cluster `{}` (its `{MARKER}` file says so), and this topology is cluster `{}`: \
                 give this topology its own `state_dir:`, or remove the `state_dir:` that points both clusters at one place",
                dir.display(),
                owner.trim(),
                self.cluster
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", marker.display()));
            }
        }
        self.refuse_legacy()?;
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            anyhow::bail!(
                "{} holds files but no `{MARKER}` file naming its cluster; if it is the state of cluster `{}`, \
                 say so with `echo {} > {}`",
                dir.display(),
                self.cluster,
                self.cluster,
                marker.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&marker, format!("{}\n", self.cluster))
            .with_context(|| format!("cannot write {}", marker.display()))?;
        tracing::info!(cluster = %self.cluster, "state of this cluster in {}", dir.display());
        Ok(())
    }

    /// The state files whose paths the topology gives (or defaults), with SQLite's side files.
    fn chosen_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.master.token_file.clone()];
        if let super::DatabaseSpec::Sqlite(db) = &self.storage.database {
            files.push(db.clone());
            for side in ["-wal", "-shm", "-journal"] {
                let mut name = db.clone().into_os_string();
                name.push(side);
                files.push(PathBuf::from(name));
            }
        }
        if let super::CacheSpec::Embedded { journal, .. } = &self.storage.cache {
            files.push(journal.clone());
            for side in ["-wal", "-shm", "-journal"] {
                let mut name = journal.clone().into_os_string();
                name.push(side);
                files.push(PathBuf::from(name));
            }
        }
        files
    }

    /// Refuses to start a new state directory while `.firefly/` holds the earlier layout's
    /// state, which names no cluster.
    fn refuse_legacy(&self) -> anyhow::Result<()> {
        let legacy = self.base_dir.join(".firefly");
        if self.state_dir == legacy {
            return Ok(());
        }
        let mut found: Vec<String> = LEGACY
            .iter()
            .filter(|name| legacy.join(name).exists())
            .map(|name| (*name).to_owned())
            .collect();
        if let Ok(entries) = std::fs::read_dir(&legacy) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let journal = name.starts_with("journal-") && name.contains(".db");
                let sqlite_side = name.starts_with("data.db-");
                if journal || sqlite_side {
                    found.push(name);
                }
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        // A file the topology names itself (`storage.database`, `storage.journal`,
        // `master.token_file`) is where the operator chose to keep it, not stray state.
        let chosen = self.chosen_files();
        found.retain(|f| !chosen.contains(&legacy.join(f)));
        if found.is_empty() {
            return Ok(());
        }
        found.sort();
        let dest = self.state_dir.display();
        let sources: Vec<String> = found
            .iter()
            .map(|f| legacy.join(f).display().to_string())
            .collect();
        anyhow::bail!(
            "{} holds state from an earlier Firefly that kept one state per folder ({}); it names no cluster, so it is \
             not adopted. If it is the state of cluster `{}`, move it to this cluster's state directory:\n  \
             mkdir -p {dest} && mv {} {dest}/\nIf it belongs to another cluster, move it to .firefly/<that cluster>/ instead.",
            legacy.display(),
            found.join(", "),
            self.cluster,
            sources.join(" "),
        )
    }
}
