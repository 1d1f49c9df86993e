// The Firefly SDK for TypeScript modules (types: index.d.ts). It runs inside the module's
// engine (guest-sdk/typescript/engine), on top of the `__firefly` object the engine installs;
// nothing here works in Node or a browser.

const F = globalThis.__firefly;
if (F === undefined) {
  throw new Error("firefly-sdk runs only inside a Firefly module (build it with `firefly build`)");
}

import { FireflyError } from "./errors.js";
import { describeCommand } from "./schema.js";

export { FireflyError };

// Dispatch kinds (firefly_abi::DispatchKind).
const REQUEST = 0, CONNECT = 1, DISCONNECT = 2, TIMER = 3, ROOM_TICK = 4, ROOM_EVENT = 5;

const LEVELS = { error: 1, warn: 2, info: 3, debug: 4, trace: 5 };
const text = (parts) =>
  parts.map((p) => (typeof p === "string" ? p : safeString(p))).join(" ");
function safeString(value) {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  } catch {
    return String(value);
  }
}

/** Log lines in the node's log, tagged with the module and its version. */
export const log = {
  error: (...parts) => F.log(LEVELS.error, text(parts)),
  warn: (...parts) => F.log(LEVELS.warn, text(parts)),
  info: (...parts) => F.log(LEVELS.info, text(parts)),
  debug: (...parts) => F.log(LEVELS.debug, text(parts)),
  trace: (...parts) => F.log(LEVELS.trace, text(parts)),
};
globalThis.console = {
  log: log.info, info: log.info, warn: log.warn, error: log.error, debug: log.debug, trace: log.trace,
};

const encode = (value, raw) => (raw ? value : F.encode(value));

const SESSION_ERRORS = {
  1: ["no_such_session", "the session is not connected"],
  2: ["backpressure", "the session's queue is full"],
  3: ["node_unavailable", "the session's gate cannot be reached"],
  4: ["invalid_name", "names are 1 to 256 bytes"],
  5: ["reserved_topic", "topics 0xFFFFFF00 and up are the framework's"],
};
function sessionCheck(status, what) {
  if (status === 0) return;
  const [code, message] = SESSION_ERRORS[status] ?? ["handler_failed", `failed with status ${status}`];
  throw new FireflyError(code, `${what}: ${message}`);
}
const PUSH_ERRORS = { 1: 1, 2: 2, 3: 5 };
function pushCheck(status, what) {
  if (status !== 0) sessionCheck(PUSH_ERRORS[status] ?? status, what);
}

const CALL_ERRORS = { 2: "node_unavailable", 3: "timeout", 4: "unknown_node" };
const utf8 = (bytes) => F.utf8(bytes);

const TIMER_ERRORS = {
  1: ["timer_limit", "the module has as many pending timers as its limit allows"],
  2: ["invalid_timer", "tags are 1 to 64 bytes, delays at most a year, periods at least 10ms, payloads at most 64 KiB"],
  3: ["storage_unavailable", "a durable timer needs the node's storage, which is unavailable"],
};
const DURABLE = 1;
const TIMER_ID_BITS = 48n;

const ROOM_ERRORS = {
  1: "no_such_room", 2: "room_exists", 3: "room_full", 4: "invalid_room", 5: "room_limit",
  6: "room_unavailable", 7: "room_conflict", 8: "room_busy",
};
const UPDATE_ATTEMPTS = 64;
function roomCall(op) {
  const [status, bytes] = F.roomCall(F.encode(op));
  if (status === 0) return bytes;
  throw new FireflyError(ROOM_ERRORS[status] ?? "handler_failed", utf8(bytes) || `room operation failed with status ${status}`);
}

/** What a handler can ask of the host. One object, valid during the call it was given to. */
class Context {
  /** The session (client connection) the call runs for; `0n` when none. */
  get session() { return F.session(); }
  /** The command id being handled (0 for events). */
  get command() { return F.command(); }
  /** Wall-clock time in microseconds since the Unix epoch. */
  nowMicros() { return F.now(); }
  /** Wall-clock time in milliseconds since the Unix epoch. */
  now() { return Math.floor(F.now() / 1000); }
  /** A uniformly distributed number in [0, 1) from the host's secure randomness. */
  random() { return F.random(); }
  /** An integer in [min, max). */
  randomInt(min, max) { return min + Math.floor(F.random() * Math.max(0, max - min)); }
  get log() { return log; }

  /** Pushes `message` on `topic` to this call's session. */
  push(topic, message, options) { this.pushTo(this.session, topic, message, options); }
  /** Pushes `message` on `topic` to `session`. */
  pushTo(session, topic, message, options) {
    pushCheck(F.push(session, topic, encode(message, options?.raw)), `push to session ${session}`);
  }
  /** Pushes to each of `sessions`, wherever they are connected (gone ones are skipped). */
  pushSessions(sessions, topic, message, options) {
    sessionCheck(F.pushSessions(sessions, topic, encode(message, options?.raw)), "push to sessions");
  }
  /** Pushes to every member of `group`, on every gate. */
  pushGroup(group, topic, message, options) {
    sessionCheck(F.pushGroup(group, topic, encode(message, options?.raw)), `push to group ${group}`);
  }
  /** Pushes to every session bound to `user`. */
  pushUser(user, topic, message, options) {
    sessionCheck(F.pushUser(user, topic, encode(message, options?.raw)), `push to user ${user}`);
  }
  /** Pushes to every session of the cluster. */
  pushAll(topic, message, options) {
    sessionCheck(F.pushAll(topic, encode(message, options?.raw)), "push to everyone");
  }
  /** Adds `session` (default: this call's) to `group`. */
  join(group, session = this.session) { sessionCheck(F.groupJoin(session, group, true), `join ${group}`); }
  /** Removes `session` (default: this call's) from `group`. */
  leave(group, session = this.session) { sessionCheck(F.groupJoin(session, group, false), `leave ${group}`); }
  /** Binds `user` to `session` (default: this call's). */
  bind(user, session = this.session) {
    if (!user) throw new FireflyError("invalid_name", "a user id cannot be empty");
    sessionCheck(F.userBind(session, user), "bind user");
  }
  /** Unbinds the user of `session` (default: this call's). */
  unbind(session = this.session) { sessionCheck(F.userBind(session, ""), "unbind user"); }
  /** The user bound to `session` (default: this call's), or `null`. */
  user(session = this.session) {
    const [status, bytes] = F.userOf(session);
    sessionCheck(status, "user of session");
    return bytes.length === 0 ? null : utf8(bytes);
  }
  /** Ends `session`: its client gets a `kicked` error frame and its connection closes. */
  kick(session) { sessionCheck(F.kick(session), `kick ${session}`); }

  /** Starts a timer: `timer(tag)`'s handler runs after `delayMs` (then every `periodMs`). */
  startTimer(tag, { delayMs = 0, periodMs = 0, payload, durable = false } = {}) {
    const packed = F.timerStart(tag, delayMs, periodMs, durable ? DURABLE : 0,
      payload === undefined ? new Uint8Array() : F.encode(payload));
    const status = Number(packed >> TIMER_ID_BITS);
    if (status !== 0) {
      const [code, message] = TIMER_ERRORS[status] ?? ["handler_failed", `failed with status ${status}`];
      throw new FireflyError(code, `timer \`${tag}\`: ${message}`);
    }
    return Number(packed & ((1n << TIMER_ID_BITS) - 1n));
  }
  /** Runs `timer(tag)`'s handler once, after `delayMs`. Returns the timer's id. */
  after(delayMs, tag, payload, options) {
    return this.startTimer(tag, { delayMs, payload, durable: options?.durable });
  }
  /** Runs `timer(tag)`'s handler every `periodMs` (first after `firstAfterMs`, default one period). */
  every(periodMs, tag, payload, options) {
    return this.startTimer(tag, {
      delayMs: options?.firstAfterMs ?? periodMs, periodMs, payload, durable: options?.durable,
    });
  }
  /** Cancels a timer; whether it was pending. */
  cancelTimer(id) { return F.timerCancel(id); }

  /** Opens room `key` (held by the host), with an optional tick, member cap and state; with
   * `snapshotEveryTicks` / `snapshotEveryMs` the room is durable (it outlives its node). */
  openRoom(key, { tickMs = 0, maxMembers = 100, state, snapshotEveryTicks, snapshotEveryMs } = {}) {
    const durable = snapshotEveryTicks !== undefined || snapshotEveryMs !== undefined;
    roomCall({ Create: { key, tick_ms: tickMs, max_members: maxMembers,
      state: state === undefined ? new Uint8Array() : F.encode(state),
      snapshot: durable ? { every_ticks: snapshotEveryTicks ?? 0, every_ms: snapshotEveryMs ?? 0 } : null } });
  }
  /** Stores durable room `key` in the cluster's store now (after an event it must not lose). */
  snapshotRoom(key) { roomCall({ Snapshot: { key } }); }
  /** Adds `session` (default: this call's) to room `key`. */
  joinRoom(key, session = this.session) { roomCall({ Join: { key, session } }); }
  /** Removes `session` (default: this call's) from room `key`; whether it was a member. */
  leaveRoom(key, session = this.session) { return F.decode(roomCall({ Leave: { key, session } })) === true; }
  /** Room `key` (`{ members, state, ticks, version }`), or `null` when there is none. */
  room(key) {
    let bytes;
    try {
      bytes = roomCall({ Get: { key } });
    } catch (e) {
      if (e instanceof FireflyError && e.code === "no_such_room") return null;
      throw e;
    }
    const info = F.decode(bytes);
    return { members: info.members, state: F.decode(info.state), ticks: info.ticks, version: info.version ?? 0 };
  }
  /** Replaces room `key`'s state. */
  setRoomState(key, state) { roomCall({ SetState: { key, state: F.encode(state) } }); }
  /** Changes room `key`'s state with `change(state)` (which may mutate it or return a new one),
   *  retried while another writer got there first. Returns what `change` returned. */
  updateRoom(key, change) {
    for (let i = 0; i < UPDATE_ATTEMPTS; i++) {
      const room = this.room(key);
      if (room === null) throw new FireflyError("no_such_room", `no room \`${key}\``);
      const state = room.state;
      const out = change(state);
      try {
        roomCall({ Update: { key, version: room.version, state: F.encode(state) } });
        return out;
      } catch (e) {
        if (!(e instanceof FireflyError) || e.code !== "room_conflict") throw e;
      }
    }
    throw new FireflyError("room_conflict", `room \`${key}\` changed under ${UPDATE_ATTEMPTS} attempts in a row to update it`);
  }
  /** Closes room `key`. */
  closeRoom(key) { roomCall({ Close: { key } }); }
  /** This module's rooms on this node: `{ node, rooms: [{ key, members, max_members, tick_ms,
   * ticks }] }` (at most 10,000, the per-node cap). */
  rooms() { return F.decode(roomCall("List")); }
  /** The name of the node serving this call (as in `topology.yaml`). */
  nodeName() { return utf8(roomCall("Node")); }
  /** Pushes to every member of room `key`. */
  broadcastRoom(key, topic, message, options) { this.pushGroup(`room:${key}`, topic, message, options); }

  /** Runs `command` on node `node` and returns its decoded reply. */
  call(node, command, request, options) {
    const [status, bytes] = F.callNode(node, command, encode(request, options?.raw));
    if (status === 0) return options?.raw ? bytes : F.decode(bytes);
    if (status === 1) {
      const failure = F.decode(bytes);
      throw new FireflyError(failure?.code ?? "handler_failed", failure?.message ?? "");
    }
    throw new FireflyError(CALL_ERRORS[status] ?? "handler_failed", utf8(bytes));
  }
  /** Sends `command` to node `node` without waiting for an answer. */
  send(node, command, request, options) {
    if (F.sendNode(node, command, encode(request, options?.raw)) !== 0) {
      throw new FireflyError("unknown_node", `no node named \`${node}\``);
    }
  }
}

/** The context handed to every handler (the engine passes it as the first argument). */
export const ctx = new Context();
F.setContext(ctx);

/** Handles client requests (and node calls) with command id `command`. */
export function handle(command, fn, options) {
  F.register(REQUEST, command, fn, options?.raw ?? false);
  describeCommand(command, fn, options);
}

/** Runs when a session connects to a gate whose node hosts this module. */
export function onConnect(fn) { F.register(CONNECT, 0, fn); }

/** Runs when a session ends (to save the player...). */
export function onDisconnect(fn) { F.register(DISCONNECT, 0, fn); }

/** Handles the firings of timers tagged `tag`. */
export function timer(tag, fn) {
  F.register(TIMER, tag, (c, firing) => fn(c, {
    timer: firing.timer, tag: firing.tag, session: firing.session, firing: firing.firing,
    lateMs: firing.late_ms, repeats: firing.repeats, payload: F.decode(firing.payload),
  }));
}

/** Runs at each tick of a room with a tick; returns the room's new state (or nothing to keep it). */
export function roomTick(fn) {
  F.register(ROOM_TICK, 0, (c, tick) => {
    const state = fn(c, {
      key: tick.key, tick: tick.tick, elapsedMs: tick.elapsed_ms, members: tick.members,
      state: F.decode(tick.state),
    });
    return state === undefined ? undefined : state;
  });
}

/** Runs when a session joins or leaves a room, or is disconnected from it. */
export function roomEvent(fn) {
  F.register(ROOM_EVENT, 0, fn);
}

/** Declares a whole module at once: `module({ handlers: { 1: fn }, onConnect, onDisconnect })`. */
export function module(spec) {
  for (const [command, fn] of Object.entries(spec.handlers ?? {})) handle(Number(command), fn);
  for (const [command, fn] of Object.entries(spec.rawHandlers ?? {})) handle(Number(command), fn, { raw: true });
  if (spec.onConnect) onConnect(spec.onConnect);
  if (spec.onDisconnect) onDisconnect(spec.onDisconnect);
}

export const __kinds = { REQUEST, CONNECT, DISCONNECT, TIMER, ROOM_TICK, ROOM_EVENT };

export { DataError, table } from "./tables.js";
export { pushTopic, t } from "./schema.js";
