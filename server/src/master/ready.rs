//! Readiness of what this master runs: every node's process is up, has loaded its modules,
//! bound its listeners and linked, for each of its routes, to one of the route's targets. `firefly up` logs when the cluster becomes ready and when it stops being so, and
//! writes `--ready-file` while it is: what a script or a test waits on, rather than an open
//! port (a gate's port opens before its links to the logic nodes are up).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::status::live_status;
use super::supervise::Supervised;
use crate::cluster::Cluster;

/// How often readiness is checked while not ready, and once ready.
const CHECK_STARTING: Duration = Duration::from_millis(250);
const CHECK_READY: Duration = Duration::from_secs(2);

/// Checks the nodes until `stop`, logging each change and keeping `file` in step: present
/// (holding the node names) while every node is ready, absent otherwise.
pub(super) async fn watch(
    nodes: Vec<Arc<Supervised>>,
    peers: Arc<Cluster>,
    file: Option<PathBuf>,
    mut stop: watch::Receiver<bool>,
) {
    let mut was_ready = false;
    loop {
        let waiting = not_ready(&nodes, &peers).await;
        let ready = waiting.is_empty();
        if ready != was_ready {
            let names: Vec<String> = nodes.iter().map(|n| n.state().name).collect();
            if ready {
                tracing::info!(nodes = ?names, "ready: every node is up and linked");
            } else {
                tracing::warn!(waiting = ?waiting, "not ready any more");
            }
            if let Some(file) = &file {
                let written = if ready {
                    std::fs::write(file, format!("{}\n", names.join("\n")))
                } else {
                    std::fs::remove_file(file)
                };
                if let Err(err) = written {
                    tracing::warn!("ready file {}: {err}", file.display());
                }
            }
            was_ready = ready;
        }
        let pause = if ready { CHECK_READY } else { CHECK_STARTING };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Some(file) = &file {
        let _ = std::fs::remove_file(file);
    }
}

/// The nodes not ready now, each with what it waits for.
async fn not_ready(nodes: &[Arc<Supervised>], peers: &Cluster) -> Vec<String> {
    let mut waiting = Vec::new();
    for node in nodes {
        let process = node.state();
        if process.pid.is_none() {
            waiting.push(format!("{}: not running", process.name));
            continue;
        }
        let live = live_status(peers, &process.name, process.pid).await;
        if live.get("node").is_none() {
            waiting.push(format!("{}: not answering", process.name));
        } else if live["ready"] != true {
            let down: Vec<&str> = live["links"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["up"] != true)
                .filter_map(|l| l["peer"].as_str())
                .collect();
            waiting.push(format!("{}: linking to {}", process.name, down.join(", ")));
        }
    }
    waiting
}
