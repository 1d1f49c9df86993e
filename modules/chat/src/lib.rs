//! `chat`: channels with a bounded history, private messages, per-user mute and block lists and
//! a word-filter hook. Commands 320-330, pushes on topics 335-336 (see `docs/modules.md`).
//!
//! Players are the user ids bound to their sessions (`accounts` login). State lives in cached
//! objects only: `chat_channels` (members and the last [`HISTORY`] lines of each channel) and
//! `chat_prefs` (per user: channels joined, muted and blocked users). Every list is capped, so
//! no client can make a node hold unbounded chat state.

#[firefly_sdk::module]
mod chat {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use gameplay_common::{
        Done, UserReq, add_bounded, caller, check_name, check_text, check_user, get_or, remove,
        upsert,
    };
    use serde::{Deserialize, Serialize};

    /// Lines kept per channel; older ones are dropped.
    pub const HISTORY: usize = 50;
    /// Members per channel.
    pub const MAX_MEMBERS: usize = 200;
    /// Channels one user may be in at once.
    pub const MAX_CHANNELS: usize = 16;
    /// Users one user may mute, and (separately) block.
    pub const MAX_LIST: usize = 100;
    /// Bytes of one message.
    pub const MAX_TEXT: usize = 500;
    /// Channel name length, in characters.
    pub const MAX_CHANNEL_NAME: usize = 32;

    /// Topic of the push a channel message sends to the channel's other members.
    #[push(ChannelMessage, name = "channel_message")]
    pub const TOPIC_CHANNEL: u32 = 335;
    /// Topic of the push a private message sends to its recipient.
    #[push(PrivateMessage, name = "private_message")]
    pub const TOPIC_PRIVATE: u32 = 336;

    /// Words the default [`word_filter`] masks. A placeholder: replace the list, or the whole
    /// function, with your game's filter.
    pub const BLOCKED_WORDS: &[&str] = &["badword", "darn"];

    /// One line of a channel's history.
    #[derive(Debug, Clone, Serialize, Deserialize, Schema)]
    pub struct Line {
        /// Its number in the channel, from 1.
        pub id: u64,
        /// Who said it (user id).
        pub from: String,
        /// What was said, after the word filter.
        pub text: String,
        /// When (server clock, microseconds since the Unix epoch).
        pub at_micros: u64,
    }

    /// A channel: its members (user ids) and its last [`HISTORY`] lines.
    #[derive(Serialize, Deserialize, Table, Schema)]
    #[table(name = "chat_channels")]
    pub struct Channel {
        #[primary_key]
        pub name: String,
        pub members: Vec<String>,
        pub next_id: u64,
        pub history: Vec<Line>,
    }

    /// One user's chat settings.
    #[derive(Serialize, Deserialize, Table, Schema)]
    #[table(name = "chat_prefs")]
    pub struct Prefs {
        #[primary_key]
        pub user: String,
        /// Channels joined.
        pub channels: Vec<String>,
        /// Users whose channel messages this user does not receive.
        pub muted: Vec<String>,
        /// Users whose channel and private messages this user does not receive; their private
        /// messages are refused with `blocked`.
        pub blocked: Vec<String>,
    }

    impl Prefs {
        fn fresh(user: &str) -> Prefs {
            Prefs {
                user: user.to_owned(),
                channels: Vec::new(),
                muted: Vec::new(),
                blocked: Vec::new(),
            }
        }

        /// Whether this user hears `from`'s channel messages.
        fn hears_in_channel(&self, from: &str) -> bool {
            !self.muted.iter().any(|u| u == from) && !self.blocked.iter().any(|u| u == from)
        }
    }

    /// The word-filter hook: every channel and private message passes through it before it is
    /// stored or delivered. Return the text to deliver, or an error to refuse the message (its
    /// code reaches the sender). The default masks [`BLOCKED_WORDS`] (ASCII, any case) with `*`.
    pub fn word_filter(text: &str) -> Result<String> {
        let lower = text.to_ascii_lowercase();
        let mut out = text.as_bytes().to_vec();
        for word in BLOCKED_WORDS {
            // ASCII lowercasing keeps byte offsets, and the words are ASCII, so every match is
            // on character boundaries of `text` too.
            for (at, _) in lower.match_indices(word) {
                out[at..at + word.len()].fill(b'*');
            }
        }
        String::from_utf8(out).map_err(|_| Error::msg("the word filter broke the text"))
    }

    fn channel_name(name: &str) -> Result<String> {
        check_name("channel", name, 1, MAX_CHANNEL_NAME)?;
        Ok(name.to_lowercase())
    }

    /// The channel, if `user` is one of its members.
    fn member_channel(ctx: &Ctx, name: &str, user: &str) -> Result<Channel> {
        match ctx.get::<Channel>(name)? {
            Some(c) if c.members.iter().any(|m| m == user) => Ok(c.value),
            _ => bail!(
                "not_member",
                "you are not in channel `{name}` (command 320)"
            ),
        }
    }

    /// Request of 320, 321 and 324.
    #[derive(Deserialize, Schema)]
    pub struct ChannelReq {
        pub channel: String,
    }

    /// Reply of 320.
    #[derive(Serialize, Schema)]
    pub struct Joined {
        pub channel: String,
        pub members: usize,
        /// The channel's recent lines (without those of users the caller mutes or blocks).
        pub history: Vec<Line>,
    }

    /// Command 320: join a channel (created by its first member); replies with its history.
    #[handler(320)]
    fn join(ctx: &mut Ctx, req: ChannelReq) -> Result<Joined> {
        let me = caller(ctx)?;
        let name = channel_name(&req.channel)?;
        let prefs = upsert(
            ctx,
            me.as_str(),
            || Prefs::fresh(&me),
            |p| {
                add_bounded(
                    &mut p.channels,
                    name.clone(),
                    MAX_CHANNELS,
                    "too_many_channels",
                    "your channel list",
                )
                .map(|_| ())
            },
        )?;
        let joined = upsert(
            ctx,
            name.as_str(),
            || Channel {
                name: name.clone(),
                members: Vec::new(),
                next_id: 1,
                history: Vec::new(),
            },
            |c| {
                add_bounded(
                    &mut c.members,
                    me.clone(),
                    MAX_MEMBERS,
                    "channel_full",
                    "the channel",
                )
                .map(|_| ())
            },
        );
        let channel = match joined {
            Ok(channel) => channel,
            Err(e) => {
                // The channel is full: take it off the caller's list again.
                ctx.modify::<Prefs>(me.as_str(), |p| {
                    remove(&mut p.channels, &name);
                    Ok(())
                })?;
                return Err(e);
            }
        };
        Ok(Joined {
            channel: name,
            members: channel.members.len(),
            history: channel
                .history
                .into_iter()
                .filter(|l| prefs.hears_in_channel(&l.from))
                .collect(),
        })
    }

    /// Command 321: leave a channel; the last member to leave removes it.
    #[handler(321)]
    fn leave(ctx: &mut Ctx, req: ChannelReq) -> Result<Done> {
        let me = caller(ctx)?;
        let name = channel_name(&req.channel)?;
        if ctx.get::<Prefs>(me.as_str())?.is_some() {
            ctx.modify::<Prefs>(me.as_str(), |p| {
                remove(&mut p.channels, &name);
                Ok(())
            })?;
        }
        let Some(mut channel) = ctx.get::<Channel>(name.as_str())? else {
            bail!("not_member", "you are not in channel `{name}`");
        };
        loop {
            ensure!(
                remove(&mut channel.members, &me),
                "not_member",
                "you are not in channel `{name}`"
            );
            let outcome = if channel.members.is_empty() {
                ctx.delete_versioned(&channel)
            } else {
                ctx.update(&mut channel).map(|_| ())
            };
            match outcome {
                Ok(()) => return Ok(Done { ok: true }),
                Err(DataError::Conflict(_)) => match ctx.get::<Channel>(name.as_str())? {
                    Some(fresh) => channel = fresh,
                    None => return Ok(Done { ok: true }),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Request of 322.
    #[derive(Deserialize, Schema)]
    pub struct Say {
        pub channel: String,
        pub text: String,
    }

    /// What 322 pushes (topic 335) to the channel's other members.
    #[derive(Serialize, Schema)]
    pub struct ChannelMessage {
        pub channel: String,
        pub id: u64,
        pub from: String,
        pub text: String,
        pub at_micros: u64,
    }

    /// Command 322: say something in a channel. The line (filtered) joins the bounded history
    /// and is pushed to every other member who neither mutes nor blocks the sender; the reply
    /// is the stored line.
    #[handler(322)]
    fn say(ctx: &mut Ctx, req: Say) -> Result<Line> {
        let me = caller(ctx)?;
        let name = channel_name(&req.channel)?;
        check_text("text", &req.text, MAX_TEXT, false)?;
        let text = word_filter(&req.text)?;
        let at_micros = ctx.now_micros();
        let mut line = None;
        let channel = ctx
            .modify::<Channel>(name.as_str(), |c| {
                ensure!(
                    c.members.contains(&me),
                    "not_member",
                    "you are not in channel `{name}` (command 320)"
                );
                let l = Line {
                    id: c.next_id,
                    from: me.clone(),
                    text: text.clone(),
                    at_micros,
                };
                c.next_id += 1;
                c.history.push(l.clone());
                let over = c.history.len().saturating_sub(HISTORY);
                c.history.drain(..over);
                line = Some(l);
                Ok(())
            })
            .map_err(|e| match e.code.as_str() {
                "not_found" => Error::new("not_member", format!("no channel `{name}`")),
                _ => e,
            })?;
        let Some(line) = line else {
            bail!("handler_failed", "the line was not stored");
        };
        let push = ChannelMessage {
            channel: name,
            id: line.id,
            from: me.clone(),
            text: line.text.clone(),
            at_micros,
        };
        for member in channel.value.members.iter().filter(|m| **m != me) {
            let prefs = get_or(ctx, member.as_str(), || Prefs::fresh(member))?;
            if prefs.hears_in_channel(&me) {
                ctx.push_user(member, TOPIC_CHANNEL, &push)?;
            }
        }
        Ok(line)
    }

    /// Request of 323.
    #[derive(Deserialize, Schema)]
    pub struct HistoryReq {
        pub channel: String,
        /// The newest `limit` lines (default and at most [`HISTORY`]).
        #[serde(default)]
        pub limit: Option<u32>,
    }

    /// Command 323: a channel's recent lines, oldest first, for a member (without those of
    /// users the caller mutes or blocks).
    #[handler(323)]
    fn history(ctx: &mut Ctx, req: HistoryReq) -> Result<Vec<Line>> {
        let me = caller(ctx)?;
        let name = channel_name(&req.channel)?;
        let limit = req.limit.map_or(HISTORY, |l| l as usize);
        ensure!(
            (1..=HISTORY).contains(&limit),
            "invalid_limit",
            "`limit` is 1 to {HISTORY}"
        );
        let channel = member_channel(ctx, &name, &me)?;
        let prefs = get_or(ctx, me.as_str(), || Prefs::fresh(&me))?;
        let mut lines: Vec<Line> = channel
            .history
            .into_iter()
            .filter(|l| prefs.hears_in_channel(&l.from))
            .collect();
        let skip = lines.len().saturating_sub(limit);
        Ok(lines.split_off(skip))
    }

    /// Command 324: a channel's members (user ids), for a member.
    #[handler(324)]
    fn members(ctx: &mut Ctx, req: ChannelReq) -> Result<Vec<String>> {
        let me = caller(ctx)?;
        let name = channel_name(&req.channel)?;
        Ok(member_channel(ctx, &name, &me)?.members)
    }

    /// Request of 325.
    #[derive(Deserialize, Schema)]
    pub struct Whisper {
        pub to: String,
        pub text: String,
    }

    /// What 325 pushes (topic 336) to the recipient's sessions.
    #[derive(Serialize, Schema)]
    pub struct PrivateMessage {
        pub from: String,
        pub text: String,
        pub at_micros: u64,
    }

    /// Reply of 325.
    #[derive(Serialize, Schema)]
    pub struct Sent {
        pub to: String,
        pub text: String,
        pub at_micros: u64,
    }

    /// Command 325: a private message to a user, pushed to every session they have online
    /// (nothing is kept for an offline user: that is what `mail` is for). Refused with
    /// `blocked` when the recipient blocks the sender.
    #[handler(325)]
    fn whisper(ctx: &mut Ctx, req: Whisper) -> Result<Sent> {
        let me = caller(ctx)?;
        check_user("to", &req.to)?;
        ensure!(
            req.to != me,
            "invalid_user",
            "you cannot send yourself a private message"
        );
        check_text("text", &req.text, MAX_TEXT, false)?;
        let text = word_filter(&req.text)?;
        let theirs = get_or(ctx, req.to.as_str(), || Prefs::fresh(&req.to))?;
        ensure!(
            !theirs.blocked.contains(&me),
            "blocked",
            "`{}` does not accept your messages",
            req.to
        );
        let at_micros = ctx.now_micros();
        ctx.push_user(
            &req.to,
            TOPIC_PRIVATE,
            &PrivateMessage {
                from: me,
                text: text.clone(),
                at_micros,
            },
        )?;
        Ok(Sent {
            to: req.to,
            text,
            at_micros,
        })
    }

    /// Which of the caller's lists a command edits.
    #[derive(Clone, Copy)]
    enum List {
        Muted,
        Blocked,
    }

    fn edit_list(ctx: &Ctx, req: &UserReq, list: List, add: bool) -> Result<Prefs> {
        let me = caller(ctx)?;
        check_user("user", &req.user)?;
        ensure!(
            req.user != me,
            "invalid_user",
            "you cannot mute or block yourself"
        );
        upsert(
            ctx,
            me.as_str(),
            || Prefs::fresh(&me),
            |p| {
                let (entries, what) = match list {
                    List::Muted => (&mut p.muted, "your mute list"),
                    List::Blocked => (&mut p.blocked, "your block list"),
                };
                if add {
                    add_bounded(entries, req.user.clone(), MAX_LIST, "list_full", what)?;
                } else {
                    remove(entries, &req.user);
                }
                Ok(())
            },
        )
    }

    /// Command 326: stop receiving a user's channel messages.
    #[handler(326)]
    fn mute(ctx: &mut Ctx, req: UserReq) -> Result<Prefs> {
        edit_list(ctx, &req, List::Muted, true)
    }

    /// Command 327: receive a muted user's channel messages again.
    #[handler(327)]
    fn unmute(ctx: &mut Ctx, req: UserReq) -> Result<Prefs> {
        edit_list(ctx, &req, List::Muted, false)
    }

    /// Command 328: stop receiving a user's channel messages and refuse their private ones.
    #[handler(328)]
    fn block(ctx: &mut Ctx, req: UserReq) -> Result<Prefs> {
        edit_list(ctx, &req, List::Blocked, true)
    }

    /// Command 329: unblock a user.
    #[handler(329)]
    fn unblock(ctx: &mut Ctx, req: UserReq) -> Result<Prefs> {
        edit_list(ctx, &req, List::Blocked, false)
    }

    /// Command 330: the caller's channels, muted and blocked users.
    #[handler(330)]
    fn settings(ctx: &mut Ctx, _req: ()) -> Result<Prefs> {
        let me = caller(ctx)?;
        get_or(ctx, me.as_str(), || Prefs::fresh(&me))
    }
}
