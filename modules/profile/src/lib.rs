//! `profile`, version 1: a cached object across hot updates (tests). Version 2
//! (`modules/profile-v2`) adds an optional field; this version must keep reading and writing
//! the objects version 2 wrote, after a rollback.

#[firefly_sdk::module]
mod profile {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A player's profile as version 1 knows it.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "profiles")]
    pub struct Profile {
        #[primary_key]
        pub id: u64,
        pub name: String,
    }

    /// Command 401: create or rename a profile; replies with its version.
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

    /// Command 402: a profile, as version 1 sees it.
    #[handler(402)]
    fn load(ctx: &mut Ctx, id: u64) -> Result<Option<Profile>> {
        Ok(ctx.get::<Profile>(id)?.map(|v| v.value))
    }
}
