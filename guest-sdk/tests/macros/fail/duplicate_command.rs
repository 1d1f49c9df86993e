// One command, one handler.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(101)]
    fn first(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }

    #[handler(101)]
    fn second(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
