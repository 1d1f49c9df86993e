// A room tick handler takes the context and the tick.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[room_tick]
    fn tick(_ctx: &mut Ctx) -> Result<Option<u32>> {
        Ok(None)
    }
}

fn main() {}
