"""Firefly client for Python (asyncio): TCP and WebSocket, MessagePack payloads, error frames
as exceptions, pushes by topic id, per-request timeouts and resumable sessions.

    client = await Client.connect_tcp("127.0.0.1", 11009)
    client.on_push(800, lambda notice, raw: print(notice))
    print(await client.request(101, {"name": "Ada"}))
"""

from .client import Client, Reconnect, SessionTicket
from .errors import ConnectionLost, FireflyError, RequestTimeout
from .framing import (
    ERROR_COMMAND,
    HEADER_LEN,
    HELLO_COMMAND,
    KEEPALIVE_COMMAND,
    LOGOUT_COMMAND,
    PUSH_COMMAND,
    SESSION_COMMAND,
    Codec,
    FrameError,
    FrameSettings,
)

__all__ = [
    "Client",
    "Codec",
    "ConnectionLost",
    "ERROR_COMMAND",
    "FireflyError",
    "FrameError",
    "FrameSettings",
    "HEADER_LEN",
    "HELLO_COMMAND",
    "KEEPALIVE_COMMAND",
    "LOGOUT_COMMAND",
    "PUSH_COMMAND",
    "RequestTimeout",
    "Reconnect",
    "SESSION_COMMAND",
    "SessionTicket",
]
