# -*- test-case-name: tests.store.test_directory_contract -*-
"""
The contract every :class:`~jmap_twisted.interfaces.IDirectory` meets: a
base class of pytest tests, :class:`DirectoryContract`.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.errors import NoSuchUser, UserExists
from jmap_twisted.interfaces import IDirectory
from jmap_twisted.store.ids import is_valid_id
from jmap_twisted.testing._doubles import CONTRACT_EPOCH


class DirectoryFixtures:
    """
    The fixtures of the directory contracts: ``clock`` (a
    :class:`~twisted.internet.task.Clock` at
    :data:`~jmap_twisted.testing.CONTRACT_EPOCH`) and ``directory``, which
    a subclass overrides to give the directory under test.
    """

    @pytest.fixture
    def clock(self) -> Clock:
        """
        The clock the directory under test reads.
        """
        clock = Clock()
        clock.advance(CONTRACT_EPOCH)
        return clock

    @pytest.fixture
    def directory(self) -> IDirectory:
        """
        The directory under test: subclasses override this fixture.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must provide a pytest fixture named 'directory'"
        )


class DirectoryContract(DirectoryFixtures):
    """
    The tests every directory passes, collected by pytest in each subclass.

    Subclass it in a test module under a name pytest collects (``Test…``)
    and provide a fixture ``directory`` that gives an empty directory
    reading token creation times from the contract's ``clock`` fixture (a
    :class:`~twisted.internet.task.Clock` at
    :data:`~jmap_twisted.testing.CONTRACT_EPOCH`)::

        from jmap_twisted.testing import DirectoryContract

        class TestMyDirectory(DirectoryContract):
            @pytest.fixture
            def directory(self, clock):
                return MyDirectory(clock)

    Use ``@pytest_twisted.async_yield_fixture`` when opening or closing the
    directory needs awaiting.
    """

    def test_provides_interface(self, directory: IDirectory) -> None:
        """
        The directory provides IDirectory fully.
        """
        assert verifyObject(IDirectory, directory)

    @pytest_twisted.ensureDeferred
    async def test_create_and_get_user(self, directory: IDirectory) -> None:
        """
        A created user has a JMAP Id and is found by name and by id.
        """
        user = await directory.create_user("alice", "hash-a")
        assert user.username == "alice"
        assert is_valid_id(user.id)
        assert await directory.get_user("alice") == user
        assert await directory.get_user_by_id(user.id) == user

    @pytest_twisted.ensureDeferred
    async def test_unknown_user_is_none(self, directory: IDirectory) -> None:
        """
        Looking up a user who does not exist gives None, by name or by id.
        """
        await directory.create_user("alice", None)
        assert await directory.get_user("bob") is None
        assert await directory.get_user("Alice") is None  # case-sensitive
        assert await directory.get_user_by_id("unknown") is None
        assert await directory.get_password_hash("bob") is None

    @pytest_twisted.ensureDeferred
    async def test_duplicate_username(self, directory: IDirectory) -> None:
        """
        Creating a user whose name is taken raises UserExists and leaves the
        existing user untouched.
        """
        alice = await directory.create_user("alice", "hash-a")
        with pytest.raises(UserExists):
            await directory.create_user("alice", "hash-b")
        assert await directory.get_password_hash("alice") == (alice, "hash-a")
        assert await directory.list_users() == [alice]
        assert len(await directory.accounts_for_user(alice.id)) == 1

    @pytest_twisted.ensureDeferred
    async def test_user_ids_are_distinct(self, directory: IDirectory) -> None:
        """
        Different users get different ids.
        """
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        assert alice.id != bob.id

    @pytest_twisted.ensureDeferred
    async def test_list_users_by_username(self, directory: IDirectory) -> None:
        """
        list_users gives every user, ordered by username.
        """
        for name in ["carol", "alice", "bob"]:
            await directory.create_user(name, None)
        assert [u.username for u in await directory.list_users()] == ["alice", "bob", "carol"]

    @pytest_twisted.ensureDeferred
    async def test_list_users_empty(self, directory: IDirectory) -> None:
        """
        A new directory has no users.
        """
        assert await directory.list_users() == []

    @pytest_twisted.ensureDeferred
    async def test_personal_account(self, directory: IDirectory) -> None:
        """
        Creating a user creates their personal account, named after them, owned
        by them, and listed first by accounts_for_user.
        """
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        accounts = await directory.accounts_for_user(alice.id)
        assert len(accounts) == 1
        personal = accounts[0]
        assert personal.name == "alice"
        assert personal.owner_id == alice.id
        assert is_valid_id(personal.id)
        assert personal.id != alice.id
        (bobs,) = await directory.accounts_for_user(bob.id)
        assert bobs.id != personal.id

    @pytest_twisted.ensureDeferred
    async def test_accounts_for_unknown_user(self, directory: IDirectory) -> None:
        """
        A user id nobody has gives no accounts.
        """
        assert await directory.accounts_for_user("unknown") == []

    @pytest_twisted.ensureDeferred
    async def test_delete_user(self, directory: IDirectory) -> None:
        """
        Deleting a user removes them, their tokens and their accounts, and
        returns True; deleting them again returns False.
        """
        alice = await directory.create_user("alice", "hash-a")
        bob = await directory.create_user("bob", None)
        await directory.add_token(alice.id, "token-hash-a", "phone")
        bob_token = await directory.add_token(bob.id, "token-hash-b", "laptop")

        assert await directory.delete_user("alice") is True

        assert await directory.get_user("alice") is None
        assert await directory.get_user_by_id(alice.id) is None
        assert await directory.get_password_hash("alice") is None
        assert await directory.find_token("token-hash-a") is None
        assert await directory.list_tokens(alice.id) == []
        assert await directory.accounts_for_user(alice.id) == []
        assert await directory.list_users() == [bob]
        assert await directory.find_token("token-hash-b") == (bob, bob_token)
        assert await directory.delete_user("alice") is False

    @pytest_twisted.ensureDeferred
    async def test_delete_unknown_user(self, directory: IDirectory) -> None:
        """
        Deleting a user who never existed returns False.
        """
        assert await directory.delete_user("nobody") is False

    @pytest_twisted.ensureDeferred
    async def test_recreated_user_is_new(self, directory: IDirectory) -> None:
        """
        A user created again under a deleted user's name gets a new id and a
        new personal account: ids are never reused.
        """
        old = await directory.create_user("alice", None)
        (old_account,) = await directory.accounts_for_user(old.id)
        await directory.delete_user("alice")
        new = await directory.create_user("alice", None)
        (new_account,) = await directory.accounts_for_user(new.id)
        assert new.id != old.id
        assert new_account.id != old_account.id

    @pytest_twisted.ensureDeferred
    async def test_password_hash_set_replace_clear(self, directory: IDirectory) -> None:
        """
        The stored password hash is the one given at creation, is replaced by
        set_password_hash, and None means no password.
        """
        alice = await directory.create_user("alice", "hash-1")
        assert await directory.get_password_hash("alice") == (alice, "hash-1")
        await directory.set_password_hash("alice", "hash-2")
        assert await directory.get_password_hash("alice") == (alice, "hash-2")
        await directory.set_password_hash("alice", None)
        assert await directory.get_password_hash("alice") == (alice, None)

    @pytest_twisted.ensureDeferred
    async def test_user_without_password(self, directory: IDirectory) -> None:
        """
        A user created without a password has None as hash, until one is set.
        """
        bob = await directory.create_user("bob", None)
        assert await directory.get_password_hash("bob") == (bob, None)
        await directory.set_password_hash("bob", "hash-b")
        assert await directory.get_password_hash("bob") == (bob, "hash-b")

    @pytest_twisted.ensureDeferred
    async def test_set_password_hash_unknown_user(self, directory: IDirectory) -> None:
        """
        Setting the password of a user who does not exist raises NoSuchUser and
        creates nobody.
        """
        with pytest.raises(NoSuchUser):
            await directory.set_password_hash("nobody", "hash")
        assert await directory.list_users() == []

    @pytest_twisted.ensureDeferred
    async def test_add_and_find_token(self, directory: IDirectory, clock: Clock) -> None:
        """
        A token recorded by its hash is found by that hash, with its user, name
        and creation time taken from the clock.
        """
        alice = await directory.create_user("alice", None)
        token = await directory.add_token(alice.id, "token-hash", "phone")
        assert token.user_id == alice.id
        assert token.name == "phone"
        assert token.created == clock.seconds()
        assert is_valid_id(token.id)
        assert await directory.find_token("token-hash") == (alice, token)
        assert await directory.find_token("other-hash") is None

    @pytest_twisted.ensureDeferred
    async def test_add_token_unknown_user(self, directory: IDirectory) -> None:
        """
        Recording a token for a user id nobody has raises NoSuchUser.
        """
        with pytest.raises(NoSuchUser):
            await directory.add_token("unknown", "token-hash", "phone")
        assert await directory.find_token("token-hash") is None

    @pytest_twisted.ensureDeferred
    async def test_list_tokens_oldest_first(self, directory: IDirectory, clock: Clock) -> None:
        """
        list_tokens gives a user's tokens, oldest first, and only theirs.
        """
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        first = await directory.add_token(alice.id, "hash-1", "first")
        clock.advance(10)
        await directory.add_token(bob.id, "hash-b", "bob's")
        second = await directory.add_token(alice.id, "hash-2", "second")
        third = await directory.add_token(alice.id, "hash-3", "third")
        assert await directory.list_tokens(alice.id) == [first, second, third]
        assert [t.name for t in await directory.list_tokens(bob.id)] == ["bob's"]
        assert await directory.list_tokens("unknown") == []

    @pytest_twisted.ensureDeferred
    async def test_revoke_token(self, directory: IDirectory) -> None:
        """
        A revoked token is no longer found nor listed, at once; other tokens
        stay valid.  Revoking returns True, and False the second time.
        """
        alice = await directory.create_user("alice", None)
        revoked = await directory.add_token(alice.id, "hash-1", "old")
        kept = await directory.add_token(alice.id, "hash-2", "new")
        assert await directory.revoke_token(revoked.id) is True
        assert await directory.find_token("hash-1") is None
        assert await directory.list_tokens(alice.id) == [kept]
        assert await directory.find_token("hash-2") == (alice, kept)
        assert await directory.revoke_token(revoked.id) is False

    @pytest_twisted.ensureDeferred
    async def test_revoke_unknown_token(self, directory: IDirectory) -> None:
        """
        Revoking a token id nobody issued returns False.
        """
        assert await directory.revoke_token("tunknown") is False

    @pytest_twisted.ensureDeferred
    async def test_delegated_account_follows_personal(self, directory: IDirectory) -> None:
        """
        After alice delegates to bob, bob's accounts are his personal account
        then alice's (owned by her, not by him); alice's accounts are unchanged.
        """
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        (alices,) = await directory.accounts_for_user(alice.id)
        (bobs,) = await directory.accounts_for_user(bob.id)
        await directory.delegate("alice", "bob")
        assert await directory.accounts_for_user(bob.id) == [bobs, alices]
        assert alices.owner_id == alice.id != bob.id
        assert await directory.accounts_for_user(alice.id) == [alices]
        assert await directory.delegations("alice") == [bob]
        assert await directory.delegations("bob") == []

    @pytest_twisted.ensureDeferred
    async def test_delegated_accounts_by_owner_username(self, directory: IDirectory) -> None:
        """
        Accounts delegated to a user follow their personal account, ordered by
        their owners' usernames whatever the order of the grants; an owner's
        delegates are listed by username.
        """
        names = ["dave", "carol", "alice", "bob"]
        users = {name: await directory.create_user(name, None) for name in names}
        for owner in ["dave", "bob", "carol"]:
            await directory.delegate(owner, "alice")
        await directory.delegate("bob", "dave")
        await directory.delegate("bob", "carol")
        accounts = await directory.accounts_for_user(users["alice"].id)
        assert [a.name for a in accounts] == ["alice", "bob", "carol", "dave"]
        assert [a.owner_id for a in accounts] == [
            users[n].id for n in ["alice", "bob", "carol", "dave"]
        ]
        assert [u.username for u in await directory.delegations("bob")] == [
            "alice",
            "carol",
            "dave",
        ]

    @pytest_twisted.ensureDeferred
    async def test_revoke_delegation(self, directory: IDirectory) -> None:
        """
        Revoking a delegation removes the account from the delegate's accounts
        at once and returns True; revoking it again returns False, and so does
        revoking between unknown users.
        """
        alice = await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        await directory.delegate("alice", "bob")
        assert await directory.revoke_delegation("alice", "bob") is True
        assert [a.owner_id for a in await directory.accounts_for_user(bob.id)] == [bob.id]
        assert await directory.delegations("alice") == []
        assert await directory.revoke_delegation("alice", "bob") is False
        assert await directory.revoke_delegation("bob", "alice") is False
        assert await directory.revoke_delegation("alice", "nobody") is False
        assert await directory.revoke_delegation("nobody", "alice") is False
        assert len(await directory.accounts_for_user(alice.id)) == 1

    @pytest_twisted.ensureDeferred
    async def test_delegate_is_idempotent(self, directory: IDirectory) -> None:
        """
        Delegating twice lists the account once and leaves the access version
        as the first grant set it; one revocation undoes it.
        """
        await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        await directory.delegate("alice", "bob")
        version = await directory.access_version()
        await directory.delegate("alice", "bob")
        assert len(await directory.accounts_for_user(bob.id)) == 2
        assert await directory.delegations("alice") == [bob]
        assert await directory.access_version() == version
        assert await directory.revoke_delegation("alice", "bob") is True
        assert len(await directory.accounts_for_user(bob.id)) == 1

    @pytest_twisted.ensureDeferred
    async def test_delegate_unknown_users(self, directory: IDirectory) -> None:
        """
        Delegating from or to a user who does not exist raises NoSuchUser and
        grants nothing; listing the delegates of an unknown user raises
        NoSuchUser.
        """
        alice = await directory.create_user("alice", None)
        version = await directory.access_version()
        with pytest.raises(NoSuchUser):
            await directory.delegate("alice", "nobody")
        with pytest.raises(NoSuchUser):
            await directory.delegate("nobody", "alice")
        with pytest.raises(NoSuchUser):
            await directory.delegations("nobody")
        assert len(await directory.accounts_for_user(alice.id)) == 1
        assert await directory.delegations("alice") == []
        assert await directory.access_version() == version

    @pytest_twisted.ensureDeferred
    async def test_self_delegation_refused(self, directory: IDirectory) -> None:
        """
        Delegating an account to its owner raises ValueError and changes
        nothing.
        """
        alice = await directory.create_user("alice", None)
        with pytest.raises(ValueError):
            await directory.delegate("alice", "alice")
        assert len(await directory.accounts_for_user(alice.id)) == 1
        assert await directory.delegations("alice") == []

    @pytest_twisted.ensureDeferred
    async def test_delete_user_removes_delegations(self, directory: IDirectory) -> None:
        """
        Deleting a user removes the delegations of their account (their
        delegates no longer see it) and those to them (they are no longer
        listed as delegates).
        """
        await directory.create_user("alice", None)
        bob = await directory.create_user("bob", None)
        carol = await directory.create_user("carol", None)
        await directory.delegate("alice", "bob")
        await directory.delegate("bob", "alice")
        await directory.delegate("carol", "alice")
        await directory.delegate("bob", "carol")
        assert await directory.delete_user("alice") is True
        assert [a.owner_id for a in await directory.accounts_for_user(bob.id)] == [bob.id]
        assert await directory.delegations("bob") == [carol]
        assert await directory.delegations("carol") == []
        recreated = await directory.create_user("alice", None)
        assert len(await directory.accounts_for_user(recreated.id)) == 1
        assert await directory.delegations("alice") == []

    @pytest_twisted.ensureDeferred
    async def test_access_version_increases_on_access_changes(
        self, directory: IDirectory, clock: Clock
    ) -> None:
        """
        The access version increases when a delegation is granted, when one is
        revoked, when a user is deleted, when a password is set and when a
        token is revoked, and only then: not when users are created or tokens
        issued, nor when a revocation or deletion finds nothing to remove.
        """
        versions = [await directory.access_version()]

        async def unchanged() -> None:
            assert await directory.access_version() == versions[-1]

        async def increased() -> None:
            version = await directory.access_version()
            assert version > versions[-1]
            versions.append(version)

        alice = await directory.create_user("alice", "hash")
        await directory.create_user("bob", None)
        await directory.create_user("carol", None)
        token = await directory.add_token(alice.id, "token-hash", "phone")
        clock.advance(60)
        await unchanged()
        await directory.set_password_hash("alice", "other-hash")
        await increased()
        await directory.revoke_token(token.id)
        await increased()
        await directory.revoke_token(token.id)
        await unchanged()

        await directory.delegate("alice", "bob")
        await increased()
        await directory.delegate("alice", "carol")
        await increased()
        await directory.set_password_hash("bob", "hash")
        await increased()
        await directory.revoke_delegation("bob", "alice")
        await unchanged()

        await directory.revoke_delegation("alice", "bob")
        await increased()
        await directory.delete_user("carol")
        await increased()
        await directory.delete_user("carol")
        await unchanged()
        await directory.delete_user("bob")  # no delegation involved
        await increased()

    @pytest_twisted.ensureDeferred
    async def test_access_changes_name_the_users_concerned(
        self, directory: IDirectory, clock: Clock
    ) -> None:
        """
        access_changes_since names the users each change concerns: the
        delegate of a grant or revocation, a user whose password was set or
        token revoked, a deleted user and the delegates of their account.
        """
        alice = await directory.create_user("alice", "h")
        bob = await directory.create_user("bob", "h")
        carol = await directory.create_user("carol", "h")
        start = await directory.access_version()
        assert await directory.access_changes_since(start) == []
        await directory.delegate("alice", "bob")
        assert await directory.access_changes_since(start) == [bob.id]
        mark = await directory.access_version()
        await directory.set_password_hash("carol", "h2")
        token = await directory.add_token(alice.id, "th", "t")
        await directory.revoke_token(token.id)
        assert sorted(await directory.access_changes_since(mark) or ()) == sorted(
            [alice.id, carol.id]
        )
        mark = await directory.access_version()
        await directory.delete_user("alice")
        assert sorted(await directory.access_changes_since(mark) or ()) == sorted(
            [alice.id, bob.id]
        )
        assert await directory.access_changes_since(await directory.access_version()) == []
