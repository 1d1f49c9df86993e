// `name` is the only argument.
#[firefly_sdk::module(nmae = "game")]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
