//! `versioned`: the hot-update test module, version 1. Command 301 answers `v1:<payload>`, so
//! a client sees which code served it. `versioned-v2`, `versioned-trap` and `versioned-clash`
//! are later "versions" of the same module (same name), deployed over it by the tests.

#[firefly_sdk::module]
mod versioned {
    use firefly_sdk::prelude::*;

    /// Which code this is; what a client sees change after a deploy.
    const VERSION: &str = "v1";

    /// Command 301: `v1:` then the payload.
    #[handler(301)]
    fn whoami(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        let mut reply = format!("{VERSION}:").into_bytes();
        reply.extend_from_slice(&payload.0);
        Ok(Raw(reply))
    }
}
