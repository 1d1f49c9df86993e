/** The errors a request's promise is rejected with. */

/** An error frame's MessagePack map, as the server sends it. */
export interface ErrorReply {
  command: number;
  code: string;
  message: string;
  module?: string;
  version?: number;
}

/** The server answered with an error frame (`code` is e.g. `unknown_command`, `bad_request`,
 *  `timeout` or a module's own code; `module`/`version` name the module version that served it).
 *  `message` is the frame's message as the server wrote it, without the code (the stack's first
 *  line and `toString()` read `FireflyError: <code>: <message>`). */
export class FireflyError extends Error {
  override name = "FireflyError";
  readonly command: number;
  readonly code: string;
  readonly module?: string;
  readonly version?: number;

  constructor(reply: ErrorReply) {
    super(`${reply.code}: ${reply.message}`);
    this.message = reply.message;
    this.command = reply.command;
    this.code = reply.code;
    this.module = reply.module;
    this.version = reply.version;
  }

  override toString(): string {
    return `${this.name}: ${this.code}: ${this.message}`;
  }
}

/** No reply within the request's timeout. Its reply, if it ever comes, is dropped. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
  constructor(readonly command: number, readonly timeoutMs: number) {
    super(`no reply to command ${command} within ${timeoutMs} ms`);
  }
}

/** The connection dropped (or was closed) before the reply came: the request may or may not
 *  have run on the server. */
export class ConnectionError extends Error {
  override name = "ConnectionError";
}
