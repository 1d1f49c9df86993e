"""Transports: TCP (asyncio streams) and WebSocket (``websockets``, one frame per binary
message). A ``Dial`` opens a connection that feeds received bytes to ``on_data`` and calls
``on_close(reason)`` once when it is gone."""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Optional, Protocol

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .errors import ConnectionFailed

OnData = Callable[[bytes], None]
OnClose = Callable[[str], None]


class Connection(Protocol):
    async def send(self, frame: bytes) -> None: ...
    async def close(self) -> None: ...


Dial = Callable[[OnData, OnClose], Awaitable[Connection]]


def _cause(error: BaseException) -> str:
    """What went wrong, readable: the OS's words for an errno first ("Connection refused")."""
    text = str(error) or type(error).__name__
    number = getattr(error, "errno", None)
    if isinstance(number, int) and number > 0:
        return f"{os.strerror(number)} ({text})"
    return text


class _Tcp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_data: OnData, on_close: OnClose):
        self._writer = writer

        async def pump() -> None:
            try:
                while data := await reader.read(65536):
                    on_data(data)
            except OSError:
                pass
            on_close("tcp connection closed")

        self._task = asyncio.ensure_future(pump())

    async def send(self, frame: bytes) -> None:
        self._writer.write(frame)
        try:
            await self._writer.drain()
        except OSError:
            pass  # the reader sees the close

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass


def tcp_dial(host: str, port: int) -> Dial:
    async def dial(on_data: OnData, on_close: OnClose) -> Connection:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            raise ConnectionFailed(f"TCP connection to {host}:{port} failed: {_cause(error)}") from error
        return _Tcp(reader, writer, on_data, on_close)

    return dial


class _Ws:
    def __init__(self, ws, on_data: OnData, on_close: OnClose):
        self._ws = ws

        async def pump() -> None:
            reason = "websocket closed"
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        on_data(message)
            except ConnectionClosed:
                pass
            if ws.close_code is not None:
                reason = f"websocket closed ({ws.close_code}{': ' + ws.close_reason if ws.close_reason else ''})"
            on_close(reason)

        self._task = asyncio.ensure_future(pump())

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send(frame)
        except ConnectionClosed:
            pass  # the reader sees the close

    async def close(self) -> None:
        await self._ws.close()


def ws_dial(url: str, origin: Optional[str] = None) -> Dial:
    async def dial(on_data: OnData, on_close: OnClose) -> Connection:
        try:
            ws = await ws_connect(url, origin=origin, compression=None, max_size=None)
        except InvalidStatus as error:
            status = error.response.status_code
            raise ConnectionFailed(f"WebSocket connection to {url} failed: HTTP status {status}") from error
        except (OSError, WebSocketException) as error:
            raise ConnectionFailed(f"WebSocket connection to {url} failed: {_cause(error)}") from error
        return _Ws(ws, on_data, on_close)

    return dial
