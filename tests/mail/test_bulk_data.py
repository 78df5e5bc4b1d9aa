"""
The message content of ``DATA`` read in bulk: the same octets stored, the
same replies sent, the same connection state as Twisted's line-by-line
reading, however the client's octets are cut into segments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver

from jmap_twisted.mail.incoming import IncomingMessage
from jmap_twisted.mail.lmtp import LMTP, LMTPFactory
from jmap_twisted.mail.smtp import DeliveryESMTP, DeliveryServerFactory, InboundSMTP
from jmap_twisted.mail.spool import MessageSpool
from tests.mail.test_lmtp import NOW, PEER, SENDER, FakeMailDelivery

LIMIT = DeliveryESMTP.MAX_LENGTH


class LineByLineLMTP(LMTP):
    """
    The LMTP server reading ``DATA`` as Twisted's ESMTP does: one line at a
    time, through ``lineReceived`` and ``dataLineReceived``.
    """

    dataReceived = LineOnlyReceiver.dataReceived

    def do_DATA(self, rest: bytes) -> None:
        LMTP.do_DATA(self, rest)
        self._in_body = False


class LineByLineSMTP(InboundSMTP):
    """
    The SMTP server reading ``DATA`` one line at a time.
    """

    dataReceived = LineOnlyReceiver.dataReceived

    def do_DATA(self, rest: bytes) -> None:
        InboundSMTP.do_DATA(self, rest)
        self._in_body = False


def envelope(greeting: bytes = b"LHLO") -> bytes:
    """
    The commands of a transaction for two local recipients, up to ``DATA``.
    """
    return (
        greeting + b" client.example\r\n"
        b"MAIL FROM:<" + SENDER.encode() + b">\r\n"
        b"RCPT TO:<alice@example.com>\r\n"
        b"RCPT TO:<bob@example.com>\r\n"
        b"DATA\r\n"
    )


#: Message contents as the client sends them (dot-stuffed, final dot
#: included), followed in some by the next commands.
CONTENTS = {
    "headers and body": b"Subject: hi\r\n\r\nHello.\r\n.\r\n",
    "dot-stuffed lines": (
        b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...\r\n.single\r\nmid . dot\r\n.\r\n"
    ),
    "empty content": b".\r\n",
    "first line stuffed": b"..\r\nx\r\n.\r\n",
    "first line empty": b"\r\nbody only\r\n.\r\n",
    "no header fields": b"just text\r\nmore\r\n.\r\n",
    "bare LF and CR": b"Subject: lf\r\n\r\na\n.\nb\r\nc\rd\r\n\n.\n\r\n.\r\n",
    "CRLF dot without CRLF after": b"Subject: x\r\n\r\n.a\r\n.\r\r\n.\r\n",
    "8-bit octets": "Subject: caf\u00e9\r\n\r\n\u00fcber\r\n.\r\n".encode(),
    "pipelined next transaction": (
        b"Subject: one\r\n\r\n1\r\n.\r\n"
        b"MAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
        b"Subject: two\r\n\r\n..2\r\n.\r\nQUIT\r\n"
    ),
    "over the size limit": b"Subject: big\r\n\r\n" + b"x" * 300 + b"\r\n.\r\nNOOP\r\n",
    "at the size limit": b"Subject: fits\r\n\r\n" + b"y" * 183 + b"\r\n.\r\n",
}
MAX_SIZE = 200


def segmentations(stream: bytes, start: int) -> Iterator[list[bytes]]:
    """
    Ways to cut ``stream``: whole, one octet at a time, and in two at
    every position from ``start``.
    """
    yield [stream]
    yield [stream[i : i + 1] for i in range(len(stream))]
    for cut in range(start, len(stream)):
        yield [stream[:cut], stream[cut:]]


def run(
    protocol: type[DeliveryESMTP],
    segments: Sequence[bytes],
    max_size: int = MAX_SIZE,
    resolve_later: bool = False,
) -> tuple[list[str], list[tuple[str, bytes]], bool]:
    """
    Feed ``segments`` to a server; return its replies, the messages
    stored (delivery ids blanked) and whether it closed the connection.
    """
    delivery = FakeMailDelivery(resolve_later=resolve_later)
    clock = Clock()
    clock.advance(NOW)
    factory = DeliveryServerFactory(delivery, max_size, "mx.example.com", clock)
    factory.protocol = protocol
    transport = StringTransport(peerAddress=PEER, hostAddress=IPv4Address("TCP", "192.0.2.1", 24))
    server = factory.buildProtocol(PEER)
    server.makeConnection(transport)
    for segment in segments:
        server.dataReceived(segment)
        while delivery.resolving:
            delivery.finish_resolving()
    ids = re.compile(rb"\b[0-9A-F]{16}\b")
    replies = ids.sub(b"ID", transport.value()).decode("utf-8").split("\r\n")
    stored = [(account, ids.sub(b"ID", octets)) for account, octets in delivery.stored]
    return replies, stored, bool(transport.disconnecting)


@pytest.mark.parametrize(
    ("bulk", "line_by_line", "greeting"),
    [(LMTP, LineByLineLMTP, b"LHLO"), (InboundSMTP, LineByLineSMTP, b"EHLO")],
    ids=["LMTP", "SMTP"],
)
@pytest.mark.parametrize("name", list(CONTENTS))
def test_bulk_content_stores_what_line_by_line_stores(
    name: str, bulk: type[DeliveryESMTP], line_by_line: type[DeliveryESMTP], greeting: bytes
) -> None:
    """
    For each message, however its octets are cut into segments (the CRLF
    of a line or the final ``CRLF . CRLF`` split between two, the commands
    and content in one), the bulk reading stores the same octets for each
    recipient, sends the same replies and leaves the connection in the
    same state as reading line by line.
    """
    head = envelope(greeting)
    stream = head + CONTENTS[name]
    expected = run(line_by_line, [stream])
    assert expected[1] or "size limit" in name  # the reference delivered something
    for segments in segmentations(stream, len(head) - 2):
        assert run(bulk, segments) == expected, segments


def test_examples_of_what_line_by_line_stores() -> None:
    """
    The reference itself: dot-stuffing undone, bare LF kept as content, a
    content without header fields after an empty line, 552 over the limit
    and the next command answered.
    """
    _, stored, _ = run(LineByLineLMTP, [envelope() + CONTENTS["dot-stuffed lines"]])
    assert stored[0][1].endswith(
        b"+0000\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\nsingle\r\nmid . dot\r\n"
    )
    _, stored, _ = run(LMTP, [envelope() + CONTENTS["bare LF and CR"]])
    assert stored[0][1].endswith(b"\r\n\r\na\n.\nb\r\nc\rd\r\n\n.\n\r\n")
    _, stored, _ = run(LMTP, [envelope() + CONTENTS["no header fields"]])
    assert stored[0][1].endswith(b"\r\n\r\njust text\r\nmore\r\n")
    replies, stored, _ = run(LMTP, [envelope() + CONTENTS["over the size limit"]])
    assert replies[-4:] == [
        "552 5.3.4 Message exceeds the maximum size of 200 octets",
        "552 5.3.4 Message exceeds the maximum size of 200 octets",
        "250 2.0.0 OK",
        "",
    ]
    assert stored == []


@pytest.mark.parametrize("long_line", [LIMIT, LIMIT + 1])
@pytest.mark.parametrize("chunk", [1000, 70000])
def test_line_length_bound_in_content_matches(long_line: int, chunk: int) -> None:
    """
    A content line of the maximum length is accepted and one octet more
    gets 500 and closes the connection, with nothing delivered, as line by
    line, whether the line arrives in one segment or in many.
    """
    content = b"Subject: long\r\n\r\nshort\r\n" + b"z" * long_line + b"\r\nafter\r\n.\r\n"
    stream = envelope() + content
    segments = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    expected = run(LineByLineLMTP, segments, max_size=10 * LIMIT)
    assert run(LMTP, segments, max_size=10 * LIMIT) == expected
    replies, stored, closed = expected
    assert closed == (long_line > LIMIT)
    assert any(reply.startswith("500 ") for reply in replies) == closed
    assert bool(stored) == (long_line == LIMIT)


def test_content_queued_behind_a_pending_recipient_matches() -> None:
    """
    With ``PIPELINING`` a client may send the content before the 354 (the
    server holding it while recipients are looked up): it is then read in
    bulk from the held lines, with the same result as line by line.
    """
    stream = envelope() + CONTENTS["pipelined next transaction"]
    for segments in ([stream], [stream[:60], stream[60:]], [stream[:-7], stream[-7:]]):
        expected = run(LineByLineLMTP, segments, resolve_later=True)
        assert expected[1]
        assert run(LMTP, segments, resolve_later=True) == expected


def test_idle_timeout_is_reset_while_content_arrives() -> None:
    """
    Content arriving in segments keeps the connection alive: the idle
    timeout counts from the last segment, not from ``DATA``.
    """
    delivery = FakeMailDelivery()
    clock = Clock()
    clock.advance(NOW)
    transport = StringTransport(peerAddress=PEER)
    server = LMTPFactory(delivery, MAX_SIZE, "mx.example.com", clock).buildProtocol(PEER)
    server.makeConnection(transport)
    server.dataReceived(envelope() + b"Subject: slow\r\n")
    for _ in range(3):
        clock.advance(500)
        server.dataReceived(b"more\r\n")
    assert not transport.disconnecting
    server.dataReceived(b".\r\n")
    assert len(delivery.stored) == 2
    clock.advance(600)
    assert transport.disconnecting


def test_lines_received_stores_what_line_received_stores() -> None:
    """
    Handing an ``IncomingMessage`` lines in bulk stores the octets that
    handing them one at a time stores, and counts them alike against the
    size limit.
    """
    lines = [b"Subject: x", b"", b"a" * 70_000, b"", b"end"]
    octets = b"".join(line + b"\r\n" for line in lines)
    stored: dict[str, bytes] = {}
    for name, max_size in (("one", len(octets)), ("bulk", len(octets))):
        delivery = FakeMailDelivery()
        message = IncomingMessage(
            delivery, "A-alice", "alice@example.com", b"T\r\n", max_size, name
        )
        if name == "one":
            for line in lines:
                message.lineReceived(line)
        else:
            message.lines_received(octets[:14])
            message.lines_received(octets[14:])
        message.eomReceived()
        stored[name] = delivery.stored[0][1]
    assert stored["one"] == stored["bulk"] == b"T\r\n" + octets

    spool = MessageSpool(len(octets) - 1)
    spool.add_lines(octets)
    assert spool.too_big
