// Load generator on the TypeScript client, for benches/clients.rs: `connections` clients, each
// keeping `depth` echo requests (command 1, raw payload) in flight for `duration` seconds
// after a 1 s warm-up. Prints one JSON line: requests, rps, p50/p99 in µs, errors.
//
//   node bench/load.mjs <tcp|ws> <host:port> <connections> <depth> <seconds> <payload bytes>
import { connectNodeWebSocket, connectTcp } from "../dist/node.js";

const [transport, addr, connections, depth, seconds, size] = process.argv.slice(2);
const [host, port] = addr.split(":");
const connect = () =>
  transport === "tcp"
    ? connectTcp(host, Number(port), { resume: false })
    : connectNodeWebSocket(`ws://${addr}/`, { resume: false });
const clients = await Promise.all(Array.from({ length: Number(connections) }, connect));
const payload = new Uint8Array(Number(size)).fill(0x5a);

const latencies = [];
let errors = 0;
const begin = performance.now();
const [from, until] = [begin + 1000, begin + 1000 + Number(seconds) * 1000];

async function lane(client) {
  for (let sent = performance.now(); sent < until; sent = performance.now()) {
    try {
      await client.requestRaw(1, payload);
    } catch {
      if (sent >= from) errors += 1;
      continue;
    }
    const done = performance.now();
    if (sent >= from && done < until) latencies.push((done - sent) * 1000);
  }
}

await Promise.all(clients.flatMap((client) => Array.from({ length: Number(depth) }, () => lane(client))));
clients.forEach((client) => client.close());
latencies.sort((a, b) => a - b);
const q = (p) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0);
console.log(JSON.stringify({ requests: latencies.length, rps: latencies.length / Number(seconds), p50: q(0.5), p99: q(0.99), errors }));
