"""
The directory and blob store in memory, for tests and trials.

Same semantics as :mod:`jmap_twisted.store.sqlite.directory`, checked by the same
contract tests; every method returns an already-fired Deferred.  Nothing is
shared between processes or survives a restart.
"""

from __future__ import annotations

from collections.abc import Collection

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jmap_twisted import rights
from jmap_twisted.errors import NoSuchAccount, NoSuchUser, UserExists
from jmap_twisted.interfaces import IBlobStore, IDirectory, IMailboxShares
from jmap_twisted.records import Account, BlobInfo, MailboxShare, SharedView, TokenInfo, User
from jmap_twisted.store import ids


@implementer(IDirectory, IMailboxShares)
class MemoryDirectory:
    """
    :class:`~jmap_twisted.interfaces.IDirectory` and
    :class:`~jmap_twisted.interfaces.IMailboxShares` in dictionaries.

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
        # (account id, mailbox id, sharee id): (letters, subscribed)
        self._shares: dict[tuple[str, str, str], tuple[str, bool]] = {}
        # (account id, sharee id): [generation, subscriptions], kept after unsharing
        self._views: dict[tuple[str, str], list[int]] = {}
        self._principal_changes: list[tuple[int, str, str]] = []

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
        self._log_principal(user.id, "created")
        return succeed(user)

    def _log_principal(self, user_id: str, kind: str) -> None:
        self._principal_changes.append((len(self._principal_changes) + 1, user_id, kind))

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
        owned = {account.id for account in self._accounts.pop(user.id)}
        self._tokens = {h: t for h, t in self._tokens.items() if t.user_id != user.id}
        delegates = [to for owner, to in self._delegations if owner == user.id]
        self._delegations = {d for d in self._delegations if user.id not in d}
        sharees = {sharee for account, _, sharee in self._shares if account in owned}
        self._shares = {
            key: share
            for key, share in self._shares.items()
            if key[0] not in owned and key[2] != user.id
        }
        self._views = {
            key: view
            for key, view in self._views.items()
            if key[0] not in owned and key[1] != user.id
        }
        self._changed(*sorted({user.id, *delegates, *sharees}))
        self._log_principal(user.id, "destroyed")
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

    def _account(self, account_id: str) -> Account | None:
        for accounts in self._accounts.values():
            for account in accounts:
                if account.id == account_id:
                    return account
        return None

    def set_rights(
        self, account_id: str, mailbox_id: str, user_id: str, letters: str, granted_by: str | None
    ) -> Deferred[tuple[str, str]]:
        try:
            letters = rights.share_letters(mailbox_id, letters)
        except ValueError as error:
            return fail(error)
        account = self._account(account_id)
        if account is None:
            return fail(NoSuchAccount(account_id))
        if self._user_by_id(user_id) is None:
            return fail(NoSuchUser(user_id))
        if account.owner_id == user_id:
            return fail(ValueError("a mailbox cannot be shared with its account's owner"))
        key = (account_id, mailbox_id, user_id)
        old, subscribed = self._shares.get(key, ("", True))
        if old != letters:
            if letters:
                self._shares[key] = (letters, subscribed)
            else:
                del self._shares[key]
            self._views.setdefault((account_id, user_id), [0, 0])[0] += 1
            self._changed(user_id)
        return succeed((old, letters))

    def shares_of_account(self, account_id: str) -> Deferred[list[MailboxShare]]:
        return succeed([self._share(key) for key in sorted(self._shares) if key[0] == account_id])

    def _share(self, key: tuple[str, str, str]) -> MailboxShare:
        letters, subscribed = self._shares[key]
        return MailboxShare(
            account_id=key[0],
            mailbox_id=key[1],
            user_id=key[2],
            rights=letters,
            subscribed=subscribed,
        )

    def shares_of_mailboxes(
        self, account_id: str, mailbox_ids: Collection[str]
    ) -> Deferred[list[tuple[MailboxShare, int]]]:
        wanted = set(mailbox_ids)
        return succeed(
            [
                (self._share(key), self._views[key[0], key[2]][0])
                for key in sorted(self._shares)
                if key[0] == account_id and key[1] in wanted
            ]
        )

    def shared_views_for_user(self, user_id: str) -> Deferred[list[tuple[Account, SharedView]]]:
        found = []
        for owner in sorted(self._users.values(), key=lambda u: u.username):
            if owner.id == user_id or (owner.id, user_id) in self._delegations:
                continue
            for account in self._accounts[owner.id]:
                granted = tuple(
                    (mailbox_id, letters)
                    for (account_id, mailbox_id, sharee), (letters, _) in sorted(
                        self._shares.items()
                    )
                    if account_id == account.id and sharee == user_id
                )
                if any(rights.holds(letters, "l") for _, letters in granted):
                    generation, subscriptions = self._views[account.id, user_id]
                    found.append((account, SharedView(generation, subscriptions, granted)))
        return succeed(found)

    def set_subscribed(
        self, account_id: str, mailbox_id: str, user_id: str, subscribed: bool
    ) -> Deferred[bool]:
        key = (account_id, mailbox_id, user_id)
        share = self._shares.get(key)
        if share is None:
            return succeed(False)
        if share[1] != subscribed:
            self._shares[key] = (share[0], subscribed)
            self._views[account_id, user_id][1] += 1
            self._changed(user_id)
        return succeed(True)

    def forget_mailbox(self, account_id: str, mailbox_id: str) -> Deferred[list[str]]:
        sharees = sorted(
            sharee
            for account, mailbox, sharee in self._shares
            if (account, mailbox) == (account_id, mailbox_id)
        )
        for sharee in sharees:
            del self._shares[account_id, mailbox_id, sharee]
            self._views[account_id, sharee][0] += 1
        if sharees:
            self._changed(*sharees)
        return succeed(sharees)

    def principal_state(self) -> Deferred[int]:
        return succeed(len(self._principal_changes))

    def principal_changes_since(self, since: int) -> Deferred[list[tuple[int, str, str]]]:
        return succeed([entry for entry in self._principal_changes if entry[0] > since])


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
