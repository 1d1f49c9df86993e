/**
 * Node transports: TCP (`node:net`) and WebSocket (the `ws` package, for Node versions
 * without a global WebSocket, and to send headers such as `Origin`).
 */
import * as net from "node:net";
import WebSocket from "ws";

import { FireflyClient, type ClientOptions, type Connection, type Dial } from "./client.js";
import { ConnectionError } from "./errors.js";
import { webSocketDial, type WebSocketLike } from "./index.js";

export * from "./index.js";

/** A `Dial` over TCP to `host:port`. */
export function tcpDial(host: string, port: number): Dial {
  return (handlers) =>
    new Promise<Connection>((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.setNoDelay(true);
      let opened = false;
      socket.once("connect", () => {
        opened = true;
        resolve({ send: (frame) => socket.write(frame), close: () => socket.end() });
      });
      socket.on("data", (chunk: Buffer) => handlers.onData(new Uint8Array(chunk)));
      socket.on("error", (error) => {
        if (!opened) reject(new ConnectionError(`TCP connection to ${host}:${port} failed: ${error.message}`));
      });
      socket.on("close", () => {
        if (opened) handlers.onClose("tcp connection closed");
      });
    });
}

/** Connects over TCP. */
export function connectTcp(host: string, port: number, options?: ClientOptions): Promise<FireflyClient> {
  return FireflyClient.connect(tcpDial(host, port), options);
}

/** Extra options of a Node WebSocket. */
export interface NodeWebSocketOptions extends ClientOptions {
  /** The `Origin` header to send (browsers always send one; a listener may restrict them). */
  origin?: string;
}

/** Connects over WebSocket with the `ws` package. */
export function connectNodeWebSocket(url: string, options: NodeWebSocketOptions = {}): Promise<FireflyClient> {
  const create = () =>
    new WebSocket(url, { origin: options.origin, perMessageDeflate: false }) as unknown as WebSocketLike;
  return FireflyClient.connect(webSocketDial(create, url), options);
}
