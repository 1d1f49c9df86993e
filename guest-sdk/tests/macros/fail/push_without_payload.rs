// A push topic names its payload type.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[push]
    pub const TOPIC_NEWS: u32 = 900;

    #[handler(101)]
    fn hello(_ctx: &mut Ctx, _req: ()) -> Result<()> {
        Ok(())
    }
}

fn main() {}
