// A TCP proxy the tests put between a client and the gate, to drop connections for real
// (the gate and the client each see their socket close) and to stall replies.
import * as net from "node:net";

export class Proxy {
  /** Starts a proxy on 127.0.0.1 (a free port) to `target` ("host:port"). */
  static async start(target) {
    const proxy = new Proxy(target);
    await new Promise((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    proxy.port = proxy.server.address().port;
    return proxy;
  }

  constructor(target) {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    this.pairs = new Set();
    this.refusing = false;
    this.stalled = false;
    this.accepted = 0;
    this.server = net.createServer((client) => {
      if (this.refusing) return client.destroy();
      this.accepted += 1;
      const upstream = net.connect({ host, port });
      const pair = { client, upstream, held: [] };
      this.pairs.add(pair);
      client.pipe(upstream);
      upstream.on("data", (chunk) => {
        if (this.stalled) pair.held.push(chunk);
        else client.write(chunk);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on("close", end).on("error", end);
      upstream.on("close", end).on("error", end);
    });
  }

  /** Drops every connection (both ends see it close) and refuses new ones until `accept()`. */
  cut() {
    this.refusing = true;
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Accepts connections again. */
  accept() {
    this.refusing = false;
  }

  /** Holds back what the server sends until `release()`. */
  stall() {
    this.stalled = true;
  }

  release() {
    this.stalled = false;
    for (const pair of this.pairs) {
      for (const chunk of pair.held.splice(0)) pair.client.write(chunk);
    }
  }

  close() {
    this.cut();
    this.server.close();
  }
}

/** The cluster the Rust test started (FIREFLY_TEST_CLUSTER, JSON); fails loudly without it. */
export function cluster() {
  const text = process.env.FIREFLY_TEST_CLUSTER;
  if (!text) {
    throw new Error("FIREFLY_TEST_CLUSTER is not set: these tests run from `cargo nextest run` (server/tests/clients_*.rs), which starts the cluster");
  }
  return JSON.parse(text);
}

/** Resolves with the next `event` of `client` (its arguments), or rejects after `ms`. */
export function next(client, event, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const off = client.on(event, (...args) => {
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}
