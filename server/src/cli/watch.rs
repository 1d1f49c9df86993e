//! `firefly deploy --watch`: rebuild a module crate when its sources change, and deploy it.
//!
//! Polls file modification times (every [`POLL`]): no platform file-watching dependency, and
//! a crate's sources are a handful of files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;

use super::deploy::{DeployArgs, deploy_once, report};

/// How often sources are checked for changes.
const POLL: Duration = Duration::from_millis(100);

/// The newest modification time among the module's sources: a crate's `Cargo.toml`,
/// `build.rs` and `src/`; a TypeScript module's files outside `target/` and `node_modules/`.
fn newest(dir: &Path) -> Option<SystemTime> {
    fn walk(path: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), newest);
                }
            }
        } else if let Ok(m) = meta.modified() {
            *newest = (*newest).max(Some(m));
        }
    }
    let mut newest = None;
    if firefly::builder::typescript::is_typescript_module(dir) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name != "target" && name != "node_modules" {
                walk(&entry.path(), &mut newest);
            }
        }
        return newest;
    }
    for part in ["Cargo.toml", "build.rs", "src"] {
        walk(&dir.join(part), &mut newest);
    }
    newest
}

/// Deploys the crate now and again after every change of its sources, until Ctrl-C; a
/// failed build or deploy is printed and the watch goes on.
pub async fn watch(args: DeployArgs) -> anyhow::Result<()> {
    let dir: PathBuf = args.path.clone();
    if !dir.join("Cargo.toml").exists() && !firefly::builder::typescript::is_typescript_module(&dir)
    {
        bail!(
            "--watch needs a module directory (a crate or a TypeScript module), not {}",
            dir.display()
        );
    }
    println!("watching {} (Ctrl-C stops)", dir.display());
    let mut seen = newest(&dir);
    // The first round deploys what is there now, so the cluster starts from the sources.
    let mut changed_at: Option<SystemTime> = Some(SystemTime::now());
    loop {
        if let Some(saved) = changed_at.take() {
            let started = Instant::now();
            match deploy_once(&args).await {
                Ok(answer) => {
                    let took = SystemTime::now()
                        .duration_since(saved)
                        .unwrap_or(started.elapsed());
                    let _ = report(&answer, args.json);
                    println!(
                        "v{} serving on every node {} ms after the save",
                        answer["version"],
                        took.as_millis()
                    );
                }
                Err(err) => println!("not deployed: {err:#}"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let now = newest(&dir);
        if now != seen {
            seen = now;
            changed_at = now;
        }
    }
}
