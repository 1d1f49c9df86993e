//! `versioned`, a broken version: it loads and describes itself fine, but command 301 panics.
//! The tests deploy it to prove the automatic rollback on a trap rate.

#[firefly_sdk::module(name = "versioned")]
mod versioned {
    use std::hint::black_box;

    use firefly_sdk::prelude::*;

    /// Command 301: panics.
    #[handler(301)]
    fn whoami(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        if black_box(true) {
            panic!("this version is broken");
        }
        Ok(payload)
    }
}
