//! A module describing its types for typed clients: `#[derive(Schema)]` on its payloads, a
//! handler whose types do not describe themselves (described as any value), and push topics
//! declared with `#[push(..)]`, named by default and by hand.

#[firefly_sdk::module]
mod typed {
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Topic of the greeting push.
    #[push(Greeting)]
    pub const TOPIC_GREETING: u32 = 900;

    #[push(Greeting, name = "farewell")]
    pub const BYE: u32 = 901;

    #[derive(Deserialize, Schema)]
    pub struct Hello {
        pub name: String,
        #[serde(default)]
        pub times: Option<u32>,
    }

    #[derive(Serialize, Schema)]
    #[serde(rename_all = "camelCase")]
    pub struct Greeting {
        pub greeting_text: String,
    }

    #[derive(Deserialize)]
    pub struct Untyped {
        pub anything: u8,
    }

    #[handler(101)]
    fn hello(_ctx: &mut Ctx, req: Hello) -> Result<Greeting> {
        Ok(Greeting {
            greeting_text: format!("Hello, {}!", req.name),
        })
    }

    #[handler(102)]
    fn untyped(_ctx: &mut Ctx, _req: Untyped) -> firefly_sdk::Result<Vec<u64>> {
        Ok(Vec::new())
    }

    #[handler(103)]
    fn nothing(_ctx: &mut Ctx, _req: ()) -> Result<()> {
        Ok(())
    }
}

fn main() {}
