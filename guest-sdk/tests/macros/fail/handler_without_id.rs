// A handler names its command id.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler]
    fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
