//! What a master runs: [`MasterConfig`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Topology;

/// What the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The topology.
    pub topology: Topology,
    /// Its file (passed to node processes).
    pub topology_path: PathBuf,
    /// The nodes to run here.
    pub nodes: Vec<String>,
    /// Each module's `.wasm` file.
    pub wasm: HashMap<String, PathBuf>,
    /// The `firefly` executable to start nodes with.
    pub exe: PathBuf,
    /// The cluster secret (given to the nodes through their environment).
    pub secret: String,
    /// The admin bearer token (`None`: no admin API).
    pub admin_token: Option<String>,
    /// How long nodes get to finish in-flight requests when stopping.
    pub grace: Duration,
    /// A file written while every node runs and is linked, removed otherwise (`None`: none).
    pub ready_file: Option<PathBuf>,
}
