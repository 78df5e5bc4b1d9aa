# -*- test-case-name: tests.store.test_shares_contract -*-
"""
The contract every :class:`~jmap_twisted.interfaces.IMailboxShares` meets:
a base class of pytest tests, :class:`MailboxSharesContract`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from jmap_twisted.errors import NoSuchAccount, NoSuchUser
from jmap_twisted.interfaces import IDirectory, IMailboxShares
from jmap_twisted.records import Account, MailboxShare, SharedView, User
from jmap_twisted.testing._directory import DirectoryFixtures

#: Mailbox ids the contract shares; the directory never checks them.
INBOX, ARCHIVE, LISTS = "M1inbox", "M2archive", "M3lists"


async def _users(directory: IDirectory, *names: str) -> list[tuple[User, Account]]:
    """
    Create users, each with their personal account.
    """
    created = []
    for name in names:
        user = await directory.create_user(name, None)
        created.append((user, (await directory.accounts_for_user(user.id))[0]))
    return created


class MailboxSharesContract(DirectoryFixtures):
    """
    The tests every directory sharing mailboxes passes, collected by pytest
    in each subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``directory`` that gives an empty directory
    providing both :class:`~jmap_twisted.interfaces.IDirectory` and
    :class:`~jmap_twisted.interfaces.IMailboxShares`, reading times from the
    contract's ``clock`` fixture (a :class:`~twisted.internet.task.Clock` at
    :data:`~jmap_twisted.testing.CONTRACT_EPOCH`)::

        from jmap_twisted.testing import MailboxSharesContract

        class TestMyShares(MailboxSharesContract):
            @pytest.fixture
            def directory(self, clock):
                return MyDirectory(clock)

    Use ``@pytest_twisted.async_yield_fixture`` when opening or closing the
    directory needs awaiting.
    """

    @pytest.fixture
    def shares(self, directory: IDirectory) -> IMailboxShares:
        """
        The directory under test, as its shares.
        """
        return IMailboxShares(directory)

    async def _generation(
        self, shares: IMailboxShares, account_id: str, user_id: str, mailbox_id: str = INBOX
    ) -> int:
        found = await shares.shares_of_mailboxes(account_id, [mailbox_id])
        (generation,) = [g for share, g in found if share.user_id == user_id]
        return generation

    def test_provides_interface(self, directory: IDirectory) -> None:
        """
        The directory provides IMailboxShares fully, beside IDirectory.
        """
        assert verifyObject(IMailboxShares, directory)
        assert verifyObject(IDirectory, directory)

    @pytest_twisted.ensureDeferred
    async def test_grant_update_revoke(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Sharing, changing the rights and unsharing answer the rights before
        and after, normalised to canonical order; the account's shares say
        what is shared now.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        assert await shares.set_rights(alice.id, INBOX, bob.id, "srl", None) == ("", "lrs")
        assert await shares.shares_of_account(alice.id) == [
            MailboxShare(alice.id, INBOX, bob.id, "lrs", True)
        ]
        assert await shares.set_rights(alice.id, INBOX, bob.id, "lrswi", None) == ("lrs", "lrswi")
        assert await shares.shares_of_account(alice.id) == [
            MailboxShare(alice.id, INBOX, bob.id, "lrswi", True)
        ]
        assert await shares.set_rights(alice.id, INBOX, bob.id, "", None) == ("lrswi", "")
        assert await shares.shares_of_account(alice.id) == []
        assert await shares.set_rights(alice.id, INBOX, bob.id, "", None) == ("", "")

    @pytest_twisted.ensureDeferred
    async def test_shares_of_account_ordered(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        An account's shares are ordered by mailbox, then sharee; another
        account's shares are not among them.
        """
        (_, alice), (bob, bobs), (carol, _) = await _users(directory, "alice", "bob", "carol")
        first, second = sorted([bob.id, carol.id])
        await shares.set_rights(alice.id, LISTS, second, "lr", None)
        await shares.set_rights(alice.id, INBOX, second, "lr", None)
        await shares.set_rights(alice.id, INBOX, first, "lr", None)
        await shares.set_rights(bobs.id, INBOX, carol.id, "lr", None)
        assert [(s.mailbox_id, s.user_id) for s in await shares.shares_of_account(alice.id)] == [
            (INBOX, first),
            (INBOX, second),
            (LISTS, second),
        ]
        assert await shares.shares_of_account("Aunknown") == []

    @pytest_twisted.ensureDeferred
    async def test_generation_bumps_and_is_never_reused(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        Every change of a sharee's rights in an account bumps the
        generation of their view, whichever mailbox it concerns; after the
        last share went, a new one gets a generation never given before.
        Other sharees' generations stay.
        """
        (_, alice), (bob, _), (carol, _) = await _users(directory, "alice", "bob", "carol")
        await shares.set_rights(alice.id, INBOX, carol.id, "lr", None)
        carols = await self._generation(shares, alice.id, carol.id)
        seen = []
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        seen.append(await self._generation(shares, alice.id, bob.id))
        await shares.set_rights(alice.id, INBOX, bob.id, "lrs", None)
        seen.append(await self._generation(shares, alice.id, bob.id))
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "lr", None)
        seen.append(await self._generation(shares, alice.id, bob.id))
        await shares.set_rights(alice.id, INBOX, bob.id, "", None)
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "", None)
        assert await shares.shared_views_for_user(bob.id) == []
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        seen.append(await self._generation(shares, alice.id, bob.id))
        assert seen == sorted(set(seen)), "each change gives a new, higher generation"
        assert seen[-1] > seen[-2] + 1, "the revocations bumped it too"
        assert await self._generation(shares, alice.id, carol.id) == carols

    @pytest_twisted.ensureDeferred
    async def test_same_rights_change_nothing(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        Giving the rights a sharee holds already, in any order, and
        unsharing what is not shared, bump neither the generation nor the
        access version.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, INBOX, bob.id, "lrs", None)
        generation = await self._generation(shares, alice.id, bob.id)
        version = await directory.access_version()
        assert await shares.set_rights(alice.id, INBOX, bob.id, "slr", None) == ("lrs", "lrs")
        assert await shares.set_rights(alice.id, ARCHIVE, bob.id, "", None) == ("", "")
        assert await self._generation(shares, alice.id, bob.id) == generation
        assert await directory.access_version() == version

    @pytest_twisted.ensureDeferred
    async def test_access_changes_name_the_sharee(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        Sharing, changing rights, unsharing, changing a subscription and
        forgetting a mailbox each increase the access version, naming only
        the sharees concerned (not the owner).
        """
        (_, alice), (bob, _), (carol, _) = await _users(directory, "alice", "bob", "carol")

        async def changed(action: Callable[[], Deferred[Any]]) -> list[str] | None:
            version = await directory.access_version()
            await action()
            assert await directory.access_version() > version
            return await directory.access_changes_since(version)

        assert await changed(lambda: shares.set_rights(alice.id, INBOX, bob.id, "lr", None)) == [
            bob.id
        ]
        assert await changed(lambda: shares.set_rights(alice.id, INBOX, bob.id, "lrw", None)) == [
            bob.id
        ]
        assert await changed(lambda: shares.set_subscribed(alice.id, INBOX, bob.id, False)) == [
            bob.id
        ]
        assert await changed(lambda: shares.set_rights(alice.id, INBOX, bob.id, "", None)) == [
            bob.id
        ]
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "lr", None)
        await shares.set_rights(alice.id, ARCHIVE, carol.id, "lr", None)
        assert await changed(lambda: shares.forget_mailbox(alice.id, ARCHIVE)) == sorted(
            [bob.id, carol.id]
        )

    @pytest_twisted.ensureDeferred
    async def test_views_of_a_sharee(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        A sharee's views list the owner's account as the directory has it,
        with the generation, the subscriptions counter and every mailbox
        shared with them in that account, ordered by mailbox id.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, LISTS, bob.id, "lrswi", None)
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        generation = await self._generation(shares, alice.id, bob.id)
        ((account, view),) = await shares.shared_views_for_user(bob.id)
        assert account == alice
        assert account.shared is None
        assert view == SharedView(
            generation=generation,
            subscriptions=view.subscriptions,
            rights=((INBOX, "lr"), (LISTS, "lrswi")),
        )
        assert hash(view) == hash(SharedView(generation, view.subscriptions, view.rights))
        assert await shares.shared_views_for_user(alice.owner_id) == []

    @pytest_twisted.ensureDeferred
    async def test_lookup_needed_to_be_listed(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        An account is listed only when one of its mailboxes is shared with
        ``l`` (lookup); the view then holds the shares without ``l`` too.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, INBOX, bob.id, "rswipkxtea", None)
        assert await shares.shared_views_for_user(bob.id) == []
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "l", None)
        ((_, view),) = await shares.shared_views_for_user(bob.id)
        assert view.rights == ((INBOX, "rswipkxtea"), (ARCHIVE, "l"))

    @pytest_twisted.ensureDeferred
    async def test_views_ordered_by_owner(
        self, directory: IDirectory, shares: IMailboxShares
    ) -> None:
        """
        Views are ordered by their owner's username, as delegated accounts.
        """
        (_, zed), (bob, _), (_, amy) = await _users(directory, "zed", "bob", "amy")
        await shares.set_rights(zed.id, INBOX, bob.id, "lr", None)
        await shares.set_rights(amy.id, INBOX, bob.id, "lr", None)
        assert [a.id for a, _ in await shares.shared_views_for_user(bob.id)] == [amy.id, zed.id]

    @pytest_twisted.ensureDeferred
    async def test_delegation_wins(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        A sharee who is also delegated the account has no view of it (they
        see it whole) while the delegation lasts; the shares stay, and the
        view comes back with the same generation when it is revoked.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        (before,) = await shares.shared_views_for_user(bob.id)
        await directory.delegate("alice", "bob")
        assert await shares.shared_views_for_user(bob.id) == []
        assert len(await shares.shares_of_mailboxes(alice.id, [INBOX])) == 1
        await directory.revoke_delegation("alice", "bob")
        assert await shares.shared_views_for_user(bob.id) == [before]

    @pytest_twisted.ensureDeferred
    async def test_subscribed(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        A new share is subscribed; a sharee's change of subscription is kept
        across rights changes and bumps the subscriptions counter of their
        view (not its generation); setting it as it is changes nothing; a
        mailbox not shared with them cannot be subscribed.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        ((_, view),) = await shares.shared_views_for_user(bob.id)
        assert await shares.set_subscribed(alice.id, INBOX, bob.id, False) is True
        ((_, unsubscribed),) = await shares.shared_views_for_user(bob.id)
        assert unsubscribed.subscriptions > view.subscriptions
        assert unsubscribed.generation == view.generation
        version = await directory.access_version()
        assert await shares.set_subscribed(alice.id, INBOX, bob.id, False) is True
        assert await shares.shared_views_for_user(bob.id) == [(alice, unsubscribed)]
        assert await directory.access_version() == version
        await shares.set_rights(alice.id, INBOX, bob.id, "lrs", None)
        ((share, _),) = await shares.shares_of_mailboxes(alice.id, [INBOX])
        assert share.subscribed is False
        assert await shares.set_subscribed(alice.id, INBOX, bob.id, True) is True
        assert (await shares.shares_of_account(alice.id))[0].subscribed is True
        assert await shares.set_subscribed(alice.id, ARCHIVE, bob.id, True) is False

    @pytest_twisted.ensureDeferred
    async def test_shares_of_mailboxes(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        The shares of some mailboxes come with their sharee's generation,
        ordered by mailbox then sharee, whatever the letters; other
        mailboxes and unknown ids are left out.
        """
        (_, alice), (bob, _), (carol, _) = await _users(directory, "alice", "bob", "carol")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "i", None)
        await shares.set_rights(alice.id, ARCHIVE, carol.id, "lr", None)
        await shares.set_rights(alice.id, LISTS, carol.id, "lr", None)
        bobs = await self._generation(shares, alice.id, bob.id)
        carols = await self._generation(shares, alice.id, carol.id, ARCHIVE)
        found = await shares.shares_of_mailboxes(alice.id, [ARCHIVE, INBOX, "Mnone", INBOX])
        expected = sorted(
            [
                (MailboxShare(alice.id, INBOX, bob.id, "lr", True), bobs),
                (MailboxShare(alice.id, ARCHIVE, bob.id, "i", True), bobs),
                (MailboxShare(alice.id, ARCHIVE, carol.id, "lr", True), carols),
            ],
            key=lambda pair: (pair[0].mailbox_id, pair[0].user_id),
        )
        assert found == expected
        assert await shares.shares_of_mailboxes(alice.id, []) == []

    @pytest_twisted.ensureDeferred
    async def test_forget_mailbox(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Forgetting a destroyed mailbox drops its shares, bumps its sharees'
        generations and answers who they were; other mailboxes' shares
        stay; forgetting it again finds nothing.
        """
        (_, alice), (bob, _), (carol, _) = await _users(directory, "alice", "bob", "carol")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        await shares.set_rights(alice.id, INBOX, carol.id, "lr", None)
        await shares.set_rights(alice.id, ARCHIVE, bob.id, "lr", None)
        before = await self._generation(shares, alice.id, bob.id, ARCHIVE)
        assert await shares.forget_mailbox(alice.id, INBOX) == sorted([bob.id, carol.id])
        assert [s.mailbox_id for s in await shares.shares_of_account(alice.id)] == [ARCHIVE]
        assert await self._generation(shares, alice.id, bob.id, ARCHIVE) > before
        assert await shares.shared_views_for_user(carol.id) == []
        version = await directory.access_version()
        assert await shares.forget_mailbox(alice.id, INBOX) == []
        assert await directory.access_version() == version

    @pytest_twisted.ensureDeferred
    async def test_deleting_the_sharee(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Deleting a user drops the shares given to them; a new user of the
        same name has none.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        await directory.delete_user("bob")
        assert await shares.shares_of_account(alice.id) == []
        ((again, _),) = await _users(directory, "bob")
        assert await shares.shared_views_for_user(again.id) == []

    @pytest_twisted.ensureDeferred
    async def test_deleting_the_owner(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Deleting a user drops the shares of their accounts, telling the
        sharees through the access version; the shares they held elsewhere
        go too.
        """
        (_, alice), (bob, bobs), (carol, _) = await _users(directory, "alice", "bob", "carol")
        await shares.set_rights(alice.id, INBOX, bob.id, "lr", None)
        await shares.set_rights(alice.id, INBOX, carol.id, "lr", None)
        await shares.set_rights(bobs.id, INBOX, alice.owner_id, "lr", None)
        version = await directory.access_version()
        await directory.delete_user("alice")
        assert await shares.shared_views_for_user(bob.id) == []
        assert await shares.shares_of_account(alice.id) == []
        assert await shares.shares_of_account(bobs.id) == []
        assert await shares.shares_of_mailboxes(alice.id, [INBOX]) == []
        changed = await directory.access_changes_since(version)
        assert changed is not None
        assert set(changed) >= {alice.owner_id, bob.id, carol.id}

    @pytest_twisted.ensureDeferred
    async def test_refusals(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Unknown letters, an invalid mailbox id, the account's owner as
        sharee, an unknown account and an unknown sharee are refused, and
        nothing is shared.
        """
        (_, alice), (bob, _) = await _users(directory, "alice", "bob")
        with pytest.raises(ValueError, match="unknown rights"):
            await shares.set_rights(alice.id, INBOX, bob.id, "lrc", None)
        with pytest.raises(ValueError, match="unknown rights"):
            await shares.set_rights(alice.id, INBOX, bob.id, "read", None)
        with pytest.raises(ValueError, match="mailbox id"):
            await shares.set_rights(alice.id, "not an id", bob.id, "lr", None)
        with pytest.raises(ValueError, match="owner"):
            await shares.set_rights(alice.id, INBOX, alice.owner_id, "lr", None)
        with pytest.raises(NoSuchAccount):
            await shares.set_rights("Aunknown", INBOX, bob.id, "lr", None)
        with pytest.raises(NoSuchUser):
            await shares.set_rights(alice.id, INBOX, "Uunknown", "lr", None)
        assert await shares.shares_of_account(alice.id) == []
        assert await shares.shared_views_for_user(bob.id) == []

    @pytest_twisted.ensureDeferred
    async def test_principal_changes(self, directory: IDirectory, shares: IMailboxShares) -> None:
        """
        Creating and deleting users log them, in order, for
        ``Principal/changes``; the state is the last position logged.
        """
        start = await shares.principal_state()
        assert await shares.principal_changes_since(start) == []
        (alice, _), (bob, _) = await _users(directory, "alice", "bob")
        created = await shares.principal_changes_since(start)
        assert [(user, kind) for _, user, kind in created] == [
            (alice.id, "created"),
            (bob.id, "created"),
        ]
        assert created[0][0] < created[1][0] == await shares.principal_state()
        middle = await shares.principal_state()
        await directory.delete_user("alice")
        await directory.delete_user("nobody")
        await directory.create_user("alice", None)
        destroyed = await shares.principal_changes_since(middle)
        assert [(user, kind) for _, user, kind in destroyed[:1]] == [(alice.id, "destroyed")]
        assert [kind for _, _, kind in destroyed] == ["destroyed", "created"]
        assert destroyed[-1][0] == await shares.principal_state()
        assert await shares.principal_changes_since(await shares.principal_state()) == []
