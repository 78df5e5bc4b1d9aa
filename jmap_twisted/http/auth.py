"""
Credentials from HTTP requests, checked through the twisted.cred portal.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import cast

from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from jmap_twisted.auth.checkers import BearerToken, PasswordCredentials
from jmap_twisted.auth.passwords import token_hash
from jmap_twisted.auth.throttle import LoginRefused
from jmap_twisted.http.admission import mark_authenticated
from jmap_twisted.http.problem import write_status
from jmap_twisted.interfaces import IBearerToken, IDirectory, IPrincipal
from jmap_twisted.push.tickets import Hold, ITicket, TicketCredentials, Tickets

#: One ``WWW-Authenticate`` challenge per accepted scheme.
CHALLENGES = (b'Basic realm="jmap", charset="UTF-8"', b'Bearer realm="jmap"')


def credentials_from_request(
    request: IRequest, allow_query_token: bool = False, stream: bool = False
) -> ICredentials:
    """
    The credentials a request carries: ``Authorization: Basic`` or
    ``Bearer``, or with ``allow_query_token`` a ``ticket`` or an
    ``access_token`` query parameter (for browsers, which cannot set
    headers on a WebSocket or an EventSource).

    :param stream: a ticket is presented to open an EventSource stream.

    :raises UnauthorizedLogin: there are none, or they are malformed.
    """
    header = request.getHeader(b"authorization")
    if header:
        scheme, _, value = header.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == b"basic":
            try:
                decoded = b64decode(value, validate=True)
            except binascii.Error:
                raise UnauthorizedLogin("malformed Basic credentials") from None
            username, sep, password = decoded.partition(b":")
            if not sep:
                raise UnauthorizedLogin("malformed Basic credentials")
            return PasswordCredentials(username, password, _client(request))
        if scheme == b"bearer" and value:
            try:
                return BearerToken(value.decode("ascii"))
            except UnicodeDecodeError:
                raise UnauthorizedLogin("malformed bearer token") from None
        raise UnauthorizedLogin("unsupported authorization scheme")
    if allow_query_token:
        tickets = request.args.get(b"ticket")
        if tickets:
            return TicketCredentials(
                tickets[0].decode("ascii", "replace"), _client(request), stream
            )
        tokens = request.args.get(b"access_token")
        if tokens:
            try:
                return BearerToken(tokens[0].decode("ascii"))
            except UnicodeDecodeError:
                raise UnauthorizedLogin("malformed access token") from None
    raise UnauthorizedLogin("no credentials")


def _client(request: IRequest) -> str | None:
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else None


async def login(portal: Portal, request: IRequest, allow_query_token: bool = False) -> IPrincipal:
    """
    Authenticate a request.

    :raises UnauthorizedLogin: missing, malformed or wrong credentials.
    :raises LoginRefused: a password login refused unchecked (too many
        failures, or too many checks at once).
    """
    admitted = getattr(request, "admitted_principal", None)
    if admitted is not None:
        return cast(IPrincipal, admitted)  # logged in on its headers already
    credentials = credentials_from_request(request, allow_query_token)
    _, avatar, _ = await portal.login(credentials, None, IPrincipal)
    stamped = getattr(credentials, "origin", None)
    if stamped is not None and not ITicket.providedBy(credentials):
        request.stamped_origin = stamped  # type: ignore[attr-defined]
    mark_authenticated(request)
    return cast(IPrincipal, avatar)


def stamped_origin(request: IRequest) -> Origin | None:
    """
    What the credentials a request logged in with rest on, when their
    checker said so (an OpenID Connect token: ``("oidc", issuer, subject,
    expiry)``); ``None`` otherwise, when :func:`credential_origin` tells.
    """
    stamped = getattr(request, "stamped_origin", None)
    return cast(Origin, stamped) if isinstance(stamped, tuple) else None


def write_unauthorized(request: IRequest) -> None:
    """
    Finish with 401 and a challenge for every accepted scheme.
    """
    for challenge in CHALLENGES:
        request.responseHeaders.addRawHeader(b"WWW-Authenticate", challenge)
    write_status(request, 401, "Authentication is required: use Basic or Bearer credentials.")


def write_refused(request: IRequest, refused: LoginRefused) -> None:
    """
    Finish with 429 (this client or username failed too often) or 503
    (the server is checking too many passwords or tokens), and
    ``Retry-After``.
    """
    request.setHeader(b"Retry-After", b"%d" % refused.retry_after)
    if refused.status == 429:
        detail = "Too many login attempts: retry later."
    else:
        detail = "The server is busy checking credentials: retry later."
    write_status(request, refused.status, detail)


#: Tells whether the credentials a long-lived connection authenticated with
#: still hold.
CredentialProbe = Callable[[], Awaitable[bool]]


#: What a long-lived connection's credentials rest on: ``("token",
#: digest)``, ``("password", username, stored hash)``, ``("oidc", issuer,
#: subject, expiry)`` (the expiry as POSIX time, ``""`` when unknown), or
#: ``("user",)``.
Origin = tuple[str, ...]


class _ExpiringProbe:
    """
    A probe of credentials that stop holding at a known time.

    :ivar expires: that time (POSIX).
    """

    def __init__(self, check: CredentialProbe, expires: float) -> None:
        self._check = check
        self.expires = expires

    def __call__(self) -> Awaitable[bool]:
        return self._check()


def credential_expiry(probe: CredentialProbe) -> float | None:
    """
    When the credentials a probe checks stop holding by themselves (an
    OpenID Connect token's expiry), or ``None``: a connection opened with
    them is ended then.
    """
    return probe.expires if isinstance(probe, _ExpiringProbe) else None


async def credential_origin(directory: IDirectory, credentials: ICredentials) -> Origin | None:
    """
    What the credentials rest on, read *before* they are checked (so that
    a password changed during the check is noticed later).  ``None`` for a
    ticket, whose origin is known once it is redeemed.
    """
    if IBearerToken.providedBy(credentials):
        return ("token", token_hash(IBearerToken(credentials).token))
    if IUsernamePassword.providedBy(credentials):
        username = IUsernamePassword(credentials).username
        name = (
            username.decode("utf-8", "surrogateescape") if isinstance(username, bytes) else username
        )
        found = await directory.get_password_hash(name)
        return ("password", name, (found[1] or "") if found is not None else "")
    return None


def credential_probe(
    directory: IDirectory,
    origin: Origin | None,
    user_id: str,
    clock: IReactorTime | None = None,
) -> CredentialProbe:
    """
    A check, cheap enough to run for every open connection of a user when
    access changes, that the credentials used to open it still hold: the
    token not revoked, the password not changed since, an OpenID Connect
    token not expired (by ``clock``, required for them), the user still
    there.  A ticket's connection rests on the credentials that asked for
    the ticket.
    """
    if origin is not None and origin[0] == "oidc" and origin[3]:
        if clock is None:
            raise ValueError("an OpenID Connect token's probe needs a clock")
        expires = float(origin[3])
        now = clock

        async def unexpired() -> bool:
            if now.seconds() >= expires:
                return False
            return await directory.get_user_by_id(user_id) is not None

        return _ExpiringProbe(unexpired, expires)
    if origin is not None and origin[0] == "token":
        digest = origin[1]

        async def token_alive() -> bool:
            found = await directory.find_token(digest)
            return found is not None and found[0].id == user_id

        return token_alive
    if origin is not None and origin[0] == "password":
        name, stored = origin[1], origin[2]

        async def password_unchanged() -> bool:
            now = await directory.get_password_hash(name)
            return now is not None and now[0].id == user_id and (now[1] or "") == stored

        return password_unchanged

    async def user_exists() -> bool:
        return await directory.get_user_by_id(user_id) is not None

    return user_exists


async def login_with_probe(
    portal: Portal,
    directory: IDirectory,
    request: IRequest,
    stream_tickets: Tickets | None = None,
    clock: IReactorTime | None = None,
) -> tuple[IPrincipal, CredentialProbe, Hold | None]:
    """
    Authenticate a request that opens a long-lived connection, and return
    the probe that re-checks its credentials later, and, for a stream
    opened with a ticket, the stream's hold on the ticket (which the
    caller must release, see :class:`~jmap_twisted.push.tickets.Tickets`).

    :param stream_tickets: the server's tickets, when the connection is an
        EventSource stream (a ticket then opens it and stays with it).
    :param clock: the time an OpenID Connect token's expiry is read on
        (the probe then has a :func:`credential_expiry`).
    :raises UnauthorizedLogin: also for a ticket whose own credentials were
        revoked since it was issued, and for an OpenID Connect token past
        its expiry (though within its clock-skew leeway).
    """
    credentials = credentials_from_request(
        request, allow_query_token=True, stream=stream_tickets is not None
    )
    origin = await credential_origin(directory, credentials)
    _, avatar, _ = await portal.login(credentials, None, IPrincipal)
    principal = cast(IPrincipal, avatar)
    hold = None
    if ITicket.providedBy(credentials):
        origin = ITicket(credentials).origin
        hold = ITicket(credentials).hold
    elif getattr(credentials, "origin", None) is not None:
        origin = credentials.origin  # type: ignore[attr-defined]
    probe = credential_probe(directory, origin, principal.user.id, clock)
    if not await probe():
        if hold is not None and stream_tickets is not None:
            stream_tickets.release_later(hold)
        raise UnauthorizedLogin("the credentials behind this ticket were revoked")
    mark_authenticated(request)
    return principal, probe, hold
