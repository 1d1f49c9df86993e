"""Firefly framing: a 17-byte big-endian header, then the payload.

=======  ====  =====================================
offset   size  field
=======  ====  =====================================
0        4     magic bytes (default ``00 00 00 00``)
4        1     protocol version (default 0)
5        4     server version, u32 (default 0)
9        4     length = payload length + 4
13       4     command id (or a push's topic id)
=======  ====  =====================================

Byte-compatible with the original Firefly, whose clients packed it with ``struct`` format
``!sssss3I``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct("!4sBIII")
HEADER_LEN = HEADER.size  # 17
SESSION_COMMAND = 0xFFFFFF00
#: The topic of the gate's ``room_lost`` push.
ROOM_LOST_TOPIC = 0xFFFFFF01
#: Keep-alive: the gate answers it with an empty frame (never routed to a module).
KEEPALIVE_COMMAND = 0xFFFFFF02
#: Log out: the gate answers, closes the connection and ends the session at once.
LOGOUT_COMMAND = 0xFFFFFF03
#: Hello: the connection's options (``{"push_frames": True}``).
HELLO_COMMAND = 0xFFFFFF04
#: After hello ``push_frames``, every push comes on this command id, its payload the topic id
#: (4 bytes, big-endian) and then the push's payload.
PUSH_COMMAND = 0xFFFFFF05
ERROR_COMMAND = 0xFFFFFFFF


class FrameError(Exception):
    """The server sent bytes that are not a frame for these settings."""


@dataclass
class FrameSettings:
    """A listener's header values (they must match its ``listen:`` entry)."""

    magic: bytes = b"\0\0\0\0"
    protocol_version: int = 0
    server_version: int = 0
    error_command: int = ERROR_COMMAND
    max_frame: int = 16 << 20


@dataclass
class Codec:
    """Encoder and incremental decoder for one listener's header values."""

    settings: FrameSettings = field(default_factory=FrameSettings)
    _buf: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if len(self.settings.magic) != 4:
            raise ValueError(f"magic must be 4 bytes, got {self.settings.magic!r}")

    def encode(self, command: int, payload: bytes = b"") -> bytes:
        s = self.settings
        return HEADER.pack(s.magic, s.protocol_version, s.server_version, len(payload) + 4, command) + payload

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Adds received bytes; returns the ``(command, payload)`` frames now complete."""
        self._buf += data
        frames = []
        s = self.settings
        at = 0
        while len(self._buf) - at >= HEADER_LEN:
            magic, protocol, server, length, command = HEADER.unpack_from(self._buf, at)
            if magic != s.magic or protocol != s.protocol_version or server != s.server_version:
                raise FrameError("frame header does not match (magic/version)")
            if length < 4 or length - 4 > s.max_frame:
                raise FrameError(f"bad frame length {length}")
            end = at + HEADER_LEN + length - 4
            if end > len(self._buf):
                break
            frames.append((command, bytes(self._buf[at + HEADER_LEN : end])))
            at = end
        del self._buf[:at]
        return frames

    def reset(self) -> None:
        self._buf.clear()
