"""
The directory and blob store over any SQL database of the project
(SQLite or PostgreSQL): :class:`SQLDirectory`, :class:`SQLBlobStore`.

Every call is one transaction on the database, with no caching in this
process: a change made by another process over the same database (a user
added or a token revoked with ``jmap-admin``, a delegation granted on
another node) is seen by the next call here.  Timestamps come from the
injected clock, read on the reactor thread.  The SQL uses ``?``
placeholders (see :class:`~jmap_twisted.store.sql.query.SQLConnection`).

Mailbox shares (:class:`~jmap_twisted.interfaces.IMailboxShares`) live in
tables ``mailbox_shares`` and ``share_views``.  Every change of a user's
rights in an account first locks their ``share_views`` row (creating it),
so concurrent changes for one sharee and account run one after the other
on PostgreSQL too; the generation is bumped only by a real change, and the
row outlives the shares so that a generation is never reused.  The
principals' log (``principal_changes``) is numbered by the single row of
``principal_version``, whose row lock orders its writers, so a reader
never sees an entry before an older one is committed.
"""

from __future__ import annotations

from collections.abc import Collection

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jmap_twisted import rights
from jmap_twisted.errors import NoSuchAccount, NoSuchUser, UserExists
from jmap_twisted.interfaces import IBlobStore, IDirectory, IMailboxShares
from jmap_twisted.records import (
    Account,
    BlobInfo,
    MailboxShare,
    SharedView,
    TokenInfo,
    User,
)
from jmap_twisted.store import ids
from jmap_twisted.store.sql.mail import Database
from jmap_twisted.store.sql.push import bump_push_version
from jmap_twisted.store.sql.query import SQLConnection

# Transactions of SQLDirectory; they run in the database's threads.


def _create_user(db: SQLConnection, username: str, password_hash: str | None, now: float) -> User:
    if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
        raise UserExists(username)
    user = User(id=ids.new_user_id(), username=username)
    db.execute(
        "INSERT INTO users (id, username, password_hash, created) VALUES (?, ?, ?, ?)",
        (user.id, username, password_hash, now),
    )
    db.execute(
        "INSERT INTO accounts (id, name, owner_id, is_personal, created) VALUES (?, ?, ?, 1, ?)",
        (ids.new_account_id(), username, user.id, now),
    )
    _log_principal(db, user.id, "created", now)
    return user


def _log_principal(db: SQLConnection, user_id: str, kind: str, now: float) -> None:
    db.execute("UPDATE principal_version SET seq = seq + 1")
    (seq,) = db.execute("SELECT seq FROM principal_version").fetchone()
    db.execute(
        "INSERT INTO principal_changes (seq, user_id, kind, created) VALUES (?, ?, ?, ?)",
        (seq, user_id, kind, now),
    )


def _get_user(db: SQLConnection, username: str) -> User | None:
    row = db.execute("SELECT id, username FROM users WHERE username = ?", (username,)).fetchone()
    return None if row is None else User(id=row[0], username=row[1])


def _get_user_by_id(db: SQLConnection, user_id: str) -> User | None:
    row = db.execute("SELECT id, username FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else User(id=row[0], username=row[1])


def _list_users(db: SQLConnection) -> list[User]:
    rows = db.execute("SELECT id, username FROM users ORDER BY username")
    return [User(id=user_id, username=username) for user_id, username in rows]


def _delete_user(db: SQLConnection, username: str, now: float) -> bool:
    row = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    if row is None:
        return False
    (user_id,) = row
    blob_ids = db.execute(
        "SELECT DISTINCT account_blobs.blob_id FROM account_blobs"
        " JOIN accounts ON accounts.id = account_blobs.account_id"
        " WHERE accounts.owner_id = ?",
        (user_id,),
    ).fetchall()
    delegates = [
        delegate
        for (delegate,) in db.execute(
            "SELECT delegations.user_id FROM delegations"
            " JOIN accounts ON accounts.id = delegations.account_id WHERE accounts.owner_id = ?",
            (user_id,),
        )
    ]
    sharees = [
        sharee
        for (sharee,) in db.execute(
            "SELECT DISTINCT mailbox_shares.user_id FROM mailbox_shares"
            " JOIN accounts ON accounts.id = mailbox_shares.account_id"
            " WHERE accounts.owner_id = ?",
            (user_id,),
        )
    ]
    db.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))
    db.execute("DELETE FROM delegations WHERE user_id = ?", (user_id,))  # delegated to them
    db.execute("DELETE FROM mailbox_shares WHERE user_id = ?", (user_id,))  # shared with them
    db.execute("DELETE FROM share_views WHERE user_id = ?", (user_id,))
    # Every node stops pushing to their subscriptions.
    if db.execute("DELETE FROM push_subscriptions WHERE user_id = ?", (user_id,)).rowcount:
        bump_push_version(db)
    # Cascades to account_blobs and to the delegations, shares and share
    # views of their accounts.
    db.execute("DELETE FROM accounts WHERE owner_id = ?", (user_id,))
    db.execute("DELETE FROM users WHERE id = ?", (user_id,))
    _bump_access_version(db, *sorted({user_id, *delegates, *sharees}))
    _log_principal(db, user_id, "destroyed", now)
    # Octets no other account refers to any more go with the user.
    db.executemany(
        "DELETE FROM blobs WHERE id = ?"
        " AND NOT EXISTS (SELECT 1 FROM account_blobs WHERE blob_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM emails WHERE blob_id = ?)",
        [(blob_id,) * 3 for (blob_id,) in blob_ids],
    )
    return True


def _get_password_hash(db: SQLConnection, username: str) -> tuple[User, str | None] | None:
    row = db.execute(
        "SELECT id, username, password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()
    return None if row is None else (User(id=row[0], username=row[1]), row[2])


def _set_password_hash(db: SQLConnection, username: str, password_hash: str | None) -> None:
    cursor = db.execute(
        "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
    )
    if cursor.rowcount == 0:
        raise NoSuchUser(username)
    (user_id,) = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    _bump_access_version(db, user_id)


def _add_token(
    db: SQLConnection, user_id: str, token_hash: str, name: str, now: float
) -> TokenInfo:
    if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
        raise NoSuchUser(user_id)
    if db.execute("SELECT 1 FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone():
        raise ValueError("this token hash is already recorded")
    token = TokenInfo(id=ids.new_token_id(), user_id=user_id, name=name, created=now)
    db.execute(
        "INSERT INTO tokens (id, user_id, token_hash, name, created) VALUES (?, ?, ?, ?, ?)",
        (token.id, user_id, token_hash, name, now),
    )
    return token


def _find_token(db: SQLConnection, token_hash: str) -> tuple[User, TokenInfo] | None:
    row = db.execute(
        "SELECT tokens.id, tokens.user_id, tokens.name, tokens.created, users.username"
        " FROM tokens JOIN users ON users.id = tokens.user_id"
        " WHERE tokens.token_hash = ?",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    token_id, user_id, name, created, username = row
    return (
        User(id=user_id, username=username),
        TokenInfo(id=token_id, user_id=user_id, name=name, created=created),
    )


def _list_tokens(db: SQLConnection, user_id: str, creation_order: str) -> list[TokenInfo]:
    rows = db.execute(
        f"SELECT id, user_id, name, created FROM tokens WHERE user_id = ?"  # noqa: S608
        f" ORDER BY created, {creation_order}",
        (user_id,),
    )
    return [TokenInfo(id=row[0], user_id=row[1], name=row[2], created=row[3]) for row in rows]


def _revoke_token(db: SQLConnection, token_id: str) -> bool:
    row = db.execute("SELECT user_id FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        return False
    db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
    _bump_access_version(db, row[0])
    return True


def _accounts_for_user(db: SQLConnection, user_id: str) -> list[Account]:
    owned = db.execute(
        "SELECT id, name, owner_id FROM accounts WHERE owner_id = ?"
        " ORDER BY is_personal DESC, created, id",
        (user_id,),
    ).fetchall()
    delegated = db.execute(
        "SELECT accounts.id, accounts.name, accounts.owner_id FROM delegations"
        " JOIN accounts ON accounts.id = delegations.account_id"
        " JOIN users ON users.id = accounts.owner_id"
        " WHERE delegations.user_id = ?"
        " ORDER BY users.username, accounts.created, accounts.id",
        (user_id,),
    ).fetchall()
    return [Account(id=row[0], name=row[1], owner_id=row[2]) for row in owned + delegated]


#: Access changes remembered per user; older ones make
#: ``access_changes_since`` answer "everyone".
ACCESS_CHANGES_KEPT = 10_000


def _bump_access_version(db: SQLConnection, *user_ids: str) -> None:
    db.execute("UPDATE access_version SET version = version + 1")
    (version,) = db.execute("SELECT version FROM access_version").fetchone()
    db.executemany(
        "INSERT INTO access_changes (version, user_id) VALUES (?, ?)",
        [(version, user_id) for user_id in user_ids],
    )
    db.execute("DELETE FROM access_changes WHERE version <= ?", (version - ACCESS_CHANGES_KEPT,))


def _access_changes_since(db: SQLConnection, since: int) -> list[str] | None:
    (current,) = db.execute("SELECT version FROM access_version").fetchone()
    if since >= current:
        return []
    (oldest,) = db.execute("SELECT MIN(version) FROM access_changes").fetchone()
    if oldest is None or oldest > since + 1:
        return None  # some changes in between are no longer known
    rows = db.execute(
        "SELECT DISTINCT user_id FROM access_changes WHERE version > ? ORDER BY user_id", (since,)
    )
    return [user_id for (user_id,) in rows]


def _user_id(db: SQLConnection, username: str) -> str | None:
    row = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    return None if row is None else str(row[0])


def _personal_account_id(db: SQLConnection, username: str) -> str | None:
    row = db.execute(
        "SELECT accounts.id FROM accounts JOIN users ON users.id = accounts.owner_id"
        " WHERE users.username = ? AND accounts.is_personal = 1",
        (username,),
    ).fetchone()
    return None if row is None else str(row[0])


def _delegate(db: SQLConnection, owner: str, delegate: str, now: float) -> None:
    account_id = _personal_account_id(db, owner)
    if account_id is None:
        raise NoSuchUser(owner)
    delegate_id = _user_id(db, delegate)
    if delegate_id is None:
        raise NoSuchUser(delegate)
    cursor = db.execute(
        "INSERT INTO delegations (account_id, user_id, created) VALUES (?, ?, ?)"
        " ON CONFLICT (account_id, user_id) DO NOTHING",
        (account_id, delegate_id, now),
    )
    if cursor.rowcount > 0:
        _bump_access_version(db, delegate_id)


def _revoke_delegation(db: SQLConnection, owner: str, delegate: str) -> bool:
    account_id = _personal_account_id(db, owner)
    delegate_id = _user_id(db, delegate)
    if account_id is None or delegate_id is None:
        return False
    cursor = db.execute(
        "DELETE FROM delegations WHERE account_id = ? AND user_id = ?", (account_id, delegate_id)
    )
    if cursor.rowcount == 0:
        return False
    _bump_access_version(db, delegate_id)
    return True


def _delegations(db: SQLConnection, owner: str) -> list[User]:
    account_id = _personal_account_id(db, owner)
    if account_id is None:
        raise NoSuchUser(owner)
    rows = db.execute(
        "SELECT users.id, users.username FROM delegations"
        " JOIN users ON users.id = delegations.user_id"
        " WHERE delegations.account_id = ? ORDER BY users.username",
        (account_id,),
    )
    return [User(id=user_id, username=username) for user_id, username in rows]


def _access_version(db: SQLConnection) -> int:
    (version,) = db.execute("SELECT version FROM access_version").fetchone()
    return int(version)


def _set_rights(
    db: SQLConnection,
    account_id: str,
    mailbox_id: str,
    user_id: str,
    letters: str,
    granted_by: str | None,
    now: float,
) -> tuple[str, str]:
    row = db.execute("SELECT owner_id FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise NoSuchAccount(account_id)
    if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
        raise NoSuchUser(user_id)
    if row[0] == user_id:
        raise ValueError("a mailbox cannot be shared with its account's owner")
    # Lock the sharee's view of the account (see the module's documentation).
    db.execute(
        "INSERT INTO share_views (account_id, user_id, generation, subscriptions)"
        " VALUES (?, ?, 0, 0)"
        " ON CONFLICT (account_id, user_id) DO UPDATE SET generation = share_views.generation",
        (account_id, user_id),
    )
    key = (account_id, mailbox_id, user_id)
    row = db.execute(
        "SELECT rights FROM mailbox_shares WHERE account_id = ? AND mailbox_id = ? AND user_id = ?",
        key,
    ).fetchone()
    old = "" if row is None else str(row[0])
    if old == letters:
        return old, letters
    if not letters:
        db.execute(
            "DELETE FROM mailbox_shares WHERE account_id = ? AND mailbox_id = ? AND user_id = ?",
            key,
        )
    elif row is None:
        db.execute(
            "INSERT INTO mailbox_shares"
            " (account_id, mailbox_id, user_id, rights, subscribed, granted_by, created)"
            " VALUES (?, ?, ?, ?, 1, ?, ?)",
            (*key, letters, granted_by, now),
        )
    else:
        db.execute(
            "UPDATE mailbox_shares SET rights = ?, granted_by = ?"
            " WHERE account_id = ? AND mailbox_id = ? AND user_id = ?",
            (letters, granted_by, *key),
        )
    db.execute(
        "UPDATE share_views SET generation = generation + 1 WHERE account_id = ? AND user_id = ?",
        (account_id, user_id),
    )
    _bump_access_version(db, user_id)
    return old, letters


def _share(account_id: str, row: tuple[str, str, str, int]) -> MailboxShare:
    mailbox_id, user_id, letters, subscribed = row
    return MailboxShare(
        account_id=account_id,
        mailbox_id=mailbox_id,
        user_id=user_id,
        rights=letters,
        subscribed=bool(subscribed),
    )


def _shares_of_account(db: SQLConnection, account_id: str) -> list[MailboxShare]:
    rows = db.execute(
        "SELECT mailbox_id, user_id, rights, subscribed FROM mailbox_shares"
        " WHERE account_id = ? ORDER BY mailbox_id, user_id",
        (account_id,),
    )
    return [_share(account_id, row) for row in rows]


#: Mailbox ids per statement of ``shares_of_mailboxes``.
MAILBOX_BATCH = 500


def _shares_of_mailboxes(
    db: SQLConnection, account_id: str, mailbox_ids: list[str]
) -> list[tuple[MailboxShare, int]]:
    found: list[tuple[MailboxShare, int]] = []
    for start in range(0, len(mailbox_ids), MAILBOX_BATCH):
        batch = mailbox_ids[start : start + MAILBOX_BATCH]
        rows = db.execute(
            "SELECT mailbox_shares.mailbox_id, mailbox_shares.user_id, mailbox_shares.rights,"  # noqa: S608 - placeholders only
            " mailbox_shares.subscribed, share_views.generation"
            " FROM mailbox_shares JOIN share_views"
            " ON share_views.account_id = mailbox_shares.account_id"
            " AND share_views.user_id = mailbox_shares.user_id"
            " WHERE mailbox_shares.account_id = ?"
            f" AND mailbox_shares.mailbox_id IN ({', '.join('?' * len(batch))})",
            (account_id, *batch),
        )
        found.extend((_share(account_id, row[:4]), int(row[4])) for row in rows)
    return sorted(found, key=lambda pair: (pair[0].mailbox_id, pair[0].user_id))


def _shared_views_for_user(db: SQLConnection, user_id: str) -> list[tuple[Account, SharedView]]:
    # Canonical order puts l first: a share with l has rights LIKE 'l%'.
    accounts = db.execute(
        "SELECT accounts.id, accounts.name, accounts.owner_id,"
        " share_views.generation, share_views.subscriptions"
        " FROM share_views"
        " JOIN accounts ON accounts.id = share_views.account_id"
        " JOIN users ON users.id = accounts.owner_id"
        " WHERE share_views.user_id = ? AND accounts.owner_id <> ?"
        " AND NOT EXISTS (SELECT 1 FROM delegations"
        "  WHERE delegations.account_id = accounts.id AND delegations.user_id = ?)"
        " AND EXISTS (SELECT 1 FROM mailbox_shares"
        "  WHERE mailbox_shares.account_id = accounts.id AND mailbox_shares.user_id = ?"
        "  AND mailbox_shares.rights LIKE 'l%')"
        " ORDER BY users.username, accounts.created, accounts.id",
        (user_id,) * 4,
    ).fetchall()
    letters: dict[str, list[tuple[str, str]]] = {}
    for account_id, mailbox_id, granted in db.execute(
        "SELECT account_id, mailbox_id, rights FROM mailbox_shares"
        " WHERE user_id = ? ORDER BY account_id, mailbox_id",
        (user_id,),
    ):
        letters.setdefault(account_id, []).append((mailbox_id, granted))
    return [
        (
            Account(id=account_id, name=name, owner_id=owner_id),
            SharedView(
                generation=int(generation),
                subscriptions=int(subscriptions),
                rights=tuple(letters[account_id]),
            ),
        )
        for account_id, name, owner_id, generation, subscriptions in accounts
    ]


def _set_subscribed(
    db: SQLConnection, account_id: str, mailbox_id: str, user_id: str, subscribed: bool
) -> bool:
    key = (account_id, mailbox_id, user_id)
    cursor = db.execute(
        "UPDATE mailbox_shares SET subscribed = ?"
        " WHERE account_id = ? AND mailbox_id = ? AND user_id = ? AND subscribed <> ?",
        (int(subscribed), *key, int(subscribed)),
    )
    if cursor.rowcount == 0:
        row = db.execute(
            "SELECT 1 FROM mailbox_shares WHERE account_id = ? AND mailbox_id = ? AND user_id = ?",
            key,
        ).fetchone()
        return row is not None
    db.execute(
        "UPDATE share_views SET subscriptions = subscriptions + 1"
        " WHERE account_id = ? AND user_id = ?",
        (account_id, user_id),
    )
    _bump_access_version(db, user_id)
    return True


def _forget_mailbox(db: SQLConnection, account_id: str, mailbox_id: str) -> list[str]:
    sharees = [
        user_id
        for (user_id,) in db.execute(
            "SELECT user_id FROM mailbox_shares WHERE account_id = ? AND mailbox_id = ?"
            " ORDER BY user_id",
            (account_id, mailbox_id),
        )
    ]
    if not sharees:
        return []
    db.executemany(
        "DELETE FROM mailbox_shares WHERE account_id = ? AND mailbox_id = ? AND user_id = ?",
        [(account_id, mailbox_id, user_id) for user_id in sharees],
    )
    db.executemany(
        "UPDATE share_views SET generation = generation + 1 WHERE account_id = ? AND user_id = ?",
        [(account_id, user_id) for user_id in sharees],
    )
    _bump_access_version(db, *sharees)
    return sharees


def _principal_state(db: SQLConnection) -> int:
    (seq,) = db.execute("SELECT seq FROM principal_version").fetchone()
    return int(seq)


def _principal_changes_since(db: SQLConnection, since: int) -> list[tuple[int, str, str]]:
    rows = db.execute(
        "SELECT seq, user_id, kind FROM principal_changes WHERE seq > ? ORDER BY seq", (since,)
    )
    return [(int(seq), user_id, kind) for seq, user_id, kind in rows]


@implementer(IDirectory, IMailboxShares)
class SQLDirectory:
    """
    :class:`~jmap_twisted.interfaces.IDirectory` and
    :class:`~jmap_twisted.interfaces.IMailboxShares` in an SQL database.

    Deleting a user also deletes the blobs that only their accounts stored,
    the delegations and mailbox shares of their accounts and to them, and
    their push subscriptions (see :mod:`jmap_twisted.store.sql.push`).

    :param db: the started database.
    :param clock: gives the ``created`` time of users, accounts, tokens and
        delegations.
    """

    #: The column that orders tokens created at the same time.
    TOKEN_CREATION_ORDER = "rowid"  # noqa: S105 - a column name

    def __init__(self, db: Database, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock

    def create_user(self, username: str, password_hash: str | None) -> Deferred[User]:
        return self._db.run(_create_user, username, password_hash, self._clock.seconds())

    def get_user(self, username: str) -> Deferred[User | None]:
        return self._db.read(_get_user, username)

    def get_user_by_id(self, user_id: str) -> Deferred[User | None]:
        return self._db.read(_get_user_by_id, user_id)

    def list_users(self) -> Deferred[list[User]]:
        return self._db.read(_list_users)

    def delete_user(self, username: str) -> Deferred[bool]:
        return self._db.run(_delete_user, username, self._clock.seconds())

    def get_password_hash(self, username: str) -> Deferred[tuple[User, str | None] | None]:
        return self._db.read(_get_password_hash, username)

    def set_password_hash(self, username: str, password_hash: str | None) -> Deferred[None]:
        return self._db.run(_set_password_hash, username, password_hash)

    def add_token(self, user_id: str, token_hash: str, name: str) -> Deferred[TokenInfo]:
        """
        Record a bearer token by its hash.

        :raises jmap_twisted.errors.NoSuchUser: no such user.
        :raises ValueError: the hash is already recorded (two tokens with the
            same hash cannot both be issued by :func:`~jmap_twisted.auth.passwords.new_token`).
        """
        return self._db.run(_add_token, user_id, token_hash, name, self._clock.seconds())

    def find_token(self, token_hash: str) -> Deferred[tuple[User, TokenInfo] | None]:
        return self._db.read(_find_token, token_hash)

    def list_tokens(self, user_id: str) -> Deferred[list[TokenInfo]]:
        return self._db.read(_list_tokens, user_id, self.TOKEN_CREATION_ORDER)

    def revoke_token(self, token_id: str) -> Deferred[bool]:
        """
        Revoke a token at once: its record is deleted.

        :return: whether such a token existed.
        """
        return self._db.run(_revoke_token, token_id)

    def accounts_for_user(self, user_id: str) -> Deferred[list[Account]]:
        return self._db.read(_accounts_for_user, user_id)

    def delegate(self, owner: str, delegate: str) -> Deferred[None]:
        if owner == delegate:
            return fail(ValueError("an account cannot be delegated to its owner"))
        return self._db.run(_delegate, owner, delegate, self._clock.seconds())

    def revoke_delegation(self, owner: str, delegate: str) -> Deferred[bool]:
        return self._db.run(_revoke_delegation, owner, delegate)

    def delegations(self, owner: str) -> Deferred[list[User]]:
        return self._db.read(_delegations, owner)

    def access_version(self) -> Deferred[int]:
        """
        The access version, kept in the database so that every process
        sharing it sees every change.
        """
        return self._db.read(_access_version)

    def access_changes_since(self, version: int) -> Deferred[list[str] | None]:
        return self._db.read(_access_changes_since, version)

    def set_rights(
        self, account_id: str, mailbox_id: str, user_id: str, letters: str, granted_by: str | None
    ) -> Deferred[tuple[str, str]]:
        try:
            letters = rights.share_letters(mailbox_id, letters)
        except ValueError as error:
            return fail(error)
        return self._db.run(
            _set_rights,
            account_id,
            mailbox_id,
            user_id,
            letters,
            granted_by,
            self._clock.seconds(),
        )

    def shares_of_account(self, account_id: str) -> Deferred[list[MailboxShare]]:
        return self._db.read(_shares_of_account, account_id)

    def shares_of_mailboxes(
        self, account_id: str, mailbox_ids: Collection[str]
    ) -> Deferred[list[tuple[MailboxShare, int]]]:
        return self._db.read(_shares_of_mailboxes, account_id, sorted(set(mailbox_ids)))

    def shared_views_for_user(self, user_id: str) -> Deferred[list[tuple[Account, SharedView]]]:
        return self._db.read(_shared_views_for_user, user_id)

    def set_subscribed(
        self, account_id: str, mailbox_id: str, user_id: str, subscribed: bool
    ) -> Deferred[bool]:
        return self._db.run(_set_subscribed, account_id, mailbox_id, user_id, subscribed)

    def forget_mailbox(self, account_id: str, mailbox_id: str) -> Deferred[list[str]]:
        return self._db.run(_forget_mailbox, account_id, mailbox_id)

    def principal_state(self) -> Deferred[int]:
        return self._db.read(_principal_state)

    def principal_changes_since(self, since: int) -> Deferred[list[tuple[int, str, str]]]:
        return self._db.read(_principal_changes_since, since)


# Transactions of SQLBlobStore.


def _put_blob(db: SQLConnection, account_id: str, data: bytes, type: str, now: float) -> BlobInfo:
    blob_id = ids.blob_id(data)  # hashed here, in the writer thread
    db.execute(
        "INSERT INTO blobs (id, size, data) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET size = excluded.size",
        (blob_id, len(data), data),
    )
    db.execute(
        "INSERT INTO account_blobs (account_id, blob_id, type, created) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (account_id, blob_id)"
        " DO UPDATE SET type = excluded.type, created = excluded.created",
        (account_id, blob_id, type, now),
    )
    return BlobInfo(account_id=account_id, blob_id=blob_id, size=len(data), type=type)


def _get_blob(db: SQLConnection, account_id: str, blob_id: str) -> tuple[BlobInfo, bytes] | None:
    row = db.execute(
        "SELECT blobs.size, account_blobs.type, blobs.data"
        " FROM account_blobs JOIN blobs ON blobs.id = account_blobs.blob_id"
        " WHERE account_blobs.account_id = ? AND account_blobs.blob_id = ?",
        (account_id, blob_id),
    ).fetchone()
    if row is None:
        return None
    size, type, data = row
    return BlobInfo(account_id=account_id, blob_id=blob_id, size=size, type=type), bytes(data)


@implementer(IBlobStore)
class SQLBlobStore:
    """
    :class:`~jmap_twisted.interfaces.IBlobStore` in an SQL database.

    The octets are stored once per content (table ``blobs``); table
    ``account_blobs`` says which accounts stored them, with which media type
    and when.  Storing octets an account already has replaces the type and
    the time.

    :param db: the started database, shared with the
        :class:`SQLDirectory` whose accounts the blobs belong to.
    :param clock: gives the time a blob was stored.
    """

    def __init__(self, db: Database, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock

    def put(self, account_id: str, data: bytes, type: str) -> Deferred[BlobInfo]:
        """
        Store octets for an account.

        :param account_id: an account of the directory in the same database;
            an unknown account fails with the driver's integrity error.
        """
        return self._db.run(_put_blob, account_id, bytes(data), type, self._clock.seconds())

    def get(self, account_id: str, blob_id: str) -> Deferred[tuple[BlobInfo, bytes] | None]:
        return self._db.read(_get_blob, account_id, blob_id)
