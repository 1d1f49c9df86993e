/**
 * The transport-independent client: requests and replies in order, error frames as typed
 * errors, pushes as events, per-request timeouts, and resumable sessions.
 */
import { decode, encode } from "@msgpack/msgpack";

import { ConnectionError, FireflyError, TimeoutError, type ErrorReply } from "./errors.js";
import { Codec, SESSION_COMMAND, type FrameSettings } from "./frame.js";

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
  /** Decode 64-bit MessagePack integers as `bigint` and encode `bigint` values (numbers past
   *  2^53, such as session ids of gates numbered 32 and up). Default false. */
  useBigInt64?: boolean;
}

/** A session ticket: the session id and the token that resumes it. */
export interface SessionTicket {
  session: number;
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
  /** The session came back: same session, user and groups; `replayed` missed pushes follow. */
  resumed: [ticket: SessionTicket];
  /** The session is gone (no token, token refused, or no server within the give-up time):
   *  the game must log in again. After `resume_failed` the client is connected on a new session. */
  lost: [reason: string];
  /** The server kicked this session (`kicked` error frame); the connection closes. */
  kicked: [error: FireflyError];
  /** The client is closed for good. */
  closed: [reason: string];
}

type Listener<K extends keyof ClientEvents> = (...args: ClientEvents[K]) => void;

interface Pending {
  command: number;
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

type State = "connected" | "reconnecting" | "closed";

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
  private readonly msgpack: { useBigInt64: boolean };
  private conn?: Connection;
  private state: State = "connected";
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
    this.msgpack = { useBigInt64: options.useBigInt64 ?? false };
    this.backoff = {
      initialDelayMs: options.reconnect?.initialDelayMs ?? 100,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 2000,
      giveUpAfterMs: options.reconnect?.giveUpAfterMs ?? 30_000,
    };
  }

  /** Connects with `dial`, and (unless `resume: false`) fetches the session's resume token. */
  static async connect(dial: Dial, options: ClientOptions = {}): Promise<FireflyClient> {
    const client = new FireflyClient(dial, options);
    client.conn = await dial(client.handlers());
    if (client.resumeWanted) await client.refreshTicket();
    return client;
  }

  /** The current session ticket (undefined when the listener does not resume sessions). */
  get session(): SessionTicket | undefined {
    return this.ticket;
  }

  /** Sends `command` with `payload` encoded as MessagePack; resolves with the decoded reply,
   *  rejects with a `FireflyError` (error frame), `TimeoutError` or `ConnectionError`. */
  async request<T = unknown>(command: number, payload?: unknown, options?: RequestOptions): Promise<T> {
    const bytes = payload === undefined ? new Uint8Array(0) : encode(payload, this.msgpack);
    const reply = await this.requestRaw(command, bytes, options);
    return (reply.length === 0 ? undefined : decode(reply, this.msgpack)) as T;
  }

  /** Sends raw payload bytes; resolves with the raw reply bytes. */
  requestRaw(command: number, payload: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    if (this.state === "closed") return Promise.reject(new ConnectionError("client is closed"));
    const timeoutMs = options?.timeoutMs ?? this.timeoutMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { command, resolve, reject, abandoned: false };
      pending.timer = setTimeout(() => {
        pending.abandoned = true;
        const at = this.waiting.findIndex((q) => q.pending === pending);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new TimeoutError(command, timeoutMs));
      }, timeoutMs);
      const frame = this.codec.encode(command, payload);
      if (this.state === "connected") this.transmit(frame, pending);
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

  /** Closes the connection for good (no reconnect; the parked session, if any, times out). */
  close(): void {
    if (this.state === "closed") return;
    this.finish("closed by the client");
    this.conn?.close();
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
      const head = this.inflight[0];
      if (frame.command === this.codec.errorCommand) {
        const reply = decodeError(frame.payload);
        if (reply.code === "kicked" && (!head || head.command !== reply.command)) {
          this.emit("kicked", new FireflyError(reply));
          continue;
        }
        if (head) this.settle(head, undefined, new FireflyError(reply));
      } else if (head && frame.command === head.command) {
        this.settle(head, frame.payload);
      } else {
        let value: unknown;
        try {
          value = frame.payload.length === 0 ? undefined : decode(frame.payload, this.msgpack);
        } catch {
          value = undefined;
        }
        this.emit("push", frame.command, value, frame.payload);
      }
    }
  }

  private settle(head: Pending, payload?: Uint8Array, error?: Error): void {
    this.inflight.shift();
    clearTimeout(head.timer);
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
    this.state = "closed";
    const error = new ConnectionError(reason);
    this.failInflight(error);
    for (const { pending } of this.waiting.splice(0)) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.emit("closed", reason);
  }

  private onClose(reason: string): void {
    if (this.state === "closed") return;
    this.conn = undefined;
    this.codec.reset();
    this.failInflight(new ConnectionError(`connection lost (${reason}); the request may have run`));
    if (!this.ticket) {
      this.emit("lost", `connection lost (${reason}) and the session is not resumable`);
      this.finish(reason);
      return;
    }
    this.state = "reconnecting";
    this.droppedAt ??= Date.now();
    this.emit("disconnected", reason);
    void this.reconnect(this.ticket.token);
  }

  private async reconnect(token: string): Promise<void> {
    const giveUp = (this.droppedAt ?? Date.now()) + this.backoff.giveUpAfterMs;
    let delay = this.backoff.initialDelayMs;
    for (;;) {
      await sleep(delay);
      if (this.state !== "reconnecting") return;
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
      if (this.state !== "reconnecting") {
        conn.close();
        return;
      }
      this.conn = conn;
      // The resume goes out first, then what was queued meanwhile. Its answer is handled as it
      // is read, so `resumed` fires before the replayed pushes that follow it.
      this.state = "connected";
      const answered = new Promise<Error | undefined>((settled) => {
        const pending: Pending = {
          command: SESSION_COMMAND,
          abandoned: false,
          resolve: (payload) => {
            const ticket = decode(payload) as SessionTicket;
            this.ticket = ticket;
            this.droppedAt = undefined;
            this.emit("resumed", ticket);
            settled(undefined);
          },
          reject: settled,
        };
        this.transmit(this.codec.encode(SESSION_COMMAND, encode({ resume: token })), pending);
      });
      this.flushWaiting();
      const error = await answered;
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

  private async sessionRequest(body: object): Promise<SessionTicket> {
    const reply = await this.requestRaw(SESSION_COMMAND, encode(body));
    return decode(reply) as SessionTicket;
  }

  private async refreshTicket(): Promise<void> {
    try {
      this.ticket = await this.sessionRequest({});
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
    const value = decode(payload) as Partial<ErrorReply>;
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
