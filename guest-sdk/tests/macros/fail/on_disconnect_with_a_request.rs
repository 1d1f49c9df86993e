// A session event handler takes only the context.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[on_disconnect]
    fn left(_ctx: &mut Ctx, payload: Raw) -> Result<()> {
        let _ = payload;
        Ok(())
    }
}

fn main() {}
