//! `ticker` generation 2: the same module (it is named `ticker` too), recording generation 2
//! in every firing, so tests can tell which version a firing ran on after a hot update.

/// Which build this is.
const GENERATION: u32 = 2;

include!("../../ticker/src/module.rs");
