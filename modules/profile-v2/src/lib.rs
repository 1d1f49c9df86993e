//! `profile`, version 2 (a separate crate so tests can hold both builds): adds the optional
//! `title` field to version 1's table and command 403 to set it.

#[firefly_sdk::module(name = "profile")]
mod profile {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A player's profile, version 2: `title` is new, so objects version 1 wrote read as
    /// `None`.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "profiles")]
    pub struct Profile {
        #[primary_key]
        pub id: u64,
        pub name: String,
        pub title: Option<String>,
    }

    /// Command 401: create or rename a profile (keeping its title); replies with its version.
    #[handler(401)]
    fn save(ctx: &mut Ctx, p: Profile) -> Result<u64> {
        if ctx.get::<Profile>(p.id)?.is_none() {
            return Ok(ctx.insert(&p)?);
        }
        let name = p.name.clone();
        Ok(ctx
            .modify::<Profile>(p.id, |stored| {
                stored.name = name.clone();
                Ok(())
            })?
            .version)
    }

    /// Command 402: a profile, as version 2 sees it.
    #[handler(402)]
    fn load(ctx: &mut Ctx, id: u64) -> Result<Option<Profile>> {
        Ok(ctx.get::<Profile>(id)?.map(|v| v.value))
    }

    /// The request of command 403.
    #[derive(Deserialize)]
    pub struct SetTitle {
        pub id: u64,
        pub title: String,
    }

    /// Command 403 (new in version 2): give a profile a title.
    #[handler(403)]
    fn set_title(ctx: &mut Ctx, req: SetTitle) -> Result<()> {
        ctx.modify::<Profile>(req.id, |stored| {
            stored.title = Some(req.title.clone());
            Ok(())
        })?;
        Ok(())
    }
}
