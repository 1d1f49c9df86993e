"""The exceptions a request raises."""

from __future__ import annotations

from typing import Any, Optional


class FireflyError(Exception):
    """The server answered with an error frame (``code`` is e.g. ``unknown_command``,
    ``bad_request``, ``timeout`` or a module's own; ``module``/``version`` name the module
    version that served the request)."""

    def __init__(self, reply: dict[str, Any]):
        self.command: int = int(reply.get("command", 0))
        self.code: str = str(reply.get("code", "internal"))
        self.message: str = str(reply.get("message", ""))
        self.module: Optional[str] = reply.get("module")
        self.version: Optional[int] = reply.get("version")
        super().__init__(f"{self.code}: {self.message}")


class RequestTimeout(TimeoutError):
    """No reply within the request's timeout; its reply, if it comes, is dropped."""

    def __init__(self, command: int, timeout: float):
        self.command = command
        self.timeout = timeout
        super().__init__(f"no reply to command {command} within {timeout} s")


class ConnectionLost(ConnectionError):
    """The connection dropped or was closed before the reply: the request may have run."""


class ConnectionFailed(ConnectionLost):
    """A connection could not be opened; the message names the address and the cause."""
