"""
The inbound SMTP server (local delivery only) and the reply policy after
``DATA``, over a ``StringTransport``.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from jmap_twisted.mail.smtp import InboundSMTPFactory, smtp_data_reply, with_enhanced_code
from tests.mail.test_lmtp import MESSAGE, MESSAGE_LINES, NOW, SENDER, FakeMailDelivery, Session


def smtp(delivery: FakeMailDelivery, max_size: int = 1000) -> Session:
    clock = Clock()
    clock.advance(NOW)
    return Session(InboundSMTPFactory(delivery, max_size, "mx.example.com", clock))


def transaction(session: Session, *recipients: str) -> list[str]:
    session.send("EHLO client.example")
    session.replies()
    session.send(f"MAIL FROM:<{SENDER}>", *(f"RCPT TO:<{r}>" for r in recipients))
    return session.codes()


def test_ehlo_lists_the_extensions_and_helo_is_accepted() -> None:
    """
    ``EHLO`` lists SIZE with the limit, 8BITMIME, PIPELINING and
    ENHANCEDSTATUSCODES; plain ``HELO`` is answered without extensions.
    """
    session = smtp(FakeMailDelivery())
    assert session.greeting == ["220 mx.example.com ESMTP ready; local delivery only"]
    session.send("EHLO client.example")
    assert session.replies() == [
        "250-mx.example.com Hello client.example",
        "250-SIZE 1000",
        "250-8BITMIME",
        "250-PIPELINING",
        "250 ENHANCEDSTATUSCODES",
    ]
    session.send("HELO client.example")
    assert session.replies() == ["250 mx.example.com Hello client.example"]


def test_mail_needs_a_greeting() -> None:
    """
    ``MAIL`` before ``EHLO``/``HELO`` gets 503.
    """
    session = smtp(FakeMailDelivery())
    session.send(f"MAIL FROM:<{SENDER}>")
    assert session.replies() == ["503 5.5.1 Send EHLO first"]


def test_remote_recipient_is_refused_no_relay() -> None:
    """
    A recipient that is not local gets 550 at ``RCPT`` (the server never
    relays) and receives nothing, while a local one in the same
    transaction gets the message.
    """
    delivery = FakeMailDelivery()
    session = smtp(delivery)
    codes = transaction(session, "someone@elsewhere.example", "alice@example.com")
    assert codes == ["250", "550", "250"]
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.codes() == ["354", "250"]
    assert [account for account, _ in delivery.stored] == ["A-alice"]


def test_one_reply_after_data_for_several_recipients() -> None:
    """
    SMTP sends a single 250 after ``DATA`` once every recipient's copy is
    stored, not before.
    """
    delivery = FakeMailDelivery(complete=False)
    session = smtp(delivery)
    transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.codes() == ["354"]
    delivery.deliveries[0].succeed()
    assert session.replies() == []
    delivery.deliveries[1].succeed()
    assert session.replies() == ["250 2.0.0 Message delivered"]


def test_all_deliveries_failed_gets_451() -> None:
    """
    When no recipient's copy could be stored the client gets 451 and will
    retry.
    """
    delivery = FakeMailDelivery(failing={"A-alice", "A-bob"})
    session = smtp(delivery)
    transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.replies()[1:] == ["451 4.3.0 Local delivery failed; try again later"]


def test_partial_failure_gets_250() -> None:
    """
    When some copies were stored, the client gets 250 (a retry would
    duplicate them); the stored copies are kept.
    """
    delivery = FakeMailDelivery(failing={"A-alice"})
    session = smtp(delivery)
    transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", *MESSAGE_LINES, ".")
    assert session.codes() == ["354", "250"]
    assert [account for account, _ in delivery.stored] == ["A-bob"]


def test_message_over_the_size_limit_gets_one_552() -> None:
    """
    A message over the limit gets a single permanent 552 and is not
    delivered.
    """
    delivery = FakeMailDelivery()
    session = smtp(delivery, max_size=50)
    transaction(session, "alice@example.com", "bob@example.com")
    session.send("DATA", "x" * 60, ".")
    assert session.replies()[1:] == ["552 5.3.4 Message exceeds the maximum size of 50 octets"]
    assert delivery.deliveries == []


def test_size_parameter_over_the_limit_gets_552_at_mail() -> None:
    """
    ``SIZE=`` above the limit is refused at ``MAIL FROM`` with 552.
    """
    session = smtp(FakeMailDelivery())
    session.send("EHLO client.example")
    session.replies()
    session.send(f"MAIL FROM:<{SENDER}> SIZE=99999999999999999999999999")
    assert session.codes() == ["552"]


@pytest.mark.parametrize(("greeting", "keyword"), [("EHLO", b"ESMTP"), ("HELO", b"SMTP")])
def test_received_header_names_the_protocol(greeting: str, keyword: bytes) -> None:
    """
    The ``Received`` header says ``with ESMTP`` after ``EHLO`` and ``with
    SMTP`` after ``HELO``; the message follows the trace headers intact.
    """
    delivery = FakeMailDelivery()
    session = smtp(delivery)
    session.send(f"{greeting} client.example")
    session.replies()
    session.send(f"MAIL FROM:<{SENDER}>", "RCPT TO:<alice@example.com>", "DATA", *MESSAGE_LINES)
    session.send(".")
    assert session.codes() == ["250", "250", "354", "250"]
    stored = delivery.stored[0][1]
    assert b"\tby mx.example.com with " + keyword + b" id " in stored
    assert stored.startswith(b"Return-Path: <sender@remote.example>\r\n")
    assert stored.endswith(b"\r\n" + MESSAGE)


@pytest.mark.parametrize(
    ("outcomes", "reply"),
    [
        ([(250, b"ok"), (250, b"ok")], 250),
        ([(451, b"x"), (250, b"ok")], 250),
        ([(451, b"x"), (451, b"x")], 451),
        ([(552, b"too big"), (552, b"too big")], 552),
        ([(552, b"too big"), (451, b"x")], 451),
    ],
)
def test_smtp_data_reply_policy(outcomes: list[tuple[int, bytes]], reply: int) -> None:
    """
    Failure only when every copy failed: the permanent reply when all
    failed permanently, else 451; any stored copy makes it 250.
    """
    assert smtp_data_reply(outcomes)[0] == reply


def test_enhanced_codes_are_added_where_missing() -> None:
    """
    Replies get an enhanced status code unless they carry one; 3xx
    replies get none.
    """
    assert with_enhanced_code(250, b"Sender address accepted") == b"2.0.0 Sender address accepted"
    assert with_enhanced_code(503, b"Bad sequence") == b"5.5.1 Bad sequence"
    assert with_enhanced_code(550, b"5.1.1 Unknown") == b"5.1.1 Unknown"
    assert with_enhanced_code(354, b"Continue") == b"Continue"
    assert with_enhanced_code(221, b"") == b"2.0.0"
