# -*- test-case-name: tests.push.test_tickets -*-
"""
WebSocket/EventSource tickets: short-lived credentials that a browser gets
with an authenticated ``POST`` and puts in the URL, because it cannot set
an ``Authorization`` header there.

A ticket opens one WebSocket, once.  Opened by an EventSource instead, it
stays with that stream: the browser's automatic reconnects, which repeat
the URL, redeem it again (and replay what was missed with
``Last-Event-ID``), while it opens no other stream at the same time and no
WebSocket.  Tickets live in an :class:`~jmap_twisted.interfaces.ITicketStore`
shared by the nodes of a cluster, so any node redeems what any node issued.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, implementer

from jmap_twisted.interfaces import ITicketStore
from jmap_twisted.records import TicketClaim, TicketRecord

log = Logger()

#: Seconds a fresh ticket stays valid.
LIFETIME = 60.0
#: Tickets held by no stream that one user may have at once.
MAX_PER_USER = 16
#: Seconds a stream's hold on its ticket lasts unless its node renews it.
HOLD = 90.0
#: Seconds after its stream ended that a stream ticket may reconnect.
RECONNECT_WINDOW = 300.0


class ITicket(ICredentials):
    """
    A ticket presented as ``?ticket=``.
    """

    value = Attribute(":class:`str`, the ticket.")
    client = Attribute(":class:`str` or ``None``, the client address presenting it.")
    stream = Attribute(":class:`bool`: presented to open an EventSource stream.")
    origin = Attribute(
        "Set when the ticket is redeemed: what the credentials that asked "
        "for it rest on (see :func:`jmap_twisted.http.auth.credential_origin`)."
    )
    hold = Attribute(
        "Set when a ticket is redeemed for a stream: the :class:`Hold` the "
        "stream keeps until it ends."
    )


@implementer(ITicket)
class TicketCredentials:
    def __init__(self, value: str, client: str | None, stream: bool = False) -> None:
        self.value = value
        self.client = client
        self.stream = stream
        self.origin: tuple[str, ...] | None = None
        self.hold: Hold | None = None

    def __repr__(self) -> str:
        return "<TicketCredentials (redacted)>"


@frozen
class Hold:
    """
    A stream's hold on its ticket.

    :ivar digest: the ticket's digest.
    :ivar holder: the stream's name in the store.
    """

    digest: str
    holder: str


def digest(value: str) -> str:
    """
    What the store keys a ticket by: never the value itself.
    """
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class Tickets:
    """
    Issues and redeems tickets in a shared store, and keeps this node's
    streams' holds alive (:meth:`renew`, every :data:`HOLD` / 3 seconds).

    :param bind_client: a ticket is redeemable only from the address that
        asked for it.
    """

    def __init__(
        self,
        store: ITicketStore,
        clock: IReactorTime,
        bind_client: bool = False,
        lifetime: float = LIFETIME,
        hold: float = HOLD,
        reconnect_window: float = RECONNECT_WINDOW,
    ) -> None:
        self.store = store
        self._clock = clock
        self._bind = bind_client
        self._lifetime = lifetime
        self.hold = hold
        self._window = reconnect_window
        #: This node's holding streams: holder -> what ends the stream.
        self._streams: dict[str, Callable[[], None]] = {}
        self._releasing: set[Deferred[None]] = set()

    async def issue(
        self, user_id: str, client: str | None, origin: tuple[str, ...] | None = None
    ) -> tuple[str, float]:
        """
        A new ticket for a user, and when it expires (POSIX time).  The
        user's oldest tickets held by no stream are dropped past
        :data:`MAX_PER_USER`.
        """
        value = secrets.token_urlsafe(32)
        now = self._clock.seconds()
        expires = now + self._lifetime
        record = TicketRecord(
            digest=digest(value),
            user_id=user_id,
            expires=expires,
            client=client,
            origin=origin,
            issued=now,
        )
        await self.store.add_ticket(record, MAX_PER_USER)
        return value, expires

    async def redeem(
        self, value: str, client: str | None, stream: bool = False
    ) -> tuple[TicketRecord, Hold | None] | None:
        """
        Redeem a ticket to open a socket (consumed) or a stream (held):
        the ticket and, for a stream, the hold that the stream passes to
        :meth:`attach` (or :meth:`release` when it does not open after
        all); ``None`` when the ticket does not open that.  A stream
        taking the ticket over from another stream of this node ends it.
        """
        now = self._clock.seconds()
        holder = secrets.token_hex(16) if stream else ""
        claim = TicketClaim(
            digest=digest(value),
            now=now,
            stream=stream,
            client=client,
            bound=self._bind,
            holder=holder,
            hold_until=now + self.hold,
            expires=now + self.hold + self._window,
        )
        ticket = await self.store.claim_ticket(claim)
        if ticket is None:
            return None
        if not stream:
            return ticket, None
        if ticket.holder is not None:
            end = self._streams.pop(ticket.holder, None)
            if end is not None:
                end()
        return ticket, Hold(claim.digest, holder)

    def attach(self, hold: Hold, end: Callable[[], None]) -> None:
        """
        A stream opened on ``hold``: ``end`` ends it if another stream
        takes its ticket over.
        """
        self._streams[hold.holder] = end

    async def release(self, hold: Hold) -> None:
        """
        A stream ended (or never opened): its ticket may reconnect for the
        reconnect window.
        """
        self._streams.pop(hold.holder, None)
        await self.store.release_ticket(
            hold.digest, hold.holder, self._clock.seconds() + self._window
        )

    def release_later(self, hold: Hold) -> None:
        """
        :meth:`release`, without waiting; a failure is logged.
        """
        releasing = Deferred.fromCoroutine(self.release(hold))
        releasing.addErrback(lambda f: log.failure("Could not release a stream's ticket", f))
        if not releasing.called:
            self._releasing.add(releasing)
            releasing.addBoth(lambda _: self._releasing.discard(releasing))

    async def settle(self) -> None:
        """
        Wait for the releases under way (before the store closes).
        """
        while self._releasing:
            await next(iter(self._releasing))

    async def renew(self) -> None:
        """
        Renew the holds of this node's streams; end those whose ticket was
        taken over by a stream elsewhere.
        """
        holders = list(self._streams)
        if not holders:
            return
        now = self._clock.seconds()
        kept = await self.store.refresh_holds(
            holders, now + self.hold, now + self.hold + self._window
        )
        for holder in holders:
            if holder not in kept:
                end = self._streams.pop(holder, None)
                if end is not None:
                    end()

    async def sweep(self) -> int:
        """
        Delete expired tickets; how many.
        """
        return await self.store.remove_expired_tickets(self._clock.seconds())

    async def revoke(self, value: str, user_id: str) -> bool:
        """
        Revoke one of the user's tickets; whether it existed.
        """
        return await self.store.revoke_ticket(digest(value), user_id)


@implementer(ICredentialsChecker)
class TicketChecker:
    """
    twisted.cred checker redeeming tickets.
    """

    credentialInterfaces = (ITicket,)

    def __init__(self, tickets: Tickets) -> None:
        self._tickets = tickets

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(ITicket(credentials)))

    async def _check(self, presented: Any) -> str:
        redeemed = await self._tickets.redeem(presented.value, presented.client, presented.stream)
        if redeemed is None:
            raise UnauthorizedLogin()
        ticket, hold = redeemed
        presented.origin = ticket.origin
        presented.hold = hold
        return ticket.user_id


__all__ = ["Hold", "ITicket", "TicketChecker", "TicketCredentials", "Tickets"]
