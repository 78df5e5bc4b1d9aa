# -*- test-case-name: tests.store.test_mail_contract -*-
"""
The mailbox counts part of the mail store contract:
:class:`MailboxCountsContract`, a base of
:class:`~jmap_twisted.testing.MailStoreContract`.

Counts are compared, after every step of seeded random sequences of
operations, with the reference computation
(:func:`jmap_twisted.store.mailquery.mailbox_counts`) over every email
read back from the store; a store that keeps counters
(:class:`~jmap_twisted.interfaces.IMailboxCounters`) must also find
nothing to repair when it recounts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from jmap_twisted.interfaces import IMailboxCounters, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import MailboxCounts, Recount
from jmap_twisted.store import mailquery
from jmap_twisted.testing._doubles import ACCOUNT as _ACCOUNT
from jmap_twisted.testing._doubles import CONTRACT_ACCOUNTS, message

_SEEN = "$seen"


def _expected(reader: IMailReader) -> tuple[dict[str, MailboxCounts], dict[str, MailboxCounts]]:
    """
    The counts the store reports for every mailbox, and the reference's.
    """
    mailboxes = reader.mailboxes()
    trash = next((m.id for m in mailboxes if m.role == "trash"), None)
    every, _ = reader.query_emails(None, [], False)
    emails = list(reader.emails(every).values())
    reported = reader.mailbox_counts([m.id for m in mailboxes])
    reference = {m.id: mailquery.mailbox_counts(m.id, emails, trash) for m in mailboxes}
    return reported, reference


class _Scenario:
    """
    Random operations on an account, chosen by a seeded generator, each
    one write.
    """

    def __init__(self, store: IMailStore, seed: int, account: str = _ACCOUNT) -> None:
        self.store = store
        self.account = account
        self.random = random.Random(seed)
        self.sent = 0

    async def write(self, fn: Callable[[IMailWriter], Any]) -> Any:
        return await self.store.write(self.account, fn)

    def _pick_mailboxes(self, writer: IMailWriter) -> set[str]:
        boxes = [m.id for m in writer.mailboxes()]
        wanted = self.random.choice((1, 1, 1, 2, 3))
        return set(self.random.sample(boxes, min(wanted, len(boxes))))

    def _emails(self, writer: IMailWriter) -> list[str]:
        """
        One email chosen at random, or none when there is none.
        """
        found, _ = writer.query_emails(None, [], False)
        return self.random.sample(sorted(found), min(1, len(found)))

    def add(self, writer: IMailWriter) -> str:
        """
        A new email in one to three mailboxes, read or not, starting a
        thread or replying to an earlier email (joining its thread).
        """
        self.sent += 1
        parent = None
        if self.sent > 1 and self.random.random() < 0.6:
            parent = f"m{self.random.randrange(1, self.sent)}@contract"
        raw = message(
            subject="Re: topic" if parent else "topic",
            message_id=f"m{self.sent}@contract",
            in_reply_to=parent,
        )
        keywords = {_SEEN} if self.random.random() < 0.4 else set()
        writer.add_email(raw, self._pick_mailboxes(writer), keywords, float(self.sent))
        return "add"

    def toggle_seen(self, writer: IMailWriter) -> str:
        for email_id in self._emails(writer):
            email = writer.emails([email_id])[email_id]
            writer.update_email(email_id, keywords=email.keywords ^ {_SEEN})
        return "toggle $seen"

    def flag(self, writer: IMailWriter) -> str:
        for email_id in self._emails(writer):
            email = writer.emails([email_id])[email_id]
            writer.update_email(email_id, keywords=email.keywords ^ {"$flagged"})
        return "flag"

    def move(self, writer: IMailWriter) -> str:
        for email_id in self._emails(writer):
            writer.update_email(email_id, mailbox_ids=self._pick_mailboxes(writer))
        return "move"

    def add_to(self, writer: IMailWriter) -> str:
        for email_id in self._emails(writer):
            email = writer.emails([email_id])[email_id]
            writer.update_email(
                email_id, mailbox_ids=email.mailbox_ids | self._pick_mailboxes(writer)
            )
        return "add to mailbox"

    def to_trash(self, writer: IMailWriter) -> str:
        trash = next((m.id for m in writer.mailboxes() if m.role == "trash"), None)
        if trash is not None:
            for email_id in self._emails(writer):
                writer.update_email(email_id, mailbox_ids={trash})
        return "to trash"

    def several(self, writer: IMailWriter) -> str:
        """
        Several changes in one transaction: all of a mailbox read, then
        one more email.
        """
        mailbox = self.random.choice(writer.mailboxes()).id
        inside, _ = writer.query_emails({"inMailbox": mailbox}, [], False)
        for email_id, email in writer.emails(inside).items():
            writer.update_email(email_id, keywords=email.keywords | {_SEEN})
        self.add(writer)
        return "read a mailbox and add"

    def destroy(self, writer: IMailWriter) -> str:
        for email_id in self._emails(writer):
            writer.destroy_email(email_id)
        return "destroy email"

    def destroy_mailbox(self, writer: IMailWriter) -> str:
        """
        Destroy a mailbox other than the inbox and the trash, even holding
        emails (they keep the destroyed id), and create another.
        """
        spare = [m for m in writer.mailboxes() if m.role not in ("inbox", "trash")]
        if spare:
            writer.destroy_mailbox(self.random.choice(spare).id)
        writer.create_mailbox(f"new {self.sent}", None, None, 10, True)
        return "destroy mailbox"

    def move_trash(self, writer: IMailWriter) -> str:
        """
        Another mailbox becomes the trash, or the trash (with its emails)
        is destroyed and a new one created.
        """
        mailboxes = writer.mailboxes()
        trash = next((m for m in mailboxes if m.role == "trash"), None)
        if trash is None:
            writer.create_mailbox("Trash", None, "trash", 6, True)
        elif self.random.random() < 0.5:
            writer.destroy_mailbox(trash.id)
        else:
            other = self.random.choice([m for m in mailboxes if m.role is None] or [trash])
            writer.update_mailbox(trash.id, role=None)
            writer.update_mailbox(other.id, role="trash")
        return "move trash"

    def step(self) -> Callable[[IMailWriter], str]:
        if self.sent < 4:
            return self.add
        operations: list[tuple[Callable[[IMailWriter], str], int]] = [
            (self.add, 6),
            (self.toggle_seen, 4),
            (self.flag, 1),
            (self.move, 3),
            (self.add_to, 2),
            (self.to_trash, 2),
            (self.several, 1),
            (self.destroy, 2),
            (self.destroy_mailbox, 1),
            (self.move_trash, 1),
        ]
        functions, weights = zip(*operations, strict=True)
        return self.random.choices(functions, weights)[0]


class MailboxCountsContract:
    """
    The mailbox count tests every mail store passes; they use the
    ``store`` fixture of :class:`~jmap_twisted.testing.MailStoreContract`.
    """

    async def _check(self, store: IMailStore, account: str, step: str) -> None:
        reported, reference = await store.read(account, _expected)
        assert reported == reference, f"counts wrong after {step}"

    @pytest_twisted.ensureDeferred
    async def test_counts_follow_random_operations(self, store: IMailStore) -> None:
        """
        After every write of a random sequence (emails added to one or
        several mailboxes, in new or existing threads; ``$seen`` set and
        removed; emails moved, added to mailboxes, put in the trash,
        destroyed; mailboxes destroyed with their emails; the trash role
        moved or the trash destroyed), the counts of every mailbox are
        those computed from the emails, and a recount finds nothing
        wrong (two sequences, one in each contract account).
        """
        counters = None
        if IMailboxCounters.providedBy(store):
            assert verifyObject(IMailboxCounters, store)
            counters = IMailboxCounters(store)
        for seed, account in enumerate(CONTRACT_ACCOUNTS, start=1):
            scenario = _Scenario(store, seed, account)
            for number in range(80):
                operation = scenario.step()
                step = f"seed {seed}, step {number}: " + await scenario.write(operation)
                await self._check(store, account, step)
                if counters is not None and number % 10 == 9:
                    assert await counters.recount(account) == Recount(), step

    @pytest_twisted.ensureDeferred
    async def test_counts_of_a_failed_write_are_not_kept(self, store: IMailStore) -> None:
        """
        A write that fails after adding and changing emails leaves the
        counts as they were.
        """
        scenario = _Scenario(store, 7)
        for _ in range(5):
            await scenario.write(scenario.add)
        before, _ = await store.read(_ACCOUNT, _expected)

        def fails(writer: IMailWriter) -> None:
            scenario.add(writer)
            scenario.toggle_seen(writer)
            scenario.move_trash(writer)
            raise RuntimeError("refused")

        with pytest.raises(RuntimeError):
            await scenario.write(fails)
        after, reference = await store.read(_ACCOUNT, _expected)
        assert after == before == reference
