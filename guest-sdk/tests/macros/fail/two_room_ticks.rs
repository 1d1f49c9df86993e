// A module has one room tick.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[room_tick]
    fn first(_ctx: &mut Ctx, t: Tick<u32>) -> Result<Option<u32>> {
        Ok(Some(t.state))
    }

    #[room_tick]
    fn second(_ctx: &mut Ctx, t: Tick<u32>) -> Result<Option<u32>> {
        Ok(Some(t.state))
    }
}

fn main() {}
