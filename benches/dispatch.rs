//! Dispatch path: host → guest → host, in one process, no sockets.
//!
//! What it isolates: the cost Firefly adds around a wasm call — taking a warm instance from
//! the pool, resetting per-call state, `call_async` with epoch interruption, copying the
//! payload in (`input_read`) and the reply out (`output_write`), MessagePack in the guest —
//! against the baseline of a bare wasmtime `call_async` into the same module on a prepared
//! instance (plain engine, no pool, no limits), measured in the same run. The batch case serves
//! 16 pipelined requests with one entry into the guest (`__firefly_dispatch_batch`) and reports
//! the time per request.
//!
//! Run: `cargo bench --bench dispatch`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use firefly::engine::{Batch, Lease, Runtime};
use firefly::sessions::Sessions;
use firefly_abi::{DispatchKind, EXPORT_DISPATCH};
use firefly_testkit::{module_wasm, test_limits};
use wasmtime::{Config, Engine, FuncType, Linker, Module, Store, Val, ValType};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let echo_wasm = std::fs::read(module_wasm("echo")).expect("echo.wasm");
    let lobby_wasm = std::fs::read(module_wasm("lobby")).expect("lobby.wasm");

    // Baseline: bare wasmtime, same module, a dispatch that does no work (an unknown id), its
    // imports stubbed as no-ops.
    let engine = Engine::new(&Config::new()).expect("engine");
    let module = Module::new(&engine, &echo_wasm).expect("module");
    let mut linker: Linker<()> = Linker::new(&engine);
    // Firefly's imports as typed no-ops (the SDK always reads its input, even when empty);
    // WASI is never reached on this path. The bare cost of entering and leaving wasm.
    for sig in firefly_abi::IMPORTS {
        use firefly_abi::ValKind::{I32, I64};
        let m = firefly_abi::IMPORT_MODULE;
        let defined = match (sig.params, sig.results) {
            ([I32, I32], []) => linker.func_wrap(m, sig.name, |_: u32, _: u32| {}),
            ([I32, I32, I32], []) => linker.func_wrap(m, sig.name, |_: u32, _: u32, _: u32| {}),
            ([I32, I32, I32, I32], []) => {
                linker.func_wrap(m, sig.name, |_: u32, _: u32, _: u32, _: u32| {})
            }
            ([I64, I32, I32, I32], [I32]) => {
                linker.func_wrap(m, sig.name, |_: u64, _: u32, _: u32, _: u32| 0u32)
            }
            ([], [I64]) => linker.func_wrap(m, sig.name, || 0u64),
            ([I32], []) => linker.func_wrap(m, sig.name, |_: u32| {}),
            ([I32, I32, I32, I32, I32], [I64]) => {
                linker.func_wrap(m, sig.name, |_: u32, _: u32, _: u32, _: u32, _: u32| 0u64)
            }
            ([I32, I32, I32, I32, I32], [I32]) => {
                linker.func_wrap(m, sig.name, |_: u32, _: u32, _: u32, _: u32, _: u32| 0u32)
            }
            // Not reached by the baseline's call: an untyped stub returning zeros will do.
            (params, results) => {
                let ty = |k: &firefly_abi::ValKind| match k {
                    I32 => ValType::I32,
                    I64 => ValType::I64,
                };
                let func_ty = FuncType::new(&engine, params.iter().map(ty), results.iter().map(ty));
                let zeros: Vec<Val> = results
                    .iter()
                    .map(|k| match k {
                        I32 => Val::I32(0),
                        I64 => Val::I64(0),
                    })
                    .collect();
                linker.func_new(m, sig.name, func_ty, move |_, _, out| {
                    out.clone_from_slice(&zeros);
                    Ok(())
                })
            }
        };
        defined.expect("stub import");
    }
    linker
        .define_unknown_imports_as_traps(&module)
        .expect("stub WASI");
    let mut store = Store::new(&engine, ());
    let instance = rt
        .block_on(linker.instantiate_async(&mut store, &module))
        .expect("instance");
    let dispatch = instance
        .get_typed_func::<(u32, u32, u64, u32), u32>(&mut store, EXPORT_DISPATCH)
        .expect("dispatch export");
    let mut group = c.benchmark_group("dispatch");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("baseline/bare_wasmtime_call_async", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let status = dispatch
                        .call_async(&mut store, (0, 999_999, 0, 0))
                        .await
                        .expect("call");
                    std::hint::black_box(status);
                }
                start.elapsed()
            })
        })
    });

    let firefly = Runtime::new(Arc::new(Sessions::new()), None);
    let echo = rt
        .block_on(firefly.load("echo", 1, &echo_wasm, &test_limits()))
        .expect("load echo");
    let lobby = rt
        .block_on(firefly.load("lobby", 1, &lobby_wasm, &test_limits()))
        .expect("load lobby");
    let payload = Bytes::from(vec![7u8; 64]);
    let add = Bytes::from(
        rmp_serde::to_vec_named(&serde_json::json!({"a": 40, "b": 2})).expect("encode"),
    );

    let mut run =
        |name: &str, module: &Arc<firefly::engine::ModuleVersion>, cmd: u32, input: &Bytes| {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut reply = Vec::new();
                        let start = Instant::now();
                        for _ in 0..iters {
                            let out = module
                                .call(DispatchKind::Request, cmd, 1, input.clone(), &mut reply)
                                .await;
                            std::hint::black_box(out);
                        }
                        start.elapsed()
                    })
                })
            });
        };
    run("firefly/unknown_command", &echo, 999_999, &Bytes::new());
    run("firefly/echo_raw_64B", &echo, 1, &payload);
    run("firefly/lobby_msgpack_add", &lobby, 103, &add);

    // Sixteen pipelined echo requests served by one batched entry into the guest, as the gate
    // does for one read holding 16 requests; reported per request.
    const BATCH: u32 = 16;
    group.bench_function("firefly/echo_raw_64B_batch16_per_request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut lease = Lease::new(echo.clone());
                let mut batch = Batch::default();
                let start = Instant::now();
                for _ in 0..iters {
                    batch.clear();
                    for _ in 0..BATCH {
                        batch.push(1, payload.clone());
                    }
                    lease.call_batch(1, &mut batch).await;
                    std::hint::black_box(batch.answers().count());
                }
                start.elapsed() / BATCH
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
