//! `firefly client-gen` on the ready modules `chat` and `leaderboard`: generate, compile, call.
//!
//! * TypeScript: the generated `chat.ts` and `leaderboard.ts` and `clients/typescript/test/
//!   typed.test.ts` are compiled with tsc (whose `@ts-expect-error` lines prove wrong payloads
//!   are refused) and run under `node --test` against a real cluster (`firefly up`: accounts,
//!   chat and leaderboard).
//! * Python: the generated modules and `clients/python/tests/typed_clients.py` are checked with
//!   mypy `--strict` (and a wrong payload must fail it), then run against a cluster.
//! * C#: the generated code, the C# client's sources (`clients/csharp/Runtime`, or the folder
//!   `FIREFLY_CSHARP_CLIENT` names) and `server/tests/typed_clients/Typed.cs` compile with
//!   Mono's `mcs` (warnings are errors), and `mono` runs that against a cluster.
//!
//! They need what `server/tests/clients.rs` needs (Node with `clients/typescript/node_modules`,
//! the venv `clients/python/.venv`, with mypy) and Mono; named `…_with_node`, `…_with_python`
//! and `…_with_mono`, they are left out of the default nextest profile and fail, saying what is
//! missing, when run without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{Running, Storage, Topology, Up, firefly, free_addr, workspace};

const TOKEN: &str = "typed-clients-admin-token-0123456789";

/// A cluster with `accounts`, `chat` and `leaderboard` on one logic node behind a gate whose
/// TCP listener routes all their commands (a back-office gate: leaderboard's 500 included).
struct Cluster {
    _up: Running,
    _dir: tempfile::TempDir,
    json: String,
}

fn cluster(name: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (admin, gate_rpc, logic_rpc, tcp) = (free_addr(), free_addr(), free_addr(), free_addr());
    let topology = Topology::new(name)
        .admin(admin)
        .module("accounts")
        .module("chat")
        .module("leaderboard")
        .node("gate", |n| {
            n.rpc(gate_rpc).tcp(tcp).route("200-599", &["logic"])
        })
        .node("logic", |n| {
            n.rpc(logic_rpc)
                .modules(&["accounts", "chat", "leaderboard"])
        })
        .storage(Storage::embedded_sqlite(
            &dir.path().join("data.db"),
            "logic",
        ))
        .write(dir.path());
    let up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "typed-cluster-secret-0123456789")
        .tag(name)
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let json = serde_json::json!({ "tcp": tcp.to_string() }).to_string();
    Cluster {
        _up: up,
        _dir: dir,
        json,
    }
}

/// `firefly client-gen --lang <lang> modules/<module> -o <out>`.
fn client_gen(lang: &str, module: &str, out: &Path) {
    let status = firefly()
        .args(["client-gen", "--lang", lang])
        .arg(workspace().join("modules").join(module))
        .arg("-o")
        .arg(out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "client-gen {lang} {module} failed ({status})"
    );
    assert!(out.exists(), "client-gen wrote no {}", out.display());
}

/// Runs `command` to completion (its output going to the test's); panics unless it succeeds.
fn run(what: &str, command: &mut Command) {
    command.stdin(Stdio::null());
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

#[test]
fn typescript_typed_clients_with_node() {
    let ts = workspace().join("clients/typescript");
    let tsc = require(
        &ts.join("node_modules/.bin/tsc"),
        "run `npm ci` in clients/typescript",
    );
    // The client itself, built from today's source (the generated code imports its dist/).
    run(
        "tsc (clients/typescript)",
        Command::new(&tsc).args(["-p", "."]).current_dir(&ts),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    client_gen("ts", "chat", &src.join("chat.ts"));
    client_gen("ts", "leaderboard", &src.join("leaderboard.ts"));
    // A TypeScript module describes itself too (`handle(id, fn, { request, reply })`,
    // `pushTopic`): its typed client compiles, and refuses a wrong payload.
    client_gen("ts", "tour-ts", &src.join("tour.ts"));
    std::fs::write(
        src.join("tour_check.ts"),
        r#"import type { FireflyClient } from "@firefly-rs/client";
import { TOUR_TS_PUSHES, TourTsClient, type Reminder } from "./tour.js";
export async function tour(client: FireflyClient): Promise<number | bigint> {
  const tour = new TourTsClient(client);
  const { id } = await tour.register({ name: "ada", guild: "red" });
  // @ts-expect-error: a name is a string
  await tour.register({ name: 3 });
  const reminder: Reminder = { text: "x", firing: 1, repeats: false };
  void reminder;
  void TOUR_TS_PUSHES.welcome;
  return (await tour.addPoints({ id, points: 5 })).score;
}
"#,
    )
    .unwrap();
    std::fs::copy(ts.join("test/typed.test.ts"), src.join("typed.test.ts")).unwrap();
    // `@firefly-rs/client` resolves to clients/typescript, for tsc and for node.
    std::fs::create_dir_all(dir.path().join("node_modules/@firefly-rs")).unwrap();
    std::os::unix::fs::symlink(&ts, dir.path().join("node_modules/@firefly-rs/client")).unwrap();
    let tsconfig = serde_json::json!({
        "compilerOptions": {
            "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext",
            "strict": true, "noUnusedLocals": true, "outDir": "dist", "rootDir": "src",
            "skipLibCheck": true, "types": ["node"],
            "typeRoots": [ts.join("node_modules/@types")],
        },
        "include": ["src"],
    });
    std::fs::write(dir.path().join("tsconfig.json"), tsconfig.to_string()).unwrap();
    std::fs::write(dir.path().join("package.json"), r#"{"type": "module"}"#).unwrap();
    run(
        "tsc (generated clients)",
        Command::new(&tsc).args(["-p", "."]).current_dir(dir.path()),
    );
    let cluster = cluster("typed-ts");
    run(
        "node --test (typed clients)",
        Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
            .args(["--test", "dist/typed.test.js"])
            .env("FIREFLY_TEST_CLUSTER", &cluster.json)
            .current_dir(dir.path()),
    );
}

/// mypy's flags: strict on the generated code and the test, silent on the client library's
/// own modules (which are not written for `--strict`).
const MYPY: [&str; 3] = ["--strict", "--follow-imports=silent", "--no-incremental"];

#[test]
fn python_typed_clients_with_python() {
    let py = workspace().join("clients/python");
    let python = require(
        &py.join(".venv/bin/python"),
        "create clients/python/.venv and `pip install ./clients/python` into it",
    );
    let mypy = require(
        &py.join(".venv/bin/mypy"),
        "`pip install mypy` into clients/python/.venv",
    );
    let dir = tempfile::tempdir().unwrap();
    client_gen("py", "chat", &dir.path().join("chat.py"));
    client_gen("py", "leaderboard", &dir.path().join("leaderboard.py"));
    let test = py.join("tests/typed_clients.py");
    let path = std::env::join_paths([py.join("src"), dir.path().to_owned()]).unwrap();
    run(
        "mypy --strict (generated clients)",
        Command::new(&mypy)
            .args(MYPY)
            .args([
                dir.path().join("chat.py"),
                dir.path().join("leaderboard.py"),
                test.clone(),
            ])
            .env("MYPYPATH", &path)
            .current_dir(dir.path()),
    );
    // A wrong payload must not pass.
    let wrong = dir.path().join("wrong.py");
    std::fs::write(
        &wrong,
        "from chat import ChatClient\n\n\nasync def f(chat: ChatClient) -> None:\n    await chat.say({\"channel\": \"general\", \"text\": 5})\n",
    )
    .unwrap();
    let out = Command::new(&mypy)
        .args(MYPY)
        .arg(&wrong)
        .env("MYPYPATH", &path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("\"text\""),
        "mypy accepted a wrong payload: {said}"
    );
    let cluster = cluster("typed-py");
    run(
        "python typed_clients.py",
        Command::new(python)
            .arg(&test)
            .env("PYTHONPATH", &path)
            .env("FIREFLY_TEST_CLUSTER", &cluster.json)
            .current_dir(dir.path()),
    );
}

#[test]
fn csharp_typed_clients_with_mono() {
    let runtime = std::env::var_os("FIREFLY_CSHARP_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("clients/csharp"))
        .join("Runtime");
    let runtime = require(&runtime, "the C# client's sources (clients/csharp/Runtime)");
    let dir = tempfile::tempdir().unwrap();
    client_gen("cs", "chat", &dir.path().join("Chat.cs"));
    client_gen("cs", "leaderboard", &dir.path().join("Leaderboard.cs"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&runtime)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cs"))
        .collect();
    sources.sort();
    let program = dir.path().join("Typed.cs");
    std::fs::copy(
        workspace().join("server/tests/typed_clients/Typed.cs"),
        &program,
    )
    .unwrap();
    let exe = dir.path().join("typed.exe");
    run(
        "mcs (generated clients)",
        Command::new(std::env::var_os("MCS").unwrap_or_else(|| "mcs".into()))
            .args(["-target:exe", "-warnaserror+", "-nowarn:1591"])
            .arg(format!("-out:{}", exe.display()))
            .args(&sources)
            .args([
                dir.path().join("Chat.cs"),
                dir.path().join("Leaderboard.cs"),
                workspace().join("clients/csharp/Tests~/ProcessExit.cs"),
                program,
            ]),
    );
    let cluster = cluster("typed-cs");
    run(
        "mono typed.exe",
        Command::new(std::env::var_os("MONO").unwrap_or_else(|| "mono".into()))
            .arg(&exe)
            .env("FIREFLY_TEST_CLUSTER", &cluster.json),
    );
}

#[test]
fn client_gen_writes_to_stdout_and_refuses_what_it_cannot_read() {
    let out = firefly()
        .args(["client-gen", "--lang", "py"])
        .arg(workspace().join("modules/chat"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap();
    assert!(code.contains("class ChatClient:"), "{code}");
    assert!(code.contains("def on_channel_message(self"), "{code}");

    let refused = |module: &Path, expected: &str| {
        let out = firefly()
            .args(["client-gen", "--lang", "ts"])
            .arg(module)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains(expected), "{said}");
    };
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.wasm");
    std::fs::write(&bare, b"\0asm\x01\0\0\0").unwrap();
    refused(&bare, "has no `firefly.schema` section");
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, b"not wasm at all").unwrap();
    refused(&text, "not a WebAssembly module");
}
