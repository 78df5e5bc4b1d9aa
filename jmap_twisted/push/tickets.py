"""
WebSocket/EventSource tickets: short-lived, single-use credentials that a
browser gets with an authenticated ``POST`` and puts in the URL, because it
cannot set an ``Authorization`` header there.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from attrs import frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface, implementer

#: Seconds a ticket stays valid.
LIFETIME = 60.0
#: Live tickets one user may hold.
MAX_PER_USER = 16


class ITicket(ICredentials):
    """
    A ticket presented as ``?ticket=``.
    """

    value = Attribute(":class:`str`, the ticket.")
    client = Attribute(":class:`str` or ``None``, the client address presenting it.")
    origin = Attribute(
        "Set when the ticket is redeemed: what the credentials that asked "
        "for it rest on (see :func:`jmap_twisted.http.auth.credential_origin`)."
    )


@implementer(ITicket)
class TicketCredentials:
    def __init__(self, value: str, client: str | None) -> None:
        self.value = value
        self.client = client
        self.origin: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return "<TicketCredentials (redacted)>"


@frozen
class _Ticket:
    user_id: str
    expires: float
    client: str | None
    origin: tuple[str, ...] | None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class Tickets:
    """
    The live tickets of this node, kept hashed.

    :param bind_client: a ticket is redeemable only from the address that
        asked for it.
    """

    def __init__(
        self, clock: IReactorTime, bind_client: bool = False, lifetime: float = LIFETIME
    ) -> None:
        self._clock = clock
        self._bind = bind_client
        self._lifetime = lifetime
        self._tickets: dict[str, _Ticket] = {}

    def _purge(self) -> None:
        now = self._clock.seconds()
        for digest in [d for d, t in self._tickets.items() if t.expires <= now]:
            del self._tickets[digest]

    def issue(
        self, user_id: str, client: str | None, origin: tuple[str, ...] | None = None
    ) -> tuple[str, float]:
        """
        A new ticket for a user, and when it expires (POSIX time).  The
        user's oldest tickets are dropped past :data:`MAX_PER_USER`.
        """
        self._purge()
        mine = sorted((t.expires, d) for d, t in self._tickets.items() if t.user_id == user_id)
        for _, digest in mine[: max(0, len(mine) - MAX_PER_USER + 1)]:
            del self._tickets[digest]
        value = secrets.token_urlsafe(32)
        expires = self._clock.seconds() + self._lifetime
        self._tickets[_digest(value)] = _Ticket(user_id, expires, client, origin)
        return value, expires

    def redeem(self, value: str, client: str | None) -> str | None:
        """
        The user a valid ticket was issued to, consuming it; ``None`` for
        an unknown, used, expired or (when bound) foreign-address ticket.
        """
        ticket = self.redeem_ticket(value, client)
        return None if ticket is None else ticket.user_id

    def redeem_ticket(self, value: str, client: str | None) -> _Ticket | None:
        """
        Like :meth:`redeem`, with what the ticket was issued on.
        """
        self._purge()
        digest = _digest(value)
        ticket = self._tickets.get(digest)
        if ticket is None:
            return None
        if (
            self._bind
            and ticket.client is not None
            and not hmac.compare_digest(ticket.client, client or "")
        ):
            return None
        del self._tickets[digest]
        return ticket

    def revoke(self, value: str, user_id: str) -> bool:
        """
        Revoke one of the user's tickets; whether it existed.
        """
        digest = _digest(value)
        ticket = self._tickets.get(digest)
        if ticket is None or ticket.user_id != user_id:
            return False
        del self._tickets[digest]
        return True


@implementer(ICredentialsChecker)
class TicketChecker:
    """
    twisted.cred checker redeeming tickets.
    """

    credentialInterfaces = (ITicket,)

    def __init__(self, tickets: Tickets) -> None:
        self._tickets = tickets

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        presented = ITicket(credentials)
        ticket = self._tickets.redeem_ticket(presented.value, presented.client)
        if ticket is None:
            return fail(UnauthorizedLogin())
        presented.origin = ticket.origin
        return succeed(ticket.user_id)


__all__ = ["Interface", "TicketChecker", "Tickets"]
