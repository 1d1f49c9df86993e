// A tiny static server for the demo page: the page, the TypeScript client's build and its
// MessagePack dependency. `node clients/browser-demo/server.mjs [port]` (default 8080), then
// open http://127.0.0.1:8080/?ws=ws://127.0.0.1:11010/ (the default topology's gate).
import { readFile } from "node:fs/promises";
import * as http from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const typescript = path.join(here, "..", "typescript");
const roots = [
  ["/client/", path.join(typescript, "dist")],
  ["/vendor/msgpack/", path.join(typescript, "node_modules", "@msgpack", "msgpack", "dist.esm")],
  ["/", here],
];
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json" };

/** Serves the demo on `host:port`; resolves with the server once listening. */
export function serve(port = 8080, host = "127.0.0.1") {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    const name = url.pathname === "/" ? "/index.html" : url.pathname;
    const [prefix, root] = roots.find(([p]) => name.startsWith(p));
    const file = path.join(root, path.normalize(name.slice(prefix.length)));
    if (!file.startsWith(root) || file.includes(`${path.sep}test${path.sep}`)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? 8080);
  await serve(port);
  console.log(`demo on http://127.0.0.1:${port}/?ws=ws://127.0.0.1:11010/`);
}
