"""A client written the way the original Firefly's were: blocking sockets and ``struct``
format ``!sssss3I`` (five one-byte strings, then server version, length and command as
big-endian u32), packed by hand, not by our encoder. Old clients must keep working."""

import json
import socket
import struct
import threading
import unittest

from support import cluster, split

C = cluster()
FORMAT = "!sssss3I"  # as the original's netconnect/datapack.py
HEAD_LEN = struct.calcsize(FORMAT)


def pack(head, command: int, payload: bytes) -> bytes:
    """The original's DataPackProtoc.pack: head is (HEAD_0..HEAD_3, protoVersion, serverVersion)."""
    h0, h1, h2, h3, proto, server = head
    return (
        struct.pack(FORMAT, bytes([h0]), bytes([h1]), bytes([h2]), bytes([h3]), bytes([proto]), server, len(payload) + 4, command)
        + payload
    )


def unpack(head_bytes: bytes):
    h0, h1, h2, h3, proto, server, length, command = struct.unpack(FORMAT, head_bytes)
    return (h0[0], h1[0], h2[0], h3[0], proto[0], server), length - 4, command


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket):
    head, length, command = unpack(read_exactly(sock, HEAD_LEN))
    return head, command, read_exactly(sock, length)


class OriginalFraming(unittest.TestCase):
    def connect(self, addr: str) -> socket.socket:
        sock = socket.create_connection(split(addr), timeout=20)
        self.addCleanup(sock.close)
        return sock

    def test_header_is_17_bytes(self):
        self.assertEqual(HEAD_LEN, 17)
        self.assertEqual(pack((0,) * 6, 1, b"asdfe").hex(), "0000000000000000000000000900000001" + b"asdfe".hex())

    def test_netconnect_client_load(self):
        """test_netconnect_client.py: 10 threads, each `sendall`s the 22-byte frame (command 1,
        `asdfe`) 10 times on one shared socket. The original never read; here every one of the
        100 replies is read back, byte for byte the frame that was sent (echo)."""
        sock = self.connect(C["tcp"])
        frame = pack((0, 0, 0, 0, 0, 0), 1, b"asdfe")
        self.assertEqual(len(frame), 22)
        lock = threading.Lock()  # whole frames: concurrent sendall could interleave

        def send_ten():
            for _ in range(10):
                with lock:
                    sock.sendall(frame)

        threads = [threading.Thread(target=send_ten) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        replies = [read_exactly(sock, len(frame)) for _ in range(100)]
        self.assertEqual(replies, [frame] * 100)

    def test_sticky_and_partial_packets(self):
        sock = self.connect(C["tcp"])
        one, two = pack((0,) * 6, 1, b"one"), pack((0,) * 6, 1, b"two")
        sock.sendall(one + two)  # two frames in one send: two replies
        self.assertEqual([read_frame(sock)[2] for _ in range(2)], [b"one", b"two"])
        for byte in one:  # one frame a byte at a time: one reply
            sock.send(bytes([byte]))
        self.assertEqual(read_frame(sock), ((0,) * 6, 1, b"one"))

    def test_diablo_world_head_with_json_payloads(self):
        """Diablo-World's tool/clienttest.py: head (78, 37, 38, 48, 9, 0) and JSON payloads."""
        head = tuple(C["custom"]["magic"]) + (C["custom"]["protocol_version"], C["custom"]["server_version"])
        self.assertEqual(head, (78, 37, 38, 48, 9, 0))
        sock = self.connect(C["custom_tcp"])
        login = json.dumps({"username": "ada", "password": "secret"}).encode()
        sock.sendall(pack(head, 1, login))
        got_head, command, payload = read_frame(sock)
        self.assertEqual((got_head, command, json.loads(payload)), (head, 1, {"username": "ada", "password": "secret"}))

    def test_wrong_head_is_closed_without_a_reply(self):
        """As in the original: a head that does not match closes the connection, no reply."""
        sock = self.connect(C["custom_tcp"])
        sock.sendall(pack((0, 0, 0, 0, 0, 0), 1, b"asdfe"))
        self.assertEqual(sock.recv(1), b"")


if __name__ == "__main__":
    unittest.main()
