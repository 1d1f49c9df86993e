// Two push topics cannot share a name (the typed client's subscription).
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[push(String)]
    pub const TOPIC_NEWS: u32 = 900;

    #[push(String, name = "news")]
    pub const MORE_NEWS: u32 = 901;

    #[handler(101)]
    fn hello(_ctx: &mut Ctx, _req: ()) -> Result<()> {
        Ok(())
    }
}

fn main() {}
