//! Durable timers, stored through the data layer as objects of the host's own table
//! `firefly_timers` (one object per timer, keyed by its id, indexed by node), so they live
//! wherever the cluster's cached objects live: the embedded store or Redis, flushed to SQL.
//!
//! Ids of durable timers come from the table's id allocator (unique forever, across restarts
//! and nodes) with bit 47 set, so they never meet the in-memory counter's ids.

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::data::{DataOp, FieldType, Key, TableSchema};
use serde::{Deserialize, Serialize};

use super::Entry;
use crate::data::{Data, DataError, HostTable, field};
use crate::engine::TimerRefused;

/// The host's table of durable timers.
pub const TABLE: &str = "firefly_timers";

/// Bit set in every durable timer's id.
const DURABLE_BIT: u64 = 1 << 47;

/// One stored timer.
#[derive(Serialize, Deserialize)]
struct Row {
    timer: i64,
    node: String,
    module: String,
    tag: String,
    due_ms: i64,
    period_ms: i64,
    session: i64,
    firing: i64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

/// A node's durable timers in the data layer.
#[derive(Clone)]
pub struct Durable {
    table: HostTable,
    node: String,
}

fn schema() -> TableSchema {
    TableSchema {
        name: TABLE.into(),
        key: "timer".into(),
        fields: vec![
            field("timer", FieldType::Int, false),
            field("node", FieldType::Text, true),
            field("module", FieldType::Text, false),
            field("tag", FieldType::Text, false),
            field("due_ms", FieldType::Int, false),
            field("period_ms", FieldType::Int, false),
            field("session", FieldType::Int, false),
            field("firing", FieldType::Int, false),
            field("payload", FieldType::Bytes, false),
        ],
        rank: None,
    }
}

fn unavailable(e: impl std::fmt::Display) -> TimerRefused {
    TimerRefused::Unavailable(format!("durable timers: {e}"))
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Durable {
    /// Node `node`'s durable timers in `data`.
    pub fn new(data: Arc<Data>, node: &str) -> Self {
        Self {
            table: HostTable::new(data, schema()),
            node: node.to_owned(),
        }
    }

    fn key(id: u64) -> Key {
        Key::Int(int(id))
    }

    /// A fresh durable timer id.
    pub(super) async fn alloc_id(&self) -> Result<u64, TimerRefused> {
        let id: u64 = self
            .table
            .op(&DataOp::AllocId {
                table: TABLE.into(),
            })
            .await
            .map_err(unavailable)?;
        Ok(DURABLE_BIT | id)
    }

    /// Stores timer `id`; answers the stored version.
    pub(super) async fn insert(&self, id: u64, e: &Entry) -> Result<u64, TimerRefused> {
        self.table
            .insert(&self.row(id, e))
            .await
            .map_err(unavailable)
    }

    /// Timer `id` as it is stored.
    fn row(&self, id: u64, e: &Entry) -> Row {
        Row {
            timer: int(id),
            node: self.node.clone(),
            module: e.module.to_string(),
            tag: e.tag.clone(),
            due_ms: int(e.due_ms),
            period_ms: int(e.period_ms),
            session: int(e.session),
            firing: int(e.firing),
            payload: e.payload.to_vec(),
        }
    }

    /// Records that timer `id` fired: deletes it (`next` is `None`: it is done) or stores its
    /// next state (a repeating timer, whose stored version `next.stored` is the one it
    /// read). Answers the new version of a repeating timer (`None`: cancelled meanwhile).
    pub(super) async fn advance(
        &self,
        id: u64,
        next: Option<&Entry>,
    ) -> Result<Option<u64>, TimerRefused> {
        let Some(entry) = next else {
            self.delete(id).await;
            return Ok(None);
        };
        let version = entry.stored.unwrap_or(0);
        match self.table.update(version, &self.row(id, entry)).await {
            Ok(version) => Ok(Some(version)),
            Err(DataError::NotFound(_)) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes timer `id` (cancelled or done); a failure is logged.
    pub(super) async fn delete(&self, id: u64) {
        if let Err(e) = self.table.delete(Self::key(id), None).await {
            tracing::warn!(timer = id, "cannot delete a durable timer: {e}");
        }
    }

    /// Every stored timer of this node.
    pub(super) async fn load(&self) -> Result<Vec<(u64, Entry)>, TimerRefused> {
        let keys = self
            .table
            .list_by("node", &self.node)
            .await
            .map_err(unavailable)?;
        let mut timers = Vec::new();
        for key in keys {
            let Some(stored) = self.table.get(key).await.map_err(unavailable)? else {
                continue;
            };
            let row: Row = rmp_serde::from_slice(&stored.object).map_err(unavailable)?;
            let id = u64::try_from(row.timer).unwrap_or(0);
            let entry = Entry {
                module: Arc::from(row.module.as_str()),
                tag: row.tag,
                period_ms: u64::try_from(row.period_ms).unwrap_or(0),
                session: u64::try_from(row.session).unwrap_or(0),
                payload: Bytes::from(row.payload),
                due_ms: u64::try_from(row.due_ms).unwrap_or(0),
                firing: u64::try_from(row.firing).unwrap_or(0),
                stored: Some(stored.version),
            };
            timers.push((id, entry));
        }
        Ok(timers)
    }
}
