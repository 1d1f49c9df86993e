//! The external services some tests use (PostgreSQL, MariaDB, Redis): their URLs, and cleaning
//! up after a test. Shared by `server/tests` and the workspace test kit (`tests/support`).

/// The URL in `var`, or `None` (printing that the test is skipped). Under `CI` a missing
/// variable fails the test: CI must exercise every backend.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must be set when CI is set"
            );
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Deletes every Redis key of the cluster whose `storage.table_prefix` is `prefix` (its whole
/// Redis cache) and returns how many there were.
pub async fn drop_redis_keys(url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("firefly:{prefix}:*"))
        .query_async(&mut con)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .expect("DEL");
    }
    keys.len()
}
