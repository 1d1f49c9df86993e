// Command ids are u32.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(4294967296)]
    fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
