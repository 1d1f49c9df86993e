"""The asyncio client: requests and replies in order, error frames as exceptions, pushes as
callbacks, per-request timeouts, and resumable sessions (reconnect with backoff)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import msgpack

from .errors import ConnectionLost, FireflyError, RequestTimeout
from .framing import (
    HELLO_COMMAND,
    KEEPALIVE_COMMAND,
    LOGOUT_COMMAND,
    PUSH_COMMAND,
    SESSION_COMMAND,
    Codec,
    FrameError,
    FrameSettings,
)
from .transport import Connection, Dial, tcp_dial, ws_dial

log = logging.getLogger("firefly_client")


@dataclass
class SessionTicket:
    """The session id and the single-use token that resumes it."""

    session: int
    token: str
    resumed: bool = False
    replayed: int = 0
    dropped: int = 0


@dataclass
class Reconnect:
    """Backoff of the reconnection of a dropped resumable session."""

    initial_delay: float = 0.1
    max_delay: float = 2.0
    give_up_after: float = 30.0


class _Pending:
    __slots__ = ("command", "future", "on_reply")

    def __init__(self, command: int, future: asyncio.Future, on_reply: Optional[Callable[[bytes], None]] = None):
        self.command = command
        self.future = future
        # Run as the reply is read (before the frames after it), then the future is resolved.
        self.on_reply = on_reply


EVENTS = ("push", "disconnected", "resumed", "lost", "kicked", "closed", "ticket", "state")


class Client:
    """A Firefly client. Make one with :meth:`connect_tcp` or :meth:`connect_ws`.

    Events (``client.on(event, callback)``): ``push(topic, value, raw)``,
    ``disconnected(reason)``, ``resumed(ticket)``, ``lost(reason)`` (the game must log in
    again), ``kicked(error)`` (the session is over: the client closes and does not resume),
    ``closed(reason)``, ``ticket(ticket)`` (a new resume token, to store for a restore) and
    ``state(state)`` (``connecting``, ``connected``, ``reconnecting``, ``closed``).
    """

    def __init__(
        self,
        dial: Dial,
        settings: Optional[FrameSettings] = None,
        timeout: float = 10.0,
        resume: bool = True,
        reconnect: Optional[Reconnect] = None,
        restore: Optional[str] = None,
        keep_alive: float = 20.0,
    ):
        self._dial = dial
        self._codec = Codec(settings or FrameSettings())
        self._timeout = timeout
        self._resume_wanted = resume
        self._restore = restore
        self._keep_alive = keep_alive
        self._backoff = reconnect or Reconnect()
        self._conn: Optional[Connection] = None
        self._state = "connecting"
        self._push_frames = False
        self._last_sent = 0.0
        self._keep_alive_task: Optional[asyncio.Task] = None
        self._inflight: deque[_Pending] = deque()
        self._connected = asyncio.Event()
        self._listeners: dict[str, list[Callable[..., Any]]] = {e: [] for e in EVENTS}
        self._ticket: Optional[SessionTicket] = None
        self._dropped_at: Optional[float] = None
        self._reconnecting: Optional[asyncio.Task] = None

    # -- connecting ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, dial: Dial, **options: Any) -> "Client":
        """Connects with ``dial``, says hello (push frames) and (unless ``resume=False``)
        fetches the resume token, or takes back the session of ``restore=<token>`` (a token
        kept from an earlier connection; if it no longer works the client carries on with a new
        session, ``session.resumed`` is false).

        Options: ``settings`` (:class:`FrameSettings`), ``timeout`` (s), ``resume``,
        ``reconnect`` (:class:`Reconnect`), ``restore``, ``keep_alive`` (send a keep-alive when
        nothing was sent for this many seconds, default 20; 0 turns it off)."""
        client = cls(dial, **options)
        client._conn = await dial(client._on_data, client._on_close_cb())
        client._set_state("connected")
        client._connected.set()
        if client._keep_alive > 0:
            client._keep_alive_task = asyncio.ensure_future(client._keep_alive_loop())
        try:
            hello = asyncio.ensure_future(client._hello())
            await asyncio.sleep(0)  # hello goes first
            if client._restore is not None:
                try:
                    await client.resume(client._restore)
                except FireflyError as error:
                    if error.code not in ("resume_failed", "resume_disabled"):
                        raise
                    if client._resume_wanted:
                        await client._refresh_ticket()
            elif client._resume_wanted:
                await client._refresh_ticket()
            await hello
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def connect_tcp(cls, host: str, port: int, **options: Any) -> "Client":
        """Connects over TCP."""
        return await cls.connect(tcp_dial(host, port), **options)

    @classmethod
    async def connect_ws(cls, url: str, origin: Optional[str] = None, **options: Any) -> "Client":
        """Connects over WebSocket (one frame per binary message)."""
        return await cls.connect(ws_dial(url, origin), **options)

    # -- the surface -----------------------------------------------------------------------

    @property
    def session(self) -> Optional[SessionTicket]:
        """The current ticket (``None`` on a listener that does not resume sessions)."""
        return self._ticket

    @property
    def state(self) -> str:
        """``connecting``, ``connected``, ``reconnecting`` (a dropped resumable session being
        resumed) or ``closed`` (for good); ``state`` events tell each change."""
        return self._state

    async def resume(self, token: str) -> SessionTicket:
        """Takes back the session of ``token`` (kept from an earlier connection, e.g. by a game
        that restarted) on this connection: same id, user and groups, the pushes kept for it
        replayed after ``resumed``. The session this connection had ends. Raises
        :class:`FireflyError` ``resume_failed`` (or ``resume_disabled``) and keeps the current
        session."""
        await self._request(SESSION_COMMAND, msgpack.packb({"resume": token}), on_reply=self._adopt)
        assert self._ticket is not None
        return self._ticket

    async def logout(self) -> None:
        """Logs out: the gate ends the session at once (its disconnect event fires now, even on
        a listener with ``resume``; its token stops working), and the client closes."""
        if self._state == "closed":
            return

        def logged_out(_payload: bytes) -> None:
            self._ticket = None
            self._finish("logged out")

        with contextlib.suppress(FireflyError, ConnectionLost, RequestTimeout):
            await self._request(LOGOUT_COMMAND, b"", on_reply=logged_out)
        await self.close()

    async def request(self, command: int, payload: Any = None, *, timeout: Optional[float] = None) -> Any:
        """Sends ``payload`` as MessagePack; returns the decoded reply. Raises
        :class:`FireflyError`, :class:`RequestTimeout` or :class:`ConnectionLost`."""
        raw = b"" if payload is None else msgpack.packb(payload, use_bin_type=True)
        reply = await self.request_raw(command, raw, timeout=timeout)
        return msgpack.unpackb(reply, raw=False) if reply else None

    async def request_raw(self, command: int, payload: bytes = b"", *, timeout: Optional[float] = None) -> bytes:
        """Sends raw payload bytes; returns the raw reply bytes."""
        return await self._request(command, payload, timeout=timeout)

    async def _request(
        self,
        command: int,
        payload: bytes,
        *,
        timeout: Optional[float] = None,
        on_reply: Optional[Callable[[bytes], None]] = None,
        now: bool = False,
    ) -> bytes:
        """A request; ``on_reply`` runs as its reply is read. ``now``: send at once, on the
        connection being set up (hello and resume, ahead of what waits for it)."""
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._state == "closed":
            raise ConnectionLost("client is closed")
        if not now and not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), timeout)
            except asyncio.TimeoutError:
                raise RequestTimeout(command, timeout) from None
            if self._state == "closed":
                raise ConnectionLost("client is closed")
        future = asyncio.get_running_loop().create_future()
        self._inflight.append(_Pending(command, future, on_reply))
        if self._conn is None:
            self._inflight.pop()
            raise ConnectionLost("connection lost before the request was sent")
        self._last_sent = time.monotonic()
        await self._conn.send(self._codec.encode(command, payload))
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            # The future is cancelled; its reply, when it comes, is taken off and dropped.
            raise RequestTimeout(command, timeout) from None

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Subscribes to an event; returns a function that unsubscribes."""
        self._listeners[event].append(callback)
        return lambda: self._listeners[event].remove(callback)

    def on_push(self, topic: int, callback: Callable[[Any, bytes], Any]) -> Callable[[], None]:
        """Subscribes to the pushes of one topic id: ``callback(value, raw)``."""
        return self.on("push", lambda t, value, raw: callback(value, raw) if t == topic else None)

    async def close(self) -> None:
        """Closes for good without ending the session: on a listener with ``resume`` it stays
        parked for the grace window (a restart can ``restore`` it). :meth:`logout` ends it."""
        self._finish("closed by the client")
        if self._reconnecting:
            self._reconnecting.cancel()
        if self._conn:
            await self._conn.close()

    # -- internals -------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if self._state != state:
            self._state = state
            self._emit("state", state)

    async def _keep_alive_loop(self) -> None:
        every = self._keep_alive / 2
        while self._state != "closed":
            await asyncio.sleep(every)
            if self._state == "connected" and time.monotonic() - self._last_sent >= every:
                with contextlib.suppress(Exception):
                    await self._request(KEEPALIVE_COMMAND, b"")

    async def _hello(self) -> None:
        """Asks for push frames (sent first on every connection). A gate that does not know
        hello answers ``unknown_command``, and pushes stay plain frames."""

        def answered(payload: bytes) -> None:
            reply = msgpack.unpackb(payload, raw=False) if payload else None
            self._push_frames = isinstance(reply, dict) and reply.get("push_frames") is True

        with contextlib.suppress(FireflyError):
            await self._request(HELLO_COMMAND, msgpack.packb({"push_frames": True}), on_reply=answered, now=True)

    def _adopt(self, payload: bytes) -> None:
        """Takes a ticket the gate just sent."""
        self._ticket = SessionTicket(**msgpack.unpackb(payload, raw=False))
        self._dropped_at = None
        if self._ticket.resumed:
            self._emit("resumed", self._ticket)
        self._emit("ticket", self._ticket)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners[event]):
            try:
                callback(*args)
            except Exception:  # a listener's bug must not break the connection
                log.exception("firefly_client: %s listener failed", event)

    def _on_close_cb(self) -> Callable[[str], None]:
        open_ = [True]

        def on_close(reason: str) -> None:
            if open_[0]:
                open_[0] = False
                self._on_close(reason)

        return on_close

    def _on_data(self, data: bytes) -> None:
        try:
            frames = self._codec.feed(data)
        except FrameError as error:
            self._fail_inflight(ConnectionLost(f"unreadable reply: {error}"))
            if self._conn:
                asyncio.ensure_future(self._conn.close())
            return
        error_command = self._codec.settings.error_command
        for command, payload in frames:
            if self._state == "closed":
                return
            head = self._inflight[0] if self._inflight else None
            if self._push_frames and command == PUSH_COMMAND and len(payload) >= 4:
                # A push frame: never a reply, whatever its topic.
                self._emit_push(int.from_bytes(payload[:4], "big"), payload[4:])
            elif command == error_command:
                reply = _decode_error(payload)
                if reply.get("code") == "kicked" and (head is None or head.command != reply.get("command")):
                    # The session is over on the server: no resume (it would only be refused).
                    self._ticket = None
                    self._emit("kicked", FireflyError(reply))
                    self._finish(f"kicked: {reply.get('message', '')}")
                    if self._conn:
                        asyncio.ensure_future(self._conn.close())
                    return
                if head:
                    self._settle(head, error=FireflyError(reply))
            elif head and command == head.command:
                self._settle(head, payload)
            else:
                self._emit_push(command, payload)

    def _emit_push(self, topic: int, payload: bytes) -> None:
        try:
            value = msgpack.unpackb(payload, raw=False) if payload else None
        except Exception:
            value = None
        self._emit("push", topic, value, payload)

    def _settle(self, head: _Pending, payload: bytes = b"", error: Optional[Exception] = None) -> None:
        self._inflight.popleft()
        if error is None and head.on_reply:
            # Even when the request timed out: the gate acted on it (a new token, push frames).
            head.on_reply(payload)
        if head.future.done():  # timed out, or settled by on_reply
            return
        if error:
            head.future.set_exception(error)
            return
        head.future.set_result(payload)

    def _fail_inflight(self, error: Exception) -> None:
        while self._inflight:
            pending = self._inflight.popleft()
            if not pending.future.done():
                pending.future.set_exception(error)

    def _finish(self, reason: str) -> None:
        if self._state == "closed":
            return
        self._set_state("closed")
        if self._keep_alive_task:
            self._keep_alive_task.cancel()
        self._fail_inflight(ConnectionLost(reason))
        self._connected.set()  # wakes waiting requests, which then see "closed"
        self._emit("closed", reason)

    def _on_close(self, reason: str) -> None:
        if self._state == "closed":
            return
        self._conn = None
        self._push_frames = False
        self._connected.clear()
        self._codec.reset()
        self._fail_inflight(ConnectionLost(f"connection lost ({reason}); the request may have run"))
        if self._ticket is None:
            self._emit("lost", f"connection lost ({reason}) and the session is not resumable")
            self._finish(reason)
            return
        self._set_state("reconnecting")
        if self._dropped_at is None:
            self._dropped_at = time.monotonic()
        self._emit("disconnected", reason)
        self._reconnecting = asyncio.ensure_future(self._reconnect(self._ticket.token))

    async def _reconnect(self, token: str) -> None:
        give_up = (self._dropped_at or time.monotonic()) + self._backoff.give_up_after
        delay = self._backoff.initial_delay
        while True:
            await asyncio.sleep(delay)
            if self._state != "reconnecting":
                return
            if time.monotonic() > give_up:
                self._ticket = None
                self._emit("lost", f"no connection within {self._backoff.give_up_after} s")
                self._finish("could not reconnect")
                return
            delay = min(delay * 2, self._backoff.max_delay)
            try:
                conn = await self._dial(self._on_data, self._on_close_cb())
            except Exception:  # noqa: BLE001 - any failed dial is retried
                continue
            if self._state != "reconnecting":
                await conn.close()
                return
            self._conn = conn
            # Hello and the resume go out before any request that waited meanwhile. The
            # resume's answer is handled as it is read, so `resumed` fires before the replayed
            # pushes after it.
            self._set_state("connected")
            hello = asyncio.ensure_future(self._hello())
            resume = asyncio.ensure_future(
                self._request(SESSION_COMMAND, msgpack.packb({"resume": token}), on_reply=self._adopt, now=True)
            )
            await asyncio.sleep(0)  # both are sent before the waiting requests wake up
            self._connected.set()
            try:
                await resume
            except FireflyError as error:
                self._ticket = None
                self._dropped_at = None
                self._emit("lost", f"{error.code}: {error.message}")
                if self._resume_wanted:
                    with contextlib.suppress(Exception):
                        await self._refresh_ticket()
            except (ConnectionLost, RequestTimeout):
                pass  # the new connection dropped too; _on_close starts over
            with contextlib.suppress(Exception):
                await hello
            return

    async def _refresh_ticket(self) -> None:
        try:
            await self._request(SESSION_COMMAND, msgpack.packb({}), on_reply=self._adopt)
        except FireflyError as error:
            if error.code == "resume_disabled":
                self._ticket = None
                return
            raise


def _decode_error(payload: bytes) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(payload, raw=False)
        if isinstance(value, dict):
            return value
    except Exception:
        pass
    return {"command": 0, "code": "internal", "message": "unreadable error frame"}


__all__ = ["Client", "Reconnect", "SessionTicket"]
