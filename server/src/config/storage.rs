//! The `storage:` section: where cached database objects live.
//!
//! ```yaml
//! storage:
//!   database: sqlite://.firefly/demo/data.db   # default: <state_dir>/data.db; or postgres://...
//!   cache: embedded                       # or redis://[:password@]host:6379[/db]
//!   owner: game-1                         # embedded cache: the node that holds the data
//!   journal: .firefly/demo/journal-game-1.db   # default <state_dir>/journal-<owner>.db
//!   connect_timeout: 2s                   # Redis cache: connecting
//!   command_timeout: 2s                   # Redis cache: one command or script
//!   flush_interval: 1s                    # write-behind period
//!   table_prefix: ""                      # SQL table (and Redis key) prefix
//!   max_object: 64KiB                     # largest stored object
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawStorage, SizeValue};
use super::units::{format_size, parse_duration, parse_size};
use super::{ConfigError, NodeSpec};

/// The SQL database objects are flushed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSpec {
    /// An SQLite file (absolute path), created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
    /// A MySQL / MariaDB URL.
    Mysql(String),
}

/// Where the hot copy of objects lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// In the memory of the owner node, journaled to a local SQLite file before each write is
    /// acknowledged; other nodes reach it over their node links.
    Embedded {
        /// The node that holds the data.
        owner: String,
        /// The owner's write-ahead journal (absolute path).
        journal: PathBuf,
    },
    /// A Redis server shared by every node.
    Redis(RedisSpec),
}

/// The Redis cache: where it is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    /// `redis://` or `rediss://` URL (a `/N` path picks the database number).
    pub url: String,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for one command or script; past it the operation is reported unavailable.
    pub command_timeout: Duration,
}

/// The `storage:` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    /// The SQL database.
    pub database: DatabaseSpec,
    /// The cache.
    pub cache: CacheSpec,
    /// How often dirty objects are flushed to SQL.
    pub flush_interval: Duration,
    /// Prefix of every SQL table (and Redis key) name, so several clusters or tests can share
    /// one database.
    pub table_prefix: String,
    /// The largest object (encoded) a module may store.
    pub max_object: usize,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(format!("storage.{key}"), message)
}

fn redact(url: &str) -> String {
    // Never echo a password from the file into an error message.
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

pub(super) fn validate(
    raw: Option<&RawStorage>,
    base_dir: &Path,
    state_dir: &Path,
    nodes: &BTreeMap<String, NodeSpec>,
) -> Result<StorageSpec, ConfigError> {
    let empty = RawStorage {
        database: None,
        cache: None,
        owner: None,
        journal: None,
        flush_interval: None,
        table_prefix: None,
        max_object: None,
        connect_timeout: None,
        command_timeout: None,
    };
    let raw = raw.unwrap_or(&empty);
    // Default: a database of this cluster's own, in its state directory.
    let database = match raw.database.as_deref() {
        Some(url) => database(url, base_dir)?,
        None => DatabaseSpec::Sqlite(state_dir.join("data.db")),
    };
    let cache = raw.cache.as_deref().unwrap_or("embedded");
    let cache = if cache == "embedded" {
        embedded(raw, base_dir, state_dir, nodes)?
    } else if cache.starts_with("redis://") || cache.starts_with("rediss://") {
        redis_cache(raw, cache)?
    } else {
        return Err(invalid(
            "cache",
            format!(
                "`{}` is not a cache (`embedded` or redis://host:port)",
                redact(cache)
            ),
        ));
    };
    Ok(StorageSpec {
        database,
        cache,
        flush_interval: flush_interval(raw.flush_interval.as_deref())?,
        table_prefix: table_prefix(raw.table_prefix.as_deref())?,
        max_object: max_object(raw.max_object.as_ref())?,
    })
}

fn database(url: &str, base_dir: &Path) -> Result<DatabaseSpec, ConfigError> {
    Ok(if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() || path.contains('?') {
            return Err(invalid(
                "database",
                format!("`{url}`: give a file path, e.g. sqlite://.firefly/data.db"),
            ));
        }
        DatabaseSpec::Sqlite(base_dir.join(path))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        DatabaseSpec::Postgres(url.to_owned())
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        DatabaseSpec::Mysql(url.replacen("mariadb://", "mysql://", 1))
    } else {
        return Err(invalid(
            "database",
            format!(
                "`{}` is not a supported database URL (sqlite://<file>, postgres://..., mysql://...)",
                redact(url)
            ),
        ));
    })
}

/// `cache: embedded`: the owner node and its journal.
fn embedded(
    raw: &RawStorage,
    base_dir: &Path,
    state_dir: &Path,
    nodes: &BTreeMap<String, NodeSpec>,
) -> Result<CacheSpec, ConfigError> {
    let owner = match &raw.owner {
        Some(owner) => {
            if !nodes.contains_key(owner) {
                let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
                return Err(invalid(
                    "owner",
                    format!("unknown node `{owner}` (defined: {})", known.join(", ")),
                ));
            }
            if nodes.get(owner).is_some_and(|n| n.copies) {
                return Err(invalid(
                    "owner",
                    format!(
                        "node `{owner}` has copies, and the embedded cache lives in one process: name a node without `copies`, or use a Redis cache"
                    ),
                ));
            }
            owner.clone()
        }
        // The first node in name order without copies: every node knows the same answer without talking.
        // (A node with copies runs in many processes: never the owner.)
        None => nodes
            .values()
            .find(|n| !n.copies)
            .map(|n| n.name.clone())
            .unwrap_or_default(),
    };
    let journal = match &raw.journal {
        Some(path) if path.trim().is_empty() => {
            return Err(invalid("journal", "is empty"));
        }
        Some(path) => base_dir.join(path),
        None => state_dir.join(format!("journal-{owner}.db")),
    };
    for (key, value) in [
        ("connect_timeout", &raw.connect_timeout),
        ("command_timeout", &raw.command_timeout),
    ] {
        if value.is_some() {
            return Err(invalid(
                key,
                "only used with a Redis cache (`cache: redis://...`)",
            ));
        }
    }
    Ok(CacheSpec::Embedded { owner, journal })
}

/// `cache: redis://...`: the URL and the timeouts.
fn redis_cache(raw: &RawStorage, cache_text: &str) -> Result<CacheSpec, ConfigError> {
    if raw.journal.is_some() {
        return Err(invalid(
            "journal",
            "only used with `cache: embedded` (with Redis the dirty set lives in Redis)",
        ));
    }
    if raw.owner.is_some() {
        return Err(invalid(
            "owner",
            "only used with `cache: embedded` (with Redis every node reaches the data)",
        ));
    }
    if cache_text.starts_with("rediss://") {
        return Err(invalid(
            "cache",
            "TLS to Redis (rediss://) is not supported by this build; use redis:// on a private network, or a TLS tunnel such as stunnel",
        ));
    }
    if let Err(e) = redis::Client::open(cache_text) {
        return Err(invalid(
            "cache",
            format!("`{}` is not a valid Redis URL: {e}", redact(cache_text)),
        ));
    }
    let timeout = |key: &str, value: &Option<String>| match value {
        None => Ok(Duration::from_secs(2)),
        Some(text) => {
            let d = parse_duration(text).map_err(|m| invalid(key, m))?;
            if d < Duration::from_millis(10) || d > Duration::from_secs(600) {
                return Err(invalid(key, format!("{d:?} is out of range (10ms to 10m)")));
            }
            Ok(d)
        }
    };
    Ok(CacheSpec::Redis(RedisSpec {
        url: cache_text.to_owned(),
        connect_timeout: timeout("connect_timeout", &raw.connect_timeout)?,
        command_timeout: timeout("command_timeout", &raw.command_timeout)?,
    }))
}

fn flush_interval(text: Option<&str>) -> Result<Duration, ConfigError> {
    Ok(match text {
        Some(text) => {
            let d = parse_duration(text).map_err(|m| invalid("flush_interval", m))?;
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return Err(invalid(
                    "flush_interval",
                    format!("{d:?} is out of range (10ms to 1h)"),
                ));
            }
            d
        }
        None => Duration::from_secs(1),
    })
}

fn table_prefix(text: Option<&str>) -> Result<String, ConfigError> {
    let table_prefix = text.unwrap_or_default().to_owned();
    let prefix_ok = table_prefix.len() <= 32
        && table_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !prefix_ok {
        return Err(invalid(
            "table_prefix",
            format!(
                "`{table_prefix}` is not a valid prefix (lowercase letters, digits and `_`, at most 32 characters)"
            ),
        ));
    }
    Ok(table_prefix)
}

fn max_object(value: Option<&SizeValue>) -> Result<usize, ConfigError> {
    Ok(match value {
        Some(v) => {
            let bytes = match v {
                SizeValue::Bytes(n) => *n,
                SizeValue::Text(t) => parse_size(t).map_err(|m| invalid("max_object", m))?,
            };
            if !(64..=16 << 20).contains(&bytes) {
                return Err(invalid(
                    "max_object",
                    format!(
                        "{} is out of range ({} to {})",
                        format_size(bytes),
                        format_size(64),
                        format_size(16 << 20)
                    ),
                ));
            }
            usize::try_from(bytes).unwrap_or(usize::MAX)
        }
        None => 64 << 10,
    })
}
