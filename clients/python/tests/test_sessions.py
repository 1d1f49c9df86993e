"""The Python client's session defects of issue 23, each against the real cluster the Rust test
started (server/tests/clients.rs): kicks end the session, restore with a stored token and the
ticket event, pushes on a pending request's command id, log-out, keep-alives, connection
errors naming the address, the connection state."""

import asyncio
import os
import socket
import unittest

from firefly_client import Client, ConnectionLost, FireflyError, Reconnect
from firefly_client.errors import ConnectionFailed
from support import Proxy, Transports, cluster, dialer, next_event, split

C = cluster()
COUNT = [0]


def name(what: str) -> str:
    COUNT[0] += 1
    return f"{what}-{os.getpid()}-{COUNT[0]}"


def record(client: Client) -> list:
    seen = []
    for event in ("disconnected", "resumed", "lost", "kicked", "closed", "ticket", "state"):
        client.on(event, lambda *args, e=event: seen.append((e, args[0] if args else None)))
    return seen


def push_where(client: Client, topic: int, match) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()

    def seen(value, _raw):
        if match(value) and not future.done():
            future.set_result(value)

    client.on_push(topic, seen)
    return future


class Checks(Transports):
    """The session checks, over each transport."""

    async def test_kicked_client_ends_its_session(self):
        user = name(f"kicked-{self.KIND}")
        first = await self.open()
        await first.request(112, {"user": user})
        seen = record(first)
        closed = asyncio.ensure_future(next_event(first, "closed"))
        second = await self.open()
        await second.request(112, {"user": user})
        (reason,) = await closed
        self.assertIn("kicked", reason)
        self.assertEqual(first.state, "closed")
        self.assertEqual([e for e, _ in seen], ["kicked", "state", "closed"], seen)
        self.assertEqual(seen[0][1].code, "kicked")
        with self.assertRaises(ConnectionLost):
            await first.request(116)
        self.assertEqual((await second.request(116))["user"], user)
        self.assertEqual(second.state, "connected")

    async def test_push_on_the_command_id_of_a_pending_request(self):
        client = await self.open()
        pushes = []
        client.on_push(104, lambda value, raw: pushes.append(value))
        self.assertEqual(await client.request(104, {"topic": 104, "text": "same id"}), {"pushed": True})
        replies = await asyncio.gather(*(client.request(104, {"topic": 104, "text": f"n{i}"}) for i in range(3)))
        self.assertEqual(replies, [{"pushed": True}] * 3)
        self.assertEqual([p["text"] for p in pushes], ["same id", "n0", "n1", "n2"])

    async def test_logout_ends_a_resumable_session_at_once(self):
        watcher = await self.open(dialer("tcp", C["plain_tcp"]))
        await watcher.request(108, {"group": "watchers"})
        player = await self.open()
        session = player.session.session
        left = push_where(watcher, 199, lambda v: v["left"] == session)
        closed = asyncio.ensure_future(next_event(player, "closed"))
        await player.logout()
        self.assertEqual(await closed, ("logged out",))
        self.assertEqual(player.state, "closed")
        # The disconnect event fired now, not after the listener's 60 s grace.
        await asyncio.wait_for(left, 10)


class OverTcp(Checks, unittest.IsolatedAsyncioTestCase):
    KIND, ADDR = "tcp", "tcp"


class OverWebSocket(Checks, unittest.IsolatedAsyncioTestCase):
    KIND, ADDR = "ws", "ws_addr"


class Sessions(unittest.IsolatedAsyncioTestCase):
    async def test_restore_with_a_stored_token_and_resume_after_the_next_drop(self):
        user = name("restored")
        before = await Proxy(C["tcp"]).start()
        after = await Proxy(C["tcp"]).start()
        try:
            first = await Client.connect_tcp("127.0.0.1", before.port)
            await first.request(112, {"user": user})
            session, token = first.session.session, first.session.token
            # The game process goes away: its connection drops, the session is parked.
            before.cut()
            await first.close()

            second = await Client.connect_tcp(
                "127.0.0.1", after.port, restore=token, reconnect=Reconnect(initial_delay=0.05)
            )
            try:
                self.assertEqual(second.session.session, session)
                self.assertTrue(second.session.resumed)
                self.assertNotEqual(second.session.token, token)
                self.assertEqual((await second.request(116))["user"], user)

                seen = record(second)
                after.cut()
                await next_event(second, "disconnected")
                self.assertEqual(second.state, "reconnecting")
                resumed = asyncio.ensure_future(next_event(second, "resumed"))
                after.accept()
                (ticket,) = await resumed
                self.assertEqual(ticket.session, session, "resumed, not lost")
                self.assertEqual(second.state, "connected")
                tickets = [t for e, t in seen if e == "ticket"]
                self.assertEqual([t.token for t in tickets], [second.session.token])
                self.assertEqual([s for e, s in seen if e == "state"], ["reconnecting", "connected"])
                self.assertNotIn("lost", [e for e, _ in seen])

                with self.assertRaises(FireflyError) as caught:
                    await second.resume("0" * 48)
                self.assertEqual(caught.exception.code, "resume_failed")
                self.assertFalse(caught.exception.message.startswith("resume_failed"))
                self.assertEqual(second.session.session, session)
            finally:
                await second.close()
        finally:
            await before.close()
            await after.close()

    async def test_keep_alives_keep_a_quiet_client(self):
        host, port = split(C["idle_tcp"])
        quiet = await Client.connect_tcp(host, port, keep_alive=0.3)
        try:
            seen = record(quiet)
            session = (await quiet.request(116))["session"]
            # Clients without keep-alives, opened one after the other once the quiet one has
            # gone quiet: the listener closes each after its idle timeout, so when the second
            # is closed the quiet client has sent nothing but keep-alives for two timeouts.
            for _ in range(2):
                silent = await Client.connect_tcp(host, port, keep_alive=0)
                await next_event(silent, "closed", 10 * C["idle_timeout_ms"] / 1000)
            self.assertEqual(seen, [])
            self.assertEqual(quiet.state, "connected")
            self.assertEqual((await quiet.request(116))["session"], session)
        finally:
            await quiet.close()

    async def test_connection_errors_name_the_address_and_the_cause(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(ConnectionFailed) as caught:
            await Client.connect_tcp("127.0.0.1", port)
        self.assertIn(f"127.0.0.1:{port}", str(caught.exception))
        self.assertRegex(str(caught.exception), "(?i)refused")
        with self.assertRaises(ConnectionFailed) as caught:
            await Client.connect_ws(C["origins_ws"], origin="http://evil.example")
        self.assertIn(C["origins_ws"], str(caught.exception))
        self.assertIn("403", str(caught.exception))
