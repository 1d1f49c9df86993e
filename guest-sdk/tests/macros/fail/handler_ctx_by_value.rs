// The context is borrowed, `&mut Ctx`, not taken by value.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    fn echo(_ctx: Ctx, payload: Raw) -> Raw {
        payload
    }
}

fn main() {}
