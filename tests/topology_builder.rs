//! The topology builder writes what the parser reads: every key it can write, parsed back by
//! `firefly::config::Topology::parse`, lands where it was meant to (a key written under the
//! wrong name or in the wrong shape would be refused, or would silently keep its default).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::config::{CacheSpec, ListenerKind, ModuleSource, Policy, Topology as Parsed};

use firefly_testkit::topology::{
    AutoRollback, Listener, Module, RateLimit, Resume, Storage, Tls, Topology,
};
use firefly_testkit::{Gated, free_addr, root};

fn parse(topology: &Topology) -> Parsed {
    let yaml = topology.yaml();
    Parsed::parse(&yaml, root()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn every_key_of_a_direct_mesh_topology_is_read_back() {
    let (admin, g, l, tcp, ws, metrics) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let wasm = root().join("target/some.wasm");
    let parsed = parse(
        &Topology::new("check")
            .admin(admin)
            .rpc_timeout("3s")
            .auto_rollback(AutoRollback {
                window: "60s",
                min_calls: 6,
                max_failure_rate: "50%",
            })
            .module("echo")
            .module_from("built", Module::Wasm { wasm: wasm.clone() })
            .node("gate", |n| {
                n.host("127.0.0.1")
                    .rpc(g)
                    .listen(Listener {
                        single_login: Some(false),
                        resume: Some(Resume {
                            grace: "60s",
                            buffer: 16,
                        }),
                        magic: Some(vec![78, 37, 38, 48]),
                        protocol_version: Some(9),
                        server_version: Some(3),
                        error_command: Some(4_000_000_000),
                        max_frame: Some("1KiB"),
                        idle_timeout: Some("1s"),
                        max_connections: Some(5),
                        max_connections_per_ip: Some(2),
                        rate_limit: Some(RateLimit {
                            per_second: 5,
                            burst: 10,
                        }),
                        write_stall: Some("2s"),
                        tls: Some(Tls {
                            cert: "cert.pem",
                            key: "key.pem",
                        }),
                        ..Listener::tcp(tcp)
                    })
                    .listen(Listener {
                        origins: Some(vec!["http://allowed.example".into()]),
                        ..Listener::ws(ws)
                    })
                    .metrics_with_token(metrics, "metrics-token")
                    .modules(&["echo"])
                    .route("7", &["logic"])
                    .route_by("100-199", &["logic"], "least_loaded")
            })
            .node("logic", |n| n.rpc(l).modules(&["echo", "built"]))
            .storage(Storage {
                database: Some("sqlite://data.db".into()),
                owner: Some("logic".into()),
                journal: Some("journal.db".into()),
                table_prefix: Some("chk_".into()),
                flush_interval: Some("1h"),
                ..Storage::default()
            })
            .state_dir(".firefly/elsewhere"),
    );
    assert_eq!(parsed.cluster, "check");
    assert_eq!(parsed.master.admin, Some(admin));
    assert_eq!(parsed.master.rpc_timeout, Duration::from_secs(3));
    let rule = parsed.master.auto_rollback.as_ref().unwrap();
    assert_eq!((rule.window, rule.min_calls), (Duration::from_secs(60), 6));
    assert_eq!(rule.max_failure_percent, 50);
    assert_eq!(
        parsed.modules["echo"].source,
        ModuleSource::Crate(root().join("modules/echo"))
    );
    assert_eq!(parsed.modules["built"].source, ModuleSource::Wasm(wasm));
    let gate = parsed.node("gate").unwrap();
    assert_eq!((gate.host.as_str(), gate.rpc), ("127.0.0.1", Some(g)));
    assert_eq!(gate.modules, ["echo"]);
    assert_eq!(gate.metrics, Some(metrics));
    assert_eq!(gate.metrics_token_file, Some(root().join("metrics-token")));
    let (first, second) = (&gate.listen[0], &gate.listen[1]);
    assert_eq!((first.kind, first.addr), (ListenerKind::Tcp, tcp));
    let p = &first.protocol;
    assert!(!p.sessions.single_login);
    let resume = p.sessions.resume.as_ref().unwrap();
    assert_eq!((resume.grace, resume.buffer), (Duration::from_secs(60), 16));
    assert_eq!(p.magic, [78, 37, 38, 48]);
    assert_eq!((p.protocol_version, p.server_version), (9, 3));
    assert_eq!((p.error_command, p.max_frame), (4_000_000_000, 1024));
    assert_eq!(p.idle_timeout, Duration::from_secs(1));
    assert_eq!(
        (p.edge.max_connections, p.edge.max_connections_per_ip),
        (5, 2)
    );
    let rate = p.edge.rate_limit.unwrap();
    assert_eq!((rate.per_second, rate.burst), (5, 10));
    assert_eq!(p.edge.write_stall, Duration::from_secs(2));
    assert_eq!(p.edge.tls.as_ref().unwrap().cert, root().join("cert.pem"));
    assert_eq!((second.kind, second.addr), (ListenerKind::Ws, ws));
    assert_eq!(
        second.protocol.origins.as_deref(),
        Some(&["http://allowed.example".to_owned()][..])
    );
    let routes: Vec<_> = gate
        .routes
        .iter()
        .map(|r| (r.first, r.last, r.to.clone(), r.policy))
        .collect();
    assert_eq!((routes[0].0, routes[0].1), (7, 7));
    assert_eq!((routes[1].0, routes[1].1), (100, 199));
    assert_eq!(routes[1].2, ["logic"]);
    assert_eq!(routes[1].3, Policy::LeastLoaded);
    assert_eq!(parsed.node("logic").unwrap().modules, ["echo", "built"]);
    assert_eq!(parsed.storage.table_prefix, "chk_");
    assert_eq!(parsed.storage.flush_interval, Duration::from_secs(3600));
    assert!(
        matches!(&parsed.storage.cache, CacheSpec::Embedded { owner, .. } if owner == "logic"),
        "{:?}",
        parsed.storage.cache
    );
    assert_eq!(parsed.state_dir, root().join(".firefly/elsewhere"));
}

#[test]
fn a_nats_topology_with_copies_is_read_back() {
    let parsed = parse(
        &Topology::new("natscheck")
            .nats("nats://127.0.0.1:4222")
            .module("echo")
            .node("gate", |n| n.tcp(free_addr()).route("1", &["game"]))
            .node("game", |n| n.modules(&["echo"]).copies("any")),
    );
    let firefly::config::Transport::Nats(nats) = &parsed.transport else {
        panic!("{:?}", parsed.transport);
    };
    assert_eq!(nats.servers, ["nats://127.0.0.1:4222"]);
    assert!(parsed.node("game").unwrap().copies);
    assert!(parsed.node("gate").unwrap().rpc.is_none());
}

#[test]
fn the_gated_cluster_routes_both_gates_to_every_logic_node() {
    let dir = tempfile::tempdir().unwrap();
    let gated = Gated {
        cluster: "gatedcheck",
        modules: &["echo"],
        logic: &["l1", "l2"],
        players: &[("1", Some("round_robin"))],
        ops: &[("500-507", None)],
        redis: Some("redis://127.0.0.1:6379"),
        table_prefix: Some("gc_".into()),
    };
    let parsed = parse(&gated.topology(dir.path()));
    for (gate, policy) in [("gate", Policy::RoundRobin), ("ops", Policy::Sticky)] {
        let node = parsed.node(gate).unwrap();
        assert_eq!(node.routes[0].to, ["l1", "l2"], "{gate}");
        assert_eq!(node.routes[0].policy, policy, "{gate}");
        assert_eq!(node.listen[0].addr.port(), 0);
    }
    assert_eq!(parsed.node("l2").unwrap().modules, ["echo"]);
    assert!(matches!(parsed.storage.cache, CacheSpec::Redis(_)));
    assert_eq!(parsed.master.rpc_timeout, Duration::from_secs(5));
}
