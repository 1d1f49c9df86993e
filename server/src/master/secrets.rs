//! The cluster secret and the admin token: as the caller read them from the environment (the
//! CLI, [`ADMIN_TOKEN_ENV`] and [`auth::SECRET_ENV`]; nothing here reads it), or from files the
//! master creates on first start (readable by the owner only).

use std::path::Path;

use anyhow::Context as _;

use crate::cluster::auth;
use crate::config::Topology;

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "FIREFLY_ADMIN_TOKEN";

/// The secret in `path`, or a new one written there (owner-only) when the file is missing.
fn read_or_create(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim().to_owned();
        if text.len() >= 16 {
            return Ok(text);
        }
        anyhow::bail!(
            "{} holds a secret shorter than 16 characters",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secret = auth::generate_secret();
    write_private(path, &secret)?;
    tracing::info!("created {}", path.display());
    Ok(secret)
}

/// Creates `path` readable by its owner only and writes `text` to it.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The cluster secret: `given` (the CLI passes `FIREFLY_CLUSTER_SECRET`), else
/// `cluster-secret` in the cluster's state directory (created when missing). Every master of a
/// cluster (one per host) needs the same one; node processes never get it (they get their own
/// credential, cluster/trust/authority.rs).
pub fn cluster_secret(topology: &Topology, given: Option<String>) -> anyhow::Result<String> {
    if let Some(secret) = given {
        if secret.len() < 16 {
            anyhow::bail!("{} must be at least 16 characters", auth::SECRET_ENV);
        }
        return Ok(secret);
    }
    read_or_create(&topology.state_dir.join("cluster-secret"))
}

/// The admin token: `given` (the CLI passes `FIREFLY_ADMIN_TOKEN`), else `master.token_file`
/// (created when missing and `create` is true).
pub fn admin_token(
    topology: &Topology,
    given: Option<String>,
    create: bool,
) -> anyhow::Result<String> {
    if let Some(token) = given {
        return Ok(token);
    }
    let path = &topology.master.token_file;
    if create {
        return read_or_create(path);
    }
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .with_context(|| {
            format!(
                "no admin token: set {} or start the cluster first (it creates {})",
                ADMIN_TOKEN_ENV,
                path.display()
            )
        })
}
