//! Cached database objects (the SPEC's "Cached database objects"; Firefly's dbentrust, rebuilt).
//!
//! * [`schema`]: what a table may look like, allowed changes ([`schema::check_upgrade`]),
//!   the check every object goes through.
//! * `sql`: the SQL database (SQLite, PostgreSQL, MySQL/MariaDB through sqlx), real columns
//!   per field, bound parameters only.
//! * `journal` + `local`: the embedded store. One node (`storage.owner`) holds every object in
//!   memory, journals each write to a local SQLite file (group commit) before acknowledging
//!   it, and flushes dirty objects to SQL in batches (write-behind); on restart it replays the
//!   journal. Other nodes reach it over their node links ([`Data`] forwards).
//!
//! Every object has a version; updates are compare-and-set on it, so concurrent writers never
//! lose an update, and ids come from per-table counters that are journaled too (never reset).

mod host_table;
mod journal;
mod local;
mod owner;
mod ranks;
mod redis;
pub mod schema;
mod sql;
mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use firefly_abi::data::{TableSchema, data_status};
use serde::{Deserialize, Serialize};

use self::redis::RedisStore;
use crate::config::{CacheSpec, RedisSpec, StorageSpec};
pub use host_table::{HostTable, field};
pub use local::FlushStats;
use local::LocalStore;
pub use owner::{OwnerAnswer, OwnerError, OwnerLink, OwnerLinks};
pub use schema::{SchemaError, check_upgrade};

/// A data operation that failed in a way the module expects (never a trap).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// No such object.
    #[error("{0}")]
    NotFound(String),
    /// The version given is not the stored one.
    #[error("{0}")]
    Conflict(String),
    /// Insert of an existing key.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object or an argument does not fit the schema.
    #[error("{0}")]
    Invalid(String),
    /// No such table.
    #[error("{0}")]
    UnknownTable(String),
    /// The object is too large.
    #[error("{0}")]
    TooLarge(String),
    /// The storage cannot be reached; nothing happened.
    #[error("{0}")]
    Unavailable(String),
}

impl DataError {
    /// Its `data_status` code.
    pub fn status(&self) -> u32 {
        match self {
            DataError::NotFound(_) => data_status::NOT_FOUND,
            DataError::Conflict(_) => data_status::CONFLICT,
            DataError::AlreadyExists(_) => data_status::ALREADY_EXISTS,
            DataError::Invalid(_) => data_status::INVALID,
            DataError::UnknownTable(_) => data_status::UNKNOWN_TABLE,
            DataError::TooLarge(_) => data_status::TOO_LARGE,
            DataError::Unavailable(_) => data_status::UNAVAILABLE,
        }
    }
}

/// What a node asks the data-owning node (the body of `Msg::DataRequest`).
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// A module's `data_call`, its bytes as the module wrote them.
    Op(serde_bytes::ByteBuf),
    /// A module loaded with these tables: create or extend them (or refuse).
    Register(Vec<TableSchema>),
}

enum Backend {
    /// This node holds the data. The store opens on first use (a module declaring tables, a
    /// request from another node), so nodes of clusters without tables touch no database.
    Local {
        spec: Box<StorageSpec>,
        journal: std::path::PathBuf,
        store: tokio::sync::OnceCell<Arc<LocalStore>>,
    },
    /// Another node does; requests go over the link to it.
    Remote(Arc<dyn OwnerLink>),
    /// Every node uses one Redis server directly (opened on first use, like `Local`).
    Redis {
        spec: Box<StorageSpec>,
        cache: RedisSpec,
        store: tokio::sync::OnceCell<Arc<RedisStore>>,
    },
}

/// An opened store of this node.
#[derive(Clone, Copy)]
enum Opened<'a> {
    Local(&'a Arc<LocalStore>),
    Redis(&'a Arc<RedisStore>),
}

impl Opened<'_> {
    async fn call(self, op: &[u8]) -> Result<Vec<u8>, DataError> {
        match self {
            Opened::Local(s) => s.call(op).await,
            Opened::Redis(s) => s.call(op).await,
        }
    }

    async fn register(self, tables: &[TableSchema]) -> Result<(), SchemaError> {
        match self {
            Opened::Local(s) => s.register(tables).await,
            Opened::Redis(s) => s.register(tables).await,
        }
    }
}

/// A node's handle on the cached database objects.
pub struct Data {
    backend: Backend,
    /// How long a node waits for the owner to take a module's tables at load.
    register_wait: Duration,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Local { .. } => "local".to_owned(),
            Backend::Remote(p) => format!("remote({})", p.owner()),
            Backend::Redis { .. } => "redis".to_owned(),
        };
        f.debug_struct("Data").field("backend", &kind).finish()
    }
}

impl Data {
    /// Opens the storage `spec` describes as node `node` sees it: the owner opens the SQL
    /// database and its journal (replaying it); other nodes talk to the owner through
    /// `cluster`.
    pub async fn open(
        spec: &StorageSpec,
        node: &str,
        links: Option<&dyn OwnerLinks>,
    ) -> anyhow::Result<Arc<Data>> {
        let backend = match &spec.cache {
            CacheSpec::Embedded { owner, journal } if owner == node || links.is_none() => {
                Backend::Local {
                    spec: Box::new(spec.clone()),
                    journal: journal.clone(),
                    store: tokio::sync::OnceCell::new(),
                }
            }
            CacheSpec::Embedded { owner, .. } => {
                let peer = links
                    .and_then(|l| l.link(owner))
                    .with_context(|| format!("storage.owner `{owner}` is not a reachable node"))?;
                Backend::Remote(peer)
            }
            CacheSpec::Redis(cache) => Backend::Redis {
                spec: Box::new(spec.clone()),
                cache: cache.clone(),
                store: tokio::sync::OnceCell::new(),
            },
        };
        Ok(Arc::new(Data {
            backend,
            register_wait: Duration::from_secs(60),
        }))
    }

    /// This node's store, opened (the journal replayed, Redis reached) on first use; `None`
    /// when another node holds the data.
    async fn opened(&self) -> Option<Result<Opened<'_>, DataError>> {
        let unavailable = |e: anyhow::Error| DataError::Unavailable(format!("{e:#}"));
        Some(match &self.backend {
            Backend::Local {
                spec,
                journal,
                store,
            } => store
                .get_or_try_init(|| async {
                    LocalStore::open(spec, journal)
                        .await
                        .context("opening the data store")
                })
                .await
                .map(Opened::Local)
                .map_err(unavailable),
            Backend::Redis { spec, cache, store } => store
                .get_or_try_init(|| RedisStore::open(spec, cache))
                .await
                .map(Opened::Redis)
                .map_err(unavailable),
            Backend::Remote(_) => return None,
        })
    }

    /// Runs one module operation (the bytes of a `DataOp`): the answer on success.
    pub async fn call(&self, op: &[u8]) -> Result<Vec<u8>, DataError> {
        match self.opened().await {
            Some(store) => store?.call(op).await,
            None => {
                let Backend::Remote(peer) = &self.backend else {
                    return Err(DataError::Unavailable("no store".into()));
                };
                let req = Request::Op(serde_bytes::ByteBuf::from(op.to_vec()));
                remote(peer.as_ref(), &req).await
            }
        }
    }

    /// Creates or extends a module's tables; refused (nothing changed) when a change is not
    /// allowed. Waits for the data-owning node to be reachable (it may be starting too).
    pub async fn register(&self, tables: &[TableSchema]) -> Result<(), SchemaError> {
        for t in tables {
            schema::check_schema(t)?;
        }
        match &self.backend {
            Backend::Local { .. } | Backend::Redis { .. } => match self.opened().await {
                Some(Ok(store)) => store.register(tables).await,
                Some(Err(e)) => Err(SchemaError {
                    table: tables.first().map(|t| t.name.clone()).unwrap_or_default(),
                    message: e.to_string(),
                }),
                None => Ok(()),
            },
            Backend::Remote(peer) => {
                let req = Request::Register(tables.to_vec());
                let deadline = tokio::time::Instant::now() + self.register_wait;
                loop {
                    match remote(peer.as_ref(), &req).await {
                        Ok(_) => return Ok(()),
                        Err(DataError::Unavailable(reason))
                            if tokio::time::Instant::now() < deadline =>
                        {
                            tracing::debug!("waiting for the data owner: {reason}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            return Err(SchemaError {
                                table: tables.first().map(|t| t.name.clone()).unwrap_or_default(),
                                message: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Serves a request another node sent (this node owns the data): `(data_status, body)`.
    pub(crate) async fn serve_remote(&self, body: &[u8]) -> (u32, Vec<u8>) {
        let store = match self.opened().await {
            Some(Ok(store @ Opened::Local(_))) => store,
            Some(Err(e)) => return (e.status(), e.to_string().into_bytes()),
            Some(Ok(Opened::Redis(_))) | None => {
                return (
                    data_status::UNAVAILABLE,
                    b"this node does not hold the data (check storage.owner)".to_vec(),
                );
            }
        };
        let answer = match rmp_serde::from_slice::<Request>(body) {
            Ok(Request::Op(op)) => store.call(&op).await,
            Ok(Request::Register(tables)) => match store.register(&tables).await {
                Ok(()) => Ok(Vec::new()),
                Err(e) => Err(DataError::Invalid(e.to_string())),
            },
            Err(e) => Err(DataError::Invalid(format!("undecodable data request: {e}"))),
        };
        match answer {
            Ok(body) => (data_status::OK, body),
            Err(e) => (e.status(), e.to_string().into_bytes()),
        }
    }

    /// Flushes every dirty object to SQL (graceful stop), if this node opened a store.
    pub async fn shutdown(&self) {
        match &self.backend {
            Backend::Local { store, .. } => {
                if let Some(store) = store.get() {
                    store.shutdown().await;
                }
            }
            Backend::Redis { store, .. } => {
                if let Some(store) = store.get() {
                    store.shutdown().await;
                }
            }
            Backend::Remote(_) => {}
        }
    }

    /// Flushes dirty objects now and returns how many rows were written (tests, benches).
    /// With Redis, 0 when another node is flushing at that moment.
    pub async fn flush_now(&self) -> anyhow::Result<usize> {
        match self.opened().await {
            Some(Ok(Opened::Local(store))) => store.flush_all().await,
            Some(Ok(Opened::Redis(store))) => store.flush_all().await,
            Some(Err(e)) => Err(anyhow::Error::new(e)),
            None => Ok(0),
        }
    }

    /// Write-behind counters of this node's store.
    pub fn flush_stats(&self) -> Option<FlushStats> {
        match &self.backend {
            Backend::Local { store, .. } => store.get().map(|s| s.stats()),
            Backend::Redis { store, .. } => store.get().map(|s| s.stats()),
            Backend::Remote(_) => None,
        }
    }
}

async fn remote(owner: &dyn OwnerLink, req: &Request) -> Result<Vec<u8>, DataError> {
    let body = rmp_serde::to_vec(req)
        .map_err(|e| DataError::Invalid(format!("cannot encode the request: {e}")))?;
    match owner.request(body).await {
        Ok((status, body)) if status == data_status::OK => Ok(body),
        Ok((status, body)) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            Err(match status {
                data_status::NOT_FOUND => DataError::NotFound(text),
                data_status::CONFLICT => DataError::Conflict(text),
                data_status::ALREADY_EXISTS => DataError::AlreadyExists(text),
                data_status::INVALID => DataError::Invalid(text),
                data_status::UNKNOWN_TABLE => DataError::UnknownTable(text),
                data_status::TOO_LARGE => DataError::TooLarge(text),
                _ => DataError::Unavailable(text),
            })
        }
        Err(err) => Err(DataError::Unavailable(err.to_string())),
    }
}
