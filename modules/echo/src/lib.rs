//! `echo`: command 1 returns its payload unchanged — what the original Firefly's test client
//! sends. Always deployed.

#[firefly_sdk::module]
mod echo {
    use firefly_sdk::prelude::*;

    /// Command 1: the payload, unchanged.
    #[handler(1)]
    fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}
