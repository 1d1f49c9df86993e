/**
 * The Firefly client for browsers and Node.
 *
 * ```ts
 * const client = await connectWebSocket("ws://127.0.0.1:11010");
 * client.onPush(800, (notice) => console.log(notice));
 * console.log(await client.request(101, { name: "Ada" }));
 * ```
 *
 * Node also has TCP and a WebSocket built on `ws`: `@firefly-rs/client/node`.
 */
import { FireflyClient, type ClientOptions, type Connection, type Dial } from "./client.js";
import { ConnectionError } from "./errors.js";

export * from "./client.js";
export * from "./errors.js";
export * from "./frame.js";
export { decodeValue, encodeValue } from "./msgpack.js";

/** The WebSocket constructor shape the client needs (the browser's, or a compatible one). */
export interface WebSocketLike {
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string; error?: { message?: string } }) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A `Dial` over a WebSocket made by `create` (each Firefly frame is one binary message).
 *  `url` names the address in connection errors. */
export function webSocketDial(create: () => WebSocketLike, url = "the WebSocket server"): Dial {
  return (handlers) =>
    new Promise<Connection>((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = create();
      } catch (error) {
        reject(new ConnectionError(`WebSocket connection to ${url} failed: ${(error as Error).message}`));
        return;
      }
      // Browsers say nothing about why (no status, no network error); Node's `ws` does.
      let cause = "";
      ws.binaryType = "arraybuffer";
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve({ send: (frame) => ws.send(frame), close: () => ws.close(1000) });
      };
      ws.onmessage = (ev) => {
        const data = ev.data;
        if (data instanceof ArrayBuffer) handlers.onData(new Uint8Array(data));
        else if (ArrayBuffer.isView(data)) {
          handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        }
      };
      ws.onerror = (ev) => {
        cause = ev?.message || ev?.error?.message || cause;
      };
      ws.onclose = (ev) => {
        if (!opened) {
          const why = cause || "refused or unreachable (the browser gives no detail)";
          const reason = ev.reason ? `: ${ev.reason}` : "";
          reject(new ConnectionError(`WebSocket connection to ${url} failed: ${why} (close code ${ev.code}${reason})`));
        } else handlers.onClose(`websocket closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`);
      };
    });
}

/** Connects over the platform's WebSocket (browsers; Node 22+). */
export function connectWebSocket(url: string, options?: ClientOptions): Promise<FireflyClient> {
  const Ctor = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (!Ctor) {
    return Promise.reject(
      new Error("no global WebSocket here: use connectNodeWebSocket from @firefly-rs/client/node"),
    );
  }
  return FireflyClient.connect(
    webSocketDial(() => new Ctor(url), url),
    options,
  );
}
