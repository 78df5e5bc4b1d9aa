# -*- test-case-name: tests.store.test_mail_contract,tests.test_testing_module -*-
"""
The contract every :class:`~jmap_twisted.interfaces.IMailStore` meets,
with :class:`~jmap_twisted.interfaces.IChangeLogPruning`: a base class of
pytest tests, :class:`MailStoreContract`.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.errors import CannotCalculateChanges
from jmap_twisted.interfaces import IChangeLogPruning, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import ChangeBatch, EmailRecord, StoreCommit
from jmap_twisted.testing._counts import MailboxCountsContract
from jmap_twisted.testing._doubles import (
    ACCOUNT,
    CONTRACT_EPOCH,
    OTHER,
    message,
)
from jmap_twisted.testing._mail_views import MailViewContract
from jmap_twisted.testing._quota import QuotaContract


def roles(reader: IMailReader) -> dict[str, str]:
    """
    The ids of an account's mailboxes by role.
    """
    return {m.role: m.id for m in reader.mailboxes() if m.role}


async def add(
    store: IMailStore,
    raw: bytes,
    role: str = "inbox",
    keywords: tuple[str, ...] = (),
    at: float = 1000.0,
) -> EmailRecord:
    """
    Store a message in one mailbox of the first contract account,
    received at ``at``.
    """

    def write(w: IMailWriter) -> EmailRecord:
        return w.add_email(raw, [roles(w)[role]], keywords, at)

    return await store.write(ACCOUNT, write)


async def state(store: IMailStore, type_name: str, account: str = ACCOUNT) -> str:
    """
    The current state of a type.
    """
    return await store.read(account, lambda r: r.state(type_name))


async def changes(
    store: IMailStore,
    type_name: str,
    since: str,
    max_changes: int | None = None,
    account: str = ACCOUNT,
) -> ChangeBatch:
    """
    The changes to a type since a state.
    """
    return await store.read(account, lambda r: r.changes(type_name, since, max_changes))


class MailStoreContract(QuotaContract, MailViewContract, MailboxCountsContract):
    """
    The tests every mail store passes, collected by pytest in each subclass
    (with the quota tests of :class:`QuotaContract`, the sharees' views
    of :class:`MailViewContract` and the mailbox counts of
    :class:`MailboxCountsContract`).

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``mail_store`` that gives a store with no data
    yet, reading commit times from the contract's ``clock`` fixture (a
    :class:`~twisted.internet.task.Clock` at
    :data:`~jmap_twisted.testing.CONTRACT_EPOCH`)::

        from jmap_twisted.testing import MailStoreContract

        class TestMyMailStore(MailStoreContract):
            @pytest_twisted.async_yield_fixture
            async def mail_store(self, clock, tmp_path):
                store = await MyMailStore.open(tmp_path / "mail", clock)
                yield store
                await store.close()

    A plain ``@pytest.fixture`` does when nothing needs awaiting.  The
    contract's ``store`` fixture sets up the two accounts of
    :data:`~jmap_twisted.testing.CONTRACT_ACCOUNTS` in it.  The tests run
    on pytest-twisted's reactor, so the store may use the global reactor
    for threads and sockets.  A test method can also be run on its own,
    given a store with those accounts set up::

        await MailStoreContract().test_destroy(store)
    """

    @pytest.fixture
    def clock(self) -> Clock:
        """
        The clock the store under test reads commit times from.
        """
        clock = Clock()
        clock.advance(CONTRACT_EPOCH)
        return clock

    @pytest.fixture
    def mail_store(self) -> IMailStore:
        """
        The store under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'mail_store'"
        )

    @pytest_twisted.async_fixture
    async def store(self, mail_store: IMailStore) -> IMailStore:
        """
        The store under test with the two contract accounts set up.
        """
        await mail_store.setup_account(ACCOUNT)
        await mail_store.setup_account(OTHER)
        return mail_store

    @pytest_twisted.ensureDeferred
    async def test_provides_interfaces(self, store: IMailStore) -> None:
        """
        The store provides IMailStore and IChangeLogPruning, and the views
        it hands out provide IMailReader and IMailWriter.
        """
        assert verifyObject(IMailStore, store)
        assert verifyObject(IChangeLogPruning, store)
        assert await store.read(ACCOUNT, lambda r: verifyObject(IMailReader, r))
        assert await store.write(ACCOUNT, lambda w: verifyObject(IMailWriter, w))

    @pytest_twisted.ensureDeferred
    async def test_new_account_has_the_standard_mailboxes(self, store: IMailStore) -> None:
        """
        A set-up account has inbox, drafts, sent, archive, junk and trash,
        all top-level and subscribed; setting up again changes nothing.
        """
        mailboxes = await store.read(ACCOUNT, lambda r: r.mailboxes())
        assert sorted(m.role or "" for m in mailboxes) == sorted(
            ["inbox", "drafts", "sent", "archive", "junk", "trash"]
        )
        assert all(m.parent_id is None and m.is_subscribed for m in mailboxes)
        before = await state(store, "Mailbox")
        await store.setup_account(ACCOUNT)
        assert await state(store, "Mailbox") == before
        assert len(await store.read(ACCOUNT, lambda r: r.mailboxes())) == 6

    @pytest_twisted.ensureDeferred
    async def test_delivery_changes_email_thread_and_mailbox_counts(
        self, store: IMailStore
    ) -> None:
        """
        Adding an email makes it, its thread and the inbox's counts appear
        in the changes since the previous states, and publishes one commit.
        """
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        email_state = await state(store, "Email")
        mailbox_state = await state(store, "Mailbox")
        thread_state = await state(store, "Thread")

        def deliver(w: IMailWriter) -> EmailRecord:
            return w.add_email(message(), [roles(w)["inbox"]], [], 1000.0)

        email = await store.write(ACCOUNT, deliver, delivery=True)
        assert (await changes(store, "Email", email_state)).created == (email.id,)
        assert (await changes(store, "Thread", thread_state)).created == (email.thread_id,)
        mailbox_changes = await changes(store, "Mailbox", mailbox_state)
        inbox = await store.read(ACCOUNT, lambda r: roles(r)["inbox"])
        assert mailbox_changes.updated == (inbox,)
        assert mailbox_changes.counts_only
        assert len(commits) == 1
        commit = commits[0]
        assert commit.account_id == ACCOUNT
        assert commit.delivery
        assert set(commit.states) == {"Email", "Mailbox", "Thread"}
        assert commit.states["Email"] == await state(store, "Email")
        assert [(e.kind, e.email_ids) for e in commit.events] == [("added", (email.id,))]
        assert commit.events[0].mailbox_ids == {inbox}
        counts = await store.read(ACCOUNT, lambda r: r.mailbox_counts([inbox]))
        assert (counts[inbox].total_emails, counts[inbox].unread_emails) == (1, 1)
        assert await store.read(ACCOUNT, lambda r: r.message(email.blob_id)) == message()

    @pytest_twisted.ensureDeferred
    async def test_modseq_increases_once_per_operation(self, store: IMailStore) -> None:
        """
        One write, however many objects it touches, is one commit with the
        next modseq.
        """
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)

        def two(w: IMailWriter) -> None:
            inbox = roles(w)["inbox"]
            w.add_email(message(subject="a"), [inbox], [], 1.0)
            w.add_email(message(subject="b"), [inbox], [], 2.0)

        await store.write(ACCOUNT, two)
        await add(store, message(subject="c"))
        assert [c.modseq for c in commits] == [commits[0].modseq, commits[0].modseq + 1]
        assert len(commits[0].events) == 2

    @pytest_twisted.ensureDeferred
    async def test_failed_write_leaves_nothing(self, store: IMailStore) -> None:
        """
        When the write function raises, no email, state change or commit
        survives, and the error reaches the caller.
        """
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        before = await state(store, "Email")

        def half(w: IMailWriter) -> None:
            w.add_email(message(), [roles(w)["inbox"]], [], 1.0)
            raise RuntimeError("half-way")

        with pytest.raises(RuntimeError):
            await store.write(ACCOUNT, half)
        assert await state(store, "Email") == before
        assert (await changes(store, "Email", before)).created == ()
        assert await store.read(ACCOUNT, lambda r: r.query_emails(None, [], False)) == ([], 0)
        assert commits == []

    @pytest_twisted.ensureDeferred
    async def test_accounts_are_separate(self, store: IMailStore) -> None:
        """
        Mail added to one account is invisible in another, whose states do
        not move.
        """
        other_state = await state(store, "Email", OTHER)
        email = await add(store, message())
        assert await store.read(OTHER, lambda r: r.emails([email.id])) == {}
        assert await state(store, "Email", OTHER) == other_state
        assert await store.read(OTHER, lambda r: r.query_emails(None, [], False)) == ([], 0)

    @pytest_twisted.ensureDeferred
    async def test_keywords_and_moves(self, store: IMailStore) -> None:
        """
        Changing keywords or mailboxes updates the email, the counts of the
        mailboxes concerned, and publishes flags_updated / moved events.
        """
        email = await add(store, message())
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        before = await state(store, "Email")
        mailbox_before = await state(store, "Mailbox")
        await store.write(ACCOUNT, lambda w: w.update_email(email.id, keywords={"$seen"}))
        ids = await store.read(ACCOUNT, roles)
        counts = await store.read(ACCOUNT, lambda r: r.mailbox_counts([ids["inbox"]]))
        assert counts[ids["inbox"]].unread_emails == 0
        assert (await changes(store, "Email", before)).updated == (email.id,)
        await store.write(ACCOUNT, lambda w: w.update_email(email.id, mailbox_ids={ids["archive"]}))
        mailbox_changes = await changes(store, "Mailbox", mailbox_before)
        assert set(mailbox_changes.updated) == {ids["inbox"], ids["archive"]}
        assert mailbox_changes.counts_only
        assert [e.kind for c in commits for e in c.events] == ["flags_updated", "moved"]
        assert commits[1].events[0].mailbox_ids == {ids["inbox"], ids["archive"]}
        record = (await store.read(ACCOUNT, lambda r: r.emails([email.id])))[email.id]
        assert record.mailbox_ids == {ids["archive"]}
        assert record.keywords == {"$seen"}
        thread_state = await state(store, "Thread")
        await store.write(ACCOUNT, lambda w: w.update_email(email.id, keywords=set()))
        assert await state(store, "Thread") == thread_state

    @pytest_twisted.ensureDeferred
    async def test_destroy(self, store: IMailStore) -> None:
        """
        Destroying an email reports it destroyed and its thread destroyed
        when it was the last; created and destroyed within one window
        disappears.
        """
        kept = await add(store, message(subject="kept"))
        before = await state(store, "Email")
        thread_before = await state(store, "Thread")
        transient = await add(store, message(subject="transient"))
        await store.write(ACCOUNT, lambda w: w.destroy_email(transient.id))
        assert (await changes(store, "Email", before)).created == ()
        assert (await changes(store, "Email", before)).destroyed == ()
        assert (await changes(store, "Thread", thread_before)).created == ()
        middle = await state(store, "Email")
        await store.write(ACCOUNT, lambda w: w.destroy_email(kept.id))
        batch = await changes(store, "Email", middle)
        assert batch.destroyed == (kept.id,)
        assert (await changes(store, "Thread", thread_before)).destroyed == (kept.thread_id,)
        assert await store.read(ACCOUNT, lambda r: r.emails([kept.id])) == {}

    @pytest_twisted.ensureDeferred
    async def test_bulk_update_pages_through_max_changes(self, store: IMailStore) -> None:
        """
        A single operation updating 50 emails can be paged 10 at a time
        with hasMoreChanges and intermediate states, each id exactly once.
        """

        def fifty(w: IMailWriter) -> list[str]:
            inbox = roles(w)["inbox"]
            return [
                w.add_email(message(subject=f"m{i}"), [inbox], [], float(i)).id for i in range(50)
            ]

        created = await store.write(ACCOUNT, fifty)
        since = await state(store, "Email")

        def flag_all(w: IMailWriter) -> None:
            for email_id in created:
                w.update_email(email_id, keywords={"$flagged"})

        await store.write(ACCOUNT, flag_all)
        seen: list[str] = []
        pages = 0
        while True:
            batch = await changes(store, "Email", since, 10)
            pages += 1
            assert len(batch.updated) <= 10
            seen.extend(batch.updated)
            assert batch.old_state == since
            since = batch.new_state
            if not batch.has_more_changes:
                break
        assert pages == 5
        assert sorted(seen) == sorted(created)
        assert since == await state(store, "Email")
        final = await changes(store, "Email", since, 10)
        assert (final.created, final.updated, final.destroyed, final.has_more_changes) == (
            (),
            (),
            (),
            False,
        )

    @pytest_twisted.ensureDeferred
    async def test_unknown_states_cannot_calculate_changes(self, store: IMailStore) -> None:
        """
        A state the store never issued gives cannotCalculateChanges.
        """
        current = await state(store, "Email")
        for bad in ("garbage", str(int(current) + 100), "-1", ""):
            with pytest.raises(CannotCalculateChanges):
                await changes(store, "Email", bad)

    @pytest_twisted.ensureDeferred
    async def test_mailbox_property_changes_are_not_counts_only(self, store: IMailStore) -> None:
        """
        Renaming a mailbox is an update with properties (updatedProperties
        null); creating and destroying are reported as such.
        """
        before = await state(store, "Mailbox")
        created = await store.write(
            ACCOUNT, lambda w: w.create_mailbox("Lists", None, None, 10, True)
        )
        middle = await state(store, "Mailbox")
        assert (await changes(store, "Mailbox", before)).created == (created.id,)
        await store.write(ACCOUNT, lambda w: w.update_mailbox(created.id, name="Mailing lists"))
        batch = await changes(store, "Mailbox", middle)
        assert batch.updated == (created.id,)
        assert not batch.counts_only
        mailboxes = await store.read(ACCOUNT, lambda r: r.mailboxes())
        assert [m.name for m in mailboxes if m.id == created.id] == ["Mailing lists"]
        await store.write(ACCOUNT, lambda w: w.destroy_mailbox(created.id))
        assert (await changes(store, "Mailbox", middle)).destroyed == (created.id,)

    @pytest_twisted.ensureDeferred
    async def test_threading_by_references_and_subject(self, store: IMailStore) -> None:
        """
        A reply (In-Reply-To, "Re:" subject) joins its parent's thread; a
        message with the same references but another subject, or the same
        subject but no references, starts its own; thread members are
        ordered by receivedAt.
        """
        parent = await add(store, message(subject="Plans", message_id="p1@x"), at=100.0)
        reply = await add(
            store, message(subject="Re: Plans", message_id="r1@x", in_reply_to="p1@x"), at=200.0
        )
        hijack = await add(
            store, message(subject="Other", message_id="h1@x", in_reply_to="p1@x"), at=300.0
        )
        lookalike = await add(store, message(subject="Plans", message_id="l1@x"), at=50.0)
        assert reply.thread_id == parent.thread_id
        assert hijack.thread_id != parent.thread_id
        assert lookalike.thread_id != parent.thread_id
        threads = await store.read(ACCOUNT, lambda r: r.thread_emails([parent.thread_id, "Tno"]))
        assert threads == {parent.thread_id: [parent.id, reply.id]}

    @pytest_twisted.ensureDeferred
    async def test_query_filter_sort_window_and_collapse(self, store: IMailStore) -> None:
        """
        Queries filter by mailbox and keyword, sort by receivedAt either
        way with ties broken consistently, return a window with the total,
        and collapse threads to their first member in sort order.
        """
        a = await add(store, message(subject="Alpha", message_id="a@x"), at=100.0)
        b = await add(
            store, message(subject="Re: Alpha", message_id="b@x", in_reply_to="a@x"), at=300.0
        )
        c = await add(store, message(subject="Gamma"), at=200.0, keywords=("$flagged",))
        d = await add(store, message(subject="Delta"), role="archive", at=400.0)
        inbox = (await store.read(ACCOUNT, roles))["inbox"]
        newest = [{"property": "receivedAt", "isAscending": False}]

        async def query(*args: Any) -> tuple[list[str], int]:
            return await store.read(ACCOUNT, lambda r: r.query_emails(*args))

        assert await query({"inMailbox": inbox}, newest, False) == ([b.id, c.id, a.id], 3)
        assert await query({"inMailbox": inbox}, newest, False, 1, 1) == ([c.id], 3)
        assert await query({"inMailbox": inbox}, newest, True) == ([b.id, c.id], 2)
        assert await query(None, [{"property": "receivedAt"}], False) == (
            [a.id, c.id, b.id, d.id],
            4,
        )
        assert await query({"hasKeyword": "$flagged"}, newest, False) == ([c.id], 1)
        assert await query(
            {"operator": "NOT", "conditions": [{"inMailbox": inbox}]}, newest, False
        ) == ([d.id], 1)
        assert await query(
            {"operator": "OR", "conditions": [{"subject": "gamma"}, {"subject": "delta"}]},
            newest,
            False,
        ) == ([d.id, c.id], 2)
        assert await query({"after": 200.0, "before": 400.0}, newest, False) == ([b.id, c.id], 2)
        assert await query({"text": "Delta"}, newest, False) == ([d.id], 1)
        by_subject = await query(None, [{"property": "subject"}, {"property": "receivedAt"}], False)
        assert by_subject == ([a.id, b.id, d.id, c.id], 4)

    @pytest_twisted.ensureDeferred
    async def test_trash_counts(self, store: IMailStore) -> None:
        """
        unreadThreads ignores trash-only emails for other mailboxes and
        non-trash emails for the trash (RFC 8621 §2).
        """
        parent = await add(
            store, message(subject="T", message_id="t1@x"), at=1.0, keywords=("$seen",)
        )
        trashed = await add(
            store,
            message(subject="Re: T", message_id="t2@x", in_reply_to="t1@x"),
            role="trash",
            at=2.0,
        )
        assert parent.thread_id == trashed.thread_id
        ids = await store.read(ACCOUNT, roles)
        counts = await store.read(ACCOUNT, lambda r: r.mailbox_counts([ids["inbox"], ids["trash"]]))
        assert counts[ids["inbox"]].total_threads == 1
        assert counts[ids["inbox"]].unread_threads == 0
        assert counts[ids["trash"]].unread_threads == 1
        assert counts[ids["trash"]].unread_emails == 1

    @pytest_twisted.ensureDeferred
    async def test_pruning_forgets_old_states_only(self, store: IMailStore, clock: Clock) -> None:
        """
        Pruning deletes the entries committed before a time, in every
        account, and says how many: states from before the newest deleted
        entry of a type answer cannotCalculateChanges; later states, a
        type's current state and the states of types none of whose entries
        were deleted still answer; pruning again deletes nothing.
        """
        pruning = IChangeLogPruning(store)
        mailbox_state = await state(store, "Mailbox")
        other_mailbox_state = await state(store, "Mailbox", OTHER)
        document_state = await state(store, "Identity")
        clock.advance(100)
        old_state = await state(store, "Email")
        await add(store, message(subject="old"))
        middle = await state(store, "Email")
        mailbox_middle = await state(store, "Mailbox")
        clock.advance(100)
        cutoff = clock.seconds()
        clock.advance(100)
        recent = await add(store, message(subject="recent"))
        await store.write(ACCOUNT, lambda w: w.put_document("Identity", "i1", {"name": "Ann"}))

        # Six mailboxes set up in each account; the old email, its thread
        # and the inbox's counts.
        assert await pruning.prune_changes(cutoff) == 6 + 6 + 3
        for type_name, old in (("Email", old_state), ("Mailbox", mailbox_state)):
            with pytest.raises(CannotCalculateChanges):
                await changes(store, type_name, old)
        assert (await changes(store, "Email", middle)).created == (recent.id,)
        assert (await changes(store, "Mailbox", mailbox_middle)).counts_only
        assert (await changes(store, "Identity", document_state)).created == ("i1",)
        idle = await changes(store, "Mailbox", other_mailbox_state, account=OTHER)
        assert (idle.created, idle.updated, idle.destroyed) == ((), (), ())
        assert await pruning.prune_changes(cutoff) == 0

    @pytest_twisted.ensureDeferred
    async def test_pruning_keeps_entries_from_the_cutoff_on(
        self, store: IMailStore, clock: Clock
    ) -> None:
        """
        Entries committed at the cutoff time or later are kept, so every
        state issued since then still answers; a cutoff before every
        commit deletes nothing.
        """
        pruning = IChangeLogPruning(store)
        assert await pruning.prune_changes(CONTRACT_EPOCH - 1) == 0
        await add(store, message(subject="zeroth"))
        before = await state(store, "Email")
        clock.advance(60)
        first = await add(store, message(subject="first"))
        clock.advance(60)
        second = await add(store, message(subject="second"))
        assert await pruning.prune_changes(CONTRACT_EPOCH + 60) == 6 + 6 + 3
        batch = await changes(store, "Email", before)
        assert set(batch.created) == {first.id, second.id}
