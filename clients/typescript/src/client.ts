/**
 * The transport-independent client: requests and replies in order, error frames as typed
 * errors, pushes as events, per-request timeouts, and resumable sessions.
 */
import { ConnectionError, FireflyError, TimeoutError, type ErrorReply } from "./errors.js";
import {
  Codec,
  HELLO_COMMAND,
  KEEPALIVE_COMMAND,
  LOGOUT_COMMAND,
  PUSH_COMMAND,
  SESSION_COMMAND,
  type FrameSettings,
} from "./frame.js";
import { decodeValue, encodeValue } from "./msgpack.js";

/** One open connection, as a transport hands it over. */
export interface Connection {
  /** Sends one encoded frame. */
  send(frame: Uint8Array): void;
  /** Closes the connection (its `onClose` still fires). */
  close(): void;
}

/** What a transport calls back. */
export interface ConnectionHandlers {
  /** Bytes arrived (whole frames on WebSocket, any slice of the stream on TCP). */
  onData(bytes: Uint8Array): void;
  /** The connection is gone. */
  onClose(reason: string): void;
}

/** Opens a connection to the server: resolves once it can send. */
export type Dial = (handlers: ConnectionHandlers) => Promise<Connection>;

/** How the client reconnects a dropped resumable session. */
export interface ReconnectOptions {
  /** First delay before reconnecting, doubled after each failed attempt. Default 100 ms. */
  initialDelayMs?: number;
  /** Largest delay between attempts. Default 2000 ms. */
  maxDelayMs?: number;
  /** Give up (the session is `lost`) after this long. Default 30000 ms (the server's default grace). */
  giveUpAfterMs?: number;
}

/** Client options. */
export interface ClientOptions extends FrameSettings {
  /** Default per-request timeout. Default 10000 ms. */
  timeoutMs?: number;
  /** Ask for a resume token on connect and resume the session after a drop. Default true
   *  (a listener without `resume` answers `resume_disabled`, and the client then does not). */
  resume?: boolean;
  /** Reconnection backoff. */
  reconnect?: ReconnectOptions;
  /** A resume token kept from an earlier connection (say, in `sessionStorage` before a page
   *  reload): the client takes that session back as it connects. If the token no longer works
   *  the client carries on with a new session (`session.resumed` is false). */
  restore?: string;
  /** Send a keep-alive when nothing was sent for this long, so a quiet player is not closed
   *  by the listener's `idle_timeout` (default 300 s). Default 20000 ms; 0 turns it off. */
  keepAliveMs?: number;
  /** Decode every 64-bit MessagePack integer as `bigint`. By default those that fit in a safe
   *  integer are numbers and larger ones bigints; `bigint`s (and integral numbers past 32 bits)
   *  are always encoded as 64-bit integers. */
  useBigInt64?: boolean;
}

/** A session ticket: the session id and the token that resumes it. */
export interface SessionTicket {
  /** A number, or a bigint past 2^53 (gates numbered 32 and up). */
  session: number | bigint;
  token: string;
  resumed: boolean;
  replayed: number;
  dropped: number;
}

/** The events of a client and their arguments. */
export interface ClientEvents {
  /** A push: its topic id, its decoded MessagePack payload (undefined if it is not
   *  MessagePack) and its raw bytes. */
  push: [topic: number, value: unknown, bytes: Uint8Array];
  /** The connection dropped; a resumable session is being resumed. */
  disconnected: [reason: string];
  /** A new resume token (after each resume and ticket refresh; the first is `client.session`
   *  once `connect` resolves): store `ticket.token` to restore the session after a reload. */
  ticket: [ticket: SessionTicket];
  /** The connection state changed. */
  state: [state: ConnectionState];
  /** The session came back: same session, user and groups; `replayed` missed pushes follow. */
  resumed: [ticket: SessionTicket];
  /** The session is gone (no token, token refused, or no server within the give-up time):
   *  the game must log in again. After `resume_failed` the client is connected on a new session. */
  lost: [reason: string];
  /** The server kicked this session (`kicked` error frame; e.g. the user logged in elsewhere).
   *  The session is over: the client does not resume it and closes (`closed` follows). Do not
   *  log in again automatically, or two devices kick each other forever. */
  kicked: [error: FireflyError];
  /** The client is closed for good (`close()`, `logout()`, a kick, or a lost session). */
  closed: [reason: string];
}

type Listener<K extends keyof ClientEvents> = (...args: ClientEvents[K]) => void;

interface Pending {
  command: number;
  /** Run as the reply is read, before the frames after it (even if the request timed out). */
  onReply?(payload: Uint8Array): void;
  resolve(payload: Uint8Array): void;
  reject(error: Error): void;
  timer?: ReturnType<typeof setTimeout>;
  /** Timed out: its reply is still expected (replies come in order) and is dropped. */
  abandoned: boolean;
}

interface Queued {
  frame: Uint8Array;
  pending: Pending;
}

/** Where the connection is: `connecting` (the first dial), `connected`, `reconnecting` (a
 *  dropped resumable session being resumed), `closed` (for good). */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** Per-request options. */
export interface RequestOptions {
  /** This request's timeout (default: the client's). */
  timeoutMs?: number;
}

/** A Firefly client over any transport (see `connectWebSocket`, and `connectTcp` /
 *  `connectNodeWebSocket` in `@firefly-rs/client/node`). */
export class FireflyClient {
  private readonly codec: Codec;
  private readonly timeoutMs: number;
  private readonly resumeWanted: boolean;
  private readonly backoff: Required<ReconnectOptions>;
  private readonly allBigInt: boolean;
  private readonly keepAliveMs: number;
  private conn?: Connection;
  private current: ConnectionState = "connecting";
  /** The gate sends pushes as tagged push frames on this connection (hello). */
  private pushFrames = false;
  private lastSent = 0;
  private keepAlive?: ReturnType<typeof setInterval>;
  private inflight: Pending[] = [];
  private waiting: Queued[] = [];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private listeners = new Map<keyof ClientEvents, Set<(...args: any[]) => void>>();
  private ticket?: SessionTicket;
  /** When the connection dropped (kept across failed reconnections, for the give-up time). */
  private droppedAt?: number;

  private constructor(private readonly dial: Dial, options: ClientOptions) {
    this.codec = new Codec(options);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.resumeWanted = options.resume ?? true;
    this.allBigInt = options.useBigInt64 ?? false;
    this.keepAliveMs = options.keepAliveMs ?? 20_000;
    this.backoff = {
      initialDelayMs: options.reconnect?.initialDelayMs ?? 100,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 2000,
      giveUpAfterMs: options.reconnect?.giveUpAfterMs ?? 30_000,
    };
  }

  /** Connects with `dial`, says hello (push frames), and (unless `resume: false`) fetches the
   *  session's resume token, or takes back the session of `options.restore`. */
  static async connect(dial: Dial, options: ClientOptions = {}): Promise<FireflyClient> {
    const client = new FireflyClient(dial, options);
    client.conn = await dial(client.handlers());
    client.setState("connected");
    client.startKeepAlive();
    try {
      const hello = client.hello();
      hello.catch(() => undefined); // awaited below; a failure before then must not go unhandled
      if (options.restore !== undefined) {
        await client.resume(options.restore).catch(async (error) => {
          const refused = error instanceof FireflyError && ["resume_failed", "resume_disabled"].includes(error.code);
          if (!refused) throw error;
          if (client.resumeWanted) await client.refreshTicket();
        });
      } else if (client.resumeWanted) {
        await client.refreshTicket();
      }
      await hello;
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** The current session ticket (undefined when the listener does not resume sessions). */
  get session(): SessionTicket | undefined {
    return this.ticket;
  }

  /** The connection state (`state` events tell each change). */
  get state(): ConnectionState {
    return this.current;
  }

  /** Takes back the session of `token` (kept from an earlier connection, e.g. before a page
   *  reload) on this connection: same session id, user and groups, and the pushes kept for it
   *  replayed after `resumed`. The session this connection had until now ends. Rejects with a
   *  `FireflyError` `resume_failed` (or `resume_disabled`) and keeps the current session. */
  async resume(token: string): Promise<SessionTicket> {
    await this.send(SESSION_COMMAND, encodeValue({ resume: token }), undefined, (bytes) => this.adopt(bytes));
    return this.ticket as SessionTicket;
  }

  /** Logs out: the gate ends the session at once (its disconnect event fires now, even on a
   *  listener with `resume`, and its token stops working), and the client closes. */
  async logout(): Promise<void> {
    if (this.current === "closed") return;
    try {
      await this.send(LOGOUT_COMMAND, new Uint8Array(0), undefined, () => {
        this.ticket = undefined;
        this.finish("logged out");
      });
    } catch {
      // A gate too old to know log-out, or the connection is gone: close all the same.
    }
    this.close();
  }

  /** Sends `command` with `payload` encoded as MessagePack; resolves with the decoded reply,
   *  rejects with a `FireflyError` (error frame), `TimeoutError` or `ConnectionError`. */
  async request<T = unknown>(command: number, payload?: unknown, options?: RequestOptions): Promise<T> {
    const bytes = payload === undefined ? new Uint8Array(0) : encodeValue(payload);
    const reply = await this.requestRaw(command, bytes, options);
    return (reply.length === 0 ? undefined : decodeValue(reply, this.allBigInt)) as T;
  }

  /** Sends raw payload bytes; resolves with the raw reply bytes. */
  requestRaw(command: number, payload: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    return this.send(command, payload, options?.timeoutMs);
  }

  private send(
    command: number,
    payload: Uint8Array,
    timeout?: number,
    onReply?: (payload: Uint8Array) => void,
  ): Promise<Uint8Array> {
    if (this.current === "closed") return Promise.reject(new ConnectionError("client is closed"));
    const timeoutMs = timeout ?? this.timeoutMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { command, onReply, resolve, reject, abandoned: false };
      pending.timer = setTimeout(() => {
        pending.abandoned = true;
        const at = this.waiting.findIndex((q) => q.pending === pending);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new TimeoutError(command, timeoutMs));
      }, timeoutMs);
      const frame = this.codec.encode(command, payload);
      if (this.current === "connected") this.transmit(frame, pending);
      else this.waiting.push({ frame, pending });
    });
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Subscribes to the pushes of one topic id. */
  onPush(topic: number, listener: (value: unknown, bytes: Uint8Array) => void): () => void {
    return this.on("push", (t, value, bytes) => {
      if (t === topic) listener(value, bytes);
    });
  }

  /** Closes the connection for good, without ending the session: on a listener with `resume`
   *  it stays parked for the grace window (a page reload can `restore` it). To end it now, use
   *  `logout()`. */
  close(): void {
    if (this.current !== "closed") this.finish("closed by the client");
    this.conn?.close();
  }

  private setState(state: ConnectionState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit("state", state);
  }

  private startKeepAlive(): void {
    if (this.keepAliveMs <= 0 || this.keepAlive) return;
    const every = Math.max(1, Math.floor(this.keepAliveMs / 2));
    this.keepAlive = setInterval(() => {
      if (this.current !== "connected" || Date.now() - this.lastSent < every) return;
      this.send(KEEPALIVE_COMMAND, new Uint8Array(0)).catch(() => undefined);
    }, every);
    (this.keepAlive as { unref?: () => void }).unref?.();
  }

  /** Asks for push frames on this connection (sent first on every connection). A gate that
   *  does not know hello answers `unknown_command`, and pushes stay plain frames. */
  private hello(): Promise<void> {
    return this.send(HELLO_COMMAND, encodeValue({ push_frames: true }), undefined, (bytes) => {
      const reply = decodeValue(bytes) as { push_frames?: boolean } | undefined;
      this.pushFrames = reply?.push_frames === true;
    }).then(
      () => undefined,
      (error) => {
        if (!(error instanceof FireflyError)) throw error;
      },
    );
  }

  /** Takes a ticket the gate just sent. */
  private adopt(bytes: Uint8Array): void {
    const ticket = decodeValue(bytes) as SessionTicket;
    this.ticket = ticket;
    this.droppedAt = undefined;
    if (ticket.resumed) this.emit("resumed", ticket);
    this.emit("ticket", ticket);
  }

  private emit<K extends keyof ClientEvents>(event: K, ...args: ClientEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        // A listener's bug must not break the connection.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  private handlers(): ConnectionHandlers {
    let open = true;
    return {
      onData: (bytes) => open && this.onData(bytes),
      onClose: (reason) => {
        if (!open) return;
        open = false;
        this.onClose(reason);
      },
    };
  }

  private transmit(frame: Uint8Array, pending: Pending): void {
    this.inflight.push(pending);
    this.lastSent = Date.now();
    this.conn?.send(frame);
  }

  private onData(bytes: Uint8Array): void {
    let frames;
    try {
      frames = this.codec.push(bytes);
    } catch (error) {
      this.conn?.close();
      this.failInflight(new ConnectionError(`unreadable reply: ${(error as Error).message}`));
      return;
    }
    for (const frame of frames) {
      if (this.current === "closed") return;
      const head = this.inflight[0];
      if (this.pushFrames && frame.command === PUSH_COMMAND && frame.payload.length >= 4) {
        // A push frame: never a reply, whatever its topic.
        const view = new DataView(frame.payload.buffer, frame.payload.byteOffset, 4);
        this.emitPush(view.getUint32(0), frame.payload.subarray(4));
      } else if (frame.command === this.codec.errorCommand) {
        const reply = decodeError(frame.payload);
        if (reply.code === "kicked" && (!head || head.command !== reply.command)) {
          // The session is over on the server: no resume (it would only be refused).
          this.ticket = undefined;
          this.emit("kicked", new FireflyError(reply));
          this.finish(`kicked: ${reply.message}`);
          this.conn?.close();
          return;
        }
        if (head) this.settle(head, undefined, new FireflyError(reply));
      } else if (head && frame.command === head.command) {
        this.settle(head, frame.payload);
      } else {
        this.emitPush(frame.command, frame.payload);
      }
    }
  }

  private emitPush(topic: number, payload: Uint8Array): void {
    let value: unknown;
    try {
      value = payload.length === 0 ? undefined : decodeValue(payload, this.allBigInt);
    } catch {
      value = undefined;
    }
    this.emit("push", topic, value, payload);
  }

  private settle(head: Pending, payload?: Uint8Array, error?: Error): void {
    this.inflight.shift();
    clearTimeout(head.timer);
    if (!error) head.onReply?.(payload ?? new Uint8Array(0));
    if (head.abandoned) return;
    if (error) head.reject(error);
    else head.resolve(payload ?? new Uint8Array(0));
  }

  private failInflight(error: Error): void {
    for (const pending of this.inflight.splice(0)) {
      clearTimeout(pending.timer);
      if (!pending.abandoned) pending.reject(error);
    }
  }

  private finish(reason: string): void {
    if (this.current === "closed") return;
    this.setState("closed");
    clearInterval(this.keepAlive);
    const error = new ConnectionError(reason);
    this.failInflight(error);
    for (const { pending } of this.waiting.splice(0)) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.emit("closed", reason);
  }

  private onClose(reason: string): void {
    if (this.current === "closed") return;
    this.conn = undefined;
    this.pushFrames = false;
    this.codec.reset();
    this.failInflight(new ConnectionError(`connection lost (${reason}); the request may have run`));
    if (!this.ticket) {
      this.emit("lost", `connection lost (${reason}) and the session is not resumable`);
      this.finish(reason);
      return;
    }
    this.setState("reconnecting");
    this.droppedAt ??= Date.now();
    this.emit("disconnected", reason);
    void this.reconnect(this.ticket.token);
  }

  private async reconnect(token: string): Promise<void> {
    const giveUp = (this.droppedAt ?? Date.now()) + this.backoff.giveUpAfterMs;
    let delay = this.backoff.initialDelayMs;
    for (;;) {
      await sleep(delay);
      if (this.current !== "reconnecting") return;
      if (Date.now() > giveUp) {
        this.ticket = undefined;
        this.emit("lost", `no connection within ${this.backoff.giveUpAfterMs} ms`);
        this.finish("could not reconnect");
        return;
      }
      delay = Math.min(delay * 2, this.backoff.maxDelayMs);
      let conn: Connection;
      try {
        conn = await this.dial(this.handlers());
      } catch {
        continue;
      }
      if (this.current !== "reconnecting") {
        conn.close();
        return;
      }
      this.conn = conn;
      // Hello and the resume go out first, then what was queued meanwhile. The resume's
      // answer is handled as it is read, so `resumed` fires before the replayed pushes after it.
      this.setState("connected");
      const hello = this.hello().catch(() => undefined);
      const answered = this.resume(token).then(
        () => undefined,
        (error: Error) => error,
      );
      this.flushWaiting();
      const error = await answered;
      await hello;
      if (error instanceof FireflyError) {
        // Connected, but on a new session.
        this.ticket = undefined;
        this.droppedAt = undefined;
        this.emit("lost", `${error.code}: ${error.message}`);
        if (this.resumeWanted) await this.refreshTicket().catch(() => undefined);
      }
      // A ConnectionError: the new connection dropped too, and onClose starts over.
      return;
    }
  }

  private flushWaiting(): void {
    for (const { frame, pending } of this.waiting.splice(0)) this.transmit(frame, pending);
  }

  private async refreshTicket(): Promise<void> {
    try {
      await this.send(SESSION_COMMAND, encodeValue({}), undefined, (bytes) => this.adopt(bytes));
    } catch (error) {
      if (error instanceof FireflyError && error.code === "resume_disabled") {
        this.ticket = undefined;
        return;
      }
      throw error;
    }
  }
}

function decodeError(payload: Uint8Array): ErrorReply {
  try {
    const value = decodeValue(payload) as Partial<ErrorReply>;
    return {
      command: Number(value.command ?? 0),
      code: String(value.code ?? "internal"),
      message: String(value.message ?? ""),
      module: value.module,
      version: value.version,
    };
  } catch {
    return { command: 0, code: "internal", message: "unreadable error frame" };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
