//! A warm instance: a store with its module instantiated, ready for the next call.

use wasmtime::{Instance, Store, TypedFunc};

use super::host::HostState;

/// A warm instance: its store and its dispatch function, ready for the next call.
pub(crate) struct Warm {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: Instance,
    pub(crate) dispatch: TypedFunc<(u32, u32, u64, u32), u32>,
    /// The batch entry, when the module exports one (modules from older SDKs do not).
    pub(crate) batch: Option<TypedFunc<u64, u32>>,
    /// Requests served (a batch counts each of its requests).
    pub(crate) uses: u32,
}
