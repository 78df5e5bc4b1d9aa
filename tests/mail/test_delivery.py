"""
Local delivery: who is local, how a message is stored, its trace headers,
and the bridge to Twisted's ``IMessageDelivery``/``IMessage``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from twisted.mail.smtp import Address, SMTPBadRcpt, SMTPServerError, User
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IMailDelivery, IMailReader, IMailStore, IMailWriter
from jmap_twisted.mail.delivery import (
    LocalDelivery,
    NoInbox,
    normalise_domain,
    split_address,
)
from jmap_twisted.mail.incoming import IncomingMessage, LocalMessageDelivery, trace_headers
from jmap_twisted.records import EmailRecord, EmailSummary, MailboxRecord, StoreCommit
from jmap_twisted.store.memory.directory import MemoryDirectory
from tests.mail.test_lmtp import NOW, FakeMailDelivery

T = TypeVar("T")

INBOX = MailboxRecord("mb-inbox", "Inbox", None, "inbox", 0, True)
ARCHIVE = MailboxRecord("mb-archive", "Archive", None, "archive", 0, True)
RAW = b"Subject: secret plans\r\n\r\nThe treasure is under the oak.\r\n"


def result(d: Deferred[T]) -> T:
    """
    The result of a Deferred that has already fired (re-raising a failure).
    """
    results: list[T] = []
    failures: list[Any] = []
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    assert results, "the Deferred has not fired"
    return results[0]


class FakeWriter:
    """
    Just enough of an ``IMailWriter`` for delivery: mailboxes, and
    ``add_email`` recorded.
    """

    def __init__(self, account_id: str, mailboxes: list[MailboxRecord]) -> None:
        self.account_id = account_id
        self._mailboxes = mailboxes
        self.added: list[tuple[bytes, list[str], list[str], float]] = []

    def mailboxes(self) -> list[MailboxRecord]:
        return list(self._mailboxes)

    def add_email(
        self,
        raw: bytes,
        mailbox_ids: Collection[str],
        keywords: Collection[str],
        received_at: float,
    ) -> EmailRecord:
        self.added.append((raw, list(mailbox_ids), list(keywords), received_at))
        return EmailRecord(
            id="M1",
            blob_id="B1",
            thread_id="T1",
            mailbox_ids=frozenset(mailbox_ids),
            keywords=frozenset(keywords),
            size=len(raw),
            received_at=received_at,
            summary=EmailSummary(message_ids=("id-1@remote.example",)),
        )


@implementer(IMailStore)
class FakeMailStore:
    """
    Records calls and runs write functions against one :class:`FakeWriter`.
    """

    def __init__(self, mailboxes: list[MailboxRecord] | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.writer = FakeWriter("A1", [INBOX, ARCHIVE] if mailboxes is None else mailboxes)

    def setup_account(self, account_id: str) -> Deferred[None]:
        self.calls.append(("setup_account", account_id))
        return succeed(None)

    def read(self, account_id: str, fn: Callable[[IMailReader], T]) -> Deferred[T]:
        raise NotImplementedError

    def write(
        self, account_id: str, fn: Callable[[IMailWriter], T], delivery: bool = False
    ) -> Deferred[T]:
        self.calls.append(("write", account_id, delivery))
        try:
            return succeed(fn(self.writer))  # type: ignore[arg-type]
        except Exception as e:
            return fail(e)

    def subscribe(self, listener: Callable[[StoreCommit], object]) -> Callable[[], None]:
        return lambda: None


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def directory(clock: Clock) -> MemoryDirectory:
    directory = MemoryDirectory(clock)
    for username in ["alice", "Bob", "carol@example.com", "dave@bücher.example", "eve@other.org"]:
        result(directory.create_user(username, None))
    return directory


def account_of(directory: MemoryDirectory, username: str) -> str:
    user = result(directory.get_user(username))
    assert user is not None
    return result(directory.accounts_for_user(user.id))[0].id


def local(
    directory: MemoryDirectory, clock: Clock, store: FakeMailStore | None = None
) -> LocalDelivery:
    return LocalDelivery(
        directory, store or FakeMailStore(), ["Example.COM", "bücher.example."], clock
    )


def test_local_delivery_provides_the_interface(directory: MemoryDirectory, clock: Clock) -> None:
    """
    ``LocalDelivery`` is an ``IMailDelivery``.
    """
    assert verifyObject(IMailDelivery, local(directory, clock))


@pytest.mark.parametrize(
    ("address", "username"),
    [
        ("alice@example.com", "alice"),
        ("alice@EXAMPLE.com", "alice"),
        ("<alice@example.com.>", "alice"),
        ('"alice"@example.com', "alice"),
        ("Bob@example.com", "Bob"),
        ("carol@example.com", "carol@example.com"),
        ("carol@Example.COM", "carol@example.com"),
        ("alice@xn--bcher-kva.example", "alice"),
        ("alice@BÜCHER.example", "alice"),
        ("dave@xn--bcher-kva.example", "dave@bücher.example"),
    ],
)
def test_resolve_local_addresses(
    directory: MemoryDirectory, clock: Clock, address: str, username: str
) -> None:
    """
    A local domain in any case or IDNA form, with a local part equal to a
    username, or an address equal to an address-shaped username, resolves
    to that user's personal account.
    """
    assert result(local(directory, clock).resolve(address)) == account_of(directory, username)


@pytest.mark.parametrize(
    "address",
    [
        "alice@other.org",  # not a local domain
        "eve@other.org",  # an address-shaped username, in a non-local domain
        '"eve@other.org"@example.com',  # a local part holding another domain
        "nobody@example.com",  # no such user
        "ALICE@example.com",  # usernames compare exactly
        "bob@example.com",
        "alice",  # no domain
        "@example.com",
    ],
)
def test_resolve_non_local_addresses(
    directory: MemoryDirectory, clock: Clock, address: str
) -> None:
    """
    Addresses outside the local domains, unknown users and malformed
    addresses resolve to ``None``.
    """
    assert result(local(directory, clock).resolve(address)) is None


def test_address_helpers() -> None:
    """
    Domains normalise to lower-case A-labels; addresses split at the last
    ``@`` with quoted local parts unquoted.
    """
    assert normalise_domain("BÜCHER.Example.") == "xn--bcher-kva.example"
    assert split_address('<"a\\"b"@x.org>') == ('a"b', "x.org")
    assert split_address("no-at-sign") is None


def test_deliver_stores_in_the_inbox_as_a_delivery(
    directory: MemoryDirectory, clock: Clock
) -> None:
    """
    ``deliver`` adds the octets unchanged to the inbox in one write,
    without keywords, at the clock's time, flagged as a delivery, and
    fires with the stored email; an account that has its inbox is not
    set up again.
    """
    store = FakeMailStore()
    stored = result(local(directory, clock, store).deliver("A1", RAW))
    assert stored is not None and stored.id == "M1"
    assert store.calls == [("write", "A1", True)]
    assert store.writer.added == [(RAW, ["mb-inbox"], [], NOW)]


def test_deliver_sets_up_an_account_without_inbox(tmp_path: object, clock: Clock) -> None:
    """
    Delivery into an account never set up (no mailboxes yet) creates the
    standard mailboxes and stores the mail in the new inbox.
    """
    from jmap_twisted.store.memory.mail import MemoryMailStore

    store = MemoryMailStore(clock)
    directory = MemoryDirectory(clock)
    stored = result(local(directory, clock, store).deliver("A9", RAW))
    assert stored is not None and stored.size == len(RAW)

    def inbox_count(reader: Any) -> int:
        (inbox,) = [m for m in reader.mailboxes() if m.role == "inbox"]
        return reader.mailbox_counts([inbox.id])[inbox.id].total_emails

    assert result(store.read("A9", inbox_count)) == 1


def test_deliver_fails_without_an_inbox(directory: MemoryDirectory, clock: Clock) -> None:
    """
    An account without an inbox makes delivery fail (and so the protocol
    reply a temporary failure) rather than store the mail elsewhere.
    """
    store = FakeMailStore(mailboxes=[ARCHIVE])
    with pytest.raises(NoInbox):
        result(local(directory, clock, store).deliver("A1", RAW))
    assert store.writer.added == []


def test_deliver_logs_ids_and_size_but_not_contents(
    directory: MemoryDirectory, clock: Clock
) -> None:
    """
    A delivery is logged in one line with the delivery id, account id,
    email id, Message-ID and size as structured fields, and nothing of
    the message's text.
    """
    message = IncomingMessage(local(directory, clock), "A1", "a@example.com", b"", 10**6, "D1")
    with capturedLogs() as events:
        for line in RAW.split(b"\r\n")[:-1]:
            message.lineReceived(line)
        result(message.eomReceived())
    (event,) = [e for e in events if e.get("email_id") == "M1"]
    assert len([e for e in events if e.get("log_level") == LogLevel.info]) == 1
    assert event["delivery_id"] == "D1"
    assert event["account_id"] == "A1"
    assert event["size"] == len(RAW)
    assert event["message_id"] == "id-1@remote.example"
    text = formatEvent(event)
    assert "treasure" not in text
    assert "secret" not in text


def test_trace_headers_format() -> None:
    """
    ``Return-Path`` then a folded ``Received`` with an IPv6 address
    literal; a client's odd greeting is made safe to put in a header, and
    over a UNIX socket no address is given.
    """
    headers = trace_headers("", "a@example.com", "[::1]", "::1", "mx", "LMTP", "ID1", 0)
    assert headers == (
        b"Return-Path: <>\r\n"
        b"Received: from [::1] ([IPv6:::1])\r\n"
        b"\tby mx with LMTP id ID1\r\n"
        b"\tfor <a@example.com>; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
    )
    headers = trace_headers("s@x", "a@example.com", "evil\nX-Bad:(1)", None, "mx", "SMTP", "I", 0)
    assert b"Received: from evil?X-Bad:?1?\r\n\tby mx with SMTP" in headers
    assert headers.count(b"\n") == 4


def test_incoming_message_bounds_its_buffer() -> None:
    """
    An ``IMessage`` whose lines exceed the limit fails with 552 at the end
    and delivers nothing; within the limit it delivers the trace headers
    followed by the CRLF-terminated lines and fires only once stored.
    """
    delivery = FakeMailDelivery(complete=False)
    message = IncomingMessage(delivery, "A1", "a@example.com", b"T: 1\r\n", 10, "ID")
    assert verifyObject(IMessageSMTP, message)
    message.lineReceived(b"12345678")  # 10 octets with its CRLF
    d = message.eomReceived()
    assert not d.called
    delivery.deliveries[0].succeed()
    assert result(d) == "2.0.0 <a@example.com> Delivered as ID"
    assert delivery.stored == [("A1", b"T: 1\r\n12345678\r\n")]

    big = IncomingMessage(delivery, "A1", "a@example.com", b"", 10, "ID")
    big.lineReceived(b"123456789")
    with pytest.raises(SMTPServerError) as error:
        result(big.eomReceived())
    assert error.value.code == 552
    assert len(delivery.deliveries) == 1


def test_incoming_message_failure_becomes_451() -> None:
    """
    A failed delivery becomes a 451 (try again later) for that recipient.
    """
    message = IncomingMessage(FakeMailDelivery(failing={"A1"}), "A1", "a@x", b"", 10, "ID")
    message.lineReceived(b"hi")
    with pytest.raises(SMTPServerError) as error:
        result(message.eomReceived())
    assert error.value.code == 451


def test_incoming_message_on_a_full_disk_becomes_452() -> None:
    """
    A delivery refused because the disk is full becomes 452 4.3.1
    (insufficient storage: the sender tries again), not a logged failure.
    """
    from jmap_twisted.errors import DiskFull

    class FullDisk(FakeMailDelivery):
        def deliver(self, account_id: str, message: bytes) -> Deferred[None]:
            return fail(DiskFull("the disk is full"))

    message = IncomingMessage(FullDisk(), "A1", "a@x", b"", 10, "ID")
    message.lineReceived(b"hi")
    with pytest.raises(SMTPServerError) as error:
        result(message.eomReceived())
    assert error.value.code == 452
    assert "4.3.1" in str(error.value.resp)


class _Protocol:
    host = b"mx.example.com"
    received_with = "LMTP"


def _user(recipient: bytes, sender: bytes = b"<s@remote.example>") -> User:
    return User(recipient, (b"client.example", b"192.0.2.7"), _Protocol(), Address(sender))


class _BrokenDelivery(FakeMailDelivery):
    def resolve(self, address: str) -> Deferred[str | None]:
        return fail(RuntimeError("the directory is down"))


def test_message_delivery_validates_senders_and_recipients(clock: Clock) -> None:
    """
    Any printable ASCII reverse-path (null included) is accepted; a local
    recipient gets a message factory, a non-local one ``SMTPBadRcpt``
    550, and a failed lookup 451.  No ``Received`` header is given to
    Twisted: each message carries its own trace headers.
    """
    accounts = {"alice@example.com": "A-alice"}
    validator = LocalMessageDelivery(FakeMailDelivery(accounts), "mx.example.com", 100, clock)
    assert verifyObject(IMessageDelivery, validator)
    null = Address(b"<>")
    assert validator.validateFrom((b"c", b"1.2.3.4"), null) is null
    with pytest.raises(SMTPServerError) as error:
        validator.validateFrom((b"c", b"1.2.3.4"), Address(b'<"\xc3\xa9"@x.org>'))
    assert error.value.code == 553
    assert validator.receivedHeader((b"c", b"1.2.3.4"), null, []) is None

    factory = result(validator.validateTo(_user(b"<alice@example.com>")))
    assert isinstance(factory(), IncomingMessage)
    with pytest.raises(SMTPBadRcpt) as refused:
        result(validator.validateTo(_user(b"<bob@example.com>")))
    assert refused.value.code == 550

    broken = LocalMessageDelivery(_BrokenDelivery(), "mx.example.com", 100, clock)
    with pytest.raises(SMTPServerError) as error:
        result(broken.validateTo(_user(b"<alice@example.com>")))
    assert error.value.code == 451


def test_resolutions_are_remembered_until_forgotten(clock: Clock) -> None:
    """
    A resolved address is answered from memory the next time (no directory
    lookup); an unknown one is looked up every time (a user created since
    receives mail at once); after ``forget`` (an access change, such as a
    deleted user) addresses are looked up again.
    """
    directory = MemoryDirectory(clock)
    delivery = local(directory, clock, FakeMailStore())
    user = result(directory.create_user("carol", None))
    (account,) = result(directory.accounts_for_user(user.id))
    lookups: list[str] = []
    original = directory.get_user

    def counting(username: str) -> Any:
        lookups.append(username)
        return original(username)

    directory.get_user = counting  # type: ignore[method-assign]
    assert result(delivery.resolve("carol@example.com")) == account.id
    first = len(lookups)
    assert result(delivery.resolve("carol@example.com")) == account.id
    assert len(lookups) == first
    assert result(delivery.resolve("dave@example.com")) is None
    result(directory.create_user("dave", None))
    assert result(delivery.resolve("dave@example.com")) is not None
    result(directory.delete_user("carol"))
    delivery.forget()
    assert result(delivery.resolve("carol@example.com")) is None


def test_a_resolution_answered_across_forget_is_not_remembered(clock: Clock) -> None:
    """
    A lookup still running when the directory changes (``forget``) is not
    remembered: its answer may predate the change.
    """
    directory = MemoryDirectory(clock)
    user = result(directory.create_user("erin", None))
    delivery = local(directory, clock, FakeMailStore())
    waiting: list[tuple[Deferred[Any], str]] = []
    original = directory.get_user

    def slow(username: str) -> Any:
        d: Deferred[Any] = Deferred()
        waiting.append((d, username))
        return d

    directory.get_user = slow  # type: ignore[method-assign]
    resolving = delivery.resolve("erin@example.com")
    delivery.forget()
    while not resolving.called:
        d, username = waiting.pop(0)
        d.callback(original(username).result)
    assert result(resolving) is not None
    assert delivery._resolved == {}
    assert user.id
