"""What the Python client tests share: the cluster the Rust test started, and a TCP proxy
that drops connections for real and stalls replies."""

from __future__ import annotations

import asyncio
import json
import os


def cluster() -> dict:
    """The cluster (FIREFLY_TEST_CLUSTER, JSON); fails loudly without it."""
    text = os.environ.get("FIREFLY_TEST_CLUSTER")
    if not text:
        raise RuntimeError(
            "FIREFLY_TEST_CLUSTER is not set: these tests run from `cargo nextest run` "
            "(server/tests/clients.rs), which starts the cluster"
        )
    return json.loads(text)


def split(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def dialer(kind: str, addr: str):
    """``connect(**options)`` for a transport at ``addr`` (host:port)."""
    from firefly_client import Client

    if kind == "tcp":
        host, port = split(addr)
        return lambda **o: Client.connect_tcp(host, port, **o)
    return lambda **o: Client.connect_ws(f"ws://{addr}/", **o)


class Transports:
    """The same checks over each transport (subclasses set KIND and ADDR, a key of the
    cluster's description); ``open()`` connects and closes the client after the test."""

    KIND = ""
    ADDR = ""

    async def asyncSetUp(self):
        self.connect = dialer(self.KIND, cluster()[self.ADDR])
        self.clients = []

    async def asyncTearDown(self):
        for client in self.clients:
            await client.close()

    async def open(self, connect=None, **options):
        client = await (connect or self.connect)(**options)
        self.clients.append(client)
        return client


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``target``: ``cut()`` drops every connection and refuses
    new ones until ``accept()``; ``stall()`` holds back what the server sends until ``release()``."""

    def __init__(self, target: str):
        self.target = split(target)
        self.refusing = False
        self.stalled = False
        self.pairs: set = set()
        self.held: list = []

    async def start(self) -> "Proxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer) -> None:
        if self.refusing:
            writer.transport.abort()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        pair = (writer, up_writer)
        self.pairs.add(pair)

        async def pipe(src, dst, from_server: bool) -> None:
            try:
                while data := await src.read(65536):
                    if from_server and self.stalled:
                        self.held.append((dst, data))
                    else:
                        dst.write(data)
            except OSError:
                pass
            self._drop(pair)

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def _drop(self, pair) -> None:
        for w in pair:
            w.transport.abort()
            w.close()
        self.pairs.discard(pair)

    def cut(self) -> None:
        self.refusing = True
        for pair in list(self.pairs):
            self._drop(pair)

    def accept(self) -> None:
        self.refusing = False

    def stall(self) -> None:
        self.stalled = True

    def release(self) -> None:
        self.stalled = False
        for dst, data in self.held:
            dst.write(data)
        self.held.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


async def next_event(client, event: str, timeout: float = 10.0):
    """The arguments of ``client``'s next ``event``."""
    future = asyncio.get_running_loop().create_future()

    def seen(*args):
        if not future.done():
            future.set_result(args)

    off = client.on(event, seen)
    try:
        return await asyncio.wait_for(future, timeout)
    finally:
        off()
