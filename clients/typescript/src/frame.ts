/**
 * Firefly framing: a 17-byte big-endian header, then the payload.
 *
 * | offset | size | field                               |
 * |--------|------|-------------------------------------|
 * | 0      | 4    | magic bytes (default 00 00 00 00)   |
 * | 4      | 1    | protocol version (default 0)        |
 * | 5      | 4    | server version, u32 (default 0)     |
 * | 9      | 4    | length = payload length + 4         |
 * | 13     | 4    | command id (or a push's topic id)   |
 *
 * Byte-compatible with the original Firefly (`struct` format `!sssss3I`).
 */

/** Size of the fixed frame header. */
export const HEADER_LEN = 17;

/** The reserved command the gate answers itself: session tickets and resumes. */
export const SESSION_COMMAND = 0xffffff00;

/** The topic of the gate's `room_lost` push. */
export const ROOM_LOST_TOPIC = 0xffffff01;

/** Keep-alive: the gate answers it with an empty frame (never routed to a module). */
export const KEEPALIVE_COMMAND = 0xffffff02;

/** Log out: the gate answers, closes the connection and ends the session at once. */
export const LOGOUT_COMMAND = 0xffffff03;

/** Hello: the connection's options (`{push_frames: true}`). */
export const HELLO_COMMAND = 0xffffff04;

/** After hello `push_frames: true`, every push comes on this command id, its payload the
 *  topic id (4 bytes, big-endian) and then the push's payload. */
export const PUSH_COMMAND = 0xffffff05;

/** Header values and limits of one listener (they must match the server's `listen:` entry). */
export interface FrameSettings {
  /** Frame header bytes 0-3. Default `[0, 0, 0, 0]`. */
  magic?: readonly number[];
  /** Header byte 4. Default 0. */
  protocolVersion?: number;
  /** Header bytes 5-8. Default 0. */
  serverVersion?: number;
  /** Command id of error frames. Default `0xFFFFFFFF`. */
  errorCommand?: number;
  /** Largest payload accepted from the server. Default 16 MiB. */
  maxFrame?: number;
}

/** One decoded frame. */
export interface Frame {
  command: number;
  payload: Uint8Array;
}

/** Encoder and incremental decoder for one listener's header values. */
export class Codec {
  readonly magic: Uint8Array;
  readonly protocolVersion: number;
  readonly serverVersion: number;
  readonly errorCommand: number;
  readonly maxFrame: number;
  private buf: Uint8Array = new Uint8Array(0);

  constructor(settings: FrameSettings = {}) {
    const magic = settings.magic ?? [0, 0, 0, 0];
    if (magic.length !== 4 || magic.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) {
      throw new RangeError(`magic must be 4 bytes, got ${JSON.stringify(magic)}`);
    }
    this.magic = Uint8Array.from(magic);
    this.protocolVersion = settings.protocolVersion ?? 0;
    this.serverVersion = settings.serverVersion ?? 0;
    this.errorCommand = settings.errorCommand ?? 0xffffffff;
    this.maxFrame = settings.maxFrame ?? 16 << 20;
  }

  /** One encoded frame. */
  encode(command: number, payload: Uint8Array): Uint8Array {
    const out = new Uint8Array(HEADER_LEN + payload.length);
    const view = new DataView(out.buffer);
    out.set(this.magic, 0);
    view.setUint8(4, this.protocolVersion);
    view.setUint32(5, this.serverVersion);
    view.setUint32(9, payload.length + 4);
    view.setUint32(13, command >>> 0);
    out.set(payload, HEADER_LEN);
    return out;
  }

  /** Appends received bytes and returns every frame now complete. Throws on a bad header. */
  push(bytes: Uint8Array): Frame[] {
    if (this.buf.length === 0) {
      this.buf = bytes;
    } else {
      const joined = new Uint8Array(this.buf.length + bytes.length);
      joined.set(this.buf, 0);
      joined.set(bytes, this.buf.length);
      this.buf = joined;
    }
    const frames: Frame[] = [];
    let at = 0;
    while (this.buf.length - at >= HEADER_LEN) {
      const view = new DataView(this.buf.buffer, this.buf.byteOffset + at, HEADER_LEN);
      for (let i = 0; i < 4; i++) {
        if (view.getUint8(i) !== this.magic[i]) throw new FrameError("frame header: magic differs");
      }
      if (view.getUint8(4) !== this.protocolVersion || view.getUint32(5) !== this.serverVersion) {
        throw new FrameError("frame header: version differs");
      }
      const length = view.getUint32(9);
      if (length < 4) throw new FrameError(`frame length ${length} is below 4`);
      if (length - 4 > this.maxFrame) {
        throw new FrameError(`frame of ${length - 4} bytes exceeds ${this.maxFrame}`);
      }
      const end = at + HEADER_LEN + length - 4;
      if (end > this.buf.length) break;
      frames.push({ command: view.getUint32(13), payload: this.buf.slice(at + HEADER_LEN, end) });
      at = end;
    }
    this.buf = at === this.buf.length ? new Uint8Array(0) : this.buf.subarray(at);
    return frames;
  }

  /** Forgets a partly received frame (after a reconnect). */
  reset(): void {
    this.buf = new Uint8Array(0);
  }
}

/** The server sent bytes that are not a valid frame for these settings. */
export class FrameError extends Error {
  override name = "FrameError";
}
