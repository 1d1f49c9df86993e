//! The file format as serde sees it: strict (`deny_unknown_fields` everywhere), so an unknown
//! or misplaced key is an error naming the key and its line.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    pub version: Option<u32>,
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub master: Option<RawMaster>,
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    pub modules: Option<BTreeMap<String, RawModule>>,
    pub nodes: Option<BTreeMap<String, RawNode>>,
    #[serde(default)]
    pub storage: Option<RawStorage>,
    /// Where this cluster keeps its state (config/state_dir.rs).
    pub state_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub database: Option<String>,
    pub cache: Option<String>,
    pub owner: Option<String>,
    pub journal: Option<String>,
    pub flush_interval: Option<String>,
    pub table_prefix: Option<String>,
    pub max_object: Option<SizeValue>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaster {
    pub admin: Option<String>,
    pub token_file: Option<String>,
    pub rpc_timeout: Option<String>,
    pub auto_rollback: Option<super::auto_rollback::RawAutoRollback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
    #[serde(rename = "crate")]
    pub krate: Option<String>,
    pub wasm: Option<String>,
    #[serde(default)]
    pub limits: RawLimits,
    pub auto_rollback: Option<super::auto_rollback::RawAutoRollback>,
}

/// Sizes may be written as a plain number of bytes or as a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub memory: Option<SizeValue>,
    pub stack: Option<SizeValue>,
    pub timeout: Option<String>,
    pub cpu: Option<String>,
    pub instances: Option<u32>,
    pub timers: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub host: Option<String>,
    pub rpc: Option<String>,
    #[serde(default)]
    pub listen: Vec<RawListener>,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub metrics: Option<RawMetrics>,
    pub copies: Option<String>,
}

/// `commands: 7` or `commands: "100-199"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum CommandsValue {
    One(u32),
    Range(String),
}

/// `to: game` or `to: [game1, game2]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum TargetsValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub commands: Option<CommandsValue>,
    pub to: Option<TargetsValue>,
    pub policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub tcp: Option<String>,
    pub ws: Option<String>,
    pub single_login: Option<bool>,
    pub resume: Option<RawResume>,
    pub magic: Option<Vec<u64>>,
    pub protocol_version: Option<u8>,
    pub server_version: Option<u32>,
    pub max_frame: Option<SizeValue>,
    pub idle_timeout: Option<String>,
    pub error_command: Option<u32>,
    pub origins: Option<Vec<String>>,
    pub max_connections: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    pub rate_limit: Option<RawRateLimit>,
    pub write_stall: Option<String>,
    pub tls: Option<RawTls>,
}

/// `resume: { grace: 30s, buffer: 256 }` on a listener (`resume: {}` takes the defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResume {
    pub grace: Option<String>,
    pub buffer: Option<u32>,
}

/// `cluster: demo` (a name: the direct TCP mesh) or `cluster: { name: demo, transport:
/// "nats://127.0.0.1:4222", nats: { token: ... } }`. Deserialized by hand rather than as an
/// untagged enum, so an unknown key in the map form is still named with its line.
#[derive(Debug)]
pub(super) enum RawCluster {
    Name(String),
    Full(RawClusterMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterMap {
    pub name: Option<String>,
    pub transport: Option<String>,
    pub nats: Option<RawNats>,
}

/// NATS credentials in the topology (the `FIREFLY_NATS_*` environment variables override them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub nkey: Option<String>,
}

impl<'de> Deserialize<'de> for RawCluster {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawCluster;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a cluster name or a map with `name`, `transport` and `nats`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawCluster, E> {
                Ok(RawCluster::Name(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawCluster, A::Error> {
                RawClusterMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawCluster::Full)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A node's `metrics:`: `127.0.0.1:9101`, or `{ addr: 0.0.0.0:9101, token_file: path }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMetrics {
    Addr(String),
    Full(RawMetricsFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetricsFull {
    pub addr: Option<String>,
    pub token_file: Option<String>,
}

/// `tls: { cert: cert.pem, key: key.pem }` on a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `rate_limit: { per_second: 100, burst: 200 }` on a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}
