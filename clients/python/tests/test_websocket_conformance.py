"""The gate's WebSocket listener checked with an independent client (Python `websockets`):
ping/pong, close codes, fragmented messages, text messages refused with a clear reason,
oversized messages closed like oversized frames, and the per-listener `Origin` allow-list."""

import asyncio
import struct
import unittest

import msgpack
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import cluster

C = cluster()
ERROR_COMMAND = 0xFFFFFFFF


def frame(command: int, payload: bytes = b"", length: int = None) -> bytes:
    return struct.pack("!4sBIII", b"\0\0\0\0", 0, 0, len(payload) + 4 if length is None else length, command) + payload


def parse(message: bytes):
    _, _, _, length, command = struct.unpack("!4sBIII", message[:17])
    assert len(message) == 17 + length - 4, "one frame per message"
    return command, message[17:]


class Conformance(unittest.IsolatedAsyncioTestCase):
    async def ws(self, url=None, origin=None):
        ws = await connect(url or C["ws"], origin=origin, compression=None, max_size=None, open_timeout=10)
        self.addAsyncCleanup(ws.close)
        return ws

    async def recv(self, ws):
        return await asyncio.wait_for(ws.recv(), 10)

    async def closed(self, ws):
        """Waits for the server's close; its (code, reason)."""
        with self.assertRaises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code, ws.close_reason

    async def test_ping_is_answered_with_pong(self):
        ws = await self.ws()
        pong = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(pong, 5)
        self.assertGreaterEqual(latency, 0)
        await ws.send(frame(1, b"still serving"))
        self.assertEqual(parse(await self.recv(ws)), (1, b"still serving"))

    async def test_client_close_is_answered(self):
        ws = await self.ws()
        await ws.send(frame(1, b"x"))
        await self.recv(ws)
        await ws.close(1000, "bye")
        self.assertEqual(ws.close_code, 1000)

    async def test_fragmented_message_is_one_frame(self):
        ws = await self.ws()
        whole = frame(1, b"fragmented across three websocket frames")
        await ws.send([whole[:5], whole[5:20], whole[20:]])
        self.assertEqual(parse(await self.recv(ws)), (1, b"fragmented across three websocket frames"))

    async def test_text_message_is_refused_with_a_reason(self):
        ws = await self.ws()
        await ws.send("hello")
        code, reason = await self.closed(ws)
        self.assertEqual(code, 1003)
        self.assertIn("text messages are refused", reason)

    async def test_oversized_message_is_closed_like_an_oversized_frame(self):
        limit = C["origins_max_frame"]
        ws = await self.ws(C["origins_ws"])
        await ws.send(frame(1, b"x" * (limit + 100)))
        command, payload = parse(await self.recv(ws))
        error = msgpack.unpackb(payload)
        self.assertEqual((command, error["code"]), (ERROR_COMMAND, "frame_too_large"))
        self.assertEqual(await self.closed(ws), (1009, "frame too large"))

    async def test_oversized_frame_header_gets_the_same(self):
        ws = await self.ws(C["origins_ws"])
        await ws.send(frame(1, b"", length=C["origins_max_frame"] + 5))
        command, payload = parse(await self.recv(ws))
        self.assertEqual((command, msgpack.unpackb(payload)["code"]), (ERROR_COMMAND, "frame_too_large"))
        self.assertEqual((await self.closed(ws))[0], 1009)

    async def test_message_at_the_limit_is_served(self):
        ws = await self.ws(C["origins_ws"])
        body = b"y" * C["origins_max_frame"]
        await ws.send(frame(1, body))
        self.assertEqual(parse(await self.recv(ws)), (1, body))

    async def test_bad_frames_close_with_protocol_error(self):
        ws = await self.ws()
        await ws.send(frame(1, length=3))
        command, payload = parse(await self.recv(ws))
        self.assertEqual((command, msgpack.unpackb(payload)["code"]), (ERROR_COMMAND, "bad_frame"))
        self.assertEqual((await self.closed(ws))[0], 1002)
        ws = await self.ws()
        await ws.send(b"\x07" + frame(1, b"x")[1:])
        self.assertEqual(await self.closed(ws), (1002, "frame header does not match this listener"))

    async def test_kicked_session_gets_its_error_frame_and_close_code(self):
        first, second = await self.ws(), await self.ws()
        login = msgpack.packb({"user": "py-conformance-kick"})
        await first.send(frame(112, login))
        self.assertEqual(parse(await self.recv(first))[0], 112)
        await second.send(frame(112, login))  # single_login: the first is kicked
        command, payload = parse(await self.recv(first))
        self.assertEqual((command, msgpack.unpackb(payload)["code"]), (ERROR_COMMAND, "kicked"))
        self.assertEqual(await self.closed(first), (4000, "kicked"))

    async def test_origin_allow_list(self):
        url = C["origins_ws"]
        allowed = await self.ws(url, origin="http://allowed.example")
        await allowed.send(frame(1, b"ok"))
        self.assertEqual(parse(await self.recv(allowed)), (1, b"ok"))
        # Not a browser: no Origin header, let through.
        programmatic = await self.ws(url)
        await programmatic.send(frame(1, b"ok"))
        self.assertEqual(parse(await self.recv(programmatic)), (1, b"ok"))
        with self.assertRaises(InvalidStatus) as refused:
            await connect(url, origin="http://evil.example", open_timeout=10)
        self.assertEqual(refused.exception.response.status_code, 403)
        self.assertIn(b"not allowed", refused.exception.response.body)
        # A listener without `origins:` takes any origin.
        anywhere = await self.ws(C["ws"], origin="http://evil.example")
        await anywhere.send(frame(1, b"ok"))
        self.assertEqual(parse(await self.recv(anywhere)), (1, b"ok"))


if __name__ == "__main__":
    unittest.main()
