// A handler returns a `Result`: its reply, or the error the client gets.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    fn echo(_ctx: &mut Ctx, _payload: Raw) {}
}

fn main() {}
