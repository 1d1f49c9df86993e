// Types of the Firefly SDK for TypeScript modules. See guest-sdk/TYPESCRIPT.md.

/** A MessagePack value as JavaScript sees it. Integers beyond 2^53 are `bigint`. */
export type Value =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Value[]
  | { [key: string]: Value };

/**
 * A session id. Like every integer decoded from MessagePack, a `number` up to 2^53 and a
 * `bigint` beyond (the high 16 bits name the gate, so nodes past the 31st give big ids).
 */
export type SessionId = number | bigint;

/** Options of handlers and pushes: `raw` passes `Uint8Array`s unchanged (no MessagePack). */
export interface RawOption {
  raw?: boolean;
}

/**
 * An error a handler throws for its caller: the client gets an error frame with `code` and
 * `message`; the connection stays open. Any other thrown value becomes `handler_failed`.
 */
export class FireflyError extends Error {
  constructor(code: string, message: string);
  readonly code: string;
}

/** Log lines in the node's log, tagged with the module and its version. */
export interface Log {
  error(...parts: unknown[]): void;
  warn(...parts: unknown[]): void;
  info(...parts: unknown[]): void;
  debug(...parts: unknown[]): void;
  trace(...parts: unknown[]): void;
}

/** What a handler can ask of the host. */
export interface Ctx {
  /** The session (client connection) the call runs for; 0 when there is none. */
  readonly session: SessionId;
  /** The command id being handled (0 for events). */
  readonly command: number;
  /** Wall-clock time in microseconds since the Unix epoch. */
  nowMicros(): number;
  /** Wall-clock time in milliseconds since the Unix epoch. */
  now(): number;
  /** A number in [0, 1) from the host's secure randomness (`Math.random` is the same). */
  random(): number;
  /** An integer in [min, max). */
  randomInt(min: number, max: number): number;
  readonly log: Log;

  /** Pushes `message` on `topic` to this call's session. */
  push(topic: number, message: unknown, options?: RawOption): void;
  /** Pushes `message` on `topic` to `session` (`no_such_session` if it is gone). */
  pushTo(session: SessionId, topic: number, message: unknown, options?: RawOption): void;
  /** Pushes to each of `sessions`, wherever they are connected; gone ones are skipped. */
  pushSessions(sessions: SessionId[], topic: number, message: unknown, options?: RawOption): void;
  /** Pushes to every member of `group`, on every gate. */
  pushGroup(group: string, topic: number, message: unknown, options?: RawOption): void;
  /** Pushes to every session bound to `user`, on every gate. */
  pushUser(user: string, topic: number, message: unknown, options?: RawOption): void;
  /** Pushes to every session of the cluster. */
  pushAll(topic: number, message: unknown, options?: RawOption): void;

  /** Adds `session` (default: this call's) to `group`. */
  join(group: string, session?: SessionId): void;
  /** Removes `session` (default: this call's) from `group`. */
  leave(group: string, session?: SessionId): void;
  /** Binds user id `user` to `session` (default: this call's). */
  bind(user: string, session?: SessionId): void;
  /** Unbinds the user of `session` (default: this call's). */
  unbind(session?: SessionId): void;
  /** The user bound to `session` (default: this call's), or `null`. */
  user(session?: SessionId): string | null;
  /** Ends `session`: its client gets a `kicked` error frame and its connection closes. */
  kick(session: SessionId): void;

  /** Starts a timer whose firings run `timer(tag)`'s handler. Returns its id. */
  startTimer(tag: string, options?: { delayMs?: number; periodMs?: number; payload?: unknown; durable?: boolean }): number;
  /** `timer(tag)`'s handler runs once after `delayMs` with `payload`. Returns the timer's id. */
  after(delayMs: number, tag: string, payload?: unknown, options?: { durable?: boolean }): number;
  /** `timer(tag)`'s handler runs every `periodMs` (first after `firstAfterMs`, default one period). */
  every(periodMs: number, tag: string, payload?: unknown, options?: { durable?: boolean; firstAfterMs?: number }): number;
  /** Cancels timer `id`; whether it was pending. */
  cancelTimer(id: number): boolean;

  /** Opens room `key`: held by the host, with an optional tick (`roomTick`), member cap (100) and state.
   * With `snapshotEveryTicks` or `snapshotEveryMs` the room is durable: stored in the cluster's store
   * at that rate and taken over by another node when its node is gone (members get `room_moved`). */
  openRoom(key: string, options?: { tickMs?: number; maxMembers?: number; state?: unknown; snapshotEveryTicks?: number; snapshotEveryMs?: number }): void;
  /** Stores durable room `key` in the cluster's store now (`invalid_room` for a room without snapshots). */
  snapshotRoom(key: string): void;
  /** Adds `session` (default: this call's) to room `key` (`room_full`, `no_such_room`...). */
  joinRoom(key: string, session?: SessionId): void;
  /** Removes `session` (default: this call's) from room `key`; whether it was a member. */
  leaveRoom(key: string, session?: SessionId): boolean;
  /** Room `key`, or `null` when there is none. */
  room<S = any>(key: string): RoomView<S> | null;
  /** Replaces room `key`'s state. */
  setRoomState(key: string, state: unknown): void;
  /** Changes room `key`'s state in place with `change`, retried on `room_conflict`. */
  updateRoom<S = any, R = void>(key: string, change: (state: S) => R): R;
  /** Closes room `key`. */
  closeRoom(key: string): void;
  /** Pushes to every member of room `key`. */
  broadcastRoom(key: string, topic: number, message: unknown, options?: RawOption): void;
  /** This module's rooms on this node. */
  rooms(): RoomList;
  /** The name of the node serving this call (as in `topology.yaml`). */
  nodeName(): string;

  /** Runs `command` on node `node`; returns its reply, throws its error as a `FireflyError`. */
  call<Resp = Value>(node: string, command: number, request: unknown, options?: RawOption): Resp;
  /** Sends `command` to node `node` without waiting. */
  send(node: string, command: number, request: unknown, options?: RawOption): void;
}

/** A request handler: gets the decoded payload, returns the reply (encoded to MessagePack). */
export type Handler<Req = any, Resp = Value> = (ctx: Ctx, payload: Req) => Resp;

/** A wire type for typed clients (`firefly client-gen`), made with [`t`]. */
export type WireType = string | { [kind: string]: unknown };

/** What a handler says about itself for typed clients: its method name (default: the
 * function's name), its doc, and its request and reply types (default: any value). */
export interface Described {
  name?: string;
  doc?: string;
  request?: WireType;
  reply?: WireType;
}

/** Handles client requests and node calls with command id `command`; `described` gives typed
 * clients its name and types. */
export function handle<Req = any, Resp = Value>(
  command: number,
  fn: Handler<Req, Resp>,
  described?: Described,
): void;
/** A raw handler: the payload and the reply are `Uint8Array`s. */
export function handle(
  command: number,
  fn: (ctx: Ctx, payload: Uint8Array) => Uint8Array,
  options: { raw: true },
): void;

/** Runs when a session connects. */
export function onConnect(fn: (ctx: Ctx) => void): void;
/** Runs when a session ends. */
export function onDisconnect(fn: (ctx: Ctx) => void): void;

/** What `ctx.rooms()` answers: the node's name and this module's rooms on it. */
export interface RoomList {
  node: string;
  rooms: { key: string; members: number; max_members: number; tick_ms: number; ticks: number }[];
}

/** A room as `ctx.room` reads it. */
export interface RoomView<S = any> {
  members: SessionId[];
  state: S;
  ticks: number;
  version: number;
}

/** A timer firing, as `timer(tag)`'s handler gets it. */
export interface Fired<P = any> {
  timer: number;
  tag: string;
  /** The session that started the timer (0: none); it may have ended since. */
  session: SessionId;
  /** 1 for the first firing, +1 per period. */
  firing: number;
  /** How late this firing runs (a node that was down fires late, never twice). */
  lateMs: number;
  repeats: boolean;
  payload: P;
}

/** One tick of a room. */
export interface Tick<S = any> {
  key: string;
  tick: number;
  elapsedMs: number;
  members: SessionId[];
  state: S;
}

/** A member joined, left or was disconnected from a room. */
export interface RoomEvent {
  key: string;
  session: SessionId;
  /** `restored`: this node took the room over from its snapshot (`ageMs` old, from node `from`). */
  kind: "joined" | "left" | "disconnected" | "restored";
  members: SessionId[];
  age_ms?: number;
  from?: string;
}

/** Handles the firings of timers tagged `tag`. */
export function timer<P = any>(tag: string, fn: (ctx: Ctx, fired: Fired<P>) => void): void;
/** Runs at each tick of a room; returns the new state, or nothing to keep it. */
export function roomTick<S = any>(fn: (ctx: Ctx, tick: Tick<S>) => S | undefined | void): void;
/** Runs when a session joins or leaves a room, or is disconnected from it. */
export function roomEvent(fn: (ctx: Ctx, event: RoomEvent) => void): void;

/** A whole module in one object. */
export interface ModuleSpec {
  handlers?: Record<number, Handler>;
  rawHandlers?: Record<number, (ctx: Ctx, payload: Uint8Array) => Uint8Array>;
  onConnect?: (ctx: Ctx) => void;
  onDisconnect?: (ctx: Ctx) => void;
}
/** Declares handlers and events from one object. */
export function module(spec: ModuleSpec): void;

/** The context handed to every handler (the same object). */
export const ctx: Ctx;
/** The module's log. `console.log` and friends write here too. */
export const log: Log;

/** The type of a table field, stored in its own SQL column. */
export type FieldType = "int" | "float" | "bool" | "text" | "bytes" | "value";

/** A field: its type, or its type with options. */
export type FieldSpec =
  | FieldType
  | { type: FieldType; nullable?: boolean; defaulted?: boolean; indexed?: boolean };

/** What `table` declares (the schema the host creates or extends the SQL table from). */
export interface TableSpec<T> {
  /** The primary key field (an `int` or `text` field). */
  key: keyof T & string;
  /** Every field, the key included. */
  fields: { [K in keyof T]: FieldSpec };
  /** Rank the objects by this `int` field, highest first (per value of `by`, if given). */
  rank?: { field: keyof T & string; by?: keyof T & string };
}

/** An object read from a table, with its version. */
export interface Versioned<T> {
  version: number;
  value: T;
}

/** A failed data operation: `not_found`, `conflict`, `already_exists`, `invalid_argument`, ... */
export class DataError extends FireflyError {}

/** The handle of a declared table. */
export interface Table<T> {
  readonly name: string;
  get(key: number | string): Versioned<T> | null;
  insert(object: T): number;
  update(versioned: Versioned<T>): number;
  modify(key: number | string, change: (value: T) => void): Versioned<T>;
  delete(key: number | string, version?: number): void;
  listBy(field: keyof T & string, value: unknown): (number | string)[];
  rankOf(key: number | string): { rank: number; score: number; total: number } | null;
  rankRange(group: unknown, start: number, count: number): {
    total: number;
    entries: { rank: number; key: number | string; score: number }[];
  };
  allocId(): number;
}

/** Wire types for typed clients (the same description Rust's `#[derive(Schema)]` gives). */
export const t: {
  bool(): WireType;
  /** A signed 64-bit integer. */
  int(): WireType;
  /** An unsigned 64-bit integer. */
  uint(): WireType;
  i32(): WireType;
  u32(): WireType;
  float(): WireType;
  string(): WireType;
  bytes(): WireType;
  unit(): WireType;
  any(): WireType;
  /** May be nil; as an object's field, may be absent. */
  optional(type: WireType): WireType;
  list(type: WireType): WireType;
  map(key: WireType, value: WireType): WireType;
  tuple(...types: WireType[]): WireType;
  /** A map with named fields, declared in clients as type `name`. */
  object(name: string, fields: Record<string, WireType>, doc?: string): WireType;
  /** One of these strings (a fieldless enum). */
  oneOf(name: string, variants: string[], doc?: string): WireType;
};

/** Declares push topic `topic` for typed clients: its name and its payload's type. */
export function pushTopic(topic: number, name: string, payload?: WireType, doc?: string): void;

/** Declares a cached table when the module loads, and returns its handle. */
export function table<T>(name: string, spec: TableSpec<T>): Table<T>;
