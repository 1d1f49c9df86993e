//! `versioned`, an invalid version: it also claims command 1, which `echo` handles on the same
//! nodes. The tests deploy it to prove the clash is refused and the old version keeps serving.

#[firefly_sdk::module(name = "versioned")]
mod versioned {
    use firefly_sdk::prelude::*;

    /// Command 301, as before.
    #[handler(301)]
    fn whoami(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }

    /// Command 1: already `echo`'s.
    #[handler(1)]
    fn steals(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}
