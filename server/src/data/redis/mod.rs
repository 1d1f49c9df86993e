//! The Redis cache (`storage.cache: redis://…`): every node talks to one Redis server, which
//! holds the hot copy of each object with its version, the dirty set and the id counters; any
//! node flushes dirty objects to SQL.
//!
//! # Keys (`K` = `firefly:<table_prefix>:`)
//! * `K o:<table>:<key>`: a hash, `v` the version and `d` the object (MessagePack; absent once
//!   deleted). A key is `i<decimal>` or `s<text>`.
//! * `K dirty:<table>`: a hash, object key → the version that has not reached SQL yet.
//! * `K ids:<table>`: the last id handed out.
//! * `K database`: which SQL database this cache belongs to (checked at open, so two
//!   databases never share objects by mistake).
//! * `K lock:flush`, `K lock:schema`: leases (a random token, expiring).
//!
//! # Why nothing is lost
//! A write is one Lua script: compare the version, store the object, mark it dirty, all or
//! nothing. A dirty object has no expiry, so Redis never evicts it under a `noeviction` or
//! `volatile-*` policy (an `allkeys-*` policy is refused at open); once flushed it gets an
//! expiry and may be evicted, since SQL holds it. A flush reads the objects, writes them in
//! one SQL transaction (an upsert only ever replaces an older version and a delete only removes
//! one, and each flush runs under a term from SQL that a newer flusher's term supersedes, so a
//! stalled flusher cannot go backwards), then clears each dirty mark only if it still names the
//! version written. A Firefly process can die at any point: what Redis acknowledged stays there, dirty until
//! some node flushes it. Redis itself must be run with persistence (`appendonly yes`) for the
//! data to survive a restart of Redis.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use firefly_abi::data::{FieldSchema, FieldType, Key, Stored, TableSchema};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};
use tokio::sync::watch;

use super::DataError;
use super::FlushStats;
use super::schema::{self, SchemaError};
use super::sql::{Sql, SqlValue};
use super::store::{self, Dirty, Registered, Store, Write, WriteBehind};
use crate::config::{DatabaseSpec, RedisSpec, StorageSpec};

/// Objects read per flush step (and per SQL transaction).
const FLUSH_STEP: usize = 1000;
/// How long a flushed object stays cached before Redis may drop it.
const CLEAN_TTL_SECS: u64 = 3600;
/// How long "no such object" stays cached.
const ABSENT_TTL_SECS: u64 = 60;
/// Lease of the flush and schema locks; renewed while a long flush runs.
const LEASE: Duration = Duration::from_secs(30);

/// Stores the object SQL returned unless Redis has one already; answers what Redis holds.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[3] == 'p' then
    redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[4])
  else
    redis.call('HSET', KEYS[1], 'v', ARGV[1])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'v', 'd')
",
    )
});

/// Compare-and-set: -2 done, -1 not cached (load and retry), otherwise the version found.
/// A ranked object also leaves sorted set KEYS[3] (ARGV[7] = `1`) and joins KEYS[4] at score
/// ARGV[9] (ARGV[8] = `1`) as member ARGV[6] (`ranks`).
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return tonumber(v) end
if ARGV[4] == 'p' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2])
  redis.call('HDEL', KEYS[1], 'd')
end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
if ARGV[7] == '1' then redis.call('ZREM', KEYS[3], ARGV[6]) end
if ARGV[8] == '1' then redis.call('ZADD', KEYS[4], ARGV[9], ARGV[6]) end
return -2
",
    )
});

/// After a flush: clears each dirty mark that still names the version written, and lets the
/// object expire. KEYS: the dirty hash, then the objects; ARGV: the TTL, then field/version
/// pairs in the objects' order.
static CLEAN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 2, #KEYS do
  local f = ARGV[2 * i - 2]
  if redis.call('HGET', KEYS[1], f) == ARGV[2 * i - 1] then
    redis.call('HDEL', KEYS[1], f)
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    n = n + 1
  end
end
return n
",
    )
});

/// The next id, or nil when the counter is missing (Redis lost it: seed it from SQL).
static ALLOC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCR', KEYS[1])
",
    )
});

/// Creates an id counter at ARGV[1], or raises it to at least that.
static FLOOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local c = redis.call('GET', KEYS[1])
if (not c) or tonumber(c) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
",
    )
});

/// Renews (ARGV[2] = milliseconds) or releases (ARGV[2] = 0) a lease held with token ARGV[1].
static LEASE_OP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
",
    )
});

/// A dirty mark as HSCAN returns it: object key field, version.
type Mark = (Vec<u8>, Vec<u8>);

pub(crate) struct RedisStore {
    sql: Sql,
    redis: ConnectionManager,
    /// SQL table prefix.
    prefix: String,
    /// Redis key prefix.
    keys: String,
    max_object: usize,
    tables: Mutex<HashMap<Arc<str>, Arc<TableSchema>>>,
    /// Id counters as last written to SQL.
    ids_flushed: Mutex<HashMap<String, i64>>,
    flushing: tokio::sync::Mutex<()>,
    flushed_rows: AtomicU64,
    flush_failures: AtomicU64,
    dirty_seen: AtomicU64,
    stop: watch::Sender<bool>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Unavailable(format!("the Redis cache {what}: {e}"))
}

/// The hash field (and key suffix) of an object key.
fn field(key: &Key) -> String {
    match key {
        Key::Int(i) => format!("i{i}"),
        Key::Text(s) => format!("s{s}"),
    }
}

fn parse_field(f: &[u8]) -> Option<Key> {
    match f.split_first()? {
        (b'i', rest) => std::str::from_utf8(rest).ok()?.parse().ok().map(Key::Int),
        (b's', rest) => String::from_utf8(rest.to_vec()).ok().map(Key::Text),
        _ => None,
    }
}

fn token() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// What the `database` marker says: the database without credentials.
fn identity(db: &DatabaseSpec) -> String {
    let strip = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    };
    match db {
        DatabaseSpec::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseSpec::Postgres(url) | DatabaseSpec::Mysql(url) => strip(url),
    }
}

impl RedisStore {
    /// Connects to Redis and SQL, checks that this Redis belongs to this database and may not
    /// evict dirty objects, creates the metadata tables and starts the flusher.
    pub async fn open(spec: &StorageSpec, cache: &RedisSpec) -> anyhow::Result<Arc<RedisStore>> {
        let client = redis::Client::open(cache.url.as_str()).context("the Redis cache URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cache.connect_timeout))
            .set_response_timeout(Some(cache.command_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut redis = tokio::time::timeout(
            cache.connect_timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::new))
        .context("connecting to the Redis cache (storage.cache)")?;
        check_eviction_policy(&mut redis).await?;
        let keys = format!("firefly:{}:", spec.table_prefix);
        let marker = format!("{keys}database");
        let me = identity(&spec.database);
        let _: bool = redis.set_nx(&marker, &me).await?;
        let theirs: String = redis.get(&marker).await?;
        if theirs != me {
            anyhow::bail!(
                "this Redis cache (key prefix `{keys}`) holds the objects of `{theirs}`, not of `{me}`; give each database its own Redis database number (redis://host:port/N) or its own storage.table_prefix"
            );
        }
        let sql = Sql::connect(&spec.database).await?;
        let (stop, stop_rx) = watch::channel(false);
        let store = Arc::new(RedisStore {
            sql,
            redis,
            prefix: spec.table_prefix.clone(),
            keys,
            max_object: spec.max_object,
            tables: Mutex::new(HashMap::new()),
            ids_flushed: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            flushed_rows: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            dirty_seen: AtomicU64::new(0),
            stop,
        });
        {
            let lease = store.lease("schema", Duration::from_secs(60)).await?;
            let meta = store.sql.ensure_meta(&store.prefix).await;
            store.release(&lease).await;
            meta?;
        }
        store.reload_tables().await?;
        tokio::spawn(store::flusher(
            Arc::downgrade(&store),
            spec.flush_interval,
            stop_rx,
        ));
        Ok(store)
    }

    fn con(&self) -> ConnectionManager {
        self.redis.clone()
    }

    fn obj_key(&self, table: &str, key: &Key) -> String {
        format!("{}o:{table}:{}", self.keys, field(key))
    }

    fn dirty_key(&self, table: &str) -> String {
        format!("{}dirty:{table}", self.keys)
    }

    fn ids_key(&self, table: &str) -> String {
        format!("{}ids:{table}", self.keys)
    }

    fn lock_tables(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<TableSchema>>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters (`dirty`: as seen by this node's last flush).
    pub fn stats(&self) -> FlushStats {
        FlushStats {
            flushed_rows: self.flushed_rows.load(Ordering::Relaxed),
            flush_failures: self.flush_failures.load(Ordering::Relaxed),
            journal_failures: 0,
            dirty: self.dirty_seen.load(Ordering::Relaxed),
        }
    }

    /// Takes lease `name`, waiting up to `wait` for another holder to finish.
    async fn lease(&self, name: &str, wait: Duration) -> anyhow::Result<(String, String)> {
        let key = format!("{}lock:{name}", self.keys);
        let token = token();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let took: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .query_async(&mut self.con())
                .await?;
            if took.is_some() {
                return Ok((key, token));
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("another node held the {name} lock for longer than {wait:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_lease(&self, name: &str) -> anyhow::Result<Option<(String, String)>> {
        match self.lease(name, Duration::ZERO).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.downcast_ref::<redis::RedisError>().is_some() => Err(e),
            Err(_) => Ok(None),
        }
    }

    async fn renew(&self, (key, token): &(String, String)) {
        let _: Result<i64, _> = LEASE_OP
            .key(key)
            .arg(token)
            .arg(LEASE.as_millis() as u64)
            .invoke_async(&mut self.con())
            .await;
    }

    async fn release(&self, (key, token): &(String, String)) {
        let _: Result<i64, _> = LEASE_OP
            .key(key)
            .arg(token)
            .arg(0)
            .invoke_async(&mut self.con())
            .await;
    }

    /// Reads every table's schema from SQL (another node may have registered or extended one).
    async fn reload_tables(&self) -> anyhow::Result<HashMap<Arc<str>, Arc<TableSchema>>> {
        let loaded = self.sql.load_schemas(&self.prefix).await?;
        let mut tables = self.lock_tables();
        for t in loaded {
            tables.insert(Arc::from(t.name.as_str()), Arc::new(t));
        }
        Ok(tables.clone())
    }

    /// Creates or extends tables, one node at a time across the cluster.
    pub async fn register(&self, tables: &[TableSchema]) -> Result<(), SchemaError> {
        let first = tables.first().map(|t| t.name.clone()).unwrap_or_default();
        let fail = |e: anyhow::Error| SchemaError {
            table: first.clone(),
            message: format!("{e:#}"),
        };
        let lease = self
            .lease("schema", Duration::from_secs(60))
            .await
            .map_err(fail)?;
        let result = self.register_locked(tables).await;
        self.release(&lease).await;
        result
    }

    async fn register_locked(&self, tables: &[TableSchema]) -> Result<(), SchemaError> {
        let first = tables.first().map(|t| t.name.clone()).unwrap_or_default();
        let fail = |e: anyhow::Error| SchemaError {
            table: first.clone(),
            message: format!("{e:#}"),
        };
        let stored = self.reload_tables().await.map_err(fail)?;
        let olds: Vec<Option<Arc<TableSchema>>> = tables
            .iter()
            .map(|t| stored.get(t.name.as_str()).cloned())
            .collect();
        let ready = store::register_tables(&self.sql, &self.prefix, tables, &olds).await?;
        let ids = self.sql.load_ids(&self.prefix).await.map_err(fail)?;
        for Registered { table: t, id_floor } in ready {
            if t.key_field().map(|f| f.ty) == Some(FieldType::Int) {
                let floor = id_floor.max(ids.get(&t.name).copied().unwrap_or(0));
                self.raise_ids(&t.name, floor).await.map_err(fail)?;
            }
            let mut tables = self.lock_tables();
            let name: Arc<str> = Arc::from(t.name.as_str());
            if tables.get(&name).map(|x| &**x) != Some(&t) {
                tracing::info!(table = %t.name, "table ready");
            }
            tables.insert(name, Arc::new(t));
        }
        Ok(())
    }

    async fn raise_ids(&self, table: &str, floor: i64) -> anyhow::Result<()> {
        let _: i64 = FLOOR
            .key(self.ids_key(table))
            .arg(floor)
            .invoke_async(&mut self.con())
            .await?;
        Ok(())
    }

    /// Runs one module operation.
    pub async fn call(&self, op: &[u8]) -> Result<Vec<u8>, DataError> {
        store::dispatch(self, op).await
    }

    /// The cached state of an object (version, object), loading it from SQL on a miss.
    async fn slot(
        &self,
        name: &str,
        t: &TableSchema,
        key: &Key,
    ) -> Result<(u64, Option<Vec<u8>>), DataError> {
        let k = self.obj_key(name, key);
        let (v, d): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&k)
            .arg("v")
            .arg("d")
            .query_async(&mut self.con())
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        if let Some(v) = v {
            return Ok((v, d));
        }
        let loaded = self
            .sql
            .load(&self.prefix, t, key)
            .await
            .map_err(|e| DataError::Unavailable(format!("reading `{name}` {key}: {e:#}")))?;
        let (version, object, ttl) = match loaded {
            Some((version, values)) => (
                version,
                Some(schema::encode_row(t, &values)),
                CLEAN_TTL_SECS,
            ),
            None => (0, None, ABSENT_TTL_SECS),
        };
        let mut load = LOAD.key(&k);
        load.arg(version)
            .arg(ttl)
            .arg(if object.is_some() { "p" } else { "a" })
            .arg(object.unwrap_or_default());
        let (v, d): (Option<u64>, Option<Vec<u8>>) = load
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| unavailable("did not answer", e))?;
        Ok((v.unwrap_or(0), d))
    }

    /// Final flush at a graceful stop: waits for another flushing node, retries failures.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let attempt = || async {
            let _one = self.flushing.lock().await;
            let lease = self.lease("flush", Duration::from_secs(10)).await?;
            let r = self.flush_locked(&lease).await;
            self.release(&lease).await;
            r
        };
        store::final_flush(
            &self.flush_failures,
            "the objects stay dirty in Redis",
            attempt,
        )
        .await;
        self.sql.close().await;
    }
}

impl WriteBehind for RedisStore {
    fn flush_all(&self) -> impl Future<Output = anyhow::Result<usize>> + Send {
        RedisStore::flush_all(self)
    }

    fn flush_failures(&self) -> &AtomicU64 {
        &self.flush_failures
    }
}

/// Refuses a Redis that may evict objects not yet written to SQL.
async fn check_eviction_policy(redis: &mut ConnectionManager) -> anyhow::Result<()> {
    let answer: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(redis)
        .await;
    match answer {
        Ok(pair) => {
            let policy = pair.get(1).cloned().unwrap_or_default();
            if policy.starts_with("allkeys") {
                anyhow::bail!(
                    "the Redis cache's maxmemory-policy is `{policy}`, which may evict objects not yet written to SQL; use `noeviction` or a `volatile-*` policy"
                );
            }
        }
        Err(e) => tracing::warn!(
            "cannot read the Redis cache's maxmemory-policy ({e}); make sure it is `noeviction` or `volatile-*`"
        ),
    }
    Ok(())
}

mod flush;
mod ranks;
mod store_impl;
