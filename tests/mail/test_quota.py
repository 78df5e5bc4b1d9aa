"""
Delivery into a full mailbox: LMTP and SMTP answer ``452 4.2.2`` for that
recipient alone, at ``RCPT`` when the quota is already full (or has no
room for the announced ``SIZE``), after ``DATA`` when the message itself
does not fit; the other recipients get their copy and nothing is stored
past a limit.  Real :class:`~jmap_twisted.mail.delivery.LocalDelivery`
over the in-memory stores.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IDeliveryQuota
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.mail.smtp import InboundSMTPFactory
from jmap_twisted.records import AccountQuota
from jmap_twisted.store.memory.directory import MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.mail.test_delivery import result
from tests.mail.test_lmtp import MESSAGE, MESSAGE_LINES, NOW, SENDER, Session, lmtp

FULL = "452 4.2.2 Mailbox full (over quota); try again later"


class Mail:
    """
    Users alice and bob with their accounts, a store, and the delivery
    over them.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = MemoryDirectory(self.clock)
        self.store = MemoryMailStore(self.clock)
        self.accounts: dict[str, str] = {}
        for name in ("alice", "bob"):
            user = result(self.directory.create_user(name, None))
            account = result(self.directory.accounts_for_user(user.id))[0].id
            result(self.store.setup_account(account))
            self.accounts[name] = account
        self.delivery = LocalDelivery(self.directory, self.store, ["example.com"], self.clock)

    def limit(self, name: str, storage: int | None, messages: int | None) -> None:
        result(self.store.write(self.accounts[name], lambda w: w.set_quota(storage, messages)))

    def quota(self, name: str) -> AccountQuota:
        return result(self.store.read(self.accounts[name], lambda r: r.quota()))


@pytest.fixture
def mail() -> Mail:
    return Mail()


def send(session: Session, mail_from: str, *recipients: str) -> tuple[list[str], list[str]]:
    """
    One transaction: the replies to ``MAIL`` and each ``RCPT``, and to the
    end of ``DATA`` (nothing when no recipient was accepted).
    """
    session.send(mail_from, *(f"RCPT TO:<{r}>" for r in recipients))
    envelope = session.replies()
    if not any(reply.startswith("250") for reply in envelope[1:]):
        session.send("RSET")
        session.replies()
        return envelope, []
    session.send("DATA", *MESSAGE_LINES, ".")
    return envelope, session.replies()[1:]


def greeted(session: Session, greeting: str) -> Session:
    session.send(f"{greeting} client.example")
    session.replies()
    return session


def test_local_delivery_tells_whether_an_account_has_room(mail: Mail) -> None:
    """
    LocalDelivery provides IDeliveryQuota: room as long as the limits
    allow one more message of the size asked (at least one octet).
    """
    assert verifyObject(IDeliveryQuota, mail.delivery)
    alice = mail.accounts["alice"]
    assert result(mail.delivery.has_room(alice, 10**9))
    mail.limit("alice", 100, None)
    assert result(mail.delivery.has_room(alice, 100))
    assert not result(mail.delivery.has_room(alice, 101))
    mail.limit("alice", 0, None)
    assert not result(mail.delivery.has_room(alice, 0))


def test_lmtp_refuses_a_full_mailbox_at_rcpt_and_delivers_the_others(mail: Mail) -> None:
    """
    A recipient whose message limit is reached gets 452 4.2.2 at RCPT;
    the other recipient's copy is delivered and gets its 250 after DATA.
    """
    mail.limit("alice", None, 1)
    session = greeted(lmtp(mail.delivery), "LHLO")
    first, data = send(session, f"MAIL FROM:<{SENDER}>", "alice@example.com", "bob@example.com")
    assert [r[:3] for r in first + data] == ["250", "250", "250", "250", "250"]
    envelope, data = send(session, f"MAIL FROM:<{SENDER}>", "alice@example.com", "bob@example.com")
    assert envelope[1] == FULL
    assert [r[:3] for r in envelope] == ["250", "452", "250"]
    assert [r[:3] for r in data] == ["250"]
    assert (mail.quota("alice").used_messages, mail.quota("bob").used_messages) == (1, 2)


def test_lmtp_answers_452_after_data_for_the_copy_that_does_not_fit(mail: Mail) -> None:
    """
    A recipient with room for a small message but not this one is
    accepted at RCPT (no SIZE given); after DATA its reply is 452 4.2.2,
    in RCPT order with the other recipient's 250, and nothing of it is
    stored.
    """
    mail.limit("alice", 50, None)
    session = greeted(lmtp(mail.delivery), "LHLO")
    envelope, data = send(session, f"MAIL FROM:<{SENDER}>", "alice@example.com", "bob@example.com")
    assert [r[:3] for r in envelope] == ["250", "250", "250"]
    assert data[0] == FULL
    assert data[1].startswith("250 2.0.0 <bob@example.com>")
    assert mail.quota("alice") == AccountQuota(0, 0, 50, None)
    assert mail.quota("bob").used_messages == 1


def test_announced_size_past_the_quota_is_refused_at_rcpt(mail: Mail) -> None:
    """
    With ``MAIL FROM … SIZE=n``, a recipient whose storage quota has no
    room for n octets gets 452 at RCPT; one with room is accepted.
    """
    mail.limit("alice", 2000, None)
    session = greeted(lmtp(mail.delivery, max_size=100_000), "LHLO")
    envelope, _ = send(session, f"MAIL FROM:<{SENDER}> SIZE=5000", "alice@example.com")
    assert envelope[1] == FULL
    envelope, data = send(session, f"MAIL FROM:<{SENDER}> SIZE=500", "alice@example.com")
    assert [r[:3] for r in envelope + data] == ["250", "250", "250"]


@pytest.mark.parametrize(
    ("limits", "reply"),
    [((None, 0), FULL), ((10, None), FULL), ((None, None), "250 2.0.0 Message delivered")],
)
def test_smtp_reply_for_a_single_full_recipient(
    mail: Mail, limits: tuple[Any, Any], reply: str
) -> None:
    """
    Over SMTP, a single recipient whose mailbox is full gets 452 4.2.2,
    at RCPT or after DATA, and the message is not stored; with room it is.
    """
    mail.limit("alice", *limits)
    session = greeted(
        Session(InboundSMTPFactory(mail.delivery, 1000, "mx.example.com", mail.clock)), "EHLO"
    )
    envelope, data = send(session, f"MAIL FROM:<{SENDER}>", "alice@example.com")
    assert (envelope[1:] + data)[-1] == reply
    stored = mail.quota("alice").used_messages
    assert stored == (1 if reply.startswith("250") else 0)
    if stored:
        assert mail.quota("alice").used_octets > len(MESSAGE)
