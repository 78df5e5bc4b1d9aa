"""
The spool of an arriving message: its octets held once for every
recipient, on disk once large, dropped once too big, and read back by one
recipient at a time.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.mail.smtp import SMTPServerError

from jmap_twisted.mail.incoming import IncomingMessage
from jmap_twisted.mail.spool import MessageSpool
from tests.mail.test_lmtp import FakeMailDelivery


def result(d: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    [value] = outcome
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def _rolled(spool: MessageSpool) -> bool:
    return bool(spool._file._rolled)  # type: ignore[union-attr]


def test_spool_keeps_crlf_terminated_lines_and_moves_to_a_file() -> None:
    """
    Lines come back CRLF-terminated after the prefix; a small message stays
    in memory, a larger one moves to a temporary file, and reading it back
    leaves it readable again.
    """
    small = MessageSpool(1000, memory_limit=100)
    small.add_line(b"Subject: hi")
    small.add_line(b"")
    small.add_line(b"body")
    assert small.octets(b"T: 1\r\n") == b"T: 1\r\nSubject: hi\r\n\r\nbody\r\n"
    assert small.size == len(b"Subject: hi\r\n\r\nbody\r\n")
    assert not _rolled(small)

    large = MessageSpool(10_000_000, memory_limit=100)
    for number in range(100_000):
        large.add_line(b"%d" % number)
    expected = b"".join(b"%d\r\n" % number for number in range(100_000))
    assert _rolled(large)
    assert large.octets() == expected
    assert large.octets(b"X") == b"X" + expected


def test_spool_past_the_limit_drops_its_octets() -> None:
    """
    Past ``max_size`` the spool is marked too big, forgets what it held and
    ignores further lines (which still count).
    """
    spool = MessageSpool(10)
    spool.add_line(b"12345678")
    assert not spool.too_big
    spool.add_line(b"9")
    assert spool.too_big
    spool.add_line(b"more")
    with pytest.raises(ValueError):
        spool.octets()


def test_spool_closes_when_its_last_user_releases_it() -> None:
    """
    The first user writes the lines; the spool closes once every user has
    released it.
    """
    spool = MessageSpool(100)
    assert spool.hold() is True
    assert spool.hold() is False
    spool.add_line(b"x")
    spool.release()
    assert spool.octets() == b"x\r\n"
    spool.release()
    with pytest.raises(ValueError):
        spool.octets()


def test_recipients_share_one_copy_and_store_one_at_a_time() -> None:
    """
    Messages sharing a spool get every line once (Twisted hands each line to
    every recipient's message), each delivers the message behind its own
    trace headers, and the second copy is made only once the first is
    stored.
    """
    delivery = FakeMailDelivery(complete=False)
    spool = MessageSpool(1000)
    messages = [
        IncomingMessage(delivery, account, "r@x", trace, 1000, "ID", spool)
        for account, trace in (("A1", b"T: 1\r\n"), ("A2", b"T: 2\r\n"))
    ]
    for line in (b"Subject: s", b"", b"hello"):
        for message in messages:
            message.lineReceived(line)
    assert spool.size == len(b"Subject: s\r\n\r\nhello\r\n")
    first, second = (message.eomReceived() for message in messages)
    assert [pending.account_id for pending in delivery.deliveries] == ["A1"]
    delivery.deliveries[0].succeed()
    assert result(first).startswith("2.0.0")
    assert [pending.account_id for pending in delivery.deliveries] == ["A1", "A2"]
    delivery.deliveries[1].succeed()
    assert result(second).startswith("2.0.0")
    assert delivery.stored == [
        ("A1", b"T: 1\r\nSubject: s\r\n\r\nhello\r\n"),
        ("A2", b"T: 2\r\nSubject: s\r\n\r\nhello\r\n"),
    ]
    with pytest.raises(ValueError):
        spool.octets()


def test_too_big_shared_message_gets_552_for_every_recipient() -> None:
    """
    When the shared message is too big, every recipient's message fails
    with 552 and nothing is delivered.
    """
    delivery = FakeMailDelivery()
    spool = MessageSpool(10)
    messages = [IncomingMessage(delivery, a, "r@x", b"", 10, "ID", spool) for a in ("A1", "A2")]
    for message in messages:
        message.lineReceived(b"0123456789")
    for message in messages:
        with pytest.raises(SMTPServerError) as error:
            result(message.eomReceived())
        assert error.value.code == 552
    assert delivery.deliveries == []


def test_a_lost_connection_releases_the_spool() -> None:
    """
    When the connection is lost during ``DATA`` the spool is closed.
    """
    spool = MessageSpool(100)
    messages = [IncomingMessage(FakeMailDelivery(), a, "r@x", b"", 100, "I", spool) for a in "AB"]
    messages[0].lineReceived(b"x")
    for message in messages:
        message.connectionLost()
    with pytest.raises(ValueError):
        spool.octets()


def test_a_message_of_empty_lines_costs_about_its_size() -> None:
    """
    Two hundred thousand empty lines for five recipients cost about their
    octets (400 kB), not tens of octets per line per recipient (tens of
    MB).
    """
    delivery = FakeMailDelivery(complete=False)
    spool = MessageSpool(10_000_000, memory_limit=64 * 1024)
    messages = [IncomingMessage(delivery, f"A{n}", "r@x", b"", 10**7, "I", spool) for n in range(5)]
    tracemalloc.start()
    try:
        for _ in range(200_000):
            for message in messages:
                message.lineReceived(b"")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert spool.octets() == b"\r\n" * 200_000


def test_large_messages_are_stored_a_few_at_a_time() -> None:
    """
    Large messages of different transactions sharing ``large_turns`` are
    read back into memory two at a time; a small one does not wait.
    """
    delivery = FakeMailDelivery(complete=False)
    turns = DeferredSemaphore(2)
    finished = []
    for account in ("A1", "A2", "A3"):
        spool = MessageSpool(10_000, memory_limit=10)
        message = IncomingMessage(delivery, account, "r@x", b"", 10_000, "I", spool, turns)
        message.lineReceived(b"x" * 100)
        finished.append(message.eomReceived())
    small = IncomingMessage(delivery, "A4", "r@x", b"", 10_000, "I", None, turns)
    small.lineReceived(b"x")
    finished.append(small.eomReceived())
    assert [pending.account_id for pending in delivery.deliveries] == ["A1", "A2", "A4"]
    delivery.deliveries[0].succeed()
    assert [pending.account_id for pending in delivery.deliveries][3:] == ["A3"]
    for pending in delivery.deliveries[1:]:
        pending.succeed()
    assert all(result(d).startswith("2.0.0") for d in finished)
