// The TypeScript client's session defects of issue 23, each against the real cluster the Rust
// test started (server/tests/clients.rs): kicks end the session, restore after a reload and
// the token event, error messages, pushes on a pending request's command id, log-out,
// keep-alives, connection errors naming the address, the connection state, 64-bit integers.
import assert from "node:assert/strict";
import * as net from "node:net";
import { after, describe, test } from "node:test";

import {
  ConnectionError,
  FireflyError,
  connectNodeWebSocket,
  connectTcp,
  decodeValue,
  encodeValue,
} from "../dist/node.js";

import { Proxy, cluster, next } from "./proxy.mjs";

const c = cluster();
const hostPort = (addr) => [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
const [tcpHost, tcpPort] = hostPort(c.tcp);
const open = [];
const track = (client) => (open.push(client), client);
after(() => open.forEach((client) => client.close()));
let unique = 0;
const name = (what) => `${what}-${process.pid}-${++unique}`;

/** Records every event of `client` in order. */
function record(client) {
  const seen = [];
  for (const event of ["disconnected", "resumed", "lost", "kicked", "closed", "ticket", "state"]) {
    client.on(event, (arg) => seen.push([event, arg]));
  }
  return seen;
}

/** The next push on `topic` whose value passes `match`. */
function pushWhere(client, topic, match, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no push ${topic} within ${ms} ms`)), ms);
    const off = client.onPush(topic, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

const transports = {
  tcp: (options) => connectTcp(tcpHost, tcpPort, options),
  ws: (options) => connectNodeWebSocket(c.ws, options),
};

for (const [kind, connect] of Object.entries(transports)) {
  describe(`over ${kind}`, () => {
    test("a kicked client ends its session: no resume, no lost, `kicked` then `closed`", async () => {
      const user = name(`kicked-${kind}`);
      const first = track(await connect());
      await first.request(112, { user });
      const seen = record(first);
      const closed = next(first, "closed");
      const second = track(await connect());
      await second.request(112, { user });
      const [reason] = await closed;
      assert.match(reason, /kicked/);
      assert.equal(first.state, "closed");
      const events = seen.map(([e]) => e);
      assert.deepEqual(events, ["kicked", "state", "closed"], JSON.stringify(seen));
      assert.equal(seen[0][1].code, "kicked");
      await assert.rejects(first.request(116), ConnectionError);
      // The second device is not kicked back.
      assert.equal((await second.request(116)).user, user);
      assert.equal(second.state, "connected");
    });

    test("a push on the command id of a pending request is a push, and the reply is the reply", async () => {
      const client = track(await connect());
      const pushes = [];
      client.onPush(104, (value) => pushes.push(value));
      const reply = await client.request(104, { topic: 104, text: "same id" });
      assert.deepEqual(reply, { pushed: true });
      assert.deepEqual(pushes, [{ text: "same id" }]);
      // Pipelined, too.
      const replies = await Promise.all([1, 2, 3].map((i) => client.request(104, { topic: 104, text: `n${i}` })));
      assert.deepEqual(replies, [{ pushed: true }, { pushed: true }, { pushed: true }]);
      assert.deepEqual(pushes.map((p) => p.text), ["same id", "n1", "n2", "n3"]);
    });

    test("log out ends a resumable session at once", async () => {
      const [host, port] = hostPort(c.plain_tcp);
      const watcher = track(await connectTcp(host, port));
      await watcher.request(108, { group: "watchers" });
      const player = track(await connect());
      const session = player.session.session;
      const left = pushWhere(watcher, 199, (value) => value.left === session);
      const closed = next(player, "closed");
      await player.logout();
      assert.deepEqual(await closed, ["logged out"]);
      assert.equal(player.state, "closed");
      // The disconnect event fired now, not after the listener's 60 s grace.
      await left;
    });
  });
}

test("restore after a reload: resume(token) via `restore`, a token event each time, and the next drop resumes", async () => {
  const user = name("restored");
  const before = await Proxy.start(c.tcp);
  const after_ = await Proxy.start(c.tcp);
  try {
    const page1 = await connectTcp("127.0.0.1", before.port);
    await page1.request(112, { user });
    const { session, token } = page1.session;
    // The page goes away: its connection drops, and the session is parked.
    before.cut();
    page1.close();

    const options = { restore: token, reconnect: { initialDelayMs: 50 } };
    const page2 = track(await connectTcp("127.0.0.1", after_.port, options));
    assert.equal(page2.session.session, session);
    assert.equal(page2.session.resumed, true);
    assert.notEqual(page2.session.token, token);
    assert.equal((await page2.request(116)).user, user, "still logged in");

    const seen = record(page2);
    after_.cut();
    await next(page2, "disconnected");
    assert.equal(page2.state, "reconnecting");
    const resumed = next(page2, "resumed");
    after_.accept();
    const [ticket] = await resumed;
    assert.equal(ticket.session, session, "resumed, not lost");
    assert.equal(page2.state, "connected");
    const tickets = seen.filter(([e]) => e === "ticket").map(([, t]) => t);
    assert.equal(tickets.length, 1);
    assert.equal(tickets[0].token, page2.session.token);
    assert.deepEqual(
      seen.filter(([e]) => e === "state").map(([, s]) => s),
      ["reconnecting", "connected"],
    );
    assert.ok(!seen.some(([e]) => e === "lost"), JSON.stringify(seen));
    assert.equal((await page2.request(116)).user, user);

    // A token that does not work: a typed error whose message does not repeat the code; the
    // client keeps its session.
    await assert.rejects(page2.resume("0".repeat(48)), (error) => {
      assert.ok(error instanceof FireflyError);
      assert.equal(error.code, "resume_failed");
      assert.doesNotMatch(error.message, /^resume_failed/);
      assert.equal(String(error), `FireflyError: resume_failed: ${error.message}`);
      return true;
    });
    assert.equal(page2.session.session, session);
  } finally {
    before.close();
    after_.close();
  }
});

test("a resume refused on reconnect reads `resume_failed: …` once", async () => {
  const proxy = await Proxy.start(c.tcp);
  try {
    const client = track(await connectTcp("127.0.0.1", proxy.port, { reconnect: { initialDelayMs: 50 } }));
    const token = client.session.token;
    proxy.cut();
    await next(client, "disconnected");
    // Another connection takes the session with the token meanwhile.
    const thief = track(await connectTcp(tcpHost, tcpPort));
    await thief.resume(token);
    const lost = next(client, "lost");
    proxy.accept();
    const [reason] = await lost;
    assert.match(reason, /^resume_failed: /);
    assert.doesNotMatch(reason, /resume_failed: resume_failed/);
  } finally {
    proxy.close();
  }
});

test("keep-alives keep a quiet client past the listener's idle timeout", async () => {
  const [host, port] = hostPort(c.idle_tcp);
  const quiet = track(await connectTcp(host, port, { keepAliveMs: 300 }));
  const seen = record(quiet);
  const session = (await quiet.request(116)).session;
  // Clients without keep-alives, opened one after the other once the quiet one has gone
  // quiet: the listener closes each after its idle timeout, so by the time the second is
  // closed the quiet client has sent nothing but keep-alives for two idle timeouts.
  for (let i = 0; i < 2; i++) {
    const silent = track(await connectTcp(host, port, { keepAliveMs: 0 }));
    const [reason] = await next(silent, "closed", 10 * c.idle_timeout_ms);
    assert.match(reason, /closed/);
  }
  assert.deepEqual(seen, []);
  assert.equal(quiet.state, "connected");
  assert.equal((await quiet.request(116)).session, session, "the same connection");
});

test("connection errors name the address and the cause", async () => {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  await assert.rejects(connectTcp("127.0.0.1", port), (error) => {
    assert.ok(error instanceof ConnectionError);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(error.message, /ECONNREFUSED/);
    return true;
  });
  await assert.rejects(connectNodeWebSocket(`ws://127.0.0.1:${port}/`), (error) => {
    assert.ok(error instanceof ConnectionError);
    assert.match(error.message, new RegExp(`ws://127\\.0\\.0\\.1:${port}/`));
    assert.match(error.message, /ECONNREFUSED/);
    return true;
  });
  // A page origin the listener does not allow: refused with 403.
  await assert.rejects(connectNodeWebSocket(c.origins_ws, { origin: "http://evil.example" }), (error) => {
    assert.ok(error instanceof ConnectionError);
    assert.ok(error.message.includes(c.origins_ws), error.message);
    assert.match(error.message, /403/);
    return true;
  });
});

test("64-bit integers: numbers and bigints past 2^53 go out as integers, and come back exact", async () => {
  const client = track(await connectTcp(tcpHost, tcpPort));
  assert.equal(client.state, "connected");
  // 2^60 is exact as a double: it must go out as an integer, not a float.
  assert.equal((await client.request(103, { a: 2 ** 60, b: 0 })).sum, 2n ** 60n);
  assert.equal((await client.request(103, { a: 2n ** 60n, b: 1 })).sum, 2n ** 60n + 1n);
  assert.equal((await client.request(103, { a: -(2n ** 62n), b: -1 })).sum, -(2n ** 62n) - 1n);
  // Safe integers stay numbers both ways.
  assert.equal((await client.request(103, { a: 2 ** 40, b: 1 })).sum, 2 ** 40 + 1);
  await assert.rejects(client.request(103, { a: 2n ** 62n, b: 2n ** 62n }), { code: "overflow" });
  assert.equal(decodeValue(encodeValue(2n ** 63n)), 2n ** 63n);
  assert.equal(decodeValue(encodeValue([{ id: 2 ** 53 + 2 }]))[0].id, 2n ** 53n + 2n);
  assert.equal(decodeValue(encodeValue(1.5)), 1.5);
});
