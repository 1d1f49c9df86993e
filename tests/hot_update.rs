//! Hot update on one node, in process: a connected client sees the new version without
//! reconnecting, rollback is a swap back, and every invalid version is refused with a clear
//! message while the old one keeps serving. (The cluster-wide flow through the master and the
//! CLI is in `server/tests/hot_update_processes.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use firefly::client::Client;
use firefly_testkit::{addr, module_wasm, start_node};

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(module_wasm(name)).unwrap()
}

async fn whoami(client: &mut Client) -> String {
    let reply = client.request(301, b"hi").await.unwrap();
    String::from_utf8(reply.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_gets_the_new_version_and_rolls_back_with_it() {
    let node = start_node(&["echo", "versioned"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    assert_eq!(whoami(&mut client).await, "v1:hi");
    let unknown = client.request(302, b"").await.unwrap_err();
    assert_eq!(unknown.server().unwrap().code, "unknown_command");

    let swapped = node
        .deploy("versioned", 2, Some(&wasm("versioned-v2")))
        .await
        .unwrap();
    assert_eq!((swapped.from, swapped.to, swapped.unchanged), (1, 2, false));
    // Same connection: the new code, and the command it added is routed.
    assert_eq!(whoami(&mut client).await, "v2:hi");
    assert_eq!(&client.request(302, b"").await.unwrap()[..], b"new in v2");
    assert_eq!(node.modules()[1].version, 2);

    // Rollback: version 1 is retained, so no wasm is needed.
    let back = node.deploy("versioned", 1, None).await.unwrap();
    assert_eq!((back.from, back.to), (2, 1));
    assert_eq!(whoami(&mut client).await, "v1:hi");
    let gone = client.request(302, b"").await.unwrap_err();
    assert_eq!(gone.server().unwrap().code, "unknown_command");
    // Deploying what serves already changes nothing.
    let again = node.deploy("versioned", 1, None).await.unwrap();
    assert!(again.unchanged);
    // Other modules were never touched.
    assert_eq!(&client.request(1, b"echo").await.unwrap()[..], b"echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_load_all_succeed_across_swaps() {
    let node = start_node(&["versioned"]).await;
    let (v1, v2) = (wasm("versioned"), wasm("versioned-v2"));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served) = (stop.clone(), served.clone());
        let mut client = Client::connect(addr(&node)).await.unwrap();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = client.request(301, b"x").await.expect("a request failed");
                assert!(reply[..] == b"v1:x"[..] || reply[..] == b"v2:x"[..]);
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for round in 0..20u32 {
        let (version, code) = if round % 2 == 0 { (2, &v2) } else { (1, &v1) };
        node.deploy("versioned", version, Some(code)).await.unwrap();
        // After the deploy returns, a new request runs the new version.
        let mut probe = Client::connect(addr(&node)).await.unwrap();
        assert_eq!(whoami(&mut probe).await, format!("v{version}:hi"));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 0);
}

/// A minimal wasm module, written out byte by byte: `imports` (module, name) are functions of
/// type () -> (); it exports `memory`, a dispatch of the right type returning 0, and a describe
/// whose body is `describe_body` (wasm instructions, `end` appended).
fn handmade(imports: &[(&str, &str)], describe_body: &[u8]) -> Vec<u8> {
    fn section(id: u8, body: Vec<u8>) -> Vec<u8> {
        let mut out = vec![id, body.len() as u8];
        out.extend(body);
        out
    }
    fn name(s: &str) -> Vec<u8> {
        let mut out = vec![s.len() as u8];
        out.extend(s.as_bytes());
        out
    }
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // Types: 0 = () -> (), 1 = (i32, i32, i64, i32) -> i32.
    wasm.extend(section(
        1,
        vec![2, 0x60, 0, 0, 0x60, 4, 0x7f, 0x7f, 0x7e, 0x7f, 1, 0x7f],
    ));
    let mut imp = vec![imports.len() as u8];
    for (m, n) in imports {
        imp.extend(name(m));
        imp.extend(name(n));
        imp.extend([0x00, 0]);
    }
    wasm.extend(section(2, imp));
    wasm.extend(section(3, vec![2, 1, 0]));
    wasm.extend(section(5, vec![1, 0, 1]));
    let base = imports.len() as u8;
    let mut exp = vec![3];
    exp.extend(name("memory"));
    exp.extend([0x02, 0]);
    exp.extend(name("__firefly_dispatch"));
    exp.extend([0x00, base]);
    exp.extend(name("__firefly_describe"));
    exp.extend([0x00, base + 1]);
    wasm.extend(section(7, exp));
    let dispatch = vec![0, 0x41, 0, 0x0b];
    let mut describe = vec![0];
    describe.extend(describe_body);
    describe.push(0x0b);
    let mut code = vec![2, dispatch.len() as u8];
    code.extend(dispatch);
    code.push(describe.len() as u8);
    code.extend(describe);
    wasm.extend(section(10, code));
    wasm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_versions_are_refused_and_the_old_one_keeps_serving() {
    let node = start_node(&["echo", "versioned"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not wasm",
            b"definitely not wasm".to_vec(),
            "not a valid wasm module: ",
        ),
        (
            "unsupported ABI",
            handmade(&[("firefly_v2", "input_read")], &[]),
            "unsupported ABI: module was built for ABI version 2 (imports `firefly_v2::input_read`), this host supports version 1 (`firefly_v1`)",
        ),
        (
            "unknown host function",
            handmade(&[("firefly_v1", "teleport")], &[]),
            "unresolved import: `firefly_v1::teleport` is not provided by this host (is the module built with a newer SDK?)",
        ),
        (
            "foreign import",
            handmade(&[("env", "system")], &[]),
            "unresolved import: `env::system`: modules may import only `firefly_v1` and `wasi_snapshot_preview1`",
        ),
        (
            "describe traps",
            handmade(&[], &[0x00]),
            "module failed to initialise: `__firefly_describe` failed: module trapped: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "another module's code",
            wasm("echo"),
            "the module describes itself as `echo`, not `versioned` (deploy it under its own name)",
        ),
        (
            "commands clash",
            wasm("versioned-clash"),
            "command 1 is already handled by module `echo` on this node",
        ),
    ];
    for (what, code, expected) in cases {
        let err = node
            .deploy("versioned", 2, Some(&code))
            .await
            .expect_err(what)
            .to_string();
        assert!(err.starts_with(expected), "{what}: {err}");
        assert_eq!(whoami(&mut client).await, "v1:hi", "{what}");
        assert_eq!(node.modules()[1].version, 1, "{what}");
    }
    let not_hosted = node.deploy("lobby", 2, Some(&wasm("echo"))).await;
    assert_eq!(
        not_hosted.unwrap_err().to_string(),
        "node `test` does not host module `lobby`"
    );
    assert_eq!(&client.request(1, b"still").await.unwrap()[..], b"still");
}
