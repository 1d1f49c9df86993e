"""The Python client against a real cluster: TCP and WebSocket, MessagePack and raw
payloads, typed error frames, pushes by topic, timeouts, custom header values, and a session
resumed after a real dropped connection."""

import asyncio
import unittest

import msgpack

from firefly_client import (
    Client,
    Codec,
    ConnectionLost,
    FireflyError,
    FrameSettings,
    Reconnect,
    RequestTimeout,
)
from support import Proxy, Transports, cluster, dialer, next_event, split

C = cluster()


class Checks(Transports):
    """The client's checks, over each transport."""

    async def test_raw_and_msgpack_requests(self):
        client = await self.open()
        self.assertEqual(await client.request_raw(1, b"asdfe"), b"asdfe")
        hello = await client.request(101, {"name": "Ada"})
        self.assertEqual(hello["greeting"], "Hello, Ada!")
        self.assertEqual(hello["session"], client.session.session)
        sums = await asyncio.gather(*(client.request(103, {"a": a, "b": 10}) for a in range(1, 5)))
        self.assertEqual([s["sum"] for s in sums], [11, 12, 13, 14])

    async def test_error_frames_are_exceptions(self):
        client = await self.open()
        with self.assertRaises(FireflyError) as caught:
            await client.request(103, {"a": 2**62, "b": 2**62})
        error = caught.exception
        self.assertEqual((error.code, error.command, error.module), ("overflow", 103, "lobby"))
        self.assertIsInstance(error.version, int)
        with self.assertRaises(FireflyError) as caught:
            await client.request(9999, {})
        self.assertEqual(caught.exception.code, "unknown_command")
        self.assertEqual((await client.request(103, {"a": 1, "b": 1}))["sum"], 2)

    async def test_pushes_by_topic_before_the_reply(self):
        client = await self.open()
        seen = []
        client.on_push(700, lambda value, raw: seen.append(("700", value["text"])))
        seen.append(("reply", (await client.request(104, {"topic": 700, "text": "hi"}))["pushed"]))
        self.assertEqual(seen, [("700", "hi"), ("reply", True)])
        other = await self.open()
        group = f"py-{self.KIND}"
        await client.request(108, {"group": group})
        got = asyncio.get_running_loop().create_future()
        client.on_push(702, lambda value, raw: got.done() or got.set_result(value))
        await other.request(110, {"group": group, "topic": 702, "text": "to the group"})
        self.assertEqual((await asyncio.wait_for(got, 10))["text"], "to the group")

    async def test_timeout_then_the_late_reply_is_dropped(self):
        proxy = await Proxy(C[self.ADDR]).start()
        try:
            client = await self.open(dialer(self.KIND, f"127.0.0.1:{proxy.port}"))
            proxy.stall()
            with self.assertRaises(RequestTimeout):
                await client.request(103, {"a": 1, "b": 2}, timeout=0.2)
            later = asyncio.ensure_future(client.request(103, {"a": 5, "b": 5}))
            await asyncio.sleep(0.05)
            proxy.release()
            self.assertEqual((await later)["sum"], 10)
        finally:
            await proxy.close()

    async def test_dropped_connection_is_resumed(self):
        proxy = await Proxy(C[self.ADDR]).start()
        try:
            via_proxy = dialer(self.KIND, f"127.0.0.1:{proxy.port}")
            roamer = await self.open(via_proxy, reconnect=Reconnect(initial_delay=0.05))
            talker = await self.open()
            user, group = f"py-roamer-{self.KIND}", f"py-resume-{self.KIND}"
            await roamer.request(112, {"user": user})
            await roamer.request(108, {"group": group})
            texts = []
            first = asyncio.get_running_loop().create_future()

            def heard(value, raw):
                texts.append(value["text"])
                if not first.done():
                    first.set_result(None)

            roamer.on_push(800, heard)
            await talker.request(110, {"group": group, "topic": 800, "text": "before"})
            await asyncio.wait_for(first, 10)
            session = roamer.session.session

            disconnected = asyncio.ensure_future(next_event(roamer, "disconnected"))
            proxy.cut()
            await disconnected
            queued = asyncio.ensure_future(roamer.request(116))
            await talker.request(110, {"group": group, "topic": 800, "text": "while away"})
            resumed = asyncio.ensure_future(next_event(roamer, "resumed"))
            roamer.on("resumed", lambda ticket: texts.append("<resumed>"))
            proxy.accept()
            (ticket,) = await resumed
            self.assertEqual((ticket.session, ticket.resumed, ticket.dropped), (session, True, 0))
            me = await queued
            self.assertEqual((me["session"], me["user"]), (session, user))
            await talker.request(110, {"group": group, "topic": 800, "text": "after"})
            await roamer.request(116)
            # `resumed` comes first, then the push it missed.
            self.assertEqual(texts, ["before", "<resumed>", "while away", "after"])
        finally:
            await proxy.close()

    async def test_session_that_cannot_come_back_is_lost(self):
        proxy = await Proxy(C[self.ADDR]).start()
        try:
            via_proxy = dialer(self.KIND, f"127.0.0.1:{proxy.port}")
            client = await self.open(via_proxy, reconnect=Reconnect(0.02, 0.05, 0.3))
            lost = asyncio.ensure_future(next_event(client, "lost"))
            closed = asyncio.ensure_future(next_event(client, "closed"))
            proxy.stall()
            pending = asyncio.ensure_future(client.request(116, timeout=5))
            await asyncio.sleep(0.05)
            proxy.cut()
            with self.assertRaises(ConnectionLost):
                await pending
            self.assertIn("no connection", (await lost)[0])
            await closed
            with self.assertRaises(ConnectionLost):
                await client.request(116)
        finally:
            await proxy.close()


class OverTcp(Checks, unittest.IsolatedAsyncioTestCase):
    KIND, ADDR = "tcp", "tcp"


class OverWebSocket(Checks, unittest.IsolatedAsyncioTestCase):
    KIND, ADDR = "ws", "ws_addr"


class Settings(unittest.IsolatedAsyncioTestCase):
    async def test_listener_without_resume(self):
        client = await Client.connect_tcp(*split(C["plain_tcp"]))
        try:
            self.assertIsNone(client.session)
            self.assertEqual((await client.request(103, {"a": 1, "b": 2}))["sum"], 3)
        finally:
            await client.close()

    async def test_custom_header_values(self):
        h = C["custom"]
        settings = FrameSettings(
            magic=bytes(h["magic"]),
            protocol_version=h["protocol_version"],
            server_version=h["server_version"],
            error_command=h["error_command"],
        )
        client = await Client.connect_tcp(*split(C["custom_tcp"]), settings=settings)
        try:
            self.assertEqual((await client.request(103, {"a": 20, "b": 22}))["sum"], 42)
            with self.assertRaises(FireflyError) as caught:
                await client.request(9999)
            self.assertEqual(caught.exception.code, "unknown_command")
        finally:
            await client.close()

    def test_codec_matches_the_readme_example(self):
        frame = Codec().encode(1, b"asdfe")
        self.assertEqual(frame.hex(), "00000000" "00" "00000000" "00000009" "00000001" + b"asdfe".hex())
        codec = Codec()
        stream = frame + Codec().encode(2, msgpack.packb({"x": 1}))
        frames = [f for byte in stream for f in codec.feed(bytes([byte]))]
        self.assertEqual([c for c, _ in frames], [1, 2])


if __name__ == "__main__":
    unittest.main()
