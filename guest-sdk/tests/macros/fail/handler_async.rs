// A handler runs to completion inside one call: it is not `async`.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    async fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
