"""
A lean WebSocket client for the push benchmarks: plain sockets and one
``epoll``, no Autobahn, so that reading a thousand frames per delivery
costs the client little and the figures measure the server.

It opens sockets with the upgrade (offering permessage-deflate without
context takeover, as browsers and the Python clients do), sends one text
message on each (``WebSocketPushEnable``), answers pings, and counts the
data frames each socket receives without inflating them: a push
benchmark only needs to know *when* the frame arrived.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterable

PUSH_ENABLE = b'{"@type":"WebSocketPushEnable","dataTypes":["Email"]}'


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        header += bytes([0x80 | size])
    elif size < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", size)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


class LeanSocket:
    """
    One upgraded socket: a buffer and the count of data frames received.
    """

    __slots__ = ("buffer", "frames", "last", "payload", "seen", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.frames = 0
        self.last = 0.0
        #: The last data frame's payload (compressed if its RSV1 was set).
        self.payload = b""
        #: The last payload has been looked into (:meth:`LeanClient.wait_content`).
        self.seen = False

    def feed(self, data: bytes, now: float) -> int:
        """
        Take octets from the server: count complete data frames (any
        opcode but the control ones) and answer pings; return how many
        data frames were complete.
        """
        counted = 0
        buffer = self.buffer + data
        while len(buffer) >= 2:
            first = buffer[0]
            opcode = first & 0x0F
            size = buffer[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size = struct.unpack_from("!H", buffer, 2)[0]
                offset = 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size = struct.unpack_from("!Q", buffer, 2)[0]
                offset = 10
            if len(buffer) < offset + size:
                break
            payload = buffer[offset : offset + size]
            buffer = buffer[offset + size :]
            if opcode == 0x9:
                self.sock.sendall(_masked(0xA, payload))
            elif opcode < 0x8:
                self.frames += 1
                self.last = now
                self.payload = payload if first & 0x40 else b"=" + payload
                self.seen = False
                counted += 1
        self.buffer = buffer
        return counted


def _content(payload: bytes) -> bytes:
    if payload.startswith(b"="):
        return payload[1:]
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


class LeanClient:
    """
    Many sockets to one server, read through one ``epoll``.
    """

    def __init__(self) -> None:
        self.poll = select.epoll()
        self.sockets: dict[int, LeanSocket] = {}
        #: Data frames received on every socket.
        self.received = 0

    def open(
        self,
        host: str,
        port: int,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        deflate: bool = True,
        message: bytes | None = PUSH_ENABLE,
    ) -> LeanSocket:
        """
        Upgrade one socket and send ``message`` on it.
        """
        sock = socket.create_connection((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: jmap",
        ]
        if deflate:
            lines.append(
                "Sec-WebSocket-Extensions: permessage-deflate;"
                " client_no_context_takeover; server_no_context_takeover"
            )
        lines += [f"{name}: {value}" for name, value in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the upgrade")
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        sock.setblocking(False)
        lean = LeanSocket(sock)
        if rest:
            self.received += lean.feed(rest, time.perf_counter())
        if message is not None:
            sock.sendall(_masked(0x1, message))
        self.sockets[sock.fileno()] = lean
        self.poll.register(sock.fileno(), select.EPOLLIN)
        return lean

    def pump(self, timeout: float) -> int:
        """
        Read what has arrived within ``timeout`` seconds; return how many
        sockets were read.
        """
        events = self.poll.poll(timeout)
        now = time.perf_counter()
        for fd, _ in events:
            lean = self.sockets[fd]
            try:
                data = lean.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                self.poll.unregister(fd)
                del self.sockets[fd]
                continue
            self.received += lean.feed(data, now)
        return len(events)

    def wait_frames(
        self, total: int, timeout: float = 30.0, failed: Callable[[], object] = lambda: None
    ) -> float:
        """
        Read until the sockets hold ``total`` data frames in all; return
        the time the last one arrived (``perf_counter``).  Stops early
        when ``failed()`` returns an exception.
        """
        deadline = time.monotonic() + timeout
        while self.received < total:
            error = failed()
            if isinstance(error, BaseException):
                raise error
            if time.monotonic() > deadline:
                counts = sorted({lean.frames for lean in self.sockets.values()})
                raise TimeoutError(
                    f"{self.received} of {total} frames arrived on {len(self.sockets)} sockets"
                    f" (frames per socket: {counts[:5]}…{counts[-5:]})"
                )
            self.pump(0.5)
        return max(lean.last for lean in self.sockets.values())

    def wait_content(self, marker: bytes, timeout: float = 30.0) -> float:
        """
        Read until the last data frame of every socket holds ``marker``
        (pushes may merge: a later frame stands for the earlier ones);
        return when the last of them arrived (``perf_counter``).
        """
        deadline = time.monotonic() + timeout
        waiting = set(self.sockets.values())
        while True:
            for lean in list(waiting):
                if lean.seen or not lean.payload:
                    continue
                lean.seen = True
                if marker in _content(lean.payload):
                    waiting.discard(lean)
            if not waiting:
                return max(lean.last for lean in self.sockets.values())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} sockets lack {marker!r}")
            self.pump(0.5)

    def settle(self, quiet: float = 0.3) -> None:
        """
        Read until nothing has arrived for ``quiet`` seconds.
        """
        while self.pump(quiet):
            pass

    def close(self) -> None:
        for lean in self.sockets.values():
            lean.sock.close()
        self.sockets.clear()
        self.poll.close()
