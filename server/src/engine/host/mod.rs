//! The host side of the ABI: the state each instance carries ([`state`]) and the `firefly_v1`
//! functions, one file per family: request input and output, logging, time and randomness
//! ([`io`]); node calls ([`calls`]); pushes, broadcasts and session operations ([`sessions`]);
//! cached database objects ([`data`]); batched dispatch ([`batch`]); timers ([`timers`]); rooms ([`rooms`]).
//!
//! Every function here is listed in `firefly_abi::IMPORTS`; `tests::linker_matches_abi_table`
//! checks the linker against that table so the two can never drift apart.

mod batch;
mod calls;
mod data;
mod io;
mod rooms;
mod sessions;
mod state;
mod timers;

use wasmtime::Linker;

pub(crate) use state::{CallState, HostState, MemoryLimiter, ModuleEnv};

/// Defines WASI preview 1 and every `firefly_v1` function in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |s: &mut HostState| &mut s.wasi)?;
    io::add_to_linker(linker)?;
    calls::add_to_linker(linker)?;
    sessions::add_to_linker(linker)?;
    data::add_to_linker(linker)?;
    batch::add_to_linker(linker)?;
    timers::add_to_linker(linker)?;
    rooms::add_to_linker(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::clock::CoarseClock;
    use crate::sessions::Sessions;
    use firefly_abi::IMPORT_MODULE;
    use firefly_abi::{IMPORTS, ValKind};
    use wasmtime::{Config, Engine, ExternType, ValType};

    fn kind(v: &ValType) -> ValKind {
        match v {
            ValType::I32 => ValKind::I32,
            ValType::I64 => ValKind::I64,
            other => panic!("unexpected ABI value type {other:?}"),
        }
    }

    #[test]
    fn linker_matches_abi_table() {
        let engine = Engine::new(&Config::new()).unwrap();
        let mut linker = Linker::<HostState>::new(&engine);
        add_to_linker(&mut linker).unwrap();
        let name: Arc<str> = Arc::from("abi-check");
        let state = HostState {
            wasi: crate::engine::wasi::context(&name, 1),
            limiter: MemoryLimiter {
                max_memory: 1 << 20,
                hit: false,
            },
            call: CallState::default(),
            memory: None,
            cpu_ticks: 0,
            cpu_budget: 1,
            deadline_ms: 0,
            wall_timeout: false,
            batch: Default::default(),
            env: Arc::new(ModuleEnv {
                name,
                version: 1,
                sessions: Arc::new(Sessions::new()),
                calls: None,
                clock: Arc::new(CoarseClock::new_for_tests()),
                data: None,
                timers: None,
                timer_cap: 0,
                rooms: None,
            }),
        };
        let mut store = wasmtime::Store::new(&engine, state);
        let mut defined = Vec::new();
        let items: Vec<_> = linker
            .iter(&mut store)
            .map(|(module, name, item)| (module.to_owned(), name.to_owned(), item))
            .collect();
        for (module, name, item) in items {
            if module != IMPORT_MODULE {
                continue;
            }
            let ExternType::Func(ty) = item.ty(&store) else {
                panic!("{name} is not a function");
            };
            let name = name.as_str();
            let sig = firefly_abi::import(name)
                .unwrap_or_else(|| panic!("host defines {name}, which the ABI table lacks"));
            let params: Vec<_> = ty.params().map(|p| kind(&p)).collect();
            let results: Vec<_> = ty.results().map(|p| kind(&p)).collect();
            assert_eq!(params, sig.params, "params of {name}");
            assert_eq!(results, sig.results, "results of {name}");
            defined.push(name.to_owned());
        }
        for sig in IMPORTS {
            assert!(
                defined.iter().any(|d| d == sig.name),
                "host lacks {}",
                sig.name
            );
        }
    }
}
