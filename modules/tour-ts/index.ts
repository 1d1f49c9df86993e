// `tour-ts`: one small TypeScript module that uses each host feature the other TypeScript
// modules do not: a cached table with a ranking, timers, session events, pushes to everyone and
// calls to another node. `tests/typescript.rs` drives it through a real two-node cluster.
import {
  FireflyError,
  ctx as context,
  handle,
  onConnect,
  onDisconnect,
  pushTopic,
  t,
  table,
  timer,
  type Ctx,
} from "firefly-sdk";

interface Player {
  id: number;
  name: string;
  guild: string | null;
  score: number;
}

const players = table<Player>("tour_players", {
  key: "id",
  fields: {
    id: "int",
    name: "text",
    guild: { type: "text", nullable: true, indexed: true },
    score: "int",
  },
  rank: { field: "score" },
});

/** Push topics. */
const WELCOME = 9401;
const GONE = 9402;
const ANNOUNCED = 9406;
const REMINDED = 9407;

// What typed clients (`firefly client-gen`) learn of this module.
const Session = t.object("Session", { session: t.uint() });
pushTopic(WELCOME, "welcome", Session, "A session connected: its id.");
pushTopic(GONE, "gone", Session, "A session ended.");
pushTopic(ANNOUNCED, "announced", t.object("Announcement", { text: t.string() }));
pushTopic(
  REMINDED,
  "reminded",
  t.object("Reminder", { text: t.string(), firing: t.uint(), repeats: t.bool() }),
);
const Register = t.object("Register", { name: t.string(), guild: t.optional(t.string()) });
const Registered = t.object("Registered", { id: t.uint() });
const AddPoints = t.object("AddPoints", { id: t.uint(), points: t.int() });
const Scored = t.object("Scored", { score: t.int(), version: t.uint() });

/** 941: registers a player: a fresh id from the table, inserted with score 0. */
handle(941, function register(_ctx: Ctx, req: { name: string; guild?: string }) {
  if (typeof req?.name !== "string" || req.name === "") {
    throw new FireflyError("bad_request", "`name` must be a non-empty string");
  }
  const id = players.allocId();
  players.insert({ id, name: req.name, guild: req.guild ?? null, score: 0 });
  return { id };
}, { request: Register, reply: Registered, doc: "Registers a player." });

/** 942: adds points to a player (read-change-write, retried on conflicts). */
handle(
  942,
  (_ctx: Ctx, req: { id: number; points: number }) => {
    const after = players.modify(req.id, (p) => {
      p.score += req.points;
    });
    return { score: after.value.score, version: after.version };
  },
  { name: "addPoints", request: AddPoints, reply: Scored },
);

/** 943: the ids of a guild's players, ascending. */
handle(943, (_ctx: Ctx, req: { guild: string }) =>
  players.listBy("guild", req.guild).map(Number).sort((a, b) => a - b),
);

/** 944: a player's rank (1: best), or null. */
handle(944, (_ctx: Ctx, req: { id: number }) => players.rankOf(req.id));

/** 945: a page of the ranking. */
handle(945, (_ctx: Ctx, req: { start: number; count: number }) =>
  players.rankRange(null, req.start, req.count),
);

/** 946: pushes `text` to every session. */
handle(
  946,
  (ctx: Ctx, req: { text: string }) => {
    ctx.pushAll(ANNOUNCED, { text: req.text });
    return null;
  },
  { name: "announce", request: t.object("Announce", { text: t.string() }), reply: t.unit() },
);

/** 947: reminds the calling session of `text` after `delayMs` (`every` ms, `times` times). */
handle(947, (ctx: Ctx, req: { text: string; delayMs: number; everyMs?: number }) => {
  const payload = { text: req.text };
  const id = req.everyMs
    ? ctx.every(req.everyMs, "remind", payload, { firstAfterMs: req.delayMs })
    : ctx.after(req.delayMs, "remind", payload);
  return { timer: id };
});

/** 948: cancels a timer. */
handle(948, (ctx: Ctx, req: { timer: number }) => ({ cancelled: ctx.cancelTimer(req.timer) }));

/** 949: asks node `node` to run `command` with `request`, and returns its reply. */
handle(949, (ctx: Ctx, req: { node: string; command: number; request: unknown }) => ({
  reply: ctx.call(req.node, req.command, req.request),
}));

/** 950: opens room `key` (if it is not open) and lists this module's rooms on this node. */
handle(950, (ctx: Ctx, req: { key: string }) => {
  if (ctx.room(req.key) === null) ctx.openRoom(req.key, { maxMembers: 8 });
  ctx.joinRoom(req.key);
  return { node: ctx.nodeName(), list: ctx.rooms() };
});

timer<{ text: string }>("remind", (ctx, fired) => {
  ctx.pushTo(fired.session, REMINDED, {
    text: fired.payload.text,
    firing: fired.firing,
    repeats: fired.repeats,
  });
});

onConnect((ctx) => ctx.push(WELCOME, { session: ctx.session }));
onDisconnect(() => context.pushAll(GONE, { session: context.session }));
