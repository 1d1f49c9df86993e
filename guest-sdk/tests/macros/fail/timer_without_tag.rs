// A timer handler names its tag.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[timer]
    fn respawn(_ctx: &mut Ctx, _fired: Fired<String>) -> Result<()> {
        Ok(())
    }
}

fn main() {}
