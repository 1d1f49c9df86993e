// One tag, one timer handler.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[timer("respawn")]
    fn first(_ctx: &mut Ctx, _fired: Fired<String>) -> Result<()> {
        Ok(())
    }

    #[timer("respawn")]
    fn second(_ctx: &mut Ctx, _fired: Fired<String>) -> Result<()> {
        Ok(())
    }
}

fn main() {}
