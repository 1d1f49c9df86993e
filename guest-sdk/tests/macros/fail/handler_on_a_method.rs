// Handlers are functions of the module itself; one inside an `impl` would never be called.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    pub struct Game;

    impl Game {
        #[handler(1)]
        fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
            Ok(payload)
        }
    }

    #[handler(2)]
    fn ping(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
