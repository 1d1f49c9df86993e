//! `mail`: offline mail between players, and system mail with attachments that are claimed
//! exactly once; every mail expires. Commands 360-364 (players) and 370 (system mail, for
//! back-office gates and other nodes only), pushes on topic 375 (see `docs/modules.md`).
//!
//! Players are the user ids bound to their sessions (`accounts` login). State lives in cached
//! objects only: `mails` (one object a mail), `mailboxes` (per user, the ids of their mail,
//! at most [`MAX_MAILS`]) and `mail_outboxes` (per user, the player mail they sent that may
//! still be waiting, at most [`MAX_SENT`]). Expiry is checked against the server clock whenever a mailbox or a
//! mail is read: an expired mail is deleted then and is gone from every answer.

#[firefly_sdk::module]
mod mail {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use gameplay_common::{
        Done, add_bounded, caller, check_name, check_text, check_user, remove, secs_to_micros,
        upsert,
    };
    use serde::{Deserialize, Serialize};

    /// Mails one mailbox holds; sending to a full mailbox is refused with `mailbox_full`.
    pub const MAX_MAILS: usize = 100;
    /// Player mails one sender may have waiting (not deleted, not expired) in all mailboxes
    /// together; past it, sending is refused with `outbox_full`. Recipients are any user ids,
    /// so without it one client could fill a mailbox for every id it makes up.
    pub const MAX_SENT: usize = 100;
    /// Bytes of a subject.
    pub const MAX_SUBJECT: usize = 80;
    /// Bytes of a body.
    pub const MAX_BODY: usize = 2000;
    /// Attachments of one mail.
    pub const MAX_ATTACHMENTS: usize = 8;
    /// Characters of an attachment's kind (and of a system sender's name).
    pub const MAX_KIND: usize = 32;
    /// Quantity of one attachment.
    pub const MAX_QTY: u32 = 1_000_000;
    /// Lifetime of a mail when the sender names none: 30 days.
    pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 3600;
    /// Longest lifetime a sender may ask for: 90 days.
    pub const MAX_TTL_SECS: u64 = 90 * 24 * 3600;

    /// Topic of the push a recipient's online sessions get when mail arrives.
    pub const TOPIC_NEW_MAIL: u32 = 375;

    /// An item attached to a mail. Opaque to this module: the game grants what a claim
    /// returns.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Attachment {
        pub kind: String,
        pub qty: u32,
    }

    /// One mail.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "mails")]
    pub struct Mail {
        #[primary_key]
        pub id: u64,
        /// Recipient (user id).
        pub to: String,
        /// Sender: a user id, or a system sender's name (command 370).
        pub from: String,
        /// Whether `from` is a system sender.
        pub system: bool,
        pub subject: String,
        pub body: String,
        pub attachments: Vec<Attachment>,
        pub sent_micros: u64,
        pub expires_micros: u64,
        pub read: bool,
        /// Set once, by the one claim that succeeds.
        pub claimed: bool,
    }

    /// The ids of one user's mail, oldest first.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "mailboxes")]
    pub struct Mailbox {
        #[primary_key]
        pub user: String,
        pub mails: Vec<u64>,
    }

    /// The ids of the player mail one user sent that may still be waiting.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "mail_outboxes")]
    pub struct Outbox {
        #[primary_key]
        pub user: String,
        pub mails: Vec<u64>,
    }

    /// Request of 360.
    #[derive(Deserialize)]
    pub struct Send {
        pub to: String,
        pub subject: String,
        #[serde(default)]
        pub body: String,
        /// Lifetime in seconds (default [`DEFAULT_TTL_SECS`], 1 to [`MAX_TTL_SECS`]).
        #[serde(default)]
        pub ttl_secs: Option<u64>,
    }

    /// Request of 370: [`Send`] from a named system sender, with attachments.
    #[derive(Deserialize)]
    pub struct SystemSend {
        pub to: String,
        pub from: String,
        pub subject: String,
        #[serde(default)]
        pub body: String,
        #[serde(default)]
        pub attachments: Vec<Attachment>,
        #[serde(default)]
        pub ttl_secs: Option<u64>,
    }

    /// Reply of 360 and 370.
    #[derive(Serialize)]
    pub struct Sent {
        pub id: u64,
        pub expires_micros: u64,
    }

    /// What the recipient's sessions are pushed (topic 375) when mail arrives.
    #[derive(Serialize)]
    pub struct NewMail {
        pub id: u64,
        pub from: String,
        pub subject: String,
        pub attachments: usize,
    }

    /// Reply of 361: one mail without its body.
    #[derive(Serialize)]
    pub struct Summary {
        pub id: u64,
        pub from: String,
        pub system: bool,
        pub subject: String,
        pub attachments: usize,
        pub claimed: bool,
        pub read: bool,
        pub sent_micros: u64,
        pub expires_micros: u64,
    }

    /// Request of 362, 363 and 364.
    #[derive(Deserialize)]
    pub struct MailReq {
        pub id: u64,
    }

    /// Reply of 363.
    #[derive(Serialize)]
    pub struct Claimed {
        pub id: u64,
        pub attachments: Vec<Attachment>,
    }

    /// What a sender asks for, checked.
    struct Outgoing {
        to: String,
        from: String,
        system: bool,
        subject: String,
        body: String,
        attachments: Vec<Attachment>,
        ttl_secs: Option<u64>,
    }

    fn check(out: &Outgoing) -> Result<u64> {
        check_user("to", &out.to)?;
        check_text("subject", &out.subject, MAX_SUBJECT, false)?;
        check_text("body", &out.body, MAX_BODY, true)?;
        let ttl = out.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
        ensure!(
            (1..=MAX_TTL_SECS).contains(&ttl),
            "invalid_ttl",
            "`ttl_secs` is 1 to {MAX_TTL_SECS}"
        );
        ensure!(
            out.attachments.len() <= MAX_ATTACHMENTS,
            "too_many_attachments",
            "a mail carries at most {MAX_ATTACHMENTS} attachments"
        );
        for a in &out.attachments {
            check_name("attachments.kind", &a.kind, 1, MAX_KIND)?;
            ensure!(
                (1..=MAX_QTY).contains(&a.qty),
                "invalid_attachment",
                "an attachment's `qty` is 1 to {MAX_QTY}"
            );
        }
        Ok(ttl)
    }

    fn expired(mail: &Mail, now: u64) -> bool {
        now >= mail.expires_micros
    }

    /// The ids in `user`'s mailbox whose mail is gone or has expired (expired mail is deleted
    /// here), and the live mails, oldest first.
    fn sweep(ctx: &Ctx, user: &str, now: u64) -> Result<(Vec<u64>, Vec<Mail>)> {
        let Some(mailbox) = ctx.get::<Mailbox>(user)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (mut stale, mut live) = (Vec::new(), Vec::new());
        for id in mailbox.value.mails {
            match ctx.get::<Mail>(id)? {
                Some(mail) if !expired(&mail, now) => live.push(mail.value),
                Some(mail) => {
                    discard(ctx, &mail)?;
                    stale.push(id);
                }
                None => stale.push(id),
            }
        }
        Ok((stale, live))
    }

    /// Takes `stale` ids out of `user`'s mailbox; a mailbox left empty is deleted.
    fn forget(ctx: &Ctx, user: &str, stale: &[u64]) -> Result<()> {
        if stale.is_empty() {
            return Ok(());
        }
        let left = match ctx.modify::<Mailbox>(user, |b| {
            b.mails.retain(|m| !stale.contains(m));
            Ok(())
        }) {
            Ok(left) => left,
            Err(e) if e.code == "not_found" => return Ok(()),
            Err(e) => return Err(e),
        };
        if left.mails.is_empty() {
            // A mail filed meanwhile makes this a conflict: the mailbox stays.
            match ctx.delete_versioned(&left) {
                Ok(()) | Err(DataError::NotFound(_)) | Err(DataError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes `mail` if it is still at the version read; gone already is fine.
    fn discard(ctx: &Ctx, mail: &Versioned<Mail>) -> Result<()> {
        match ctx.delete_versioned(mail) {
            Ok(()) | Err(DataError::NotFound(_)) | Err(DataError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a checked mail under `id` and files it in the recipient's mailbox.
    fn deliver(ctx: &Ctx, id: u64, out: Outgoing) -> Result<Sent> {
        let ttl = check(&out)?;
        let now = ctx.now_micros();
        // Expired mail must not take the room of new mail.
        let (stale, _) = sweep(ctx, &out.to, now)?;
        let mail = Mail {
            id,
            to: out.to,
            from: out.from,
            system: out.system,
            subject: out.subject,
            body: out.body,
            attachments: out.attachments,
            sent_micros: now,
            expires_micros: now.saturating_add(secs_to_micros(ttl)),
            read: false,
            claimed: false,
        };
        // The mail first, then its mailbox entry: a mailbox never names a mail not stored yet
        // (a concurrent read would take it for a deleted one).
        ctx.insert(&mail)?;
        let filed = upsert(
            ctx,
            mail.to.as_str(),
            || Mailbox {
                user: mail.to.clone(),
                mails: Vec::new(),
            },
            |b| {
                b.mails.retain(|m| !stale.contains(m));
                add_bounded(
                    &mut b.mails,
                    mail.id,
                    MAX_MAILS,
                    "mailbox_full",
                    "the recipient's mailbox",
                )
                .map(|_| ())
            },
        );
        if let Err(e) = filed {
            ctx.delete::<Mail>(mail.id)?;
            return Err(e);
        }
        ctx.push_user(
            &mail.to,
            TOPIC_NEW_MAIL,
            &NewMail {
                id: mail.id,
                from: mail.from.clone(),
                subject: mail.subject.clone(),
                attachments: mail.attachments.len(),
            },
        )?;
        Ok(Sent {
            id: mail.id,
            expires_micros: mail.expires_micros,
        })
    }

    /// Reserves a place for mail `id` in `me`'s outbox, first dropping the mails that are no
    /// longer waiting. The sender's expired mail is deleted here, with its place in the
    /// recipient's mailbox: mail to a user id nobody reads is not kept past its expiry.
    fn reserve(ctx: &Ctx, me: &str, id: u64) -> Result<()> {
        let now = ctx.now_micros();
        let mut done = Vec::new();
        if let Some(outbox) = ctx.get::<Outbox>(me)? {
            for sent in outbox.value.mails {
                match ctx.get::<Mail>(sent)? {
                    Some(mail) if !expired(&mail, now) => {}
                    Some(mail) => {
                        discard(ctx, &mail)?;
                        forget(ctx, &mail.to, &[sent])?;
                        done.push(sent);
                    }
                    None => done.push(sent),
                }
            }
        }
        upsert(
            ctx,
            me,
            || Outbox {
                user: me.to_owned(),
                mails: Vec::new(),
            },
            |o| {
                o.mails.retain(|m| !done.contains(m));
                add_bounded(&mut o.mails, id, MAX_SENT, "outbox_full", "your outbox").map(|_| ())
            },
        )
        .map(|_| ())
    }

    /// Command 360: send a mail (no attachments) to a user, online or not.
    #[handler(360)]
    fn send(ctx: &mut Ctx, req: Send) -> Result<Sent> {
        let me = caller(ctx)?;
        let id = ctx.alloc_id::<Mail>()?;
        reserve(ctx, &me, id)?;
        let sent = deliver(
            ctx,
            id,
            Outgoing {
                to: req.to,
                from: me.clone(),
                system: false,
                subject: req.subject,
                body: req.body,
                attachments: Vec::new(),
                ttl_secs: req.ttl_secs,
            },
        );
        if sent.is_err() {
            ctx.modify::<Outbox>(me.as_str(), |o| {
                remove(&mut o.mails, &id);
                Ok(())
            })?;
        }
        sent
    }

    /// Command 370: system mail with attachments (rewards, refunds, compensation). It takes no
    /// caller: it is meant for back-office gates and other nodes (`ctx.call`), so a topology
    /// must not route it from players' gates (route `360-364` there, not `360-379`).
    #[handler(370)]
    fn send_system(ctx: &mut Ctx, req: SystemSend) -> Result<Sent> {
        check_name("from", &req.from, 1, MAX_KIND)?;
        deliver(
            ctx,
            ctx.alloc_id::<Mail>()?,
            Outgoing {
                to: req.to,
                from: req.from,
                system: true,
                subject: req.subject,
                body: req.body,
                attachments: req.attachments,
                ttl_secs: req.ttl_secs,
            },
        )
    }

    /// Command 361: the caller's mail, newest first, without bodies; expired mail is dropped.
    #[handler(361)]
    fn list(ctx: &mut Ctx, _req: ()) -> Result<Vec<Summary>> {
        let me = caller(ctx)?;
        let (stale, live) = sweep(ctx, &me, ctx.now_micros())?;
        forget(ctx, &me, &stale)?;
        Ok(live
            .into_iter()
            .rev()
            .map(|m| Summary {
                id: m.id,
                from: m.from,
                system: m.system,
                subject: m.subject,
                attachments: m.attachments.len(),
                claimed: m.claimed,
                read: m.read,
                sent_micros: m.sent_micros,
                expires_micros: m.expires_micros,
            })
            .collect())
    }

    /// The caller's live mail `id`: `not_found` if there is none, it is someone else's, or it
    /// has expired (it is deleted then).
    fn mine(ctx: &Ctx, id: u64, me: &str) -> Result<Versioned<Mail>> {
        let gone = || Error::new("not_found", format!("no mail {id} in your mailbox"));
        let Some(mail) = ctx.get::<Mail>(id)? else {
            return Err(gone());
        };
        if mail.to != me {
            return Err(gone());
        }
        if expired(&mail, ctx.now_micros()) {
            discard(ctx, &mail)?;
            forget(ctx, me, &[id])?;
            bail!("not_found", "mail {id} has expired");
        }
        Ok(mail)
    }

    /// Command 362: read one mail (marks it read).
    #[handler(362)]
    fn read(ctx: &mut Ctx, req: MailReq) -> Result<Mail> {
        let me = caller(ctx)?;
        let mail = mine(ctx, req.id, &me)?;
        if mail.read {
            return Ok(mail.value);
        }
        Ok(ctx
            .modify::<Mail>(req.id, |m| {
                m.read = true;
                Ok(())
            })?
            .value)
    }

    /// Command 363: claim a mail's attachments. Exactly once: the claim is a versioned write,
    /// so of any number of concurrent claims (on any nodes) one succeeds and the others get
    /// `already_claimed`.
    #[handler(363)]
    fn claim(ctx: &mut Ctx, req: MailReq) -> Result<Claimed> {
        let me = caller(ctx)?;
        let mail = mine(ctx, req.id, &me)?;
        ensure!(
            !mail.attachments.is_empty(),
            "no_attachments",
            "mail {} has nothing to claim",
            req.id
        );
        let now = ctx.now_micros();
        let claimed = ctx.modify::<Mail>(req.id, |m| {
            ensure!(
                !m.claimed,
                "already_claimed",
                "mail {}'s attachments were claimed already",
                m.id
            );
            ensure!(!expired(m, now), "not_found", "mail {} has expired", m.id);
            m.claimed = true;
            m.read = true;
            Ok(())
        })?;
        info!(
            "user {me} claimed mail {} ({} attachments)",
            req.id,
            claimed.attachments.len()
        );
        Ok(Claimed {
            id: req.id,
            attachments: claimed.value.attachments,
        })
    }

    /// Command 364: delete a mail; refused with `unclaimed_attachments` while it still holds
    /// attachments.
    #[handler(364)]
    fn delete(ctx: &mut Ctx, req: MailReq) -> Result<Done> {
        let me = caller(ctx)?;
        let mail = mine(ctx, req.id, &me)?;
        ensure!(
            mail.attachments.is_empty() || mail.claimed,
            "unclaimed_attachments",
            "claim mail {}'s attachments first (command 363)",
            req.id
        );
        ctx.delete_versioned(&mail)?;
        forget(ctx, &me, &[req.id])?;
        Ok(Done { ok: true })
    }
}
