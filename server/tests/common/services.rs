//! The external services some tests use (PostgreSQL, MariaDB, Redis, NATS): their URLs, cleaning
//! up after a test, and private `nats-server` / `redis-server` processes of one test's own.
//! Shared by `server/tests` and the workspace test kit (`tests/support`).

/// The URL in `var`. A test that needs a service fails loudly without it, in every profile and
/// under plain `cargo test`: it never passes having tested nothing.
///
/// Such tests are named after their services, ending `_on_postgres`, `_on_mariadb`, `_on_nats`
/// or `_on_redis_and_<database>`; the default nextest profile (`.config/nextest.toml`) leaves
/// them out, so its summary counts them as skipped, and the `ci` profile (`.ci/run`, which
/// starts the services and sets the variables) runs them.
pub fn service_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set, and this test needs that service. Run `.ci/run` (it starts \
             PostgreSQL, MariaDB, Redis and NATS and sets FIREFLY_TEST_POSTGRES_URL, \
             FIREFLY_TEST_MYSQL_URL, FIREFLY_TEST_REDIS_URL and FIREFLY_TEST_NATS_URL), or set {var} and run with \
             NEXTEST_PROFILE=ci. The default nextest profile skips tests named `..._on_postgres`, \
             `..._on_mariadb`, `..._on_nats` and `..._on_redis_and_<database>`; name a new service test that way."
        ),
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

/// A `nats-server` of one test's own on a free port (for credentials the shared server does
/// not have), stopped when dropped.
pub struct PrivateNats {
    child: std::process::Child,
    /// Its URL.
    pub url: String,
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nats-server` with `args` (e.g. `--auth <token>`) on a free port and waits until it
/// listens.
pub fn private_nats(args: &[&str]) -> PrivateNats {
    // Included by several crates (`#[path]`), so it uses nothing of theirs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    private_nats_on(port, args)
}

/// [`private_nats`] on `port` (a test that stops its server and starts it again on the same
/// port).
pub fn private_nats_on(port: u16, args: &[&str]) -> PrivateNats {
    private_nats_at("127.0.0.1", port, args)
}

/// [`private_nats`] listening on `ip:port` (a test whose nodes reach it over a network of its
/// own rather than the loopback).
pub fn private_nats_at(ip: &str, port: u16, args: &[&str]) -> PrivateNats {
    let child = std::process::Command::new(nats_server())
        .args(["-a", ip, "-p", &port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("nats-server ({e}): Debian's `nats-server`, which .ci/run installs")
        });
    let server = PrivateNats {
        child,
        url: format!("nats://{ip}:{port}"),
    };
    wait_listening(ip, port, "nats-server");
    server
}

/// A `redis-server` of one test's own (no persistence), stopped when dropped.
pub struct PrivateRedis {
    child: std::process::Child,
    /// Its URL.
    pub url: String,
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` listening on `ip:port`, without persistence, and waits until it
/// listens.
pub fn private_redis_at(ip: &str, port: u16) -> PrivateRedis {
    let child = std::process::Command::new("redis-server")
        .args(["--bind", ip, "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("redis-server ({e}): Debian's `redis-server`, which .ci/run uses")
        });
    let server = PrivateRedis {
        child,
        url: format!("redis://{ip}:{port}"),
    };
    wait_listening(ip, port, "redis-server");
    server
}

/// Waits (10 s at most) until something accepts connections on `ip:port`.
fn wait_listening(ip: &str, port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {ip}:{port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The `nats-server` program: on the `PATH`, else where Debian puts it.
fn nats_server() -> &'static str {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("nats-server").is_file()));
    if on_path {
        "nats-server"
    } else {
        "/usr/sbin/nats-server"
    }
}
