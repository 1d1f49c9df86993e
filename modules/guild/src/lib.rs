//! `guild`: create a guild, join it by request or invitation, roles (leader, officer, member),
//! leave, kick, disband. Commands 380-391, pushes on topic 395 (see `docs/modules.md`).
//!
//! Players are the user ids bound to their sessions (`accounts` login). State lives in cached
//! objects only: `guilds` (members with their roles, pending requests and invitations, each
//! capped), `guild_names` (a name → its guild, so a name is claimed atomically by its insert)
//! and `guild_members` (a user → their guild, so a user is in one guild at most, claimed the
//! same way).

#[firefly_sdk::module]
mod guild {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use gameplay_common::{
        Done, UserReq, add_bounded, caller, check_name, check_user, delete_if_there, remove,
    };
    use serde::{Deserialize, Serialize};

    /// Members of one guild.
    pub const MAX_MEMBERS: usize = 50;
    /// Pending join requests of one guild, and (separately) pending invitations.
    pub const MAX_PENDING: usize = 50;
    /// Guild name length, in characters.
    pub const NAME_LEN: std::ops::RangeInclusive<usize> = 3..=24;

    /// Topic of the pushes about a guild: to its members (joined, left, kicked, role,
    /// disbanded, request) and to a user invited or kicked.
    pub const TOPIC_EVENT: u32 = 395;

    /// A member's role; each one may do what the ones before it may.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        /// Plays in the guild.
        Member,
        /// Also answers join requests, invites and kicks members.
        Officer,
        /// One per guild: also sets roles, hands over the lead and disbands.
        Leader,
    }

    /// A member and their role.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Member {
        pub user: String,
        pub role: Role,
    }

    /// A guild.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "guilds")]
    pub struct Guild {
        #[primary_key]
        pub id: u64,
        pub name: String,
        pub members: Vec<Member>,
        /// Users who asked to join.
        pub requests: Vec<String>,
        /// Users invited to join.
        pub invites: Vec<String>,
        pub created_micros: u64,
    }

    impl Guild {
        fn role_of(&self, user: &str) -> Option<Role> {
            self.members.iter().find(|m| m.user == user).map(|m| m.role)
        }

        /// `user`'s role if it is at least `needed`.
        fn require(&self, user: &str, needed: Role) -> Result<Role> {
            match self.role_of(user) {
                Some(role) if role >= needed => Ok(role),
                Some(_) => bail!(
                    "not_allowed",
                    "this needs the {needed:?} role in `{}`",
                    self.name
                ),
                None => bail!("not_in_guild", "you are not in `{}`", self.name),
            }
        }
    }

    /// A claimed guild name (lowercase) → its guild.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "guild_names")]
    pub struct GuildName {
        #[primary_key]
        pub name: String,
        pub guild: u64,
    }

    /// A user → the guild they are in.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "guild_members")]
    pub struct Membership {
        #[primary_key]
        pub user: String,
        pub guild: u64,
    }

    /// Reply of most commands: a guild as its members see it (requests and invitations are
    /// shown to officers and the leader only).
    #[derive(Serialize)]
    pub struct View {
        pub id: u64,
        pub name: String,
        pub members: Vec<Member>,
        pub requests: Vec<String>,
        pub invites: Vec<String>,
    }

    /// What members (and invited or kicked users) are pushed on topic 395.
    #[derive(Serialize)]
    pub struct Event {
        pub guild: u64,
        pub name: String,
        /// `joined`, `left`, `kicked`, `role`, `disbanded`, `request` or `invited`.
        pub kind: &'static str,
        /// Whom it is about.
        pub user: String,
        /// Who did it, when someone else did.
        pub by: Option<String>,
        /// The new role (`role` events).
        pub role: Option<Role>,
    }

    impl Event {
        /// An event of `guild` about `user`, with their role in it now.
        fn new(guild: &Guild, kind: &'static str, user: &str, by: Option<&str>) -> Event {
            Event {
                guild: guild.id,
                name: guild.name.clone(),
                kind,
                user: user.to_owned(),
                by: by.map(str::to_owned),
                role: guild.role_of(user),
            }
        }
    }

    fn view(guild: Guild, viewer: &str) -> View {
        let staff = guild.role_of(viewer).is_some_and(|r| r >= Role::Officer);
        View {
            id: guild.id,
            name: guild.name,
            members: guild.members,
            requests: if staff { guild.requests } else { Vec::new() },
            invites: if staff { guild.invites } else { Vec::new() },
        }
    }

    fn guild(ctx: &Ctx, id: u64) -> Result<Versioned<Guild>> {
        match ctx.get::<Guild>(id)? {
            Some(g) => Ok(g),
            None => bail!("no_such_guild", "there is no guild {id}"),
        }
    }

    /// The guild the caller is in.
    fn my_guild(ctx: &Ctx, me: &str) -> Result<Versioned<Guild>> {
        match ctx.get::<Membership>(me)? {
            Some(m) => guild(ctx, m.guild),
            None => bail!("not_in_guild", "you are not in a guild"),
        }
    }

    /// Changes guild `id` (re-read on conflicts); `no_such_guild` once it is gone.
    fn change(ctx: &Ctx, id: u64, f: impl FnMut(&mut Guild) -> Result<()>) -> Result<Guild> {
        ctx.modify::<Guild>(id, f)
            .map(|g| g.value)
            .map_err(|e| match e.code.as_str() {
                "not_found" => Error::new("no_such_guild", format!("there is no guild {id}")),
                _ => e,
            })
    }

    /// Pushes `kind` about `user` to every member of `guild` and to `also`.
    fn tell(
        ctx: &Ctx,
        guild: &Guild,
        kind: &'static str,
        user: &str,
        by: Option<&str>,
        also: Option<&str>,
    ) -> Result<()> {
        let event = Event::new(guild, kind, user, by);
        for member in &guild.members {
            ctx.push_user(&member.user, TOPIC_EVENT, &event)?;
        }
        if let Some(other) = also {
            ctx.push_user(other, TOPIC_EVENT, &event)?;
        }
        Ok(())
    }

    /// Makes `user` a member of guild `id`: claims their membership (one guild at most), then
    /// adds them (up to [`MAX_MEMBERS`]), taking them off the requests and invitations.
    fn enrol(ctx: &Ctx, id: u64, user: &str, by: Option<&str>) -> Result<Guild> {
        let claim = ctx.insert(&Membership {
            user: user.to_owned(),
            guild: id,
        });
        if let Err(e) = claim {
            // Already in a guild: this guild's request or invitation is void.
            change(ctx, id, |g| {
                remove(&mut g.requests, &user.to_owned());
                remove(&mut g.invites, &user.to_owned());
                Ok(())
            })?;
            return Err(match e {
                DataError::AlreadyExists(_) => Error::new(
                    "already_in_guild",
                    format!("`{user}` is in a guild already"),
                ),
                e => e.into(),
            });
        }
        let joined = change(ctx, id, |g| {
            ensure!(
                g.members.len() < MAX_MEMBERS,
                "guild_full",
                "`{}` has {MAX_MEMBERS} members",
                g.name
            );
            remove(&mut g.requests, &user.to_owned());
            remove(&mut g.invites, &user.to_owned());
            g.members.push(Member {
                user: user.to_owned(),
                role: Role::Member,
            });
            Ok(())
        });
        match joined {
            Ok(guild) => {
                tell(ctx, &guild, "joined", user, by, None)?;
                Ok(guild)
            }
            Err(e) => {
                delete_if_there::<Membership>(ctx, user)?;
                Err(e)
            }
        }
    }

    /// Request of 380.
    #[derive(Deserialize)]
    pub struct Create {
        pub name: String,
    }

    /// Command 380: found a guild; the caller leads it.
    #[handler(380)]
    fn create(ctx: &mut Ctx, req: Create) -> Result<View> {
        let me = caller(ctx)?;
        check_name("name", &req.name, *NAME_LEN.start(), *NAME_LEN.end())?;
        let id = ctx.alloc_id::<Guild>()?;
        match ctx.insert(&Membership {
            user: me.clone(),
            guild: id,
        }) {
            Ok(_) => {}
            Err(DataError::AlreadyExists(_)) => {
                bail!("already_in_guild", "leave your guild first (command 388)")
            }
            Err(e) => return Err(e.into()),
        }
        let claimed = ctx.insert(&GuildName {
            name: req.name.to_lowercase(),
            guild: id,
        });
        if let Err(e) = claimed {
            ctx.delete::<Membership>(me.as_str())?;
            return Err(match e {
                DataError::AlreadyExists(_) => {
                    Error::new("name_taken", format!("`{}` is taken", req.name))
                }
                e => e.into(),
            });
        }
        let guild = Guild {
            id,
            name: req.name,
            members: vec![Member {
                user: me.clone(),
                role: Role::Leader,
            }],
            requests: Vec::new(),
            invites: Vec::new(),
            created_micros: ctx.now_micros(),
        };
        ctx.insert(&guild)?;
        info!("user {me} founded guild {id} ({})", guild.name);
        Ok(view(guild, &me))
    }

    /// Request of 381: a guild's id, or none for the caller's own.
    #[derive(Deserialize, Default)]
    pub struct InfoReq {
        #[serde(default)]
        pub guild: Option<u64>,
    }

    /// Command 381: a guild (the caller's own without an id).
    #[handler(381)]
    fn info(ctx: &mut Ctx, req: Option<InfoReq>) -> Result<View> {
        let me = caller(ctx)?;
        let guild = match req.unwrap_or_default().guild {
            Some(id) => guild(ctx, id)?,
            None => my_guild(ctx, &me)?,
        };
        Ok(view(guild.value, &me))
    }

    /// Request of 382, 386 and 387.
    #[derive(Deserialize)]
    pub struct GuildReq {
        pub guild: u64,
    }

    /// Command 382: ask to join a guild (its officers and leader are pushed a `request`
    /// event). If the guild had invited the caller, this joins it at once.
    #[handler(382)]
    fn request(ctx: &mut Ctx, req: GuildReq) -> Result<View> {
        let me = caller(ctx)?;
        ensure!(
            ctx.get::<Membership>(me.as_str())?.is_none(),
            "already_in_guild",
            "leave your guild first (command 388)"
        );
        let g = guild(ctx, req.guild)?;
        if g.invites.contains(&me) {
            return Ok(view(enrol(ctx, req.guild, &me, None)?, &me));
        }
        let g = change(ctx, req.guild, |g| {
            add_bounded(
                &mut g.requests,
                me.clone(),
                MAX_PENDING,
                "requests_full",
                "the guild's list of requests",
            )
            .map(|_| ())
        })?;
        let event = Event::new(&g, "request", &me, None);
        for staff in g.members.iter().filter(|m| m.role >= Role::Officer) {
            ctx.push_user(&staff.user, TOPIC_EVENT, &event)?;
        }
        Ok(view(g, &me))
    }

    /// The caller's guild, checked for `needed`, and the user the request names.
    fn staff_action(ctx: &Ctx, req: &UserReq, needed: Role) -> Result<(String, Versioned<Guild>)> {
        let me = caller(ctx)?;
        check_user("user", &req.user)?;
        let g = my_guild(ctx, &me)?;
        g.require(&me, needed)?;
        Ok((me, g))
    }

    /// Command 383 (officers, leader): accept a join request.
    #[handler(383)]
    fn accept_request(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, g) = staff_action(ctx, &req, Role::Officer)?;
        ensure!(
            g.requests.contains(&req.user),
            "no_request",
            "`{}` has not asked to join",
            req.user
        );
        Ok(view(enrol(ctx, g.id, &req.user, Some(&me))?, &me))
    }

    /// Command 384 (officers, leader): decline a join request.
    #[handler(384)]
    fn decline_request(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, g) = staff_action(ctx, &req, Role::Officer)?;
        let g = change(ctx, g.id, |g| {
            ensure!(
                remove(&mut g.requests, &req.user),
                "no_request",
                "`{}` has not asked to join",
                req.user
            );
            Ok(())
        })?;
        Ok(view(g, &me))
    }

    /// Command 385 (officers, leader): invite a user (pushed an `invited` event). If they had
    /// asked to join, this accepts them at once.
    #[handler(385)]
    fn invite(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, g) = staff_action(ctx, &req, Role::Officer)?;
        ensure!(
            g.role_of(&req.user).is_none(),
            "already_member",
            "`{}` is a member already",
            req.user
        );
        if g.requests.contains(&req.user) {
            return Ok(view(enrol(ctx, g.id, &req.user, Some(&me))?, &me));
        }
        let g = change(ctx, g.id, |g| {
            add_bounded(
                &mut g.invites,
                req.user.clone(),
                MAX_PENDING,
                "invites_full",
                "the guild's list of invitations",
            )
            .map(|_| ())
        })?;
        let event = Event::new(&g, "invited", &req.user, Some(&me));
        ctx.push_user(&req.user, TOPIC_EVENT, &event)?;
        Ok(view(g, &me))
    }

    /// Command 386: accept an invitation.
    #[handler(386)]
    fn accept_invite(ctx: &mut Ctx, req: GuildReq) -> Result<View> {
        let me = caller(ctx)?;
        let g = guild(ctx, req.guild)?;
        ensure!(
            g.invites.contains(&me),
            "no_invite",
            "`{}` has not invited you",
            g.name
        );
        Ok(view(enrol(ctx, req.guild, &me, None)?, &me))
    }

    /// Command 387: decline an invitation.
    #[handler(387)]
    fn decline_invite(ctx: &mut Ctx, req: GuildReq) -> Result<Done> {
        let me = caller(ctx)?;
        change(ctx, req.guild, |g| {
            ensure!(
                remove(&mut g.invites, &me),
                "no_invite",
                "`{}` has not invited you",
                g.name
            );
            Ok(())
        })?;
        Ok(Done { ok: true })
    }

    /// Ends guild `g`: the guild, its name and its members' memberships are deleted; the
    /// members are pushed a `disbanded` event.
    fn dissolve(ctx: &Ctx, g: &Versioned<Guild>, by: &str) -> Result<()> {
        ctx.delete_versioned(g)?;
        delete_if_there::<GuildName>(ctx, g.name.to_lowercase())?;
        for member in &g.members {
            if let Some(m) = ctx.get::<Membership>(member.user.as_str())?
                && m.guild == g.id
            {
                delete_if_there::<Membership>(ctx, member.user.as_str())?;
            }
        }
        tell(ctx, g, "disbanded", by, None, None)
    }

    /// Command 388: leave the guild. The leader may leave only as its last member (the guild
    /// is disbanded then); otherwise they hand over the lead first (command 390).
    #[handler(388)]
    fn leave(ctx: &mut Ctx, _req: ()) -> Result<Done> {
        let me = caller(ctx)?;
        let g = my_guild(ctx, &me)?;
        if g.role_of(&me) == Some(Role::Leader) {
            ensure!(
                g.members.len() == 1,
                "leader_must_transfer",
                "hand the lead to another member first (command 390), or disband (391)"
            );
            dissolve(ctx, &g, &me)?;
            return Ok(Done { ok: true });
        }
        let left = change(ctx, g.id, |g| {
            g.members.retain(|m| m.user != me);
            Ok(())
        })?;
        delete_if_there::<Membership>(ctx, me.as_str())?;
        tell(ctx, &left, "left", &me, None, Some(&me))?;
        Ok(Done { ok: true })
    }

    /// Command 389 (officers, leader): remove a member of a lower role (pushed a `kicked`
    /// event, as are the members).
    #[handler(389)]
    fn kick(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, g) = staff_action(ctx, &req, Role::Officer)?;
        let g = change(ctx, g.id, |g| {
            let mine = g.require(&me, Role::Officer)?;
            match g.role_of(&req.user) {
                None => bail!("not_member", "`{}` is not in `{}`", req.user, g.name),
                Some(theirs) if theirs >= mine => {
                    bail!("not_allowed", "you can only kick members below your role")
                }
                Some(_) => {}
            }
            g.members.retain(|m| m.user != req.user);
            Ok(())
        })?;
        delete_if_there::<Membership>(ctx, req.user.as_str())?;
        tell(ctx, &g, "kicked", &req.user, Some(&me), Some(&req.user))?;
        Ok(view(g, &me))
    }

    /// Request of 390.
    #[derive(Deserialize)]
    pub struct SetRole {
        pub user: String,
        /// `member`, `officer`, or `leader` (hands over the lead: the caller becomes an
        /// officer).
        pub role: Role,
    }

    /// Command 390 (leader): set a member's role.
    #[handler(390)]
    fn set_role(ctx: &mut Ctx, req: SetRole) -> Result<View> {
        let target = UserReq {
            user: req.user.clone(),
        };
        let (me, g) = staff_action(ctx, &target, Role::Leader)?;
        ensure!(
            req.user != me,
            "invalid_user",
            "hand the lead to someone else instead"
        );
        let g = change(ctx, g.id, |g| {
            g.require(&me, Role::Leader)?;
            ensure!(
                g.role_of(&req.user).is_some(),
                "not_member",
                "`{}` is not in `{}`",
                req.user,
                g.name
            );
            for m in &mut g.members {
                if m.user == req.user {
                    m.role = req.role;
                } else if m.user == me && req.role == Role::Leader {
                    m.role = Role::Officer;
                }
            }
            Ok(())
        })?;
        tell(ctx, &g, "role", &req.user, Some(&me), None)?;
        Ok(view(g, &me))
    }

    /// Command 391 (leader): disband the guild.
    #[handler(391)]
    fn disband(ctx: &mut Ctx, _req: ()) -> Result<Done> {
        let me = caller(ctx)?;
        let g = my_guild(ctx, &me)?;
        g.require(&me, Role::Leader)?;
        dissolve(ctx, &g, &me)?;
        Ok(Done { ok: true })
    }
}
