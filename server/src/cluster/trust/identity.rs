//! [`Identity`]: who this process is in the cluster, and the credential it proves it with.

use std::time::Duration;

use super::authority;

/// Who this process is in the cluster and how it proves it.
#[derive(Clone)]
pub struct Identity {
    /// The cluster's name (peers of another cluster are refused).
    pub cluster: String,
    /// This node's name (`master` for the master).
    pub node: String,
    /// Its credential: its own key and certificate, and the master's public key.
    pub credential: authority::Credential,
    /// How long a request to a peer may take.
    pub rpc_timeout: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity a process holding the cluster `secret` gives itself as `node` (a master
    /// as [`authority::MASTER`]; a node started by hand or in-process with the secret).
    pub fn from_secret(cluster: &str, node: &str, secret: &[u8], rpc_timeout: Duration) -> Self {
        Identity {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            credential: authority::Credential::issue(secret, cluster, node),
            rpc_timeout,
        }
    }
}
