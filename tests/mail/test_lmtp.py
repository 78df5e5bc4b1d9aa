"""
The LMTP server: unit tests over a ``StringTransport`` with a fake
``IMailDelivery`` whose deliveries the tests complete, and one test with
Python's ``smtplib.LMTP`` over a loopback socket.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Collection, Mapping

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IMailDelivery
from jmap_twisted.mail.lmtp import LMTP, LMTPFactory
from jmap_twisted.mail.service import delivery_services
from jmap_twisted.mail.smtp import DeliveryServerFactory, InboundSMTPFactory

SENDER = "sender@remote.example"
ACCOUNTS = {"alice@example.com": "A-alice", "bob@example.com": "A-bob"}
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
#: 2026-09-21T14:13:20Z
NOW = 1_790_000_000
DATE = "Mon, 21 Sep 2026 14:13:20 +0000"
MAX_SIZE = 1000
MESSAGE_LINES = ["From: sender@remote.example", "Subject: hi", "", "Hello.", "Bye."]
MESSAGE = "".join(line + "\r\n" for line in MESSAGE_LINES).encode()


class PendingDelivery:
    """
    One call of :meth:`FakeMailDelivery.deliver`, completed by the test.
    """

    def __init__(self, account_id: str, message: bytes) -> None:
        self.account_id = account_id
        self.message = message
        self.deferred: Deferred[None] = Deferred()
        self.stored = False

    def succeed(self) -> None:
        self.stored = True
        self.deferred.callback(None)

    def fail(self) -> None:
        self.deferred.errback(RuntimeError("the disk is full"))


@implementer(IMailDelivery)
class FakeMailDelivery:
    """
    Resolves addresses from a mapping; records deliveries, completing them
    at once (failing those to ``failing`` accounts) unless told to leave
    them to the test.
    """

    def __init__(
        self,
        accounts: Mapping[str, str] = ACCOUNTS,
        complete: bool = True,
        failing: Collection[str] = (),
        resolve_later: bool = False,
    ) -> None:
        self.accounts = dict(accounts)
        self.complete = complete
        self.failing = set(failing)
        self.resolve_later = resolve_later
        self.resolving: list[tuple[str, Deferred[str | None]]] = []
        self.deliveries: list[PendingDelivery] = []

    def resolve(self, address: str) -> Deferred[str | None]:
        if not self.resolve_later:
            return succeed(self.accounts.get(address))
        d: Deferred[str | None] = Deferred()
        self.resolving.append((address, d))
        return d

    def finish_resolving(self) -> None:
        resolving, self.resolving = self.resolving, []
        for address, d in resolving:
            d.callback(self.accounts.get(address))

    def deliver(self, account_id: str, message: bytes) -> Deferred[None]:
        pending = PendingDelivery(account_id, message)
        self.deliveries.append(pending)
        if account_id in self.failing:
            return fail(RuntimeError("the disk is full"))
        if self.complete:
            pending.succeed()
        return pending.deferred

    @property
    def stored(self) -> list[tuple[str, bytes]]:
        return [(p.account_id, p.message) for p in self.deliveries if p.stored]


class Session:
    """
    A server protocol connected to a ``StringTransport``, greeting read.
    """

    def __init__(self, factory: DeliveryServerFactory, peer: IPv4Address = PEER) -> None:
        self.transport = StringTransport(
            peerAddress=peer, hostAddress=IPv4Address("TCP", "192.0.2.1", 24)
        )
        self.server = factory.buildProtocol(peer)
        self.server.makeConnection(self.transport)
        self.greeting = self.replies()

    def send(self, *lines: str | bytes) -> None:
        """
        Send lines, CRLF-terminated, in one segment.
        """
        self.server.dataReceived(
            b"".join((line.encode() if isinstance(line, str) else line) + b"\r\n" for line in lines)
        )

    def replies(self) -> list[str]:
        """
        The reply lines sent since last asked.
        """
        written = self.transport.value().decode("ascii")
        self.transport.clear()
        return written.split("\r\n")[:-1]

    def codes(self) -> list[str]:
        return [reply[:3] for reply in self.replies()]


def lmtp(delivery: IMailDelivery, max_size: int = MAX_SIZE, clock: Clock | None = None) -> Session:
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    return Session(LMTPFactory(delivery, max_size, "mx.example.com", clock))


def start_transaction(session: Session, *recipients: str, sender: str = SENDER) -> list[str]:
    session.send("LHLO client.example")
    session.replies()
    session.send(f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients))
    return session.codes()


def test_greeting_and_lhlo_list_the_extensions() -> None:
    """
    The server greets as LMTP, and ``LHLO`` lists SIZE with the limit,
    8BITMIME, PIPELINING and ENHANCEDSTATUSCODES.
    """
    session = lmtp(FakeMailDelivery())
    assert session.greeting == ["220 mx.example.com LMTP ready"]
    session.send("LHLO client.example")
    assert session.replies() == [
        "250-mx.example.com Hello client.example",
        "250-SIZE 1000",
        "250-8BITMIME",
        "250-PIPELINING",
        "250 ENHANCEDSTATUSCODES",
    ]


def test_helo_and_ehlo_are_refused() -> None:
    """
    ``HELO`` and ``EHLO`` get 500 (RFC 2033 §4.1), and do not count as a
    greeting: ``MAIL`` still needs ``LHLO``.
    """
    session = lmtp(FakeMailDelivery())
    session.send("HELO client.example", "EHLO client.example", f"MAIL FROM:<{SENDER}>")
    replies = session.replies()
    assert [r[:3] for r in replies] == ["500", "500", "503"]
    assert replies[2] == "503 5.5.1 Send LHLO first"


def test_lhlo_needs_a_hostname() -> None:
    """
    ``LHLO`` without an argument gets 501.
    """
    session = lmtp(FakeMailDelivery())
    session.send("LHLO")
    assert session.codes() == ["501"]


def test_unknown_recipient_is_refused_at_rcpt_and_gets_nothing() -> None:
    """
    A recipient that does not resolve gets 550 at ``RCPT``; with no other
    recipient, ``DATA`` gets 503 and nothing is delivered.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session)
    session.send("RCPT TO:<nobody@example.com>")
    assert session.replies() == ["550 5.1.1 No such mailbox here (this server does not relay)"]
    session.send("DATA")
    assert session.codes() == ["503"]
    assert delivery.deliveries == []


def test_one_reply_per_accepted_recipient_in_rcpt_order() -> None:
    """
    With two local recipients and one unknown, the end of ``DATA`` gets
    exactly two replies, in ``RCPT`` order, and each local recipient gets
    its own copy.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    codes = start_transaction(session, "bob@example.com", "nobody@example.com", "alice@example.com")
    assert codes == ["250", "250", "550", "250"]
    session.send("DATA")
    assert session.codes() == ["354"]
    session.send(*MESSAGE_LINES, ".")
    replies = session.replies()
    assert len(replies) == 2
    assert re.fullmatch(r"250 2\.0\.0 <bob@example\.com> Delivered as [0-9A-F]{16}", replies[0])
    assert re.fullmatch(r"250 2\.0\.0 <alice@example\.com> Delivered as [0-9A-F]{16}", replies[1])
    assert [account for account, _ in delivery.stored] == ["A-bob", "A-alice"]
    assert b"for <bob@example.com>" in delivery.stored[0][1]
    assert b"for <alice@example.com>" in delivery.stored[1][1]


def test_reply_waits_until_the_message_is_stored() -> None:
    """
    Nothing is replied to the final dot until every recipient's delivery
    has fired; then each gets its 250.  The copies are stored one after
    another, so that one copy at most is in memory.
    """
    delivery = FakeMailDelivery(complete=False)
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA")
    session.replies()
    session.send(*MESSAGE_LINES, ".")
    assert session.replies() == []
    [alice] = delivery.deliveries
    alice.succeed()
    assert session.replies() == []
    [_, bob] = delivery.deliveries
    bob.succeed()
    assert session.codes() == ["250", "250"]


def test_failed_delivery_gets_451_for_that_recipient_only() -> None:
    """
    When storing one recipient's copy fails, that recipient gets 451 and
    the other still gets 250, in ``RCPT`` order.
    """
    delivery = FakeMailDelivery(complete=False)
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    session.replies()
    delivery.deliveries[0].fail()
    [_, bob] = delivery.deliveries
    bob.succeed()
    replies = session.replies()
    assert replies[0] == "451 4.3.0 Local delivery failed; try again later"
    assert replies[1].startswith("250 2.0.0 <bob@example.com> Delivered")
    assert len(replies) == 2
    assert delivery.stored == [("A-bob", bob.message)]


def test_message_over_the_size_limit_gets_552_and_is_not_delivered() -> None:
    """
    A message larger than the limit gets 552 for every recipient and is
    not handed to delivery at all.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery, max_size=100)
    start_transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", *(["x" * 60] * 2), ".")
    replies = session.replies()
    assert replies[1:] == [
        "552 5.3.4 Message exceeds the maximum size of 100 octets",
        "552 5.3.4 Message exceeds the maximum size of 100 octets",
    ]
    assert delivery.deliveries == []


def test_message_at_the_size_limit_is_accepted() -> None:
    """
    The limit counts the client's octets (CRLFs included, trace headers
    excluded): a message of exactly the limit is delivered.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery, max_size=len(MESSAGE))
    start_transaction(session, "alice@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.codes() == ["354", "250"]
    assert delivery.stored[0][1].endswith(MESSAGE)


def test_size_parameter_over_the_limit_is_refused_at_mail() -> None:
    """
    ``MAIL FROM`` with a ``SIZE=`` above the limit gets 552 before any
    data is sent; one within it is accepted.
    """
    session = lmtp(FakeMailDelivery())
    session.send("LHLO client.example")
    session.replies()
    session.send(f"MAIL FROM:<{SENDER}> SIZE=1001")
    assert session.replies() == ["552 5.3.4 Message size exceeds the fixed maximum of 1000 octets"]
    session.send(f"MAIL FROM:<{SENDER}> SIZE=1000 BODY=8BITMIME")
    assert session.codes() == ["250"]


def test_unknown_mail_and_rcpt_parameters_are_refused() -> None:
    """
    ``MAIL`` parameters other than SIZE and BODY get 555, as do any
    ``RCPT`` parameters; a malformed SIZE gets 501.
    """
    session = lmtp(FakeMailDelivery())
    session.send("LHLO client.example")
    session.replies()
    session.send(
        f"MAIL FROM:<{SENDER}> RET=FULL",
        f"MAIL FROM:<{SENDER}> SIZE=big",
        f"MAIL FROM:<{SENDER}> BODY=BINARYMIME",
        f"MAIL FROM:<{SENDER}>",
        "RCPT TO:<alice@example.com> NOTIFY=NEVER",
    )
    assert session.codes() == ["555", "501", "501", "250", "555"]


def test_dot_stuffing_is_undone_and_crlf_kept() -> None:
    """
    Lines the client dot-stuffed are stored with one dot fewer, and every
    line of the stored message ends in CRLF exactly as sent.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com")
    session.send("DATA", "Subject: dots", "", "..leading dot", "...", "middle . dot", ".")
    assert session.codes() == ["354", "250"]
    stored = delivery.stored[0][1]
    assert stored.endswith(b"\r\nSubject: dots\r\n\r\n.leading dot\r\n..\r\nmiddle . dot\r\n")


def test_trace_headers_come_first() -> None:
    """
    The stored message starts with ``Return-Path`` (the reverse-path) and
    a ``Received`` field naming the client, this server, LMTP, the
    recipient and the clock's time, followed by the message as sent.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    stored = delivery.stored[0][1]
    match = re.match(
        rb"Return-Path: <sender@remote\.example>\r\n"
        rb"Received: from client\.example \(\[192\.0\.2\.7\]\)\r\n"
        rb"\tby mx\.example\.com with LMTP id [0-9A-F]{16}\r\n"
        rb"\tfor <alice@example\.com>; " + re.escape(DATE.encode()) + rb"\r\n",
        stored,
    )
    assert match is not None
    assert stored[match.end() :] == MESSAGE


def test_null_sender_is_accepted() -> None:
    """
    The null reverse-path ``<>`` (bounces) is accepted and recorded as
    ``Return-Path: <>``.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    assert start_transaction(session, "alice@example.com", sender="") == ["250", "250"]
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.codes() == ["354", "250"]
    assert delivery.stored[0][1].startswith(b"Return-Path: <>\r\n")


def test_pipelined_commands_are_answered_in_order() -> None:
    """
    With PIPELINING, commands sent together are answered in order even
    when recipient lookups and deliveries complete later: ``DATA`` sees
    the recipients whose lookups were pending, and the next transaction's
    replies follow the previous message's.
    """
    delivery = FakeMailDelivery(resolve_later=True, complete=False)
    session = lmtp(delivery)
    session.send(
        "LHLO client.example",
        f"MAIL FROM:<{SENDER}>",
        "RCPT TO:<alice@example.com>",
        "RCPT TO:<nobody@example.com>",
        "RCPT TO:<bob@example.com>",
        "DATA",
    )
    assert session.codes() == ["250"] * 6  # LHLO (5 lines), then MAIL
    assert session.transport.producerState == "paused"
    # One lookup at a time: each RCPT waits for the one before.
    delivery.finish_resolving()
    assert session.codes() == ["250"]
    delivery.finish_resolving()
    assert session.codes() == ["550"]
    delivery.finish_resolving()
    assert session.codes() == ["250", "354"]
    assert session.transport.producerState == "producing"

    session.send(*MESSAGE_LINES, ".", f"MAIL FROM:<{SENDER}>", "RCPT TO:<alice@example.com>")
    assert session.replies() == []
    for pending in delivery.deliveries:
        pending.succeed()
    assert session.codes() == ["250", "250", "250"]  # alice, bob, MAIL
    delivery.finish_resolving()
    assert session.codes() == ["250"]


def test_rset_clears_the_transaction() -> None:
    """
    After ``RSET`` the sender and recipients are forgotten: ``DATA`` and
    ``RCPT`` get 503, and nothing is delivered.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com")
    session.send("RSET", "DATA", "RCPT TO:<alice@example.com>")
    assert session.codes() == ["250", "503", "503"]
    assert delivery.deliveries == []


def test_connection_serves_several_messages() -> None:
    """
    After a message is delivered the same connection takes another one,
    without a new greeting.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com")
    session.send("DATA", "Subject: one", "", "1", ".")
    assert session.codes() == ["354", "250"]
    session.send(f"MAIL FROM:<{SENDER}>", "RCPT TO:<bob@example.com>", "DATA")
    session.send("Subject: two", "", "2", ".", "QUIT")
    assert session.codes() == ["250", "250", "354", "250", "221"]
    assert [account for account, _ in delivery.stored] == ["A-alice", "A-bob"]
    assert delivery.stored[1][1].endswith(b"Subject: two\r\n\r\n2\r\n")
    assert session.transport.disconnecting


def test_noop_vrfy_and_commands_not_offered() -> None:
    """
    ``NOOP`` gets 250; ``VRFY`` gets 252 without revealing whether the
    user exists; ``AUTH``, ``STARTTLS`` and ``BDAT`` are refused and the
    connection stays usable.
    """
    session = lmtp(FakeMailDelivery())
    session.send("NOOP", "VRFY alice", "VRFY nobody", "AUTH", "STARTTLS", "BDAT 10", "NOOP")
    assert session.codes() == ["250", "252", "252", "502", "502", "500", "250"]


def test_too_many_recipients_get_452() -> None:
    """
    Recipients beyond the per-transaction limit get 452 (the client sends
    them again in another transaction).
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    session.server.max_recipients = 2
    codes = start_transaction(session, "alice@example.com", "bob@example.com", "alice@example.com")
    assert codes == ["250", "250", "250", "452"]


def test_overlong_line_closes_the_connection() -> None:
    """
    A line longer than the limit gets 500 and the connection is closed, so
    the rest of it cannot be taken for commands; nothing is delivered.
    """
    delivery = FakeMailDelivery()
    session = lmtp(delivery)
    start_transaction(session, "alice@example.com")
    session.send("DATA")
    session.replies()
    session.send("x" * (LMTP.MAX_LENGTH + 1), "RSET", ".")
    assert session.codes() == ["500"]
    assert session.transport.disconnecting
    assert delivery.deliveries == []


def test_idle_connection_times_out_on_the_injected_clock() -> None:
    """
    A connection idle for the timeout gets 421 and is closed, timed by the
    clock given to the factory.
    """
    clock = Clock()
    session = lmtp(FakeMailDelivery(), clock=clock)
    clock.advance(599)
    assert not session.transport.disconnecting
    clock.advance(1)
    assert session.codes() == ["421"]
    assert session.transport.disconnecting


def test_delivery_services_build_the_configured_listeners() -> None:
    """
    One listening service per configured endpoint, LMTP first; none when
    nothing is configured.
    """
    reactor = MemoryReactorClock()
    delivery = FakeMailDelivery()
    services = delivery_services(delivery, "tcp:2424", "tcp:2525", 10, "mx.example.com", reactor)
    for service in services:
        service.startService()
    assert [(port, type(factory)) for port, factory, _, _ in reactor.tcpServers] == [
        (2424, LMTPFactory),
        (2525, InboundSMTPFactory),
    ]
    assert delivery_services(delivery, None, None, 10, "mx.example.com", reactor) == []


def test_fake_delivery_provides_the_interface() -> None:
    """
    The fake used here is a faithful ``IMailDelivery``.
    """
    assert verifyObject(IMailDelivery, FakeMailDelivery())


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_smtplib_lmtp_client_over_loopback() -> None:
    """
    Python's ``smtplib.LMTP`` delivers over a real socket: an unknown
    recipient is reported refused by ``sendmail``, the first accepted
    recipient's reply is ``sendmail``'s result and the second's follows
    it (451 for the failed delivery), and only the stored copy is kept.
    """
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThread

    delivery = FakeMailDelivery(failing={"A-bob"})
    (service,) = delivery_services(
        delivery, "tcp:0:interface=127.0.0.1", None, MAX_SIZE, "mx.example.com", reactor
    )
    service.startService()
    try:
        port = service.port.getHost().port  # type: ignore[attr-defined]

        def talk() -> tuple[dict[str, tuple[int, bytes]], tuple[int, bytes]]:
            with smtplib.LMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as c:
                refused = c.sendmail(
                    SENDER,
                    ["alice@example.com", "nobody@example.com", "bob@example.com"],
                    MESSAGE + b".starts with a dot\r\n",
                )
                second = c.getreply()
            return refused, second

        refused, second = await deferToThread(talk)
    finally:
        await service.stopService()

    assert list(refused) == ["nobody@example.com"]
    assert refused["nobody@example.com"][0] == 550
    assert second[0] == 451
    assert [account for account, _ in delivery.stored] == ["A-alice"]
    stored = delivery.stored[0][1]
    assert stored.startswith(
        b"Return-Path: <sender@remote.example>\r\nReceived: from client.example"
    )
    assert stored.endswith(MESSAGE + b".starts with a dot\r\n")
