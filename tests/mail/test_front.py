"""
Delivery into a server from Twisted's own SMTP protocol:
:func:`~jmap_twisted.mail.front.message_delivery` as the ``delivery`` of a
plain ``twisted.mail.smtp.ESMTP``, over a ``StringTransport``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.mail.interfaces import IMessageDelivery
from twisted.mail.smtp import ESMTP, SMTPServerError
from zope.interface.verify import verifyObject

from jmap_twisted.config import ServerConfig
from jmap_twisted.mail.front import message_delivery
from jmap_twisted.server import JMAPServer
from jmap_twisted.testing import MemoryBlobStore, MemoryDirectory, MemoryMailStore
from tests.support import ImmediateReactor

PEER = IPv4Address("TCP", "192.0.2.7", 40000)
#: 2026-09-21T14:13:20Z
NOW = 1_790_000_000
MESSAGE_LINES = [
    "From: Sender <sender@remote.example>",
    "To: alice@example.com",
    "Subject: Over plain ESMTP",
    "",
    "Hello Alice.",
]


class Front:
    """
    A server for mail domain example.com with user alice, and a plain
    Twisted ESMTP protocol delivering into it, greeted by the client.
    """

    def __init__(self, **config: Any) -> None:
        self.clock = ImmediateReactor()
        self.clock.advance(NOW)
        self.mail = MemoryMailStore(self.clock)
        directory = MemoryDirectory(self.clock)
        self.server = JMAPServer(
            ServerConfig(
                password_cost=2**4, hostname="mx.example.com", domains=("example.com",), **config
            ),
            directory,
            MemoryBlobStore(self.clock),
            self.mail,
            self.clock,
        )
        alice = directory.create_user("alice", None).result
        self.alice = directory.accounts_for_user(alice.id).result[0].id
        self.delivery = message_delivery(self.server)
        self.protocol = ESMTP()
        self.protocol.delivery = self.delivery
        self.protocol.host = b"mx.example.com"
        self.protocol.callLater = self.clock.callLater  # its idle timeout
        self.transport = StringTransport(
            peerAddress=PEER, hostAddress=IPv4Address("TCP", "192.0.2.1", 25)
        )
        self.protocol.makeConnection(self.transport)
        self.codes()
        self.send("EHLO client.example")
        self.codes()

    def send(self, *lines: str) -> None:
        self.protocol.dataReceived(b"".join(line.encode() + b"\r\n" for line in lines))

    def codes(self) -> list[str]:
        written = self.transport.value().decode("ascii")
        self.transport.clear()
        return [line[:3] for line in written.split("\r\n")[:-1] if line[3:4] != "-"]

    def stored(self) -> list[tuple[bytes, set[str]]]:
        """
        Every message in alice's account, with the roles of its mailboxes.
        """

        def read(r: Any) -> list[tuple[bytes, set[str]]]:
            roles = {m.id: m.role for m in r.mailboxes()}
            ids, _ = r.query_emails(None, [], False)
            return [
                (r.message(e.blob_id), {roles[m] for m in e.mailbox_ids})
                for e in r.emails(ids).values()
            ]

        found: list[tuple[bytes, set[str]]] = self.mail.read(self.alice, read).result
        return found


def test_the_delivery_is_twisteds_message_delivery() -> None:
    """
    What ``message_delivery`` gives provides Twisted's ``IMessageDelivery``,
    so any ``twisted.mail`` server can take it.
    """
    verifyObject(IMessageDelivery, Front().delivery)


def test_a_message_for_a_local_user_is_stored_in_their_inbox() -> None:
    """
    MAIL, RCPT and DATA for a local user each get 250 (354 before the
    message), and the message is then in the user's inbox, its lines
    CRLF-terminated.
    """
    front = Front()
    front.send("MAIL FROM:<sender@remote.example>", "RCPT TO:<alice@example.com>")
    assert front.codes() == ["250", "250"]
    front.send("DATA")
    assert front.codes() == ["354"]
    assert front.stored() == []
    front.send(*MESSAGE_LINES, ".")
    assert front.codes() == ["250"]
    ((stored, roles),) = front.stored()
    assert roles == {"inbox"}
    assert stored.endswith("\r\n".join(MESSAGE_LINES).encode() + b"\r\n")


def test_the_stored_message_carries_trace_headers() -> None:
    """
    The stored message begins with a Return-Path of the envelope sender
    and a Received trace field (RFC 5321 §4.4): the client's greeting and
    address, this server's name, ``with ESMTP``, the recipient and the
    time of receipt.
    """
    front = Front()
    front.send(
        "MAIL FROM:<sender@remote.example>",
        "RCPT TO:<alice@example.com>",
        "DATA",
        *MESSAGE_LINES,
        ".",
    )
    assert front.codes()[-1] == "250"
    ((stored, _),) = front.stored()
    head = stored.split(b"\r\nFrom: ", 1)[0].decode()
    assert head.startswith("Return-Path: <sender@remote.example>\r\nReceived: from client.example")
    assert "([192.0.2.7])" in head
    assert "by mx.example.com with ESMTP id " in head
    assert "for <alice@example.com>; Mon, 21 Sep 2026 14:13:20 +0000" in head
    assert stored.count(b"Received:") == 1  # Twisted's own header is not added


def test_unknown_and_remote_recipients_get_550() -> None:
    """
    A recipient of the local domain who is no user, and one of another
    domain (the server never relays), get 550 at RCPT; with no recipient
    accepted, DATA is refused and nothing is stored.
    """
    front = Front()
    front.send(
        "MAIL FROM:<sender@remote.example>",
        "RCPT TO:<nobody@example.com>",
        "RCPT TO:<alice@elsewhere.example>",
    )
    assert front.codes() == ["250", "550", "550"]
    front.send("DATA")
    assert front.codes()[0].startswith("5")
    assert front.stored() == []


def test_a_message_over_the_size_limit_is_refused() -> None:
    """
    A message longer than ``max_message_size`` is refused after DATA (plain
    Twisted ESMTP answers any failed copy with 550 and logs why: here 552,
    too big) and is not stored.
    """
    front = Front(max_message_size=200)
    front.send("MAIL FROM:<sender@remote.example>", "RCPT TO:<alice@example.com>", "DATA")
    front.codes()
    with capturedLogs() as events:
        front.send(*MESSAGE_LINES, *["x" * 70] * 5, ".")
    assert front.codes() == ["550"]
    (failure,) = [e["failure"] for e in events if e.get("isError")]
    assert failure.check(SMTPServerError) and failure.value.code == 552
    assert front.stored() == []
