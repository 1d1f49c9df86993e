//! `friends`: friend requests (accept, decline, cancel), a friend list with online presence,
//! removing friends and blocking users. Commands 340-348, pushes on topics 355-357 (see
//! `docs/modules.md`).
//!
//! Players are the user ids bound to their sessions (`accounts` login). State lives in cached
//! objects only: `friend_lists` (per user: friends, requests in and out, blocked users, each
//! capped) and, for presence, `presence` (the session a user announced with command 340) and
//! `presence_sessions` (that session's user, for the disconnect event, which fires after the
//! session's user binding is gone).
//!
//! **Presence.** A user is online while the session they announced with command 340 is still
//! bound to them: the list asks the session's gate (`ctx.user_of`), so a crashed gate or a
//! logout reads as offline without any event. Announcing (340) and the session's end (the
//! disconnect event) push a presence change (topic 357) to the user's friends.

#[firefly_sdk::module]
mod friends {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use gameplay_common::{
        UserReq, add_bounded, caller, check_user, delete_if_there, get_or, remove, upsert,
    };
    use serde::{Deserialize, Serialize};

    /// Friends one user may have.
    pub const MAX_FRIENDS: usize = 200;
    /// Pending requests one user may have received, and (separately) sent.
    pub const MAX_PENDING: usize = 50;
    /// Users one user may block.
    pub const MAX_BLOCKED: usize = 100;

    /// Topic of the push a user gets when someone asks to be their friend.
    pub const TOPIC_REQUEST: u32 = 355;
    /// Topic of the push a user gets when their request is accepted.
    pub const TOPIC_ACCEPTED: u32 = 356;
    /// Topic of the push friends get when a user comes online or goes offline.
    pub const TOPIC_PRESENCE: u32 = 357;

    /// One user's friends, pending requests and blocked users (user ids).
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "friend_lists")]
    pub struct Friends {
        #[primary_key]
        pub user: String,
        pub friends: Vec<String>,
        /// Requests received, not answered yet.
        pub incoming: Vec<String>,
        /// Requests sent, not answered yet.
        pub outgoing: Vec<String>,
        pub blocked: Vec<String>,
    }

    impl Friends {
        fn fresh(user: &str) -> Friends {
            Friends {
                user: user.to_owned(),
                friends: Vec::new(),
                incoming: Vec::new(),
                outgoing: Vec::new(),
                blocked: Vec::new(),
            }
        }
    }

    /// The session a user announced (command 340).
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "presence")]
    pub struct Presence {
        #[primary_key]
        pub user: String,
        pub session: u64,
        pub since_micros: u64,
    }

    /// The user of an announced session.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "presence_sessions")]
    pub struct PresenceSession {
        #[primary_key]
        pub session: u64,
        pub user: String,
    }

    /// A friend in the list.
    #[derive(Serialize)]
    pub struct Friend {
        pub user: String,
        pub online: bool,
    }

    /// Reply of 340, 346 and the commands that change the list.
    #[derive(Serialize)]
    pub struct View {
        pub friends: Vec<Friend>,
        pub incoming: Vec<String>,
        pub outgoing: Vec<String>,
        pub blocked: Vec<String>,
    }

    /// What 341 pushes (topic 355) to the user asked.
    #[derive(Serialize)]
    pub struct RequestPush {
        pub from: String,
    }

    /// What 342 pushes (topic 356) to the user whose request was accepted.
    #[derive(Serialize)]
    pub struct AcceptedPush {
        pub user: String,
    }

    /// What friends are pushed (topic 357) when a user's presence changes.
    #[derive(Serialize)]
    pub struct PresencePush {
        pub user: String,
        pub online: bool,
    }

    /// Whether `user` is online: their announced session is still theirs.
    fn online(ctx: &Ctx, user: &str) -> Result<bool> {
        let Some(p) = ctx.get::<Presence>(user)? else {
            return Ok(false);
        };
        // A session that is gone, or whose gate cannot be reached, is offline.
        Ok(ctx.user_of(p.session).ok().flatten().as_deref() == Some(user))
    }

    fn view(ctx: &Ctx, me: &str) -> Result<View> {
        let list = get_or(ctx, me, || Friends::fresh(me))?;
        let mut friends = Vec::with_capacity(list.friends.len());
        for user in list.friends {
            friends.push(Friend {
                online: online(ctx, &user)?,
                user,
            });
        }
        Ok(View {
            friends,
            incoming: list.incoming,
            outgoing: list.outgoing,
            blocked: list.blocked,
        })
    }

    /// Changes `user`'s lists (created if missing).
    fn change(ctx: &Ctx, user: &str, f: impl FnMut(&mut Friends) -> Result<()>) -> Result<()> {
        upsert(ctx, user, || Friends::fresh(user), f).map(|_| ())
    }

    /// The caller and the other user a request names, checked.
    fn parties(ctx: &Ctx, req: &UserReq) -> Result<(String, String)> {
        let me = caller(ctx)?;
        check_user("user", &req.user)?;
        ensure!(
            req.user != me,
            "invalid_user",
            "that is you: name another user"
        );
        Ok((me, req.user.clone()))
    }

    fn tell_friends(ctx: &Ctx, me: &str, online: bool) -> Result<()> {
        let list = get_or(ctx, me, || Friends::fresh(me))?;
        let push = PresencePush {
            user: me.to_owned(),
            online,
        };
        for friend in &list.friends {
            ctx.push_user(friend, TOPIC_PRESENCE, &push)?;
        }
        Ok(())
    }

    /// Command 340: announce the calling session as the user's (call it after logging in);
    /// friends are pushed that the user is online. Replies with the list.
    #[handler(340)]
    fn announce(ctx: &mut Ctx, _req: ()) -> Result<View> {
        let me = caller(ctx)?;
        let session = ctx.session();
        // The session's user first: the disconnect event finds the user through it.
        delete_if_there::<PresenceSession>(ctx, session)?;
        // The user's previous session no longer speaks for them: its end (if its event ever
        // comes) must not report them offline, and its record goes now, so there is one a user.
        if let Some(previous) = ctx.get::<Presence>(me.as_str())?
            && previous.session != session
        {
            delete_if_there::<PresenceSession>(ctx, previous.session)?;
        }
        ctx.insert(&PresenceSession {
            session,
            user: me.clone(),
        })?;
        let since_micros = ctx.now_micros();
        upsert(
            ctx,
            me.as_str(),
            || Presence {
                user: me.clone(),
                session,
                since_micros,
            },
            |p| {
                p.session = session;
                p.since_micros = since_micros;
                Ok(())
            },
        )?;
        tell_friends(ctx, &me, true)?;
        view(ctx, &me)
    }

    /// Command 341: ask a user to be friends (pushed to them on topic 355). If they had asked
    /// the caller already, this accepts their request instead.
    #[handler(341)]
    fn request(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, them) = parties(ctx, &req)?;
        let mine = get_or(ctx, me.as_str(), || Friends::fresh(&me))?;
        ensure!(
            !mine.friends.contains(&them),
            "already_friends",
            "you are friends with `{them}` already"
        );
        ensure!(
            !mine.blocked.contains(&them),
            "blocked_by_you",
            "you block `{them}`: unblock them first (command 348)"
        );
        if mine.incoming.contains(&them) {
            return accept(ctx, req);
        }
        change(ctx, &me, |l| {
            add_bounded(
                &mut l.outgoing,
                them.clone(),
                MAX_PENDING,
                "too_many_requests",
                "your list of sent requests",
            )
            .map(|_| ())
        })?;
        let theirs = change(ctx, &them, |l| {
            ensure!(
                !l.blocked.contains(&me),
                "blocked",
                "`{them}` does not accept your requests"
            );
            add_bounded(
                &mut l.incoming,
                me.clone(),
                MAX_PENDING,
                "requests_full",
                "their list of requests",
            )
            .map(|_| ())
        });
        if let Err(e) = theirs {
            change(ctx, &me, |l| {
                remove(&mut l.outgoing, &them);
                Ok(())
            })?;
            return Err(e);
        }
        ctx.push_user(&them, TOPIC_REQUEST, &RequestPush { from: me.clone() })?;
        view(ctx, &me)
    }

    /// Command 342: accept a user's request; they are pushed on topic 356.
    #[handler(342)]
    fn accept(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, them) = parties(ctx, &req)?;
        change(ctx, &me, |l| {
            ensure!(
                l.incoming.contains(&them),
                "no_request",
                "`{them}` has not asked you"
            );
            add_bounded(
                &mut l.friends,
                them.clone(),
                MAX_FRIENDS,
                "friends_full",
                "your friend list",
            )?;
            remove(&mut l.incoming, &them);
            Ok(())
        })?;
        let theirs = change(ctx, &them, |l| {
            add_bounded(
                &mut l.friends,
                me.clone(),
                MAX_FRIENDS,
                "friends_full",
                "their friend list",
            )?;
            remove(&mut l.outgoing, &me);
            Ok(())
        });
        if let Err(e) = theirs {
            // Their list is full: the request stays pending.
            change(ctx, &me, |l| {
                remove(&mut l.friends, &them);
                if !l.incoming.contains(&them) {
                    l.incoming.push(them.clone());
                }
                Ok(())
            })?;
            return Err(e);
        }
        ctx.push_user(&them, TOPIC_ACCEPTED, &AcceptedPush { user: me.clone() })?;
        view(ctx, &me)
    }

    /// Deletes `user`'s lists if they are all empty (a user id that was only ever asked and
    /// then forgotten leaves nothing behind).
    fn tidy(ctx: &Ctx, user: &str) -> Result<()> {
        let Some(list) = ctx.get::<Friends>(user)? else {
            return Ok(());
        };
        let empty = list.friends.is_empty()
            && list.incoming.is_empty()
            && list.outgoing.is_empty()
            && list.blocked.is_empty();
        if empty {
            // A concurrent change makes this a conflict: the lists stay.
            match ctx.delete_versioned(&list) {
                Ok(()) | Err(DataError::NotFound(_)) | Err(DataError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Forgets the pending request `from` sent `to`, on both sides.
    fn drop_pending(ctx: &Ctx, to: &str, from: &str) -> Result<()> {
        change(ctx, to, |l| {
            remove(&mut l.incoming, &from.to_owned());
            Ok(())
        })?;
        change(ctx, from, |l| {
            remove(&mut l.outgoing, &to.to_owned());
            Ok(())
        })?;
        tidy(ctx, to)?;
        tidy(ctx, from)
    }

    /// Which end of a pending request the caller holds.
    #[derive(Clone, Copy)]
    enum End {
        /// The caller received it (declining).
        Received,
        /// The caller sent it (withdrawing).
        Sent,
    }

    /// Forgets a pending request between the caller and the user `req` names, on both sides.
    fn forget_request(ctx: &Ctx, req: &UserReq, end: End) -> Result<View> {
        let (me, them) = parties(ctx, req)?;
        let mine = get_or(ctx, me.as_str(), || Friends::fresh(&me))?;
        let (pending, to, from) = match end {
            End::Received => (&mine.incoming, &me, &them),
            End::Sent => (&mine.outgoing, &them, &me),
        };
        ensure!(
            pending.contains(&them),
            "no_request",
            "there is no pending request between you and `{them}`"
        );
        drop_pending(ctx, to, from)?;
        view(ctx, &me)
    }

    /// Command 343: decline a user's request.
    #[handler(343)]
    fn decline(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        forget_request(ctx, &req, End::Received)
    }

    /// Command 344: withdraw a request the caller sent.
    #[handler(344)]
    fn cancel(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        forget_request(ctx, &req, End::Sent)
    }

    /// Ends a friendship on both sides.
    fn unfriend(ctx: &Ctx, me: &str, them: &str) -> Result<()> {
        change(ctx, me, |l| {
            remove(&mut l.friends, &them.to_owned());
            Ok(())
        })?;
        change(ctx, them, |l| {
            remove(&mut l.friends, &me.to_owned());
            Ok(())
        })?;
        tidy(ctx, them)
    }

    /// Command 345: stop being friends with a user.
    #[handler(345)]
    fn unfriend_cmd(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, them) = parties(ctx, &req)?;
        let mine = get_or(ctx, me.as_str(), || Friends::fresh(&me))?;
        ensure!(
            mine.friends.contains(&them),
            "not_friends",
            "you are not friends with `{them}`"
        );
        unfriend(ctx, &me, &them)?;
        view(ctx, &me)
    }

    /// Command 346: the caller's friends (each with whether they are online), pending
    /// requests both ways, and blocked users.
    #[handler(346)]
    fn list(ctx: &mut Ctx, _req: ()) -> Result<View> {
        let me = caller(ctx)?;
        view(ctx, &me)
    }

    /// Command 347: block a user: any friendship and requests between the two end, and their
    /// requests are refused with `blocked`.
    #[handler(347)]
    fn block(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, them) = parties(ctx, &req)?;
        change(ctx, &me, |l| {
            add_bounded(
                &mut l.blocked,
                them.clone(),
                MAX_BLOCKED,
                "list_full",
                "your block list",
            )?;
            remove(&mut l.friends, &them);
            remove(&mut l.incoming, &them);
            remove(&mut l.outgoing, &them);
            Ok(())
        })?;
        if ctx.get::<Friends>(them.as_str())?.is_some() {
            change(ctx, &them, |l| {
                remove(&mut l.friends, &me);
                remove(&mut l.incoming, &me);
                remove(&mut l.outgoing, &me);
                Ok(())
            })?;
            tidy(ctx, &them)?;
        }
        view(ctx, &me)
    }

    /// Command 348: unblock a user.
    #[handler(348)]
    fn unblock(ctx: &mut Ctx, req: UserReq) -> Result<View> {
        let (me, them) = parties(ctx, &req)?;
        change(ctx, &me, |l| {
            remove(&mut l.blocked, &them);
            Ok(())
        })?;
        view(ctx, &me)
    }

    /// A session ended: if it was a user's announced session, their friends hear they went
    /// offline. Fires on every node the session's gate routes to; the first one to delete the
    /// session's record does the work.
    #[on_disconnect]
    fn gone(ctx: &mut Ctx) -> Result<()> {
        let session = ctx.session();
        let Some(record) = ctx.get::<PresenceSession>(session)? else {
            return Ok(());
        };
        match ctx.delete_versioned(&record) {
            Ok(()) => {}
            Err(DataError::NotFound(_)) | Err(DataError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let user = record.value.user;
        let Some(presence) = ctx.get::<Presence>(user.as_str())? else {
            return Ok(());
        };
        if presence.session != session {
            // The user announced a newer session since.
            return Ok(());
        }
        match ctx.delete_versioned(&presence) {
            Ok(()) => tell_friends(ctx, &user, false),
            Err(DataError::NotFound(_)) | Err(DataError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
