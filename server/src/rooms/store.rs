//! Durable rooms in the cluster's store: the host's table `firefly_rooms` holds one object per
//! durable room (its last snapshot, the node holding it and that node's epoch) and one lease
//! per node (how long the node is known to be alive). See [`super::failover`] for how they are
//! used.
//!
//! A room object is the room's *fence*: every write of it is a compare-and-set on its stored
//! version, so a node that lost the room (another took it over) finds out at its next write
//! and drops its copy; taking a room over bumps its `epoch`.

use std::sync::Arc;

use firefly_abi::data::{FieldSchema, FieldType, Key, TableSchema};
use firefly_abi::rooms::SnapshotSpec;
use serde::{Deserialize, Serialize};

use crate::data::{Data, DataError, HostTable, field};

/// The host's table of room snapshots and node leases.
pub const TABLE: &str = "firefly_rooms";
/// Largest encoded snapshot (state up to 64 KiB, members, counters).
pub const MAX_SNAPSHOT: usize = 96 * 1024;

const ROOM: &str = "room";
const LEASE: &str = "lease";

/// One object of [`TABLE`]: a room (`kind` "room") or a node's lease (`kind` "lease").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `room/<module>/<key>` or `lease/<node>`.
    pub id: String,
    /// `room` or `lease`.
    pub kind: String,
    /// The node holding the room ("" while nobody does: handed over, not taken yet); for a
    /// lease, its node.
    pub node: String,
    /// The room's module ("" for a lease).
    pub module: String,
    /// A room held by nobody: the node that handed it over.
    pub from: String,
    /// +1 at every take-over of the room.
    pub epoch: i64,
    /// When the snapshot was taken / the lease renewed (Unix milliseconds).
    pub at_ms: i64,
    /// A lease: until when its node is alive (Unix milliseconds).
    pub until_ms: i64,
    /// A room: its [`Snapshot`] (MessagePack).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// A lease: its node is draining (it takes no rooms; others take its rooms).
    #[serde(default)]
    pub draining: bool,
}

/// A node's lease, as [`RoomStore::leases`] reads it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The node.
    pub node: String,
    /// Until when it is alive (Unix ms).
    pub until_ms: i64,
    /// It is draining: it takes no rooms.
    pub draining: bool,
}

/// What a room snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The room's key.
    pub key: String,
    /// Its members, in the order they joined.
    pub members: Vec<u64>,
    /// Most members.
    pub max_members: u32,
    /// Its state.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    /// Its state's version.
    pub version: u64,
    /// Milliseconds between ticks (0: none).
    pub tick_ms: u64,
    /// Ticks run so far.
    pub ticks: u64,
    /// Milliseconds since the last tick when the snapshot was taken (the tick phase).
    pub phase_ms: u64,
    /// How often it is stored.
    pub spec: SnapshotSpec,
}

impl Row {
    /// The room object of `module`'s room `key`.
    pub fn room(module: &str, node: &str, epoch: u64, snapshot: &Snapshot) -> Result<Row, String> {
        let body = rmp_serde::to_vec_named(snapshot).map_err(|e| e.to_string())?;
        if body.len() > MAX_SNAPSHOT {
            return Err(format!(
                "the snapshot of room `{}` is {} bytes, more than the {MAX_SNAPSHOT} allowed",
                snapshot.key,
                body.len()
            ));
        }
        Ok(Row {
            id: room_id(module, &snapshot.key),
            kind: ROOM.to_owned(),
            node: node.to_owned(),
            module: module.to_owned(),
            from: String::new(),
            epoch: i64::try_from(epoch).unwrap_or(i64::MAX),
            at_ms: now_ms(),
            until_ms: 0,
            body,
            draining: false,
        })
    }

    /// The snapshot a room object holds.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        rmp_serde::from_slice(&self.body).map_err(|e| format!("room object {}: {e}", self.id))
    }

    /// A room object's room key.
    pub fn key(&self) -> &str {
        let prefix_len = ROOM.len() + 1 + self.module.len() + 1;
        self.id.get(prefix_len..).unwrap_or("")
    }

    /// Its epoch.
    pub fn epoch(&self) -> u64 {
        u64::try_from(self.epoch).unwrap_or(0)
    }
}

/// The id of `module`'s room `key` in the table.
pub fn room_id(module: &str, key: &str) -> String {
    format!("{ROOM}/{module}/{key}")
}

fn schema() -> TableSchema {
    TableSchema {
        name: TABLE.into(),
        key: "id".into(),
        fields: vec![
            field("id", FieldType::Text, false),
            field("kind", FieldType::Text, true),
            field("node", FieldType::Text, true),
            field("module", FieldType::Text, false),
            field("from", FieldType::Text, false),
            field("epoch", FieldType::Int, false),
            field("at_ms", FieldType::Int, false),
            field("until_ms", FieldType::Int, false),
            field("body", FieldType::Bytes, false),
            FieldSchema {
                defaulted: true,
                ..field("draining", FieldType::Bool, false)
            },
        ],
        rank: None,
    }
}

/// Durable rooms and node leases, as one node reads and writes them.
#[derive(Clone)]
pub struct RoomStore {
    table: HostTable,
    node: Arc<str>,
}

impl RoomStore {
    /// Node `node`'s view of the table in `data`.
    pub fn new(data: Arc<Data>, node: Arc<str>) -> Self {
        Self {
            table: HostTable::new(data, schema()),
            node,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stores `row` as a new object (`None`) or over the one at version `stored`; the new
    /// version. `Conflict` / `NotFound`: someone else changed it (took the room over).
    pub async fn save(&self, row: &Row, stored: Option<u64>) -> Result<u64, DataError> {
        match stored {
            None => self.table.insert(row).await,
            Some(version) => self.table.update(version, row).await,
        }
    }

    /// The object of `module`'s room `key` and its version.
    pub async fn room(&self, module: &str, key: &str) -> Result<Option<(u64, Row)>, DataError> {
        self.read(Key::Text(room_id(module, key))).await
    }

    async fn read(&self, key: Key) -> Result<Option<(u64, Row)>, DataError> {
        let Some(stored) = self.table.get(key).await? else {
            return Ok(None);
        };
        let row: Row = rmp_serde::from_slice(&stored.object)
            .map_err(|e| DataError::Invalid(format!("{TABLE}: {e}")))?;
        Ok(Some((stored.version, row)))
    }

    /// Deletes `module`'s room `key` (at `version`, if given): the room closed.
    pub async fn remove(
        &self,
        module: &str,
        key: &str,
        version: Option<u64>,
    ) -> Result<(), DataError> {
        let key = Key::Text(room_id(module, key));
        self.table.delete(key, version).await
    }

    /// The room objects held by `node` ("": handed over and not taken yet), with versions.
    pub async fn rooms_of(&self, node: &str) -> Result<Vec<(u64, Row)>, DataError> {
        let mut rooms = Vec::new();
        for key in self.table.list_by("node", &node).await? {
            if let Some((version, row)) = self.read(key).await?
                && row.kind == ROOM
                && row.node == node
            {
                rooms.push((version, row));
            }
        }
        Ok(rooms)
    }

    /// Renews this node's lease until `until_ms` (`version`: the lease's stored version, as
    /// the last renewal answered it); its new version.
    pub async fn renew(
        &self,
        version: Option<u64>,
        until_ms: i64,
        draining: bool,
    ) -> Result<u64, DataError> {
        let row = Row {
            id: format!("{LEASE}/{}", self.node),
            kind: LEASE.to_owned(),
            node: self.node.to_string(),
            module: String::new(),
            from: String::new(),
            epoch: 0,
            at_ms: now_ms(),
            until_ms,
            body: Vec::new(),
            draining,
        };
        let first = match version {
            Some(v) => self.table.update(v, &row).await,
            None => self.table.insert(&row).await,
        };
        match first {
            Err(DataError::Conflict(_) | DataError::AlreadyExists(_) | DataError::NotFound(_)) => {
                // Our own earlier process's lease, or a renewal whose answer was lost.
                match self.read(Key::Text(row.id.clone())).await? {
                    Some((v, _)) => self.table.update(v, &row).await,
                    None => self.table.insert(&row).await,
                }
            }
            other => other,
        }
    }

    /// Every node's lease.
    pub async fn leases(&self) -> Result<Vec<Lease>, DataError> {
        let mut leases = Vec::new();
        for key in self.table.list_by("kind", &LEASE).await? {
            if let Some((_, row)) = self.read(key).await? {
                leases.push(Lease {
                    node: row.node,
                    until_ms: row.until_ms,
                    draining: row.draining,
                });
            }
        }
        Ok(leases)
    }
}

/// The wall clock in Unix milliseconds, as the table stores times.
pub fn now_ms() -> i64 {
    i64::try_from(crate::wall::now_ms()).unwrap_or(i64::MAX)
}
