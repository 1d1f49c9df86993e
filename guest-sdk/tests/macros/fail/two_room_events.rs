// A module has one room event handler.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[room_event]
    fn first(_ctx: &mut Ctx, _e: RoomEvent) -> Result<()> {
        Ok(())
    }

    #[room_event]
    fn second(_ctx: &mut Ctx, _e: RoomEvent) -> Result<()> {
        Ok(())
    }
}

fn main() {}
