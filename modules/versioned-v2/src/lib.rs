//! `versioned`, version 2 (a separate crate so the tests can hold both builds at once): 301
//! answers `v2:<payload>`, and the new command 302 exists only in this version.

#[firefly_sdk::module(name = "versioned")]
mod versioned {
    use firefly_sdk::prelude::*;

    /// Which code this is; what a client sees change after a deploy.
    const VERSION: &str = "v2";

    /// Command 301: `v2:` then the payload.
    #[handler(301)]
    fn whoami(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        let mut reply = format!("{VERSION}:").into_bytes();
        reply.extend_from_slice(&payload.0);
        Ok(Raw(reply))
    }

    /// Command 302: added in version 2.
    #[handler(302)]
    fn added(_ctx: &mut Ctx, _payload: Raw) -> Result<Raw> {
        Ok(Raw(b"new in v2".to_vec()))
    }
}
