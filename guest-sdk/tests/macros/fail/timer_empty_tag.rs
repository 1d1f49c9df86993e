// A timer tag is 1 to 64 bytes.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[timer("")]
    fn respawn(_ctx: &mut Ctx, _fired: Fired<String>) -> Result<()> {
        Ok(())
    }
}

fn main() {}
