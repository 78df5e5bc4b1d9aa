# -*- test-case-name: tests.store.test_push_contract -*-
"""
Push subscriptions (RFC 8620 §7.2) and the server's VAPID key (RFC 8292)
over any SQL database of the project (SQLite or PostgreSQL):
:class:`SQLPushSubscriptions`.

The subscriptions live in table ``push_subscriptions``, next to the users
they belong to: deleting a user deletes them.  Every change bumps the one
row of ``push_subscriptions_version`` in its own transaction, so a node
that polls :meth:`SQLPushSubscriptions.version` reloads what it pushes to
after a subscription was added, changed or removed on any node.  The VAPID
key is row ``vapid`` of ``server_keys``; nodes starting together agree on
the first one stored (``INSERT … ON CONFLICT DO NOTHING``, then read back).

A subscription has expired at ``now`` when its ``expires`` is at or before
``now``; one without ``expires`` never does.  The SQL uses ``?``
placeholders (see :class:`~jmap_twisted.store.sql.query.SQLConnection`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted.interfaces import IPushSubscriptions
from jmap_twisted.records import PushSubscriptionRecord
from jmap_twisted.store.sql.mail import Database
from jmap_twisted.store.sql.query import SQLConnection

#: The row of ``server_keys`` holding the VAPID private key.
VAPID_KEY_NAME = "vapid"

_COLUMNS = (
    "id, user_id, device_client_id, url, p256dh, auth, verification_code, verified,"
    " expires, types, created"
)

# Transactions of SQLPushSubscriptions; they run in the database's threads.


def bump_push_version(db: SQLConnection) -> None:
    """
    Record a change to the push subscriptions, inside the changing
    transaction (the directory calls it when a deleted user takes theirs).
    """
    db.execute("UPDATE push_subscriptions_version SET version = version + 1")


def _record(row: Sequence[Any]) -> PushSubscriptionRecord:
    (id, user_id, device_client_id, url, p256dh, auth, code, verified, expires, types, created) = (
        row
    )
    return PushSubscriptionRecord(
        id=id,
        user_id=user_id,
        device_client_id=device_client_id,
        url=url,
        p256dh=None if p256dh is None else bytes(p256dh),
        auth=None if auth is None else bytes(auth),
        verification_code=code,
        verified=bool(verified),
        expires=expires,
        types=None if types is None else tuple(json.loads(types)),
        created=created,
    )


def _values(record: PushSubscriptionRecord) -> tuple[Any, ...]:
    """
    The columns of ``record`` after ``id`` and ``user_id``, as stored.
    """
    return (
        record.device_client_id,
        record.url,
        record.p256dh,
        record.auth,
        record.verification_code,
        int(record.verified),
        record.expires,
        None if record.types is None else json.dumps(list(record.types)),
        record.created,
    )


def _add(db: SQLConnection, record: PushSubscriptionRecord) -> None:
    db.execute(
        f"INSERT INTO push_subscriptions ({_COLUMNS})"  # noqa: S608 - constant columns
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.id, record.user_id, *_values(record)),
    )
    bump_push_version(db)


def _for_user(db: SQLConnection, user_id: str, order: str) -> list[PushSubscriptionRecord]:
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM push_subscriptions WHERE user_id = ?"  # noqa: S608
        f" ORDER BY created, {order}",
        (user_id,),
    )
    return [_record(row) for row in rows]


def _active(db: SQLConnection, now: float, order: str) -> list[PushSubscriptionRecord]:
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM push_subscriptions"  # noqa: S608
        " WHERE verified = 1 AND (expires IS NULL OR expires > ?)"
        f" ORDER BY created, {order}",
        (now,),
    )
    return [_record(row) for row in rows]


def _replace(db: SQLConnection, record: PushSubscriptionRecord) -> bool:
    cursor = db.execute(
        "UPDATE push_subscriptions SET device_client_id = ?, url = ?, p256dh = ?, auth = ?,"
        " verification_code = ?, verified = ?, expires = ?, types = ?, created = ?"
        " WHERE id = ? AND user_id = ?",
        (*_values(record), record.id, record.user_id),
    )
    if cursor.rowcount == 0:
        return False
    bump_push_version(db)
    return True


def _remove(db: SQLConnection, subscription_id: str, user_id: str | None) -> bool:
    if user_id is None:
        cursor = db.execute("DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,))
    else:
        cursor = db.execute(
            "DELETE FROM push_subscriptions WHERE id = ? AND user_id = ?",
            (subscription_id, user_id),
        )
    if cursor.rowcount == 0:
        return False
    bump_push_version(db)
    return True


def _remove_expired(db: SQLConnection, now: float) -> int:
    cursor = db.execute(
        "DELETE FROM push_subscriptions WHERE expires IS NOT NULL AND expires <= ?", (now,)
    )
    removed = int(cursor.rowcount)
    if removed:
        bump_push_version(db)
    return removed


def _version(db: SQLConnection) -> int:
    (version,) = db.execute("SELECT version FROM push_subscriptions_version").fetchone()
    return int(version)


def _vapid_key(db: SQLConnection) -> bytes | None:
    row = db.execute("SELECT value FROM server_keys WHERE name = ?", (VAPID_KEY_NAME,)).fetchone()
    return None if row is None else bytes(row[0])


def _set_vapid_key(db: SQLConnection, pem: bytes, only_if_unset: bool) -> bytes:
    if only_if_unset:
        # Waits for another node's insert in flight; the read below then
        # sees whichever key was committed first.
        db.execute(
            "INSERT INTO server_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (VAPID_KEY_NAME, pem),
        )
    else:
        db.execute(
            "INSERT INTO server_keys (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (VAPID_KEY_NAME, pem),
        )
    stored = _vapid_key(db)
    assert stored is not None, "the key was stored or kept in this transaction"
    return stored


@implementer(IPushSubscriptions)
class SQLPushSubscriptions:
    """
    :class:`~jmap_twisted.interfaces.IPushSubscriptions` in an SQL database,
    next to the :class:`~jmap_twisted.store.sql.directory.SQLDirectory`
    whose users the subscriptions belong to.

    Every call is one transaction, with no caching in this process.  The
    version moves only when a call changes something.

    :param db: the started database.
    """

    #: The column that orders subscriptions created at the same time.
    CREATION_ORDER = "rowid"

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: PushSubscriptionRecord) -> Deferred[None]:
        """
        Store a new subscription.

        :param record: a subscription of a user of the directory in the same
            database, with an id not stored yet; anything else fails with
            the driver's integrity error.
        """
        return self._db.run(_add, record)

    def for_user(self, user_id: str) -> Deferred[list[PushSubscriptionRecord]]:
        return self._db.read(_for_user, user_id, self.CREATION_ORDER)

    def active(self, now: float) -> Deferred[list[PushSubscriptionRecord]]:
        return self._db.read(_active, now, self.CREATION_ORDER)

    def replace(self, record: PushSubscriptionRecord) -> Deferred[bool]:
        return self._db.run(_replace, record)

    def remove(self, subscription_id: str, user_id: str | None = None) -> Deferred[bool]:
        return self._db.run(_remove, subscription_id, user_id)

    def remove_expired(self, now: float) -> Deferred[int]:
        return self._db.run(_remove_expired, now)

    def version(self) -> Deferred[int]:
        return self._db.read(_version)

    def vapid_key(self) -> Deferred[bytes | None]:
        return self._db.read(_vapid_key)

    def set_vapid_key(self, pem: bytes, only_if_unset: bool) -> Deferred[bytes]:
        return self._db.run(_set_vapid_key, bytes(pem), only_if_unset)
