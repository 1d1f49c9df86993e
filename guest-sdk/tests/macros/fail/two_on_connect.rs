// One function per session event.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[on_connect]
    fn first(_ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }

    #[on_connect]
    fn second(_ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {}
