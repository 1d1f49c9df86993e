//! The client libraries where games run, each against a real cluster (`firefly up`) started
//! here: the TypeScript client under Node's test runner, the Python client (with a client
//! speaking the original Firefly's framing byte for byte, and the WebSocket conformance checks
//! of an independent client, Python `websockets`), the C# client under Mono, and the browser
//! demo in real headless Chromium.
//!
//! These need Node (with `clients/typescript/node_modules` from `npm ci`), the Python venv
//! `clients/python/.venv` (with `pip install ./clients/python`), Mono (`mcs`, `mono`) and
//! `/usr/bin/chromium`:
//! `./scripts/test` prepares what it can and `.ci/run` installs all of it. The default
//! nextest profile leaves them out (named `…_with_node`, `…_with_python`, `…_with_mono`, `…_in_chromium`,
//! counted as skipped); run without their dependency they fail, saying what is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::topology::Resume;
use common::{Listener, Running, Storage, Topology, Up, free_addr, workspace};

const TOKEN: &str = "clients-admin-token-0123456789";

/// A cluster for the clients: a gate (echo) with six listeners and one logic node (lobby,
/// accounts, the embedded cache over SQLite), described to the client tests as JSON.
struct Cluster {
    _up: Running,
    _dir: tempfile::TempDir,
    json: String,
}

/// Starts the cluster. `page_origin` is allowed on the `origins:` listener besides
/// `http://allowed.example`.
fn cluster(name: &str, page_origin: Option<&str>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, logic_rpc) = (free_addr(), free_addr(), free_addr());
    let (tcp, ws, plain, custom, origins, idle) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let mut allowed = vec!["http://allowed.example".to_owned()];
    allowed.extend(page_origin.map(str::to_owned));
    let resume = || {
        Some(Resume {
            grace: "60s",
            buffer: 64,
        })
    };
    let db = dir.path().join("data.db");
    let topology = Topology::new(name)
        .admin(admin)
        .module("echo")
        .module("lobby")
        .module("accounts")
        .node("gate", |n| {
            n.rpc(gate_rpc)
                .modules(&["echo"])
                .listen(Listener {
                    resume: resume(),
                    ..Listener::tcp(tcp)
                })
                .listen(Listener {
                    resume: resume(),
                    ..Listener::ws(ws)
                })
                .tcp(plain)
                .listen(Listener {
                    magic: Some(vec![78, 37, 38, 48]),
                    protocol_version: Some(9),
                    server_version: Some(0),
                    error_command: Some(4_000_000_000),
                    ..Listener::tcp(custom)
                })
                .listen(Listener {
                    origins: Some(allowed),
                    max_frame: Some("1KiB"),
                    resume: resume(),
                    ..Listener::ws(origins)
                })
                .listen(Listener {
                    idle_timeout: Some("1s"),
                    ..Listener::tcp(idle)
                })
                .route("101-299", &["logic"])
        })
        .node("logic", |n| {
            n.rpc(logic_rpc).modules(&["lobby", "accounts"])
        })
        .storage(Storage {
            database: Some(format!("sqlite://{}", db.display())),
            cache: Some("embedded".into()),
            owner: Some("logic".into()),
            ..Storage::default()
        })
        .write(dir.path());
    let up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env(
            "FIREFLY_CLUSTER_SECRET",
            "clients-cluster-secret-0123456789",
        )
        .tag(name)
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let json = serde_json::json!({
        "tcp": tcp.to_string(),
        "ws": format!("ws://{ws}/"),
        "ws_addr": ws.to_string(),
        "plain_tcp": plain.to_string(),
        "custom_tcp": custom.to_string(),
        "custom": {
            "magic": [78, 37, 38, 48],
            "protocol_version": 9,
            "server_version": 0,
            "error_command": 4_000_000_000u32,
        },
        "origins_ws": format!("ws://{origins}/"),
        "origins_addr": origins.to_string(),
        "origins_max_frame": 1024,
        "idle_tcp": idle.to_string(),
        "idle_timeout_ms": 1000,
    })
    .to_string();
    Cluster {
        _up: up,
        _dir: dir,
        json,
    }
}

/// Runs `command` to completion with the cluster's description in `FIREFLY_TEST_CLUSTER`,
/// its output going to the test's; panics unless it succeeds.
fn run(what: &str, mut command: Command, cluster: &Cluster) {
    command
        .env("FIREFLY_TEST_CLUSTER", &cluster.json)
        .stdin(Stdio::null());
    eprintln!("[{what}] running {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: could not run {command:?}: {e}"));
    assert!(
        status.success(),
        "{what} failed ({status}): see its output above"
    );
}

/// `program`, which must exist: the panic says how to get it.
fn require(program: &Path, how: &str) -> PathBuf {
    assert!(
        program.exists(),
        "{} is missing: {how} (`./scripts/test` and `.ci/run` do)",
        program.display()
    );
    program.to_owned()
}

/// Builds the TypeScript client (`tsc`) so the tests run today's source; its `node_modules`
/// must be installed (`npm ci`).
fn build_typescript() -> PathBuf {
    let dir = workspace().join("clients/typescript");
    let tsc = require(
        &dir.join("node_modules/.bin/tsc"),
        "run `npm ci` in clients/typescript",
    );
    let status = Command::new(tsc)
        .args(["-p", "."])
        .current_dir(&dir)
        .status()
        .expect("node must be installed to build the TypeScript client");
    assert!(status.success(), "tsc failed ({status})");
    dir
}

fn node() -> Command {
    Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
}

#[test]
fn typescript_client_with_node() {
    let dir = build_typescript();
    let cluster = cluster("clients-ts", None);
    let mut command = node();
    command
        .args(["--test", "test/client.test.mjs", "test/sessions.test.mjs"])
        .current_dir(&dir);
    run("node --test (clients/typescript)", command, &cluster);
}

#[test]
fn python_client_with_python() {
    let dir = workspace().join("clients/python");
    let python = require(
        &dir.join(".venv/bin/python"),
        "create clients/python/.venv and `pip install ./clients/python` into it",
    );
    let cluster = cluster("clients-py", None);
    let mut command = Command::new(python);
    // The tests import the package from its source, so they test today's code; the venv
    // holds its installed dependencies.
    command
        .args(["-m", "unittest", "discover", "-v", "-s", "tests"])
        .env("PYTHONPATH", dir.join("src"))
        .current_dir(&dir);
    run("python -m unittest (clients/python)", command, &cluster);
}

/// Builds the C# client and its test runner with Mono's `mcs` (`clients/csharp/Tests~/build.sh`)
/// into `target/<dir>`.
fn build_csharp(dir: &str) -> PathBuf {
    let mcs = Command::new("mcs")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    assert!(
        mcs.is_ok_and(|s| s.success()),
        "Mono's C# compiler `mcs` is missing: install Debian's `mono-complete` (`.ci/run` does)"
    );
    let out = workspace().join("target").join(dir);
    let status = Command::new("bash")
        .arg(workspace().join("clients/csharp/Tests~/build.sh"))
        .arg(&out)
        .status()
        .expect("bash runs clients/csharp/Tests~/build.sh");
    assert!(status.success(), "building the C# client failed ({status})");
    out
}

/// The C# tests in `clients/csharp/Tests~` (each a `Register`ed name in its runner).
const CSHARP_TESTS: usize = 31;

/// A gate in front of `accounts` and `matchmaking`, where the C# runner plays the main README's
/// Unity example; its client address.
fn matchmaking_cluster() -> (Running, tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, logic_rpc, tcp) = (free_addr(), free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"version: 1
cluster: clients-cs-mm
master: {{ admin: "{admin}" }}
modules:
  accounts: {{ crate: "{m}/accounts" }}
  matchmaking: {{ crate: "{m}/matchmaking" }}
nodes:
  gate:
    rpc: "{gate_rpc}"
    listen: [{{ tcp: "{tcp}" }}]
    routes:
      - {{ commands: "201-207", to: logic }}
      - {{ commands: "481-483", to: logic }}
  logic: {{ rpc: "{logic_rpc}", modules: [accounts, matchmaking] }}
storage: {{ database: "sqlite://{db}", cache: embedded, owner: logic }}
"#,
        m = workspace().join("modules").display(),
        db = dir.path().join("data.db").display(),
    );
    let topology = dir.path().join("topology.yaml");
    std::fs::write(&topology, yaml).unwrap();
    let up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env(
            "FIREFLY_CLUSTER_SECRET",
            "clients-cluster-secret-0123456789",
        )
        .tag("clients-cs-mm")
        .ready_on_status(admin, TOKEN, 2)
        .start();
    (up, dir, tcp)
}

/// The main README's Unity example: the ```csharp block after `<!-- unity-example -->`.
fn readme_unity_example() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("<!-- unity-example -->")
        .expect("README.md marks its Unity example with <!-- unity-example -->");
    after
        .split_once("```csharp\n")
        .and_then(|(_, code)| code.split_once("```"))
        .map(|(code, _)| code.to_owned())
        .expect("a ```csharp block follows the marker")
}

/// Compiles `source` with the stub engine types `stub` (`clients/csharp/Tests~/Stubs`) against
/// the library in `out` into `out/<name>`.
fn compile_example(out: &Path, name: &str, source: &Path, stub: &str) -> PathBuf {
    let dll = out.join(name);
    let status = Command::new("mcs")
        .args([
            "-target:library",
            "-langversion:7.2",
            "-warnaserror+",
            "-nologo",
        ])
        .arg(format!("-r:{}", out.join("Firefly.Client.dll").display()))
        .arg(format!("-out:{}", dll.display()))
        .arg(source)
        .arg(workspace().join("clients/csharp/Tests~/Stubs").join(stub))
        .status()
        .expect("mcs runs");
    assert!(
        status.success(),
        "{} does not compile ({status})",
        source.display()
    );
    dll
}

#[test]
fn csharp_client_with_mono() {
    let out = build_csharp("csharp");
    let cluster = cluster("clients-cs", None);
    let (_mm, _mm_dir, mm) = matchmaking_cluster();
    let mut description: serde_json::Value = serde_json::from_str(&cluster.json).unwrap();
    description["matchmaking_tcp"] = mm.to_string().into();
    // The README's example as written, pointed at the matchmaking cluster.
    let example = readme_unity_example();
    let written = "\"127.0.0.1\", 11009";
    assert!(
        example.contains(written),
        "the Unity example connects to {written}"
    );
    let live = out.join("UnityExampleLive.cs");
    std::fs::write(
        &live,
        example.replace(written, &format!("\"{}\", {}", mm.ip(), mm.port())),
    )
    .unwrap();
    let dll = compile_example(&out, "UnityExampleLive.dll", &live, "UnityEngine.cs");
    let mut command = Command::new("mono");
    command
        .arg(out.join("FireflyClientTests.exe"))
        .env("FIREFLY_TEST_CLUSTER", description.to_string())
        .env("FIREFLY_UNITY_EXAMPLE", &dll)
        .env("MONO", "mono")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    eprintln!("[mono] running {command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run mono (install Debian's `mono-complete`): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let counts: Vec<usize> = last
        .strip_suffix(" failed")
        .and_then(|l| l.split_once(" passed, "))
        .map(|(p, f)| vec![p.parse().unwrap(), f.parse().unwrap()])
        .unwrap_or_else(|| {
            panic!("the C# runner's last line is not `N passed, M failed`: {last:?}")
        });
    assert_eq!(
        (counts[0], counts[1]),
        (CSHARP_TESTS, 0),
        "C# tests (passed, failed): see the output above"
    );
    assert!(
        output.status.success(),
        "the C# runner exited {}",
        output.status
    );
}

/// The main README's Unity example and the Godot example compile against the library, with
/// stub engine types (`clients/csharp/Tests~/Stubs`); every file of the Unity package has its
/// `.meta`. (`csharp_client_with_mono` also runs the Unity example against a cluster.)
#[test]
fn csharp_examples_compile_with_mono() {
    let out = build_csharp("csharp-examples");
    let unity = out.join("UnityExample.cs");
    std::fs::write(&unity, readme_unity_example()).unwrap();
    let cs = workspace().join("clients/csharp");
    compile_example(&out, "UnityExample.dll", &unity, "UnityEngine.cs");
    compile_example(
        &out,
        "GodotExample.dll",
        &cs.join("Examples~/Godot/Matchmaker.cs"),
        "Godot.cs",
    );
    let mut missing = Vec::new();
    let mut stack = vec![cs.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Unity skips hidden names and those ending in `~`.
            if name.starts_with('.') || name.ends_with('~') || name.ends_with(".meta") {
                continue;
            }
            if !path.with_file_name(format!("{name}.meta")).exists() {
                missing.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "without a .meta Unity ignores these in a git package (run clients/csharp/Tests~/unity-meta.sh): {missing:?}"
    );
}

#[test]
fn browser_demo_in_chromium() {
    build_typescript();
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    let chromium = require(&chromium, "install Debian's `chromium` package");
    let page: SocketAddr = free_addr();
    let origin = format!("http://{page}");
    let cluster = cluster("clients-browser", Some(&origin));
    let screenshots = workspace().join("target/browser-demo");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut command = node();
    command
        .args(["--test", "test/demo.test.mjs"])
        .env("CHROMIUM", chromium)
        .env("DEMO_ADDR", page.to_string())
        .env("SCREENSHOT_DIR", &screenshots)
        .current_dir(workspace().join("clients/browser-demo"));
    run("node --test (clients/browser-demo)", command, &cluster);
    assert!(
        screenshots.join("demo.png").exists(),
        "the browser test wrote no screenshot"
    );
}
