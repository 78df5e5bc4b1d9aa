# -*- test-case-name: tests.store.test_tickets_contract -*-
"""
Tickets over any SQL database of the project (SQLite or PostgreSQL):
:class:`SQLTickets`, shared by every node of a cluster so that a ticket one
node issued is redeemed on any other.

Table ``tickets`` holds one row per ticket, keyed by the SHA-256 of its
value.  Redeeming reads the row and then changes it only if its
``generation`` is still the one read (a compare-and-set): of two nodes
redeeming one ticket at once, exactly one wins, under SQLite's single
writer and under PostgreSQL's READ COMMITTED alike.  The SQL uses ``?``
placeholders (see :class:`~jmap_twisted.store.sql.query.SQLConnection`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from jmap_twisted.interfaces import ITicketStore
from jmap_twisted.records import TicketClaim, TicketRecord
from jmap_twisted.store.memory.tickets import takeable
from jmap_twisted.store.sql.mail import Database
from jmap_twisted.store.sql.query import SQLConnection

_COLUMNS = (
    "digest, user_id, expires, client, origin, issued, stream, holder, held_until,"
    " holder_client, generation"
)
#: Holders renewed per statement.
_BATCH = 500


def _record(row: Sequence[Any]) -> tuple[TicketRecord, int]:
    (digest, user_id, expires, client, origin, issued, stream, holder, held, holder_client, gen) = (
        row
    )
    ticket = TicketRecord(
        digest=digest,
        user_id=user_id,
        expires=float(expires),
        client=client,
        origin=None if origin is None else tuple(json.loads(origin)),
        issued=float(issued),
        stream=bool(stream),
        holder=holder,
        held_until=float(held),
        holder_client=holder_client,
    )
    return ticket, int(gen)


def _add(db: SQLConnection, ticket: TicketRecord, per_user: int) -> None:
    now = ticket.issued
    db.execute("DELETE FROM tickets WHERE expires <= ?", (now,))
    db.execute(
        f"INSERT INTO tickets ({_COLUMNS})"  # noqa: S608 - constant columns
        " VALUES (?, ?, ?, ?, ?, ?, 0, NULL, 0, NULL, 0)",
        (
            ticket.digest,
            ticket.user_id,
            ticket.expires,
            ticket.client,
            None if ticket.origin is None else json.dumps(list(ticket.origin)),
            ticket.issued,
        ),
    )
    idle = db.execute(
        "SELECT digest FROM tickets WHERE user_id = ? AND digest <> ?"
        " AND (holder IS NULL OR held_until <= ?) ORDER BY issued DESC, digest DESC",
        (ticket.user_id, ticket.digest, now),
    ).fetchall()
    # The new ticket stays; the oldest of the rest go.
    for (digest,) in idle[max(0, per_user - 1) :]:
        db.execute("DELETE FROM tickets WHERE digest = ?", (digest,))


def _claim(db: SQLConnection, claim: TicketClaim) -> TicketRecord | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM tickets WHERE digest = ?",  # noqa: S608 - constant columns
        (claim.digest,),
    ).fetchone()
    if row is None:
        return None
    ticket, generation = _record(row)
    if not takeable(ticket, claim):
        if ticket.expires <= claim.now:
            db.execute(
                "DELETE FROM tickets WHERE digest = ? AND generation = ?",
                (claim.digest, generation),
            )
        return None
    if claim.stream:
        cursor = db.execute(
            "UPDATE tickets SET stream = 1, holder = ?, held_until = ?, holder_client = ?,"
            " expires = ?, generation = generation + 1 WHERE digest = ? AND generation = ?",
            (
                claim.holder,
                claim.hold_until,
                claim.client,
                claim.expires,
                claim.digest,
                generation,
            ),
        )
    else:
        cursor = db.execute(
            "DELETE FROM tickets WHERE digest = ? AND generation = ?",
            (claim.digest, generation),
        )
    return ticket if cursor.rowcount == 1 else None


def _refresh(
    db: SQLConnection, holders: Sequence[str], hold_until: float, expires: float
) -> frozenset[str]:
    kept: set[str] = set()
    for start in range(0, len(holders), _BATCH):
        batch = list(holders[start : start + _BATCH])
        marks = ", ".join("?" for _ in batch)
        db.execute(
            "UPDATE tickets SET held_until = ?, expires = ?"  # noqa: S608 - placeholders
            f" WHERE holder IN ({marks})",
            (hold_until, expires, *batch),
        )
        rows = db.execute(
            f"SELECT holder FROM tickets WHERE holder IN ({marks})",  # noqa: S608
            tuple(batch),
        ).fetchall()
        kept.update(holder for (holder,) in rows)
    return frozenset(kept)


def _release(db: SQLConnection, digest: str, holder: str, expires: float) -> bool:
    cursor = db.execute(
        "UPDATE tickets SET holder = NULL, held_until = 0, holder_client = NULL, expires = ?,"
        " generation = generation + 1 WHERE digest = ? AND holder = ?",
        (expires, digest, holder),
    )
    return bool(cursor.rowcount)


def _revoke(db: SQLConnection, digest: str, user_id: str) -> bool:
    cursor = db.execute("DELETE FROM tickets WHERE digest = ? AND user_id = ?", (digest, user_id))
    return bool(cursor.rowcount)


def _remove_expired(db: SQLConnection, now: float) -> int:
    cursor = db.execute(
        "DELETE FROM tickets WHERE expires <= ? AND (holder IS NULL OR held_until <= ?)",
        (now, now),
    )
    return int(cursor.rowcount)


@implementer(ITicketStore)
class SQLTickets:
    """
    :class:`~jmap_twisted.interfaces.ITicketStore` in an SQL database; every
    call is one transaction.

    :param db: the started database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_ticket(self, ticket: TicketRecord, per_user: int) -> Deferred[None]:
        return self._db.run(_add, ticket, per_user)

    def claim_ticket(self, claim: TicketClaim) -> Deferred[TicketRecord | None]:
        return self._db.run(_claim, claim)

    def refresh_holds(
        self, holders: Sequence[str], hold_until: float, expires: float
    ) -> Deferred[frozenset[str]]:
        return self._db.run(_refresh, tuple(holders), hold_until, expires)

    def release_ticket(self, digest: str, holder: str, expires: float) -> Deferred[bool]:
        return self._db.run(_release, digest, holder, expires)

    def revoke_ticket(self, digest: str, user_id: str) -> Deferred[bool]:
        return self._db.run(_revoke, digest, user_id)

    def remove_expired_tickets(self, now: float) -> Deferred[int]:
        return self._db.run(_remove_expired, now)
