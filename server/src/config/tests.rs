//! The examples folder (`server/tests/topology/`) and the default `topology.yaml`.

use std::path::Path;

use super::*;

fn examples(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topology")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_valid_example_parses() {
    let files = examples("valid");
    assert!(files.len() >= 4);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = Topology::parse(&text, Path::new("/base")) {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn every_invalid_example_fails_with_its_exact_error() {
    let files = examples("invalid");
    assert!(files.len() >= 15);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = std::fs::read_to_string(file.with_extension("error"))
            .unwrap_or_else(|_| panic!("{} has no .error file", file.display()));
        match Topology::parse(&text, Path::new("/base")) {
            Ok(_) => panic!("{} parsed but must fail", file.display()),
            Err(e) => assert_eq!(e.to_string(), expected.trim_end(), "{}", file.display()),
        }
    }
}

#[test]
fn the_default_topology_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.yaml");
    let topology = Topology::load(&path).unwrap();
    let gate = topology.node("gate").unwrap();
    assert_eq!(gate.listen[0].addr.to_string(), "127.0.0.1:11009");
    assert!(gate.modules.contains(&"echo".to_owned()));
    assert_eq!(topology.master.admin.unwrap().to_string(), "127.0.0.1:9998");
    assert!(
        topology.nodes.len() >= 3,
        "a gate and at least two logic nodes"
    );
}

#[test]
fn defaults_merge_per_key() {
    let text = "version: 1\ncluster: c\ndefaults:\n  limits:\n    memory: 16MiB\n    timeout: 2s\nmodules:\n  a:\n    wasm: a.wasm\n    limits:\n      timeout: 3s\nnodes:\n  n:\n    modules: [a]\n";
    let t = Topology::parse(text, Path::new("/base")).unwrap();
    let a = t.module("a").unwrap();
    assert_eq!(a.limits.memory, 16 << 20);
    assert_eq!(a.limits.timeout, std::time::Duration::from_secs(3));
    assert_eq!(a.limits.stack, Limits::default().stack);
    assert_eq!(a.source, ModuleSource::Wasm("/base/a.wasm".into()));
    assert!(
        t.node("nope")
            .unwrap_err()
            .to_string()
            .contains("defined: n")
    );
}

#[test]
fn a_redis_cache_takes_its_url_and_timeouts() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topology/valid/redis-cache.yaml"),
    )
    .unwrap();
    let t = Topology::parse(&text, Path::new("/base")).unwrap();
    assert_eq!(
        t.storage.cache,
        CacheSpec::Redis(RedisSpec {
            url: "redis://127.0.0.1:6379/3".into(),
            connect_timeout: std::time::Duration::from_millis(500),
            command_timeout: std::time::Duration::from_secs(2),
        })
    );
    assert_eq!(
        t.storage.database,
        DatabaseSpec::Postgres("postgres://game@db.internal/game".into())
    );
}

#[test]
fn state_is_kept_per_cluster() {
    let yaml = |extra: &str| {
        format!(
            "version: 1\ncluster: staging\n{extra}modules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  solo:\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    modules: [echo]\n"
        )
    };
    let t = Topology::parse(&yaml(""), Path::new("/base")).unwrap();
    let state = Path::new("/base/.firefly/staging");
    assert_eq!(t.state_dir, state);
    assert_eq!(t.master.token_file, state.join("admin-token"));
    assert_eq!(
        t.storage.database,
        DatabaseSpec::Sqlite(state.join("data.db"))
    );
    assert!(
        matches!(&t.storage.cache, CacheSpec::Embedded { journal, .. } if journal == &state.join("journal-solo.db"))
    );
    let t = Topology::parse(&yaml("state_dir: elsewhere\n"), Path::new("/base")).unwrap();
    assert_eq!(t.state_dir, Path::new("/base/elsewhere"));
    assert_eq!(
        t.master.token_file,
        Path::new("/base/elsewhere/admin-token")
    );
}

#[test]
fn a_state_dir_is_claimed_once_and_stray_old_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |cluster: &str, extra: &str| {
        format!(
            "version: 1\ncluster: {cluster}\n{extra}modules:\n  echo: {{ crate: modules/echo }}\nnodes:\n  solo:\n    listen: [{{ tcp: 127.0.0.1:0 }}]\n    modules: [echo]\n"
        )
    };
    let legacy = dir.path().join(".firefly");
    std::fs::create_dir_all(&legacy).unwrap();
    // A database file the topology itself keeps in `.firefly/` is not stray state.
    std::fs::write(legacy.join("data.db"), b"").unwrap();
    let explicit = "storage:\n  database: sqlite://.firefly/data.db\n";
    let demo = Topology::parse(&yaml("demo", explicit), dir.path()).unwrap();
    demo.claim_state_dir().unwrap();
    demo.claim_state_dir().unwrap();
    // Another cluster's directory is refused.
    let other = Topology::parse(&yaml("other", "state_dir: .firefly/demo\n"), dir.path()).unwrap();
    let err = other.claim_state_dir().unwrap_err().to_string();
    assert!(err.contains("holds the state of cluster `demo`"), "{err}");
    // Old-layout state naming no cluster is refused, with the move to make.
    std::fs::create_dir_all(legacy.join("registry")).unwrap();
    let staging = Topology::parse(&yaml("staging", ""), dir.path()).unwrap();
    let err = staging.claim_state_dir().unwrap_err().to_string();
    assert!(err.contains("(data.db, registry)"), "{err}");
    assert!(err.contains("mkdir -p"), "{err}");
}

#[test]
fn the_cluster_names_its_transport_and_a_plain_name_keeps_the_tcp_mesh() {
    let nodes = "modules:\n  echo:\n    wasm: e.wasm\nnodes:\n  gate:\n    listen:\n      - tcp: 127.0.0.1:0\n  logic:\n    modules: [echo]\n";
    let nats = format!(
        "version: 1\ncluster:\n  name: c\n  transport: nats://a:4222, nats://b:4222\n  nats: {{ token: t0k }}\n{nodes}"
    );
    let t = Topology::parse(&nats, Path::new("/base")).unwrap();
    assert_eq!(t.cluster, "c");
    let Transport::Nats(spec) = &t.transport else {
        panic!("{:?}", t.transport)
    };
    assert_eq!(spec.servers, ["nats://a:4222", "nats://b:4222"]);
    assert_eq!(spec.auth, NatsAuth::Token("t0k".into()));
    assert!(
        !format!("{spec:?}").contains("t0k"),
        "a credential is never printed"
    );
    assert!(t.nodes.values().all(|n| n.rpc.is_none()));
    // The same nodes without addresses are refused on the TCP mesh, in either form.
    for cluster in [
        "cluster: c",
        "cluster: { name: c }",
        "cluster: { name: c, transport: tcp }",
    ] {
        let tcp = format!("version: 1\n{cluster}\n{nodes}");
        let err = Topology::parse(&tcp, Path::new("/base")).unwrap_err();
        assert!(
            err.to_string().starts_with("nodes.gate.rpc: missing"),
            "{err}"
        );
    }
}

#[test]
fn edge_keys_take_their_values_and_their_defaults() {
    let text = "version: 1\ncluster: c\nmodules:\n  a: { wasm: a.wasm }\nnodes:\n  n:\n    listen:\n      - tcp: 127.0.0.1:1\n        max_connections: 50\n        max_connections_per_ip: 5\n        rate_limit: { per_second: 10 }\n        write_stall: 2s\n        tls: { cert: certs/c.pem, key: certs/c.key }\n      - ws: 127.0.0.1:2\n    modules: [a]\n    metrics: { addr: 0.0.0.0:9101, token_file: secrets/metrics }\n";
    let t = Topology::parse(text, Path::new("/base")).unwrap();
    let n = t.node("n").unwrap();
    let edge = &n.listen[0].protocol.edge;
    assert_eq!(edge.max_connections, 50);
    assert_eq!(edge.max_connections_per_ip, 5);
    assert_eq!(
        edge.rate_limit,
        Some(RateLimit {
            per_second: 10,
            burst: 20
        })
    );
    assert_eq!(edge.write_stall, std::time::Duration::from_secs(2));
    let tls = edge.tls.as_ref().unwrap();
    assert_eq!(tls.cert, Path::new("/base/certs/c.pem"));
    assert_eq!(tls.key, Path::new("/base/certs/c.key"));
    assert_eq!(n.listen[1].protocol.edge, EdgeSettings::default());
    assert_eq!(n.metrics.unwrap().to_string(), "0.0.0.0:9101");
    assert_eq!(
        n.metrics_token_file.as_deref(),
        Some(Path::new("/base/secrets/metrics"))
    );
    let defaults = EdgeSettings::default();
    assert_eq!(
        (
            defaults.max_connections,
            defaults.max_connections_per_ip,
            defaults.rate_limit,
            defaults.write_stall.as_secs()
        ),
        (10_000, 256, None, 10)
    );
}
