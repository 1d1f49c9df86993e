// `tour-ts`: one small TypeScript module that uses each host feature the other TypeScript
// modules do not: a cached table with a ranking, timers, session events, pushes to everyone and
// calls to another node. `tests/typescript.rs` drives it through a real two-node cluster.
import { FireflyError, ctx as context, handle, onConnect, onDisconnect, table, timer, type Ctx } from "firefly-sdk";

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

/** 941: registers a player: a fresh id from the table, inserted with score 0. */
handle(941, (_ctx: Ctx, req: { name: string; guild?: string }) => {
  if (typeof req?.name !== "string" || req.name === "") {
    throw new FireflyError("bad_request", "`name` must be a non-empty string");
  }
  const id = players.allocId();
  players.insert({ id, name: req.name, guild: req.guild ?? null, score: 0 });
  return { id };
});

/** 942: adds points to a player (read-change-write, retried on conflicts). */
handle(942, (_ctx: Ctx, req: { id: number; points: number }) => {
  const after = players.modify(req.id, (p) => {
    p.score += req.points;
  });
  return { score: after.value.score, version: after.version };
});

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
handle(946, (ctx: Ctx, req: { text: string }) => {
  ctx.pushAll(ANNOUNCED, { text: req.text });
  return null;
});

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

timer<{ text: string }>("remind", (ctx, fired) => {
  ctx.pushTo(fired.session, REMINDED, {
    text: fired.payload.text,
    firing: fired.firing,
    repeats: fired.repeats,
  });
});

onConnect((ctx) => ctx.push(WELCOME, { session: ctx.session }));
onDisconnect(() => context.pushAll(GONE, { session: context.session }));
