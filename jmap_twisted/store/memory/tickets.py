# -*- test-case-name: tests.store.test_tickets_contract -*-
"""
Tickets in memory: one process's :class:`~jmap_twisted.interfaces.ITicketStore`.

Same semantics as :mod:`jmap_twisted.store.sql.tickets`, checked by the same
contract tests; every method returns an already-fired Deferred.  Nodes
share tickets only if they share the object (a cluster uses the SQL store).
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import evolve
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jmap_twisted.interfaces import ITicketStore
from jmap_twisted.records import TicketClaim, TicketRecord


def takeable(ticket: TicketRecord, claim: TicketClaim) -> bool:
    """
    Whether ``claim`` may redeem ``ticket`` (both stores decide the same
    way; see :meth:`~jmap_twisted.interfaces.ITicketStore.claim_ticket`).
    """
    if ticket.expires <= claim.now:
        return False
    if claim.bound and ticket.client is not None and ticket.client != claim.client:
        return False
    if not claim.stream:
        return not ticket.stream
    if not ticket.stream or ticket.holder is None or ticket.held_until <= claim.now:
        return True
    return ticket.holder_client is not None and ticket.holder_client == claim.client


def claimed(ticket: TicketRecord, claim: TicketClaim) -> TicketRecord:
    """
    ``ticket`` as a stream claim leaves it.
    """
    return evolve(
        ticket,
        stream=True,
        holder=claim.holder,
        held_until=claim.hold_until,
        holder_client=claim.client,
        expires=claim.expires,
    )


@implementer(ITicketStore)
class MemoryTickets:
    """
    :class:`~jmap_twisted.interfaces.ITicketStore` in a dictionary.
    """

    def __init__(self) -> None:
        self._tickets: dict[str, TicketRecord] = {}

    def add_ticket(self, ticket: TicketRecord, per_user: int) -> Deferred[None]:
        self._tickets[ticket.digest] = ticket
        now = ticket.issued
        for digest in [d for d, t in self._tickets.items() if t.expires <= now]:
            del self._tickets[digest]
        # The new ticket stays; the oldest of the rest go.
        idle = sorted(
            (t.issued, t.digest)
            for t in self._tickets.values()
            if t.user_id == ticket.user_id
            and t.digest != ticket.digest
            and (t.holder is None or t.held_until <= now)
        )
        for _, digest in idle[: max(0, len(idle) - per_user + 1)]:
            del self._tickets[digest]
        return succeed(None)

    def claim_ticket(self, claim: TicketClaim) -> Deferred[TicketRecord | None]:
        ticket = self._tickets.get(claim.digest)
        if ticket is None or not takeable(ticket, claim):
            if ticket is not None and ticket.expires <= claim.now:
                del self._tickets[claim.digest]
            return succeed(None)
        if claim.stream:
            self._tickets[claim.digest] = claimed(ticket, claim)
        else:
            del self._tickets[claim.digest]
        return succeed(ticket)

    def refresh_holds(
        self, holders: Sequence[str], hold_until: float, expires: float
    ) -> Deferred[frozenset[str]]:
        wanted = set(holders)
        kept = set()
        for digest, ticket in list(self._tickets.items()):
            if ticket.holder in wanted:
                self._tickets[digest] = evolve(ticket, held_until=hold_until, expires=expires)
                kept.add(ticket.holder)
        return succeed(frozenset(kept))

    def release_ticket(self, digest: str, holder: str, expires: float) -> Deferred[bool]:
        ticket = self._tickets.get(digest)
        if ticket is None or ticket.holder != holder:
            return succeed(False)
        self._tickets[digest] = evolve(
            ticket, holder=None, held_until=0.0, holder_client=None, expires=expires
        )
        return succeed(True)

    def revoke_ticket(self, digest: str, user_id: str) -> Deferred[bool]:
        ticket = self._tickets.get(digest)
        if ticket is None or ticket.user_id != user_id:
            return succeed(False)
        del self._tickets[digest]
        return succeed(True)

    def remove_expired_tickets(self, now: float) -> Deferred[int]:
        gone = [
            d
            for d, t in self._tickets.items()
            if t.expires <= now and (t.holder is None or t.held_until <= now)
        ]
        for digest in gone:
            del self._tickets[digest]
        return succeed(len(gone))
