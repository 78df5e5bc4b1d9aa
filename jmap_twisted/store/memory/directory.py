"""
The directory and blob store in memory, for tests and trials.

Same semantics as :mod:`jmap_twisted.store.sqlite.directory`, checked by the same
contract tests; every method returns an already-fired Deferred.  Nothing is
shared between processes or survives a restart.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jmap_twisted.errors import NoSuchUser, UserExists
from jmap_twisted.interfaces import IBlobStore, IDirectory
from jmap_twisted.records import Account, BlobInfo, TokenInfo, User
from jmap_twisted.store import ids


@implementer(IDirectory)
class MemoryDirectory:
    """
    :class:`~jmap_twisted.interfaces.IDirectory` in dictionaries.

    :param clock: gives the ``created`` time of tokens.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._users: dict[str, User] = {}  # by username
        self._password_hashes: dict[str, str | None] = {}  # by user id
        self._accounts: dict[str, list[Account]] = {}  # by owner id, personal first
        self._tokens: dict[str, TokenInfo] = {}  # by token hash, oldest first
        self._delegations: set[tuple[str, str]] = set()  # (owner id, delegate id)
        self._access_version = 0
        self._access_changes: list[tuple[int, str]] = []

    def _user_by_id(self, user_id: str) -> User | None:
        for user in self._users.values():
            if user.id == user_id:
                return user
        return None

    def create_user(self, username: str, password_hash: str | None) -> Deferred[User]:
        if username in self._users:
            return fail(UserExists(username))
        user = User(id=ids.new_user_id(), username=username)
        self._users[username] = user
        self._password_hashes[user.id] = password_hash
        self._accounts[user.id] = [
            Account(id=ids.new_account_id(), name=username, owner_id=user.id)
        ]
        return succeed(user)

    def get_user(self, username: str) -> Deferred[User | None]:
        return succeed(self._users.get(username))

    def get_user_by_id(self, user_id: str) -> Deferred[User | None]:
        return succeed(self._user_by_id(user_id))

    def list_users(self) -> Deferred[list[User]]:
        return succeed([self._users[name] for name in sorted(self._users)])

    def delete_user(self, username: str) -> Deferred[bool]:
        user = self._users.pop(username, None)
        if user is None:
            return succeed(False)
        del self._password_hashes[user.id]
        del self._accounts[user.id]
        self._tokens = {h: t for h, t in self._tokens.items() if t.user_id != user.id}
        delegates = [to for owner, to in self._delegations if owner == user.id]
        self._delegations = {d for d in self._delegations if user.id not in d}
        self._changed(user.id, *delegates)
        return succeed(True)

    def get_password_hash(self, username: str) -> Deferred[tuple[User, str | None] | None]:
        user = self._users.get(username)
        if user is None:
            return succeed(None)
        return succeed((user, self._password_hashes[user.id]))

    def set_password_hash(self, username: str, password_hash: str | None) -> Deferred[None]:
        user = self._users.get(username)
        if user is None:
            return fail(NoSuchUser(username))
        self._password_hashes[user.id] = password_hash
        self._changed(user.id)
        return succeed(None)

    def add_token(self, user_id: str, token_hash: str, name: str) -> Deferred[TokenInfo]:
        """
        Record a bearer token by its hash.

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        :raises ValueError: the hash is already recorded.
        """
        if self._user_by_id(user_id) is None:
            return fail(NoSuchUser(user_id))
        if token_hash in self._tokens:
            return fail(ValueError("this token hash is already recorded"))
        token = TokenInfo(
            id=ids.new_token_id(), user_id=user_id, name=name, created=self._clock.seconds()
        )
        self._tokens[token_hash] = token
        return succeed(token)

    def find_token(self, token_hash: str) -> Deferred[tuple[User, TokenInfo] | None]:
        token = self._tokens.get(token_hash)
        if token is None:
            return succeed(None)
        user = self._user_by_id(token.user_id)
        assert user is not None, "tokens are deleted with their user"
        return succeed((user, token))

    def list_tokens(self, user_id: str) -> Deferred[list[TokenInfo]]:
        return succeed([t for t in self._tokens.values() if t.user_id == user_id])

    def revoke_token(self, token_id: str) -> Deferred[bool]:
        for token_hash, token in self._tokens.items():
            if token.id == token_id:
                del self._tokens[token_hash]
                self._changed(token.user_id)
                return succeed(True)
        return succeed(False)

    def accounts_for_user(self, user_id: str) -> Deferred[list[Account]]:
        owners = [self._user_by_id(owner_id) for owner_id, to in self._delegations if to == user_id]
        delegated = [
            self._accounts[owner.id][0]
            for owner in sorted((o for o in owners if o is not None), key=lambda o: o.username)
        ]
        return succeed(list(self._accounts.get(user_id, [])) + delegated)

    def delegate(self, owner: str, delegate: str) -> Deferred[None]:
        if owner == delegate:
            return fail(ValueError("an account cannot be delegated to its owner"))
        for username in (owner, delegate):
            if username not in self._users:
                return fail(NoSuchUser(username))
        delegation = (self._users[owner].id, self._users[delegate].id)
        if delegation not in self._delegations:
            self._delegations.add(delegation)
            self._changed(delegation[1])
        return succeed(None)

    def revoke_delegation(self, owner: str, delegate: str) -> Deferred[bool]:
        if owner not in self._users or delegate not in self._users:
            return succeed(False)
        delegation = (self._users[owner].id, self._users[delegate].id)
        if delegation not in self._delegations:
            return succeed(False)
        self._delegations.discard(delegation)
        self._changed(delegation[1])
        return succeed(True)

    def delegations(self, owner: str) -> Deferred[list[User]]:
        user = self._users.get(owner)
        if user is None:
            return fail(NoSuchUser(owner))
        delegates = [
            self._user_by_id(to) for owner_id, to in self._delegations if owner_id == user.id
        ]
        return succeed(sorted((d for d in delegates if d is not None), key=lambda d: d.username))

    def access_version(self) -> Deferred[int]:
        return succeed(self._access_version)

    def _changed(self, *user_ids: str) -> None:
        self._access_version += 1
        self._access_changes.extend((self._access_version, u) for u in user_ids)

    def access_changes_since(self, version: int) -> Deferred[list[str] | None]:
        return succeed(sorted({u for v, u in self._access_changes if v > version}))


@implementer(IBlobStore)
class MemoryBlobStore:
    """
    :class:`~jmap_twisted.interfaces.IBlobStore` in dictionaries.

    Like :class:`jmap_twisted.store.sqlite.directory.SQLiteBlobStore`, the octets are
    kept once per content, and storing octets an account already has
    replaces their type.  Unlike it, any account id is accepted.

    :param clock: gives the time a blob was stored.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._data: dict[str, bytes] = {}  # by blob id
        self._stored: dict[tuple[str, str], tuple[str, float]] = {}  # (account, blob): (type, when)

    def put(self, account_id: str, data: bytes, type: str) -> Deferred[BlobInfo]:
        data = bytes(data)
        blob_id = ids.blob_id(data)
        self._data.setdefault(blob_id, data)
        self._stored[account_id, blob_id] = (type, self._clock.seconds())
        return succeed(BlobInfo(account_id=account_id, blob_id=blob_id, size=len(data), type=type))

    def get(self, account_id: str, blob_id: str) -> Deferred[tuple[BlobInfo, bytes] | None]:
        stored = self._stored.get((account_id, blob_id))
        if stored is None:
            return succeed(None)
        data = self._data[blob_id]
        info = BlobInfo(account_id=account_id, blob_id=blob_id, size=len(data), type=stored[0])
        return succeed((info, data))
