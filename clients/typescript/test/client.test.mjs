// The TypeScript client against a real cluster (started by server/tests/clients_typescript.rs):
// TCP and WebSocket, MessagePack and raw payloads, typed error frames, pushes by topic,
// timeouts, custom header values, and resumed sessions after a real dropped connection.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import {
  Codec,
  ConnectionError,
  FireflyError,
  TimeoutError,
  connectNodeWebSocket,
  connectTcp,
} from "../dist/node.js";
import { encode } from "@msgpack/msgpack";

import { Proxy, cluster, next } from "./proxy.mjs";

const c = cluster();
const [tcpHost, tcpPort] = c.tcp.split(":");
const open = [];
const track = (client) => (open.push(client), client);
after(() => open.forEach((client) => client.close()));

const transports = {
  tcp: (options) => connectTcp(tcpHost, Number(tcpPort), options),
  ws: (options) => connectNodeWebSocket(c.ws, options),
};

for (const [name, connect] of Object.entries(transports)) {
  describe(`over ${name}`, () => {
    test("raw bytes and MessagePack requests", async () => {
      const client = track(await connect());
      const echoed = await client.requestRaw(1, new TextEncoder().encode("asdfe"));
      assert.equal(new TextDecoder().decode(echoed), "asdfe");
      const hello = await client.request(101, { name: "Ada" });
      assert.equal(hello.greeting, "Hello, Ada!");
      assert.equal(hello.session, client.session.session);
      // Pipelined requests resolve in order.
      const sums = await Promise.all([1, 2, 3, 4].map((a) => client.request(103, { a, b: 10 })));
      assert.deepEqual(sums.map((s) => s.sum), [11, 12, 13, 14]);
    });

    test("error frames are typed errors", async () => {
      const client = track(await connect());
      // i64 values past 2^53: MessagePack int64, encoded as bigint.
      const big = encode({ a: 2n ** 62n, b: 2n ** 62n }, { useBigInt64: true });
      await assert.rejects(client.requestRaw(103, big), (error) => {
        assert.ok(error instanceof FireflyError);
        assert.equal(error.code, "overflow");
        assert.equal(error.command, 103);
        assert.equal(error.module, "lobby");
        assert.equal(typeof error.version, "number");
        return true;
      });
      const wide = track(await connect({ useBigInt64: true }));
      await assert.rejects(wide.request(103, { a: 2n ** 62n, b: 2n ** 62n }), { code: "overflow" });
      assert.equal((await wide.request(103, { a: 2n ** 60n, b: 1 })).sum, 2n ** 60n + 1n);
      await assert.rejects(client.request(9999, {}), { name: "FireflyError", code: "unknown_command" });
      await assert.rejects(client.request(101, { nom: 1 }), { code: "bad_request" });
      // The connection still serves.
      assert.equal((await client.request(103, { a: 1, b: 1 })).sum, 2);
    });

    test("pushes arrive as events by topic id, before the reply", async () => {
      const client = track(await connect());
      const seen = [];
      client.onPush(700, (value) => seen.push(["700", value.text]));
      client.onPush(701, (value) => seen.push(["701", value.text]));
      const reply = await client.request(104, { topic: 700, text: "hi" });
      seen.push(["reply", reply.pushed]);
      await client.request(104, { topic: 701, text: "there" });
      assert.deepEqual(seen, [["700", "hi"], ["reply", true], ["701", "there"]]);

      // A push from another session, to a group.
      const other = track(await connect());
      await client.request(108, { group: `g-${name}` });
      const pushed = new Promise((resolve) => client.onPush(702, resolve));
      await other.request(110, { group: `g-${name}`, topic: 702, text: "to the group" });
      assert.equal((await pushed).text, "to the group");
    });

    test("a request times out, and its late reply is not taken for the next one", async () => {
      const proxy = await Proxy.start(name === "tcp" ? c.tcp : c.ws_addr);
      try {
        const url = name === "tcp" ? undefined : `ws://127.0.0.1:${proxy.port}/`;
        const client = track(
          name === "tcp" ? await connectTcp("127.0.0.1", proxy.port) : await connectNodeWebSocket(url),
        );
        proxy.stall();
        await assert.rejects(client.request(103, { a: 1, b: 2 }, { timeoutMs: 200 }), (error) => {
          assert.ok(error instanceof TimeoutError);
          assert.equal(error.command, 103);
          return true;
        });
        const later = client.request(103, { a: 5, b: 5 });
        proxy.release();
        assert.equal((await later).sum, 10);
      } finally {
        proxy.close();
      }
    });

    test("a dropped connection is resumed: same session and user, missed pushes replayed", async () => {
      const target = name === "tcp" ? c.tcp : c.ws_addr;
      const proxy = await Proxy.start(target);
      try {
        const dial = () =>
          name === "tcp"
            ? connectTcp("127.0.0.1", proxy.port, { reconnect: { initialDelayMs: 50 } })
            : connectNodeWebSocket(`ws://127.0.0.1:${proxy.port}/`, { reconnect: { initialDelayMs: 50 } });
        const roamer = track(await dial());
        const talker = track(await connect());
        const user = `roamer-${name}`;
        await roamer.request(112, { user });
        const group = `resume-${name}`;
        await roamer.request(108, { group });
        const texts = [];
        roamer.onPush(800, (value) => texts.push(value.text));
        const first = new Promise((resolve) => roamer.onPush(800, resolve));
        await talker.request(110, { group, topic: 800, text: "before" });
        await first; // (a push in flight when the connection drops is lost with it)
        const session = roamer.session.session;

        const disconnected = next(roamer, "disconnected");
        proxy.cut();
        await disconnected;
        // A request made while it is away waits for the resumed connection.
        const queued = roamer.request(116);
        // The gate parks the session; a push meanwhile is kept for it.
        await talker.request(110, { group, topic: 800, text: "while away" });
        const resumed = next(roamer, "resumed");
        roamer.on("resumed", () => texts.push("<resumed>"));
        proxy.accept();
        const [ticket] = await resumed;
        assert.equal(ticket.session, session);
        assert.equal(ticket.resumed, true);
        assert.equal(ticket.dropped, 0);
        const me = await queued;
        assert.equal(me.session, session);
        assert.equal(me.user, user, "still logged in, without a new login");
        await talker.request(110, { group, topic: 800, text: "after" });
        await roamer.request(116);
        // `resumed` comes first, then the push it missed.
        assert.deepEqual(texts, ["before", "<resumed>", "while away", "after"]);
        assert.ok(ticket.replayed >= 1);
      } finally {
        proxy.close();
      }
    });

    test("a session that cannot come back is reported lost", async () => {
      const proxy = await Proxy.start(name === "tcp" ? c.tcp : c.ws_addr);
      try {
        const options = { reconnect: { initialDelayMs: 20, maxDelayMs: 50, giveUpAfterMs: 300 } };
        const client =
          name === "tcp"
            ? await connectTcp("127.0.0.1", proxy.port, options)
            : await connectNodeWebSocket(`ws://127.0.0.1:${proxy.port}/`, options);
        const pending = client.request(116, undefined, { timeoutMs: 5000 });
        const lost = next(client, "lost");
        const closed = next(client, "closed");
        proxy.stall();
        proxy.cut();
        await assert.rejects(pending, ConnectionError);
        assert.match((await lost)[0], /no connection/);
        await closed;
        await assert.rejects(client.request(116), ConnectionError);
      } finally {
        proxy.close();
      }
    });
  });
}

test("a listener without resume: no ticket, a drop is lost at once", async () => {
  const [host, port] = c.plain_tcp.split(":");
  const client = track(await connectTcp(host, Number(port)));
  assert.equal(client.session, undefined);
  assert.equal((await client.request(103, { a: 1, b: 2 })).sum, 3);
});

test("custom header values (magic, protocol and server version, error command)", async () => {
  const [host, port] = c.custom_tcp.split(":");
  const h = c.custom;
  const options = {
    magic: h.magic,
    protocolVersion: h.protocol_version,
    serverVersion: h.server_version,
    errorCommand: h.error_command,
  };
  const client = track(await connectTcp(host, Number(port), options));
  assert.equal((await client.request(103, { a: 20, b: 22 })).sum, 42);
  await assert.rejects(client.request(9999), { code: "unknown_command" });
  // The encoder writes exactly the documented header.
  const frame = new Codec(options).encode(1, new TextEncoder().encode("asdfe"));
  assert.deepEqual(
    [...frame.subarray(0, 17)],
    [...h.magic, h.protocol_version, 0, 0, 0, h.server_version, 0, 0, 0, 9, 0, 0, 0, 1],
  );
});

test("the default header is byte for byte the README's example", () => {
  const frame = new Codec().encode(1, new TextEncoder().encode("asdfe"));
  assert.deepEqual(
    [...frame],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0x61, 0x73, 0x64, 0x66, 0x65],
  );
  // And the decoder takes frames split anywhere.
  const codec = new Codec();
  const two = new Uint8Array([...frame, ...new Codec().encode(2, new Uint8Array())]);
  const got = [];
  for (const byte of two) got.push(...codec.push(new Uint8Array([byte])));
  assert.deepEqual(got.map((f) => f.command), [1, 2]);
});
