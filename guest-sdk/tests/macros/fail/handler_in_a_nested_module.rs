// Handlers are functions of the module itself; one in a nested module would never be called.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(2)]
    fn ping(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }

    mod more {
        use firefly_sdk::prelude::*;

        #[handler(1)]
        fn echo(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
            Ok(payload)
        }
    }
}

fn main() {}
