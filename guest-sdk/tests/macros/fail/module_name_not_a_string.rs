// The module's name is a string literal.
#[firefly_sdk::module(name = game)]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
