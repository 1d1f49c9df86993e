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

/// The newest modification time among the crate's sources (`Cargo.toml`, `build.rs`, `src/`).
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
    for part in ["Cargo.toml", "build.rs", "src"] {
        walk(&dir.join(part), &mut newest);
    }
    newest
}

/// Deploys the crate now and again after every change of its sources, until Ctrl-C; a
/// failed build or deploy is printed and the watch goes on.
pub async fn watch(args: DeployArgs) -> anyhow::Result<()> {
    let dir: PathBuf = args.path.clone();
    if !dir.join("Cargo.toml").exists() {
        bail!(
            "--watch needs a module crate directory, not {}",
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
