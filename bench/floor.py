"""
The floor for push benchmarks: a bare Twisted LMTP listener and Autobahn
WebSocket server that do no storage and no JMAP.

At the end of each ``DATA`` it writes a StateChange-shaped frame to every
socket of each recipient and answers ``250``: what any Twisted and
Autobahn server must spend to take a message over LMTP and push a change
over a compressed WebSocket.  The sockets speak permessage-deflate as
``twistd jmap`` negotiates it (no context takeover, an 11-bit window,
memory level 4).  A socket belongs to the user named by its URL path
(``ws://host:port/bench``) or, failing that, by a first text message
``{"user": "bench"}``; other messages are ignored.

Benchmarks start it with :func:`running_floor`; on its own:

    python bench/floor.py --lmtp-port 2400 --ws-port 8800
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from common import free_port, stop_process


@dataclass(frozen=True)
class Floor:
    """
    A running floor process.

    :ivar pid: its process id (for CPU and memory figures).
    :ivar lmtp: host and port of its LMTP listener.
    :ivar ws_url: the URL prefix of its WebSocket server (append a user
        name).
    """

    pid: int
    lmtp: tuple[str, int]
    ws_port: int

    def ws_url(self, user: str) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/{user}"

    @property
    def ws_address(self) -> tuple[str, int]:
        return "127.0.0.1", self.ws_port


@contextmanager
def running_floor() -> Iterator[Floor]:
    """
    The floor in a process of its own, on free loopback ports; stopped
    afterwards.
    """
    lmtp_port, ws_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--lmtp-port", str(lmtp_port), "--ws-port", str(ws_port)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", lmtp_port), 0.5).close()
                socket.create_connection(("127.0.0.1", ws_port), 0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the floor did not start") from None
                time.sleep(0.05)
        yield Floor(process.pid, ("127.0.0.1", lmtp_port), ws_port)
    finally:
        stop_process(process)


def serve(lmtp_port: int, ws_port: int) -> None:
    """
    Run the floor's listeners under the global reactor until stopped.
    """
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
    from twisted.internet import reactor
    from twisted.protocols.basic import LineReceiver

    sockets: dict[str, set[Any]] = {}
    states: dict[str, int] = {}

    def changed(user: str) -> None:
        """
        Write one StateChange for ``user``'s new state to each of its sockets.
        """
        state = states[user] = states.get(user, 0) + 1
        text = str(state)
        frame = json.dumps(
            {
                "@type": "StateChange",
                "changed": {user: {"Email": text, "Mailbox": text, "Thread": text}},
                "pushState": f"{user}:{text}",
            }
        ).encode()
        for protocol in sockets.get(user, ()):
            protocol.sendMessage(frame)

    class Pushed(WebSocketServerProtocol):
        user: str | None = None

        def onConnect(self, request: Any) -> Any:
            name = request.path.strip("/")
            if name:
                self._register(name)
            return "jmap" if "jmap" in request.protocols else None

        def _register(self, name: str) -> None:
            self.user = name
            sockets.setdefault(name, set()).add(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if self.user is None and not isBinary:
                try:
                    name = json.loads(payload).get("user")
                except (ValueError, AttributeError):
                    return
                if isinstance(name, str):
                    self._register(name)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if self.user is not None:
                sockets.get(self.user, set()).discard(self)

    def accept(offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(
                    offer,
                    request_no_context_takeover=offer.accept_no_context_takeover,
                    no_context_takeover=True,
                    window_bits=11,
                    mem_level=4,
                )
        return None

    class LMTP(LineReceiver):
        """
        Enough LMTP for a benchmark client: LHLO, MAIL, RCPT, DATA, RSET,
        NOOP, QUIT; no checks.
        """

        delimiter = b"\r\n"
        MAX_LENGTH = 1 << 20

        def connectionMade(self) -> None:
            self.recipients: list[str] = []
            self.lines: list[bytes] | None = None
            self.transport.write(b"220 floor LMTP ready\r\n")

        def lineReceived(self, line: bytes) -> None:
            if self.lines is not None:
                if line == b".":
                    self.lines = None
                    for user in self.recipients:
                        changed(user)
                    self.transport.write(b"250 2.0.0 Ok\r\n" * len(self.recipients))
                    self.recipients = []
                else:
                    self.lines.append(line)
                return
            verb = line[:4].upper()
            if verb == b"LHLO":
                self.transport.write(b"250-floor\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                address = line.partition(b"<")[2].partition(b">")[0].decode()
                self.recipients.append(address.partition("@")[0])
                self.transport.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                self.lines = []
                self.transport.write(b"354 Go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 Bye\r\n")
                self.transport.loseConnection()
            else:
                if verb == b"RSET":
                    self.recipients = []
                self.transport.write(b"250 Ok\r\n")

    from twisted.internet.protocol import Factory

    factory = WebSocketServerFactory()
    factory.protocol = Pushed
    factory.setProtocolOptions(perMessageCompressionAccept=accept)
    reactor.listenTCP(ws_port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.listenTCP(  # type: ignore[attr-defined]
        lmtp_port, Factory.forProtocol(LMTP), interface="127.0.0.1"
    )
    reactor.run()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lmtp-port", type=int, required=True)
    parser.add_argument("--ws-port", type=int, required=True)
    args = parser.parse_args()
    serve(args.lmtp_port, args.ws_port)


if __name__ == "__main__":
    main()
