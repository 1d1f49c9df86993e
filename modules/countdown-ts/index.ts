// `countdown-ts`: the TypeScript twin of `modules/countdown`, the smallest room game. Commands
// 471-474, same payloads, same pushes.
//
// A player opens a room that counts down from N at a fixed tick; others join it; every tick
// the host calls the room tick, which lowers the count in the room's state (kept by the host)
// and broadcasts it to the members (topic 4701); at 0 the room closes itself, then tells the
// members of that last tick. Every join, leave and disconnect of a member is told to the
// members on topic 4702.
import { FireflyError, handle, roomEvent, roomTick, type Ctx } from "firefly-sdk";

/** Broadcast to a room's members at each tick. */
export const TICK_TOPIC = 4701;
/** Broadcast to a room's members when one joins, leaves or is disconnected. */
export const MEMBER_TOPIC = 4702;

/** The room's state, held by the host between ticks. */
interface Count {
  left: number;
  /** Total milliseconds the ticks reported as elapsed. */
  elapsed_ms: number;
}

interface Open {
  room: string;
  from: number;
  tick_ms: number;
  max_members?: number;
  snapshot_ticks?: number;
}

interface Room {
  room: string;
}

/** Refuses a request whose `field` is not of `type` (as serde does for the Rust module). */
function expect(req: unknown, field: string, type: "string" | "number"): void {
  const value = (req as Record<string, unknown> | null)?.[field];
  if (typeof value !== type) {
    throw new FireflyError("bad_request", `invalid type at \`${field}\`: expected a ${type}`);
  }
}

/** Command 471: opens a room counting down from `from`, and joins it. */
handle(471, (ctx: Ctx, req: Open) => {
  expect(req, "room", "string");
  expect(req, "from", "number");
  expect(req, "tick_ms", "number");
  if (!(req.from > 0)) throw new FireflyError("invalid_count", "count down from at least 1");
  const state: Count = { left: req.from, elapsed_ms: 0 };
  ctx.openRoom(req.room, {
    tickMs: req.tick_ms,
    maxMembers: req.max_members ?? 2,
    state,
    // Durable: stored every that many ticks, so the room outlives its node.
    ...(req.snapshot_ticks ? { snapshotEveryTicks: req.snapshot_ticks } : {}),
  });
  ctx.joinRoom(req.room);
});

/** Command 472: joins a room. */
handle(472, (ctx: Ctx, req: Room) => {
  expect(req, "room", "string");
  ctx.joinRoom(req.room);
});

/** Command 473: leaves a room; whether the caller was in it. */
handle(473, (ctx: Ctx, req: Room) => ctx.leaveRoom(req.room));

/** Command 474: a room's members and count (nil when closed). */
handle(474, (ctx: Ctx, req: Room) => {
  const room = ctx.room<Count>(req.room);
  return room === null ? null : { members: room.members, left: room.state.left, ticks: room.ticks };
});

/** Each tick: one less, told to every member; the room closes at 0. */
roomTick<Count>((ctx, t) => {
  const count = t.state;
  count.left = Math.max(0, count.left - 1);
  count.elapsed_ms += t.elapsedMs;
  const tock = { room: t.key, tick: t.tick, left: count.left, elapsed_ms: count.elapsed_ms };
  if (count.left === 0) {
    // Closed before the members hear of the last tick, so one that reacts to it finds the room
    // closed. Told with pushSessions: the close took them out of the room's group.
    ctx.closeRoom(t.key);
    ctx.pushSessions(t.members, TICK_TOPIC, tock);
  } else {
    ctx.broadcastRoom(t.key, TICK_TOPIC, tock);
  }
  return count;
});

/** A member joined, left or was disconnected: the members are told. */
roomEvent((ctx, e) => {
  ctx.broadcastRoom(e.key, MEMBER_TOPIC, {
    room: e.key, session: e.session, kind: e.kind, members: e.members,
  });
});
