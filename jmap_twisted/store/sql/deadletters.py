"""
Dead letters in an SQL database (SQLite or PostgreSQL), so that they
survive restarts and the ``jmap-admin`` command can list them and mark them
for redelivery while servers run on the same database: :class:`SQLDeadLetters`.

Each letter is one row of table ``dead_letters``: its group, insertion id,
the event as :func:`jmap_twisted.bus.events.to_json` serialises it, the
time it was stored and whether an operator asked for its redelivery.  The
event's type and account id are copied into columns of their own, so that
letters can be listed without reading the events.
"""

from __future__ import annotations

import json
import secrets

from attrs import frozen
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jmap_twisted.bus.events import UnknownEvent, from_json, to_json
from jmap_twisted.interfaces import IEvent, IEventDeadLetters
from jmap_twisted.store.sql.mail import Database
from jmap_twisted.store.sql.query import SQLConnection


@frozen
class DeadLetterSummary:
    """
    What is shown of a dead letter without its event's content.

    :ivar insertion_id: names the letter within its group.
    :ivar created: POSIX time the letter was stored.
    :ivar event_type: the event's type (``StateChange``, ``MailboxChanged``).
    :ivar account_id: the account the event concerns, if any.
    :ivar redeliver_requested: an operator marked it for redelivery.
    """

    insertion_id: str
    created: float
    event_type: str
    account_id: str | None
    redeliver_requested: bool


# Transactions; they run in the database's threads.


def _store(
    db: SQLConnection,
    group: str,
    event_type: str,
    account_id: str | None,
    data: str,
    now: float,
) -> str:
    insertion_id = secrets.token_hex(8)
    db.execute(
        "INSERT INTO dead_letters"
        " (insertion_id, group_name, event_type, account_id, event, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (insertion_id, group, event_type, account_id, data, now),
    )
    return insertion_id


def _groups(db: SQLConnection) -> list[str]:
    rows = db.execute("SELECT DISTINCT group_name FROM dead_letters ORDER BY group_name")
    return [group for (group,) in rows]


def _group_counts(db: SQLConnection) -> list[tuple[str, int]]:
    rows = db.execute(
        "SELECT group_name, count(*) FROM dead_letters GROUP BY group_name ORDER BY group_name"
    )
    return [(group, count) for group, count in rows]


def _ids(db: SQLConnection, group: str) -> list[str]:
    rows = db.execute(
        "SELECT insertion_id FROM dead_letters WHERE group_name = ? ORDER BY num", (group,)
    )
    return [insertion_id for (insertion_id,) in rows]


def _summaries(db: SQLConnection, group: str) -> list[DeadLetterSummary]:
    rows = db.execute(
        "SELECT insertion_id, created, event_type, account_id, redeliver_requested"
        " FROM dead_letters WHERE group_name = ? ORDER BY num",
        (group,),
    )
    return [
        DeadLetterSummary(
            insertion_id=insertion_id,
            created=created,
            event_type=event_type,
            account_id=account_id,
            redeliver_requested=bool(requested),
        )
        for insertion_id, created, event_type, account_id, requested in rows
    ]


def _fetch(db: SQLConnection, group: str, insertion_id: str) -> str | None:
    row = db.execute(
        "SELECT event FROM dead_letters WHERE group_name = ? AND insertion_id = ?",
        (group, insertion_id),
    ).fetchone()
    return None if row is None else str(row[0])


def _remove(db: SQLConnection, group: str, insertion_id: str) -> None:
    db.execute(
        "DELETE FROM dead_letters WHERE group_name = ? AND insertion_id = ?", (group, insertion_id)
    )


def _request_redelivery(db: SQLConnection, group: str, insertion_id: str | None) -> int:
    if insertion_id is None:
        cursor = db.execute(
            "UPDATE dead_letters SET redeliver_requested = 1 WHERE group_name = ?", (group,)
        )
    else:
        cursor = db.execute(
            "UPDATE dead_letters SET redeliver_requested = 1"
            " WHERE group_name = ? AND insertion_id = ?",
            (group, insertion_id),
        )
    return cursor.rowcount


def _requested(db: SQLConnection) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT group_name, insertion_id FROM dead_letters"
        " WHERE redeliver_requested = 1 ORDER BY num"
    )
    return [(group, insertion_id) for group, insertion_id in rows]


@implementer(IEventDeadLetters)
class SQLDeadLetters:
    """
    :class:`~jmap_twisted.interfaces.IEventDeadLetters` in an SQL database.

    Every call is one transaction, without caching, so letters stored or
    marked by another process over the same database are seen by the next
    call.
    Insertion ids are random (never reused), letters are listed in the
    order they were stored, and marking a letter again counts it again.

    :param db: the started database.
    :param clock: gives the time a letter was stored.
    """

    def __init__(self, db: Database, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock

    def store(self, group: str, event: IEvent) -> Deferred[str]:
        """
        Keep a failed event; return its insertion id.

        :raises jmap_twisted.bus.events.UnknownEvent: (in the Deferred) the
            event cannot be serialised.
        """
        try:
            data = to_json(event)
        except UnknownEvent:
            return fail()
        body = json.loads(data)
        account_id = body.get("accountId")
        return self._db.run(
            _store,
            group,
            str(body["type"]),
            None if account_id is None else str(account_id),
            data.decode(),
            self._clock.seconds(),
        )

    def groups(self) -> Deferred[list[str]]:
        return self._db.read(_groups)

    def group_counts(self) -> Deferred[list[tuple[str, int]]]:
        """
        Each group that has dead letters, by name, with how many it has.
        """
        return self._db.read(_group_counts)

    def ids(self, group: str) -> Deferred[list[str]]:
        return self._db.read(_ids, group)

    def summaries(self, group: str) -> Deferred[list[DeadLetterSummary]]:
        """
        What can be shown of a group's dead letters without their events'
        content, oldest first.
        """
        return self._db.read(_summaries, group)

    def fetch(self, group: str, insertion_id: str) -> Deferred[IEvent | None]:
        """
        One dead letter, or ``None``.

        :raises jmap_twisted.bus.events.UnknownEvent: the stored event is
            not one this version can read.
        """
        return self._db.read(_fetch, group, insertion_id).addCallback(_event)

    def remove(self, group: str, insertion_id: str) -> Deferred[None]:
        return self._db.run(_remove, group, insertion_id)

    def request_redelivery(self, group: str, insertion_id: str | None) -> Deferred[int]:
        return self._db.run(_request_redelivery, group, insertion_id)

    def requested(self) -> Deferred[list[tuple[str, str]]]:
        """
        The (group, insertion id) pairs marked for redelivery, oldest first.
        """
        return self._db.read(_requested)


def _event(data: str | None) -> IEvent | None:
    return None if data is None else from_json(data.encode())
