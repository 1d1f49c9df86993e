//! The forwarding path's two messages, `ForwardRun` (a gate's run of one session's requests for
//! a node) and `ReplyRun` (their answers), in a binary form of their own instead of
//! MessagePack: payloads are written once into the frame and read back as slices of it (no
//! allocation or copy per request on the receiving side), and answers are encoded as the node
//! produces them ([`RunReplies`] is an [`Answers`] consumer).
//!
//! A run frame's body starts with [`RUN_MARK`], a byte that never starts a MessagePack value,
//! so one link carries both forms. All integers are big-endian.
//!
//! | message | body after the mark |
//! |---|---|
//! | `ForwardRun` | `1`, id u64, session u64, count u32, then per request: command u32, length u32, payload |
//! | `ReplyRun` | `2`, id u64, count u32 (answers), then items: `0` topic u32 length u32 payload (a push), `1` length u32 payload (a reply), `2` length u32 MessagePack error frame (an error) |

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{Answers, ErrorReply};

/// The first byte of a run frame's body (0xc1 is the one byte MessagePack never uses).
pub(super) const RUN_MARK: u8 = 0xc1;
const FORWARD_RUN: u8 = 1;
const REPLY_RUN: u8 = 2;
const PUSH: u8 = 0;
const REPLY: u8 = 1;
const ERROR: u8 = 2;

/// Appends a `ForwardRun` body to `out`.
pub(super) fn encode_forward(id: u64, session: u64, requests: &[(u32, Bytes)], out: &mut BytesMut) {
    let size: usize = requests.iter().map(|(_, p)| 8 + p.len()).sum();
    out.reserve(22 + size);
    out.put_u8(RUN_MARK);
    out.put_u8(FORWARD_RUN);
    out.put_u64(id);
    out.put_u64(session);
    out.put_u32(u32::try_from(requests.len()).unwrap_or(u32::MAX));
    for (command, payload) in requests {
        out.put_u32(*command);
        out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        out.put_slice(payload);
    }
}

/// Appends a `ReplyRun` body to `out`.
pub(super) fn encode_replies(id: u64, replies: &RunReplies, out: &mut BytesMut) {
    out.reserve(14 + replies.bytes().len());
    out.put_u8(RUN_MARK);
    out.put_u8(REPLY_RUN);
    out.put_u64(id);
    out.put_u32(replies.count);
    out.put_slice(replies.bytes());
}

/// A run frame's message (the link's framing makes it a `Msg`).
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    /// A `ForwardRun`.
    Forward {
        id: u64,
        session: u64,
        requests: Vec<(u32, Bytes)>,
    },
    /// A `ReplyRun`.
    Replies { id: u64, replies: RunReplies },
}

/// A run frame's message, decoded from its body (which starts with [`RUN_MARK`]). Payloads
/// are slices of `body`. `Err` says what is malformed.
pub(super) fn decode(mut body: Bytes) -> Result<Decoded, String> {
    let bad = |what: &str| what.to_owned();
    if body.len() < 2 {
        return Err(bad("a run frame shorter than its header"));
    }
    body.advance(1);
    match body.get_u8() {
        FORWARD_RUN => {
            if body.remaining() < 20 {
                return Err(bad("a forwarded run shorter than its header"));
            }
            let id = body.get_u64();
            let session = body.get_u64();
            let count = body.get_u32() as usize;
            // Bounded by what the frame can hold (8 bytes a request), not by what it claims.
            let mut requests = Vec::with_capacity(count.min(body.remaining() / 8));
            for _ in 0..count {
                if body.remaining() < 8 {
                    return Err(bad("a forwarded run ends inside a request's header"));
                }
                let command = body.get_u32();
                let len = body.get_u32() as usize;
                if body.remaining() < len {
                    return Err(bad("a forwarded run ends inside a payload"));
                }
                requests.push((command, body.split_to(len)));
            }
            if body.has_remaining() {
                return Err(bad("bytes after a forwarded run's last request"));
            }
            Ok(Decoded::Forward {
                id,
                session,
                requests,
            })
        }
        REPLY_RUN => {
            if body.remaining() < 12 {
                return Err(bad("a run's replies shorter than their header"));
            }
            let id = body.get_u64();
            let count = body.get_u32();
            let replies = RunReplies {
                items: BytesMut::from(&b""[..]),
                count,
                received: body,
            };
            // Checked once here, so that replaying it later cannot fail half way.
            replies.walk(|_| {})?;
            Ok(Decoded::Replies { id, replies })
        }
        other => Err(format!("unknown run frame kind {other}")),
    }
}

/// The answers to a forwarded run, as a node produces them (an [`Answers`] consumer that
/// encodes each straight into the reply's bytes) or as a gate received them (then replayed
/// with [`RunReplies::replay`]).
#[derive(Clone, Default)]
pub struct RunReplies {
    /// Encoded items, while being built.
    items: BytesMut,
    /// Answers (replies and errors) in `items` or `received`.
    count: u32,
    /// Encoded items, as received (a slice of the frame).
    received: Bytes,
}

impl std::fmt::Debug for RunReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReplies")
            .field("answers", &self.count)
            .field("bytes", &(self.items.len() + self.received.len()))
            .finish()
    }
}

impl PartialEq for RunReplies {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.bytes() == other.bytes()
    }
}

impl Eq for RunReplies {}

/// One item of a run's answers.
enum Item<'a> {
    Push(u32, &'a [u8]),
    Reply(&'a [u8]),
    Error(&'a [u8]),
}

impl RunReplies {
    /// Answers (replies and errors) held.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no request is answered yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Replays the answers into `out`, the reply to the i-th request as `commands[i]`. A
    /// request the node sent no answer for gets an `internal` error frame naming `node`.
    pub fn replay(&self, commands: &[u32], node: &str, out: &mut impl Answers) {
        let mut next = commands.iter();
        let _ = self.walk(|item| match item {
            Item::Push(topic, payload) => out.push(topic, payload),
            Item::Reply(payload) => {
                if let Some(&command) = next.next() {
                    out.reply(command, payload);
                }
            }
            Item::Error(bytes) => {
                let Some(&command) = next.next() else {
                    return;
                };
                let reply = ErrorReply::from_msgpack(bytes).unwrap_or_else(|e| {
                    let why = format!("node `{node}` sent an unreadable error frame: {e}");
                    ErrorReply::new(command, firefly_abi::codes::INTERNAL, why)
                });
                out.error(&reply);
            }
        });
        for &command in next {
            let why = format!("node `{node}` sent no answer for this request");
            out.error(&ErrorReply::new(command, firefly_abi::codes::INTERNAL, why));
        }
    }

    /// Calls `f` with each item, in order; `Err` when the bytes are not well formed (or hold
    /// another number of answers than they claim).
    fn walk(&self, mut f: impl FnMut(Item<'_>)) -> Result<(), String> {
        let mut bytes = self.bytes();
        let mut answers = 0u32;
        let take = |bytes: &mut &[u8]| -> Result<usize, String> {
            if bytes.remaining() < 4 {
                return Err("a run's replies end inside an item".into());
            }
            let len = bytes.get_u32() as usize;
            if bytes.remaining() < len {
                return Err("a run's replies end inside a payload".into());
            }
            Ok(len)
        };
        while bytes.has_remaining() {
            match bytes.get_u8() {
                PUSH => {
                    if bytes.remaining() < 4 {
                        return Err("a run's replies end inside a push".into());
                    }
                    let topic = bytes.get_u32();
                    let len = take(&mut bytes)?;
                    f(Item::Push(topic, &bytes[..len]));
                    bytes.advance(len);
                }
                kind @ (REPLY | ERROR) => {
                    let len = take(&mut bytes)?;
                    let payload = &bytes[..len];
                    f(if kind == REPLY {
                        Item::Reply(payload)
                    } else {
                        Item::Error(payload)
                    });
                    bytes.advance(len);
                    answers += 1;
                }
                other => return Err(format!("unknown item kind {other} in a run's replies")),
            }
        }
        if answers != self.count {
            return Err(format!(
                "a run's replies hold {answers} answers but claim {}",
                self.count
            ));
        }
        Ok(())
    }

    /// The encoded items.
    fn bytes(&self) -> &[u8] {
        if self.received.is_empty() {
            &self.items
        } else {
            &self.received
        }
    }

    fn put(&mut self, kind: u8, payload: &[u8]) {
        self.items.reserve(5 + payload.len());
        self.items.put_u8(kind);
        self.items
            .put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        self.items.put_slice(payload);
    }
}

impl Answers for RunReplies {
    fn push(&mut self, topic: u32, payload: &[u8]) {
        self.items.reserve(9 + payload.len());
        self.items.put_u8(PUSH);
        self.items.put_u32(topic);
        self.items
            .put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        self.items.put_slice(payload);
    }

    fn reply(&mut self, _command: u32, payload: &[u8]) {
        self.put(REPLY, payload);
        self.count += 1;
    }

    fn error(&mut self, reply: &ErrorReply) {
        self.put(ERROR, &reply.to_msgpack());
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a replay hands out.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl Answers for Record {
        fn push(&mut self, topic: u32, payload: &[u8]) {
            self.0.push(format!("push {topic} {payload:?}"));
        }
        fn reply(&mut self, command: u32, payload: &[u8]) {
            self.0.push(format!("reply {command} {payload:?}"));
        }
        fn error(&mut self, reply: &ErrorReply) {
            self.0
                .push(format!("error {} {}", reply.command, reply.code));
        }
    }

    #[test]
    fn runs_round_trip_and_replay_in_order() {
        let requests = vec![(101, Bytes::from_static(b"hi")), (102, Bytes::new())];
        let mut body = BytesMut::new();
        encode_forward(9, 1 << 48 | 5, &requests, &mut body);
        let forward = Decoded::Forward {
            id: 9,
            session: 1 << 48 | 5,
            requests,
        };
        assert_eq!(decode(body.freeze()).unwrap(), forward);

        let mut replies = RunReplies::default();
        replies.push(7, b"p");
        replies.reply(101, b"ok");
        replies.error(&ErrorReply::new(102, "nope", "no"));
        let mut body = BytesMut::new();
        encode_replies(9, &replies, &mut body);
        let decoded = decode(body.freeze()).unwrap();
        let Decoded::Replies { id: 9, replies } = decoded else {
            panic!("{decoded:?}")
        };
        assert_eq!(replies.len(), 2);
        let mut seen = Record::default();
        // A third request the node did not answer gets an error of its own.
        replies.replay(&[101, 102, 103], "logic", &mut seen);
        assert_eq!(
            seen.0,
            [
                "push 7 [112]",
                "reply 101 [111, 107]",
                "error 102 nope",
                "error 103 internal"
            ]
        );
    }

    #[test]
    fn malformed_run_frames_are_refused() {
        let frame = |body: &[u8]| decode(Bytes::copy_from_slice(body));
        // Claims two requests, holds one.
        let mut body = vec![RUN_MARK, FORWARD_RUN];
        body.extend(1u64.to_be_bytes());
        body.extend(2u64.to_be_bytes());
        body.extend(2u32.to_be_bytes());
        body.extend(5u32.to_be_bytes());
        body.extend(1u32.to_be_bytes());
        body.push(0);
        assert!(frame(&body).is_err());
        // A payload longer than the frame.
        let mut body = vec![RUN_MARK, FORWARD_RUN];
        body.extend(1u64.to_be_bytes());
        body.extend(2u64.to_be_bytes());
        body.extend(1u32.to_be_bytes());
        body.extend(5u32.to_be_bytes());
        body.extend(u32::MAX.to_be_bytes());
        assert!(frame(&body).is_err());
        // Replies claiming an answer they do not hold, and an unknown kind.
        let mut body = vec![RUN_MARK, REPLY_RUN];
        body.extend(1u64.to_be_bytes());
        body.extend(1u32.to_be_bytes());
        assert!(frame(&body).is_err());
        assert!(frame(&[RUN_MARK, 9]).is_err());
    }
}
