//! `lobby`: the typed example — MessagePack requests and replies, errors, randomness, time,
//! pushes, session events, and sessions across the cluster (groups, users, broadcasts, kicks).

#[firefly_sdk::module]
mod lobby {
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Request of command 101.
    #[derive(Deserialize)]
    pub struct Hello {
        pub name: String,
    }

    /// Reply of command 101.
    #[derive(Serialize)]
    pub struct Greeting {
        pub greeting: String,
        pub session: u64,
        pub server_time_micros: u64,
    }

    /// Command 101: greets a player.
    #[handler(101)]
    fn hello(ctx: &mut Ctx, req: Hello) -> Result<Greeting> {
        ensure!(
            !req.name.trim().is_empty(),
            "invalid_name",
            "a name is required"
        );
        info!("hello from {} on session {}", req.name, ctx.session());
        Ok(Greeting {
            greeting: format!("Hello, {}!", req.name),
            session: ctx.session(),
            server_time_micros: ctx.now_micros(),
        })
    }

    /// Request of command 102.
    #[derive(Deserialize)]
    pub struct Roll {
        pub sides: u32,
    }

    /// Reply of command 102.
    #[derive(Serialize)]
    pub struct Rolled {
        pub value: u32,
    }

    /// Command 102: rolls a die with `sides` sides.
    #[handler(102)]
    fn roll(ctx: &mut Ctx, req: Roll) -> Result<Rolled> {
        ensure!(
            req.sides > 0,
            "invalid_sides",
            "a die needs at least one side"
        );
        let value = ctx.random_range(1..u64::from(req.sides) + 1) as u32;
        Ok(Rolled { value })
    }

    /// Request of command 103.
    #[derive(Deserialize)]
    pub struct Add {
        pub a: i64,
        pub b: i64,
    }

    /// Reply of command 103.
    #[derive(Serialize)]
    pub struct Sum {
        pub sum: i64,
    }

    /// Command 103: adds two numbers; overflow is an error the client sees.
    #[handler(103)]
    fn add(_ctx: &mut Ctx, req: Add) -> Result<Sum> {
        match req.a.checked_add(req.b) {
            Some(sum) => Ok(Sum { sum }),
            None => bail!("overflow", "{} + {} does not fit in an i64", req.a, req.b),
        }
    }

    /// Request of command 104.
    #[derive(Deserialize)]
    pub struct Notify {
        pub topic: u32,
        pub text: String,
    }

    /// What command 104 pushes.
    #[derive(Serialize)]
    pub struct Notice {
        pub text: String,
    }

    /// Reply of command 104.
    #[derive(Serialize)]
    pub struct Pushed {
        pub pushed: bool,
    }

    /// Command 104: pushes a notice to the caller on `topic`, then replies.
    #[handler(104)]
    fn notify(ctx: &mut Ctx, req: Notify) -> Result<Pushed> {
        ctx.push(req.topic, &Notice { text: req.text })?;
        Ok(Pushed { pushed: true })
    }

    /// Reply of command 105.
    #[derive(Serialize)]
    pub struct WhoAmI {
        pub session: u64,
        pub module: &'static str,
    }

    /// Command 105: who is calling.
    #[handler(105)]
    fn whoami(ctx: &mut Ctx, _req: ()) -> Result<WhoAmI> {
        Ok(WhoAmI {
            session: ctx.session(),
            module: "lobby",
        })
    }

    /// Request of command 106.
    #[derive(Deserialize)]
    pub struct Tell {
        pub session: u64,
        pub topic: u32,
        pub text: String,
    }

    /// Command 106: pushes a notice to another session (wherever it is connected).
    #[handler(106)]
    fn tell(ctx: &mut Ctx, req: Tell) -> Result<Pushed> {
        ctx.push_to(req.session, req.topic, &Notice { text: req.text })?;
        Ok(Pushed { pushed: true })
    }

    /// Request of command 107.
    #[derive(Deserialize)]
    pub struct Ask {
        pub node: String,
        pub a: i64,
        pub b: i64,
    }

    /// Reply of command 107.
    #[derive(Serialize, Deserialize)]
    pub struct Answered {
        pub sum: i64,
        pub asked: String,
    }

    /// Command 107: asks node `node` to add (its command 103) and relays the answer — a call
    /// from one node to another.
    #[handler(107)]
    fn ask(ctx: &mut Ctx, req: Ask) -> Result<Answered> {
        #[derive(Serialize)]
        struct AddReq {
            a: i64,
            b: i64,
        }
        #[derive(Deserialize)]
        struct SumReply {
            sum: i64,
        }
        let reply: SumReply = ctx.call(&req.node, 103, &AddReq { a: req.a, b: req.b })?;
        Ok(Answered {
            sum: reply.sum,
            asked: req.node,
        })
    }

    /// Request of commands 108 and 109.
    #[derive(Deserialize)]
    pub struct Group {
        pub group: String,
    }

    /// Reply of the session commands (108-116).
    #[derive(Serialize)]
    pub struct Done {
        pub ok: bool,
    }

    /// Command 108: the caller joins a group (a channel).
    #[handler(108)]
    fn join(ctx: &mut Ctx, req: Group) -> Result<Done> {
        ctx.join(&req.group)?;
        Ok(Done { ok: true })
    }

    /// Command 109: the caller leaves a group.
    #[handler(109)]
    fn leave(ctx: &mut Ctx, req: Group) -> Result<Done> {
        ctx.leave(&req.group)?;
        Ok(Done { ok: true })
    }

    /// Request of command 110.
    #[derive(Deserialize)]
    pub struct Say {
        pub group: String,
        pub topic: u32,
        pub text: String,
    }

    /// Command 110: pushes a notice to every member of a group, on every gate.
    #[handler(110)]
    fn say(ctx: &mut Ctx, req: Say) -> Result<Done> {
        ctx.push_group(&req.group, req.topic, &Notice { text: req.text })?;
        Ok(Done { ok: true })
    }

    /// Request of command 111.
    #[derive(Deserialize)]
    pub struct Shout {
        pub topic: u32,
        pub text: String,
    }

    /// Command 111: pushes a notice to every session of the cluster.
    #[handler(111)]
    fn shout(ctx: &mut Ctx, req: Shout) -> Result<Done> {
        ctx.push_all(req.topic, &Notice { text: req.text })?;
        Ok(Done { ok: true })
    }

    /// Request of command 112.
    #[derive(Deserialize)]
    pub struct Login {
        pub user: String,
    }

    /// Reply of commands 112 and 116.
    #[derive(Serialize)]
    pub struct Me {
        pub session: u64,
        pub user: Option<String>,
    }

    /// Command 112: binds a user id to the caller's session (a second login of the same user
    /// kicks the first where the listener says `single_login`).
    #[handler(112)]
    fn login(ctx: &mut Ctx, req: Login) -> Result<Me> {
        ctx.bind_user(&req.user)?;
        Ok(Me {
            session: ctx.session(),
            user: ctx.user()?,
        })
    }

    /// Request of command 113.
    #[derive(Deserialize)]
    pub struct Whisper {
        pub user: String,
        pub topic: u32,
        pub text: String,
    }

    /// Command 113: pushes a notice to every session of a user, wherever they are.
    #[handler(113)]
    fn whisper(ctx: &mut Ctx, req: Whisper) -> Result<Done> {
        ctx.push_user(&req.user, req.topic, &Notice { text: req.text })?;
        Ok(Done { ok: true })
    }

    /// Request of command 114.
    #[derive(Deserialize)]
    pub struct Kick {
        pub session: u64,
    }

    /// Command 114: kicks a session.
    #[handler(114)]
    fn kick(ctx: &mut Ctx, req: Kick) -> Result<Done> {
        ctx.kick(req.session)?;
        Ok(Done { ok: true })
    }

    /// Request of command 115.
    #[derive(Deserialize)]
    pub struct Multicast {
        pub sessions: Vec<u64>,
        pub topic: u32,
        pub text: String,
    }

    /// Command 115: pushes a notice to a list of sessions.
    #[handler(115)]
    fn multicast(ctx: &mut Ctx, req: Multicast) -> Result<Done> {
        ctx.push_sessions(&req.sessions, req.topic, &Notice { text: req.text })?;
        Ok(Done { ok: true })
    }

    /// Command 116: the caller's session and user.
    #[handler(116)]
    fn me(ctx: &mut Ctx, _req: ()) -> Result<Me> {
        Ok(Me {
            session: ctx.session(),
            user: ctx.user()?,
        })
    }

    /// A client connected.
    #[on_connect]
    fn joined(ctx: &mut Ctx) -> Result<()> {
        debug!("session {} joined the lobby", ctx.session());
        Ok(())
    }

    /// What members of the `watchers` group are pushed (topic 199) when a session ends.
    #[derive(Serialize)]
    pub struct Left {
        pub left: u64,
    }

    /// A client left (for a resumable session: its grace window ran out). Members of the
    /// `watchers` group hear of it.
    #[on_disconnect]
    fn left(ctx: &mut Ctx) -> Result<()> {
        debug!("session {} left the lobby", ctx.session());
        ctx.push_group(
            "watchers",
            199,
            &Left {
                left: ctx.session(),
            },
        )
    }
}
