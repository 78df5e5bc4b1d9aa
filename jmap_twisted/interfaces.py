"""
Every public zope interface of jmap-twisted.

Implementations live in the packages named in their docstrings; each is
checked with :func:`zope.interface.verify.verifyObject` and by the contract
test suite of its interface.  Methods that do I/O return a
:class:`~twisted.internet.defer.Deferred`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.cred.credentials import ICredentials
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from jmap_twisted.records import Account, BlobInfo, TokenInfo, User


class IDirectory(Interface):
    """
    Users, their credentials (stored hashed) and the accounts they can see.

    Implementations: :class:`jmap_twisted.store.memory.MemoryDirectory`,
    :class:`jmap_twisted.store.sqlite.SQLiteDirectory`.  Changes made through
    one instance over a shared database are visible to every other instance
    at once (the admin command and a running server share the database).
    """

    def create_user(username: str, password_hash: str | None) -> Deferred[User]:
        """
        Create a user and their personal account (same name).

        :raises jmap_twisted.errors.UserExists: the username is taken.
        """

    def get_user(username: str) -> Deferred[User | None]:
        """
        Find a user by login name, or ``None``.
        """

    def get_user_by_id(user_id: str) -> Deferred[User | None]:
        """
        Find a user by id, or ``None``.
        """

    def list_users() -> Deferred[list[User]]:
        """
        All users, ordered by username.
        """

    def delete_user(username: str) -> Deferred[bool]:
        """
        Delete a user, their tokens and their personal account.

        :return: whether such a user existed.
        """

    def get_password_hash(username: str) -> Deferred[tuple[User, str | None] | None]:
        """
        The user and their stored password hash (``None`` when no password is
        set), or ``None`` when there is no such user.
        """

    def set_password_hash(username: str, password_hash: str | None) -> Deferred[None]:
        """
        Replace the stored password hash (``None`` disables password login).

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        """

    def add_token(user_id: str, token_hash: str, name: str) -> Deferred[TokenInfo]:
        """
        Record a bearer token by its hash.

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        """

    def find_token(token_hash: str) -> Deferred[tuple[User, TokenInfo] | None]:
        """
        The user and token record for a token hash, or ``None`` when the
        token is unknown or revoked.
        """

    def list_tokens(user_id: str) -> Deferred[list[TokenInfo]]:
        """
        The live tokens of a user, oldest first.
        """

    def revoke_token(token_id: str) -> Deferred[bool]:
        """
        Revoke a token at once.

        :return: whether such a token existed.
        """

    def accounts_for_user(user_id: str) -> Deferred[list[Account]]:
        """
        Every account the user may access, their personal account first.
        """


class IBlobStore(Interface):
    """
    Binary data scoped to accounts (RFC 8620 §6).

    Blob ids are derived from the content, so storing the same octets twice
    in one account yields the same id; a blob is visible only to the accounts
    it was stored for.  Implementations:
    :class:`jmap_twisted.store.memory.MemoryBlobStore`,
    :class:`jmap_twisted.store.sqlite.SQLiteBlobStore`.
    """

    def put(account_id: str, data: bytes, type: str) -> Deferred[BlobInfo]:
        """
        Store octets for an account.
        """

    def get(account_id: str, blob_id: str) -> Deferred[tuple[BlobInfo, bytes] | None]:
        """
        The blob's metadata and octets, or ``None`` when the account has no
        such blob (whether or not another account has it).
        """


class IBearerToken(ICredentials):
    """
    An opaque bearer token presented with ``Authorization: Bearer``.
    """

    token = Attribute(":class:`str`, the token as presented.")


class IPrincipal(Interface):
    """
    The avatar of an authenticated user, returned by the realm.
    """

    user = Attribute(":class:`jmap_twisted.records.User` who logged in.")
    accounts = Attribute(
        "Tuple of :class:`jmap_twisted.records.Account` the user may access, "
        "their personal account first."
    )
