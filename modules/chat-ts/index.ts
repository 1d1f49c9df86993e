// `chat-ts`: the TypeScript twin of `modules/chat`. Channels with a bounded history, private
// messages, per-user mute and block lists and a word-filter hook. Commands 320-330, pushes on
// topics 335-336 (see `docs/modules.md`); same payloads, codes and limits as the Rust module.
//
// Players are the user ids bound to their sessions (`accounts` login). State lives in cached
// objects only: `chat_channels` (members and the last HISTORY lines of each channel) and
// `chat_prefs` (per user: channels joined, muted and blocked users). Every list is capped.
import { DataError, FireflyError, handle, table, type Ctx } from "firefly-sdk";
import { addBounded, caller, checkName, checkText, checkUser, field, getOr, remove, upsert } from "./src/common";

/** Lines kept per channel; older ones are dropped. */
export const HISTORY = 50;
/** Members per channel. */
export const MAX_MEMBERS = 200;
/** Channels one user may be in at once. */
export const MAX_CHANNELS = 16;
/** Users one user may mute, and (separately) block. */
export const MAX_LIST = 100;
/** Bytes of one message. */
export const MAX_TEXT = 500;
/** Channel name length, in characters. */
export const MAX_CHANNEL_NAME = 32;
/** Topic of the push a channel message sends to the channel's other members. */
export const TOPIC_CHANNEL = 335;
/** Topic of the push a private message sends to its recipient. */
export const TOPIC_PRIVATE = 336;
/** Words the default word filter masks (a placeholder: replace it with your game's). */
export const BLOCKED_WORDS = ["badword", "darn"];

/** One line of a channel's history. */
interface Line {
  id: number;
  from: string;
  text: string;
  at_micros: number;
}

interface Channel {
  name: string;
  members: string[];
  next_id: number;
  history: Line[];
}

interface Prefs {
  user: string;
  channels: string[];
  muted: string[];
  blocked: string[];
}

const channels = table<Channel>("chat_channels", {
  key: "name",
  fields: { name: "text", members: "value", next_id: "int", history: "value" },
});

const prefs = table<Prefs>("chat_prefs", {
  key: "user",
  fields: { user: "text", channels: "value", muted: "value", blocked: "value" },
});

const fresh = (user: string): Prefs => ({ user, channels: [], muted: [], blocked: [] });
const hears = (p: Prefs, from: string) => !p.muted.includes(from) && !p.blocked.includes(from);

/** The word-filter hook: masks BLOCKED_WORDS (ASCII, any case) with `*`. */
export function wordFilter(text: string): string {
  let out = text;
  const lower = text.toLowerCase();
  for (const word of BLOCKED_WORDS) {
    let at = lower.indexOf(word);
    while (at >= 0) {
      out = out.slice(0, at) + "*".repeat(word.length) + out.slice(at + word.length);
      at = lower.indexOf(word, at + word.length);
    }
  }
  return out;
}

function channelName(req: unknown): string {
  field(req, "channel", "string");
  const name = (req as { channel: unknown }).channel;
  checkName("channel", name, 1, MAX_CHANNEL_NAME);
  return name.toLowerCase();
}

/** The channel, if `user` is one of its members. */
function memberChannel(name: string, user: string): Channel {
  const c = channels.get(name);
  if (c === null || !c.value.members.includes(user)) {
    throw new FireflyError("not_member", `you are not in channel \`${name}\` (command 320)`);
  }
  return c.value;
}

/** 320: joins a channel (created on first join); answers its size and history. */
handle(320, (ctx: Ctx, req: { channel: string }) => {
  const me = caller(ctx);
  const name = channelName(req);
  const mine = upsert(prefs, me, () => fresh(me), (p) => {
    addBounded(p.channels, name, MAX_CHANNELS, "too_many_channels", "your channel list");
  });
  let channel: Channel;
  try {
    channel = upsert(channels, name, () => ({ name, members: [], next_id: 1, history: [] }), (c) => {
      addBounded(c.members, me, MAX_MEMBERS, "channel_full", "the channel");
    });
  } catch (e) {
    // The channel is full: take it off the caller's list again.
    prefs.modify(me, (p) => { remove(p.channels, name); });
    throw e;
  }
  return {
    channel: name,
    members: channel.members.length,
    history: channel.history.filter((l) => hears(mine, l.from)),
  };
});

/** 321: leaves a channel (deleted with its last member). */
handle(321, (ctx: Ctx, req: { channel: string }) => {
  const me = caller(ctx);
  const name = channelName(req);
  if (prefs.get(me) !== null) prefs.modify(me, (p) => { remove(p.channels, name); });
  let channel = channels.get(name);
  if (channel === null) throw new FireflyError("not_member", `you are not in channel \`${name}\``);
  for (;;) {
    if (!remove(channel.value.members, me)) {
      throw new FireflyError("not_member", `you are not in channel \`${name}\``);
    }
    try {
      if (channel.value.members.length === 0) channels.delete(name, channel.version);
      else channels.update(channel);
      return { ok: true };
    } catch (e) {
      if (!(e instanceof DataError && e.code === "conflict")) throw e;
      channel = channels.get(name);
      if (channel === null) return { ok: true };
    }
  }
});

/** 322: says something in a channel; the other members who hear the caller get it pushed. */
handle(322, (ctx: Ctx, req: { channel: string; text: string }) => {
  const me = caller(ctx);
  const name = channelName(req);
  field(req, "text", "string");
  checkText("text", req.text, MAX_TEXT, false);
  const text = wordFilter(req.text);
  const at_micros = ctx.nowMicros();
  let line: Line | undefined;
  let channel;
  try {
    channel = channels.modify(name, (c) => {
      if (!c.members.includes(me)) {
        throw new FireflyError("not_member", `you are not in channel \`${name}\` (command 320)`);
      }
      line = { id: c.next_id, from: me, text, at_micros };
      c.next_id += 1;
      c.history.push(line);
      c.history.splice(0, Math.max(0, c.history.length - HISTORY));
    });
  } catch (e) {
    if (e instanceof DataError && e.code === "not_found") {
      throw new FireflyError("not_member", `no channel \`${name}\``);
    }
    throw e;
  }
  if (line === undefined) throw new FireflyError("handler_failed", "the line was not stored");
  const push = { channel: name, id: line.id, from: me, text: line.text, at_micros };
  for (const member of channel.value.members.filter((m) => m !== me)) {
    if (hears(getOr(prefs, member, () => fresh(member)), me)) ctx.pushUser(member, TOPIC_CHANNEL, push);
  }
  return line;
});

/** 323: the last `limit` (default all kept) lines the caller hears. */
handle(323, (ctx: Ctx, req: { channel: string; limit?: number | null }) => {
  const me = caller(ctx);
  const name = channelName(req);
  const limit = req.limit ?? HISTORY;
  if (!Number.isInteger(limit) || limit < 1 || limit > HISTORY) {
    throw new FireflyError("invalid_limit", `\`limit\` is 1 to ${HISTORY}`);
  }
  const channel = memberChannel(name, me);
  const mine = getOr(prefs, me, () => fresh(me));
  const lines = channel.history.filter((l) => hears(mine, l.from));
  return lines.slice(Math.max(0, lines.length - limit));
});

/** 324: a channel's members. */
handle(324, (ctx: Ctx, req: { channel: string }) => {
  const me = caller(ctx);
  return memberChannel(channelName(req), me).members;
});

/** 325: a private message, pushed to every session of the recipient. */
handle(325, (ctx: Ctx, req: { to: string; text: string }) => {
  const me = caller(ctx);
  field(req, "to", "string");
  field(req, "text", "string");
  checkUser("to", req.to);
  if (req.to === me) throw new FireflyError("invalid_user", "you cannot send yourself a private message");
  checkText("text", req.text, MAX_TEXT, false);
  const text = wordFilter(req.text);
  const theirs = getOr(prefs, req.to, () => fresh(req.to));
  if (theirs.blocked.includes(me)) {
    throw new FireflyError("blocked", `\`${req.to}\` does not accept your messages`);
  }
  const at_micros = ctx.nowMicros();
  ctx.pushUser(req.to, TOPIC_PRIVATE, { from: me, text, at_micros });
  return { to: req.to, text, at_micros };
});

function editList(ctx: Ctx, req: { user: string }, list: "muted" | "blocked", add: boolean): Prefs {
  const me = caller(ctx);
  field(req, "user", "string");
  checkUser("user", req.user);
  if (req.user === me) throw new FireflyError("invalid_user", "you cannot mute or block yourself");
  return upsert(prefs, me, () => fresh(me), (p) => {
    if (add) {
      addBounded(p[list], req.user, MAX_LIST, "list_full", list === "muted" ? "your mute list" : "your block list");
    } else {
      remove(p[list], req.user);
    }
  });
}

handle(326, (ctx: Ctx, req: { user: string }) => editList(ctx, req, "muted", true));
handle(327, (ctx: Ctx, req: { user: string }) => editList(ctx, req, "muted", false));
handle(328, (ctx: Ctx, req: { user: string }) => editList(ctx, req, "blocked", true));
handle(329, (ctx: Ctx, req: { user: string }) => editList(ctx, req, "blocked", false));

/** 330: the caller's settings. */
handle(330, (ctx: Ctx) => {
  const me = caller(ctx);
  return getOr(prefs, me, () => fresh(me));
});
