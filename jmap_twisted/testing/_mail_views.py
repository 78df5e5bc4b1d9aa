# -*- test-case-name: tests.store.test_mail_contract -*-
"""
The sharees' part of the mail store contract: states and changes of a
:class:`~jmap_twisted.records.MailView` (``IMailReader.view_state``,
``view_changes``), the mailboxes commits touch, and the server's own
``inAnyMailbox`` query condition; :class:`MailViewContract`, a base of
:class:`~jmap_twisted.testing.MailStoreContract`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from jmap_twisted.errors import CannotCalculateChanges
from jmap_twisted.interfaces import IChangeLogPruning, IMailReader, IMailStore, IMailWriter
from jmap_twisted.records import ChangeBatch, EmailRecord, MailView, StoreCommit
from jmap_twisted.testing._doubles import ACCOUNT as _ACCOUNT
from jmap_twisted.testing._doubles import message

_TYPES = ("Mailbox", "Email", "Thread")


def _roles(reader: IMailReader) -> dict[str, str]:
    return {m.role: m.id for m in reader.mailboxes() if m.role}


def _view(
    listed: Collection[str],
    readable: Collection[str] = (),
    admin: Collection[str] = (),
    generation: int = 1,
    subscriptions: int = 0,
) -> MailView:
    return MailView(
        generation, subscriptions, frozenset(listed), frozenset(readable), frozenset(admin)
    )


async def _ids(store: IMailStore) -> dict[str, str]:
    return await store.read(_ACCOUNT, _roles)


async def _add(
    store: IMailStore, raw: bytes, role: str = "inbox", at: float = 1000.0
) -> EmailRecord:
    return await store.write(_ACCOUNT, lambda w: w.add_email(raw, [_roles(w)[role]], (), at))


async def _move(store: IMailStore, email_id: str, *roles: str) -> None:
    def move(w: IMailWriter) -> None:
        ids = _roles(w)
        w.update_email(email_id, mailbox_ids={ids[role] for role in roles})

    await store.write(_ACCOUNT, move)


async def _states(store: IMailStore, view: MailView) -> dict[str, str]:
    return await store.read(_ACCOUNT, lambda r: {t: r.view_state(t, view) for t in _TYPES})


async def _changes(
    store: IMailStore, type_name: str, since: str, view: MailView, max_changes: int | None = None
) -> ChangeBatch:
    return await store.read(_ACCOUNT, lambda r: r.view_changes(type_name, since, max_changes, view))


def _kinds(batch: ChangeBatch) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return batch.created, batch.updated, batch.destroyed


_NOTHING: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())


class MailViewContract:
    """
    The tests of sharees' views every mail store passes; they use the
    ``store`` and ``clock`` fixtures of
    :class:`~jmap_twisted.testing.MailStoreContract`.  The views are built
    by hand over the first contract account's standard mailboxes: the
    inbox is shared, the archive is not.
    """

    @pytest_twisted.ensureDeferred
    async def test_view_state_moves_only_on_visible_changes(self, store: IMailStore) -> None:
        """
        A sharee's states (``s<generation>.<seq>``, ``Mailbox`` with
        ``.<subscriptions>``) stay the same through changes in mailboxes
        they do not see and through documents, while the account's own
        states move; a change in a mailbox they read moves them, and the
        state a write reports for them is the one it commits.
        """
        ids = await _ids(store)
        view = _view([ids["inbox"]], [ids["inbox"]], subscriptions=3)
        before = await _states(store, view)
        assert before["Mailbox"].startswith("s1.") and before["Mailbox"].endswith(".3")
        assert before["Email"].startswith("s1.") and before["Email"].count(".") == 1
        owner_before = await store.read(_ACCOUNT, lambda r: r.state("Email"))
        await _add(store, message(subject="private"), role="archive")
        await store.write(_ACCOUNT, lambda w: w.put_document("Identity", "i1", {"name": "Ann"}))
        assert await _states(store, view) == before
        assert await store.read(_ACCOUNT, lambda r: r.state("Email")) != owner_before

        def deliver(w: IMailWriter) -> tuple[EmailRecord, dict[str, str]]:
            email = w.add_email(message(subject="shared"), [ids["inbox"]], (), 2000.0)
            return email, {t: w.view_state(t, view) for t in _TYPES}

        email, reported = await store.write(_ACCOUNT, deliver)
        after = await _states(store, view)
        assert reported == after
        assert all(after[t] != before[t] for t in _TYPES)
        batch = await _changes(store, "Email", before["Email"], view)
        assert _kinds(batch) == ((email.id,), (), ())
        assert (batch.old_state, batch.new_state) == (before["Email"], after["Email"])
        threads = await _changes(store, "Thread", before["Thread"], view)
        assert _kinds(threads) == ((email.thread_id,), (), ())
        mailboxes = await _changes(store, "Mailbox", before["Mailbox"], view)
        assert _kinds(mailboxes) == ((), (ids["inbox"],), ())
        assert mailboxes.counts_only
        assert mailboxes.new_state == after["Mailbox"]

    @pytest_twisted.ensureDeferred
    async def test_moves_create_and_destroy_for_the_sharee(self, store: IMailStore) -> None:
        """
        An email moved into a mailbox the sharee reads is created for them
        and its thread updated; moved out of it, both are destroyed; the
        account's own Thread state does not move for either, and
        ``Email/changes`` for it reports an update.
        """
        ids = await _ids(store)
        view = _view([ids["inbox"]], [ids["inbox"]])
        email = await _add(store, message(subject="moving"), role="archive")
        before = await _states(store, view)
        owner_email = await store.read(_ACCOUNT, lambda r: r.state("Email"))
        owner_thread = await store.read(_ACCOUNT, lambda r: r.state("Thread"))
        await _move(store, email.id, "inbox")
        assert _kinds(await _changes(store, "Email", before["Email"], view)) == (
            (email.id,),
            (),
            (),
        )
        assert _kinds(await _changes(store, "Thread", before["Thread"], view)) == (
            (),
            (email.thread_id,),
            (),
        )
        inside = await _states(store, view)
        await _move(store, email.id, "archive")
        assert _kinds(await _changes(store, "Email", inside["Email"], view)) == (
            (),
            (),
            (email.id,),
        )
        assert _kinds(await _changes(store, "Thread", inside["Thread"], view)) == (
            (),
            (),
            (email.thread_id,),
        )
        # In and out again: nothing the sharee ever saw.
        assert _kinds(await _changes(store, "Email", before["Email"], view)) == _NOTHING
        assert await store.read(_ACCOUNT, lambda r: r.state("Thread")) == owner_thread
        owner = await store.read(_ACCOUNT, lambda r: r.changes("Email", owner_email, None))
        assert _kinds(owner) == ((), (email.id,), ())
        owner_threads = await store.read(
            _ACCOUNT, lambda r: r.changes("Thread", owner_thread, None)
        )
        assert _kinds(owner_threads) == _NOTHING

    @pytest_twisted.ensureDeferred
    async def test_threads_change_for_the_sharee_through_readable_emails(
        self, store: IMailStore
    ) -> None:
        """
        A reply filed where the sharee cannot read leaves their thread
        state alone; destroying the thread's only email they could read
        destroys the thread for them while it is updated for the account;
        a thread created and moved away since their state never shows.
        """
        ids = await _ids(store)
        view = _view([ids["inbox"]], [ids["inbox"]])
        parent = await _add(store, message(subject="Plans", message_id="p@x"), at=1.0)
        before = await _states(store, view)
        reply = await _add(
            store,
            message(subject="Re: Plans", message_id="r@x", in_reply_to="p@x"),
            role="archive",
            at=2.0,
        )
        assert reply.thread_id == parent.thread_id
        assert (await _states(store, view))["Thread"] == before["Thread"]
        owner_thread = await store.read(_ACCOUNT, lambda r: r.state("Thread"))
        await store.write(_ACCOUNT, lambda w: w.destroy_email(parent.id))
        assert _kinds(await _changes(store, "Thread", before["Thread"], view)) == (
            (),
            (),
            (parent.thread_id,),
        )
        owner = await store.read(_ACCOUNT, lambda r: r.changes("Thread", owner_thread, None))
        assert _kinds(owner) == ((), (parent.thread_id,), ())

        gone = await _states(store, view)
        fleeting = await _add(store, message(subject="fleeting"), at=3.0)
        await _move(store, fleeting.id, "archive")
        assert _kinds(await _changes(store, "Thread", gone["Thread"], view)) == _NOTHING
        assert _kinds(await _changes(store, "Email", gone["Email"], view)) == _NOTHING

    @pytest_twisted.ensureDeferred
    async def test_sharing_changes_reach_administrators_only(self, store: IMailStore) -> None:
        """
        ``note_acl_change`` updates the mailbox (with its properties) for
        the account and for a sharee administering it, but not for one
        who only lists it; an unknown mailbox is a KeyError.
        """
        ids = await _ids(store)
        inbox = ids["inbox"]
        lister = _view([inbox])
        admin = _view([inbox], admin=[inbox])
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        owner_before = await store.read(_ACCOUNT, lambda r: r.state("Mailbox"))
        lister_before = (await _states(store, lister))["Mailbox"]
        admin_before = (await _states(store, admin))["Mailbox"]
        await store.write(_ACCOUNT, lambda w: w.note_acl_change(inbox))
        assert (await _states(store, lister))["Mailbox"] == lister_before
        admin_batch = await _changes(store, "Mailbox", admin_before, admin)
        assert _kinds(admin_batch) == ((), (inbox,), ())
        assert not admin_batch.counts_only
        owner = await store.read(_ACCOUNT, lambda r: r.changes("Mailbox", owner_before, None))
        assert _kinds(owner) == ((), (inbox,), ())
        assert not owner.counts_only
        seq = int(commits[0].states["Mailbox"])
        assert commits[0].touched == (("Mailbox", inbox, seq, 1),)
        with pytest.raises(KeyError):
            await store.write(_ACCOUNT, lambda w: w.note_acl_change("Mnosuchmailbox"))

    @pytest_twisted.ensureDeferred
    async def test_states_of_another_generation_cannot_calculate_changes(
        self, store: IMailStore
    ) -> None:
        """
        Once the sharee's rights changed (a new generation), their older
        states answer cannotCalculateChanges, as do states they were never
        issued: the account's own, positions ahead of theirs, Mailbox
        states without subscriptions.
        """
        ids = await _ids(store)
        view = _view([ids["inbox"]], [ids["inbox"]], generation=4)
        states = await _states(store, view)
        await _add(store, message())
        regranted = _view([ids["inbox"]], [ids["inbox"]], generation=5)
        for type_name in _TYPES:
            with pytest.raises(CannotCalculateChanges):
                await _changes(store, type_name, states[type_name], regranted)
        current = await _states(store, view)
        owner_state = await store.read(_ACCOUNT, lambda r: r.state("Email"))
        _, _, seq = current["Email"].partition(".")
        for bad in (owner_state, f"s4.{int(seq) + 1}", "s4", "s4.x", "", current["Mailbox"]):
            with pytest.raises(CannotCalculateChanges):
                await _changes(store, "Email", bad, view)
        with pytest.raises(CannotCalculateChanges):
            await _changes(store, "Mailbox", current["Email"], view)
        with pytest.raises(CannotCalculateChanges):
            await _changes(store, "Mailbox", current["Mailbox"] + "9", view)

    @pytest_twisted.ensureDeferred
    async def test_changed_subscriptions_update_every_listed_mailbox(
        self, store: IMailStore
    ) -> None:
        """
        A Mailbox state from before the sharee's subscriptions changed
        reports every mailbox they list updated and gives a state with the
        new counter; when they do not fit in maxChanges, the changes
        cannot be calculated.
        """
        ids = await _ids(store)
        listed = [ids["inbox"], ids["junk"]]
        state = (await _states(store, _view(listed, subscriptions=1)))["Mailbox"]
        later = _view(listed, subscriptions=2)
        batch = await _changes(store, "Mailbox", state, later)
        assert sorted(batch.updated) == sorted(listed)
        assert not batch.counts_only
        assert batch.new_state == (await _states(store, later))["Mailbox"]
        assert batch.new_state.endswith(".2")
        again = await _changes(store, "Mailbox", batch.new_state, later)
        assert _kinds(again) == _NOTHING
        with pytest.raises(CannotCalculateChanges):
            await _changes(store, "Mailbox", state, later, 1)

    @pytest_twisted.ensureDeferred
    async def test_pruning_keeps_view_states(self, store: IMailStore, clock: Clock) -> None:
        """
        Pruning leaves a sharee's states as they were: a state after which
        nothing they see changed still answers, however old; one from
        before a pruned change they saw answers cannotCalculateChanges.
        """
        ids = await _ids(store)
        quiet = _view([ids["junk"]], [ids["junk"]])
        busy = _view([ids["inbox"]], [ids["inbox"]])
        quiet_states = await _states(store, quiet)
        busy_before = await _states(store, busy)
        await _add(store, message(subject="old"))
        busy_states = await _states(store, busy)
        clock.advance(100)
        cutoff = clock.seconds()
        clock.advance(100)
        await _add(store, message(subject="elsewhere"), role="archive")
        assert await IChangeLogPruning(store).prune_changes(cutoff) > 0
        assert await _states(store, quiet) == quiet_states
        assert await _states(store, busy) == busy_states
        for type_name in _TYPES:
            quiet_batch = await _changes(store, type_name, quiet_states[type_name], quiet)
            assert _kinds(quiet_batch) == _NOTHING
            with pytest.raises(CannotCalculateChanges):
                await _changes(store, type_name, busy_before[type_name], busy)
        recent = await _add(store, message(subject="recent"))
        batch = await _changes(store, "Email", busy_states["Email"], busy)
        assert _kinds(batch) == ((recent.id,), (), ())

    @pytest_twisted.ensureDeferred
    async def test_view_changes_page_through_max_changes(self, store: IMailStore) -> None:
        """
        A sharee pages through one bulk operation a few ids at a time,
        from intermediate states of theirs, each id once, ending at their
        current state; emails they cannot read are never among them.
        """
        ids = await _ids(store)
        view = _view([ids["inbox"]], [ids["inbox"]])
        since = (await _states(store, view))["Email"]

        def bulk(w: IMailWriter) -> list[str]:
            shared = []
            for i in range(9):
                role = "inbox" if i % 3 else "archive"
                email = w.add_email(message(subject=f"m{i}"), [ids[role]], (), float(i))
                if role == "inbox":
                    shared.append(email.id)
            return shared

        shared = await store.write(_ACCOUNT, bulk)
        seen: list[str] = []
        pages = 0
        while True:
            batch = await _changes(store, "Email", since, view, 2)
            pages += 1
            assert len(batch.created) <= 2
            assert batch.new_state.startswith("s1.")
            seen.extend(batch.created)
            since = batch.new_state
            if not batch.has_more_changes:
                break
        assert pages == 3
        assert sorted(seen) == sorted(shared)
        assert since == (await _states(store, view))["Email"]

    @pytest_twisted.ensureDeferred
    async def test_commits_say_which_mailboxes_they_touched(self, store: IMailStore) -> None:
        """
        A commit lists, per type and mailbox, the latest entry concerning
        the mailbox and its audience: a delivery touches its mailbox for
        Email, Thread and Mailbox; a move touches both mailboxes, its
        thread for sharees only (audience 2), and the account's Thread
        state is not among the commit's states.  A sharee's state is the
        largest touched position of their mailboxes.
        """
        ids = await _ids(store)
        inbox, archive = ids["inbox"], ids["archive"]
        commits: list[StoreCommit] = []
        store.subscribe(commits.append)
        email = await _add(store, message())
        delivered = commits[-1]
        assert {(t, m, a) for t, m, _, a in delivered.touched} == {
            ("Email", inbox, 0),
            ("Thread", inbox, 0),
            ("Mailbox", inbox, 0),
        }
        assert delivered.touched == tuple(sorted(delivered.touched))
        for type_name, _, seq, _ in delivered.touched:
            assert delivered.states[type_name] == str(seq)
        await _move(store, email.id, "archive")
        moved = commits[-1]
        assert {(t, m, a) for t, m, _, a in moved.touched} == {
            ("Email", inbox, 0),
            ("Email", archive, 0),
            ("Thread", inbox, 2),
            ("Thread", archive, 2),
            ("Mailbox", inbox, 0),
            ("Mailbox", archive, 0),
        }
        assert "Thread" not in moved.states
        view = _view([archive], [archive])
        states = await _states(store, view)
        for type_name in _TYPES:
            position = max(s for t, m, s, _ in moved.touched if t == type_name and m == archive)
            assert states[type_name].split(".")[1] == str(position)

    @pytest_twisted.ensureDeferred
    async def test_in_any_mailbox_condition(self, store: IMailStore) -> None:
        """
        The server's ``inAnyMailbox`` condition keeps emails in at least
        one of some mailboxes, alone, of one mailbox, with other
        conditions and with threads collapsed; an empty set keeps none.
        """
        ids = await _ids(store)
        a = await _add(store, message(subject="Alpha", message_id="a@x"), at=1.0)
        b = await _add(store, message(subject="Beta"), role="archive", at=2.0)
        await _add(store, message(subject="Gamma"), role="junk", at=3.0)
        d = await _add(
            store,
            message(subject="Re: Alpha", message_id="d@x", in_reply_to="a@x"),
            role="archive",
            at=4.0,
        )
        newest = [{"property": "receivedAt", "isAscending": False}]

        async def query(filter: Mapping[str, Any], collapse: bool = False) -> tuple[list[str], int]:
            return await store.read(_ACCOUNT, lambda r: r.query_emails(filter, newest, collapse))

        shared = frozenset({ids["inbox"], ids["archive"]})
        assert await query({"inAnyMailbox": shared}) == ([d.id, b.id, a.id], 3)
        assert await query({"inAnyMailbox": frozenset({ids["archive"]})}) == ([d.id, b.id], 2)
        assert await query({"inAnyMailbox": frozenset()}) == ([], 0)
        both = {"operator": "AND", "conditions": [{"text": "Alpha"}, {"inAnyMailbox": shared}]}
        assert await query(both) == ([d.id, a.id], 2)
        assert await query({"inAnyMailbox": shared}, collapse=True) == ([d.id, b.id], 2)
        walk = {
            "operator": "AND",
            "conditions": [{"inMailbox": ids["archive"]}, {"inAnyMailbox": shared}],
        }
        assert await query(walk) == ([d.id, b.id], 2)
