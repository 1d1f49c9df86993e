"""Load generator on the Python client, for benches/clients.rs: ``connections`` clients, each
keeping ``depth`` echo requests (command 1, raw payload) in flight for ``seconds`` after a 1 s
warm-up. Prints one JSON line: requests, rps, p50/p99 in µs, errors.

    python bench/load.py <tcp|ws> <host:port> <connections> <depth> <seconds> <payload bytes>
"""

import asyncio
import json
import sys
import time

from firefly_client import Client


async def main(transport, addr, connections, depth, seconds, size):
    host, port = addr.rsplit(":", 1)

    async def connect():
        if transport == "tcp":
            return await Client.connect_tcp(host, int(port), resume=False)
        return await Client.connect_ws(f"ws://{addr}/", resume=False)

    clients = await asyncio.gather(*(connect() for _ in range(connections)))
    payload = b"\x5a" * size
    latencies, errors = [], 0
    begin = time.monotonic()
    window = (begin + 1.0, begin + 1.0 + seconds)

    async def lane(client):
        nonlocal errors
        while (now := time.monotonic()) < window[1]:
            try:
                await client.request_raw(1, payload)
            except Exception:
                if now >= window[0]:
                    errors += 1
                continue
            done = time.monotonic()
            if now >= window[0] and done < window[1]:
                latencies.append((done - now) * 1e6)

    await asyncio.gather(*(lane(c) for c in clients for _ in range(depth)))
    for client in clients:
        await client.close()
    latencies.sort()
    q = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))]) if latencies else 0
    print(json.dumps({"requests": len(latencies), "rps": len(latencies) / seconds, "p50": q(0.5), "p99": q(0.99), "errors": errors}))


if __name__ == "__main__":
    t, a, c, d, s, p = sys.argv[1:7]
    asyncio.run(main(t, a, int(c), int(d), float(s), int(p)))
