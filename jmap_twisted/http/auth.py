"""
Credentials from HTTP requests, checked through the twisted.cred portal.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import cast

from twisted.cred.credentials import ICredentials, IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.web.iweb import IRequest

from jmap_twisted.auth.checkers import BearerToken
from jmap_twisted.auth.passwords import token_hash
from jmap_twisted.http.problem import write_status
from jmap_twisted.interfaces import IBearerToken, IDirectory, IPrincipal
from jmap_twisted.push.tickets import TicketCredentials

#: One ``WWW-Authenticate`` challenge per accepted scheme.
CHALLENGES = (b'Basic realm="jmap", charset="UTF-8"', b'Bearer realm="jmap"')


def credentials_from_request(request: IRequest, allow_query_token: bool = False) -> ICredentials:
    """
    The credentials a request carries: ``Authorization: Basic`` or
    ``Bearer``, or with ``allow_query_token`` a ``ticket`` or an
    ``access_token`` query parameter (for browsers, which cannot set
    headers on a WebSocket or an EventSource).

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
            return UsernamePassword(username, password)
        if scheme == b"bearer" and value:
            try:
                return BearerToken(value.decode("ascii"))
            except UnicodeDecodeError:
                raise UnauthorizedLogin("malformed bearer token") from None
        raise UnauthorizedLogin("unsupported authorization scheme")
    if allow_query_token:
        tickets = request.args.get(b"ticket")
        if tickets:
            address = request.getClientAddress()
            client = getattr(address, "host", None)
            return TicketCredentials(tickets[0].decode("ascii", "replace"), client)
        tokens = request.args.get(b"access_token")
        if tokens:
            try:
                return BearerToken(tokens[0].decode("ascii"))
            except UnicodeDecodeError:
                raise UnauthorizedLogin("malformed access token") from None
    raise UnauthorizedLogin("no credentials")


async def login(portal: Portal, request: IRequest, allow_query_token: bool = False) -> IPrincipal:
    """
    Authenticate a request.

    :raises UnauthorizedLogin: missing, malformed or wrong credentials.
    """
    credentials = credentials_from_request(request, allow_query_token)
    _, avatar, _ = await portal.login(credentials, None, IPrincipal)
    return cast(IPrincipal, avatar)


def write_unauthorized(request: IRequest) -> None:
    """
    Finish with 401 and a challenge for every accepted scheme.
    """
    for challenge in CHALLENGES:
        request.responseHeaders.addRawHeader(b"WWW-Authenticate", challenge)
    write_status(request, 401, "Authentication is required: use Basic or Bearer credentials.")


#: Tells whether the credentials a long-lived connection authenticated with
#: still hold.
CredentialProbe = Callable[[], Awaitable[bool]]


async def credential_probe(
    directory: IDirectory, credentials: ICredentials, user_id: str
) -> CredentialProbe:
    """
    A check, cheap enough to run for every open connection when access
    changes, that the credentials used to open it are still good: a
    token not revoked, a password not changed since, the user still there.
    """
    if IBearerToken.providedBy(credentials):
        digest = token_hash(IBearerToken(credentials).token)

        async def token_alive() -> bool:
            found = await directory.find_token(digest)
            return found is not None and found[0].id == user_id

        return token_alive
    if IUsernamePassword.providedBy(credentials):
        username = IUsernamePassword(credentials).username
        name = (
            username.decode("utf-8", "surrogateescape") if isinstance(username, bytes) else username
        )
        found = await directory.get_password_hash(name)
        stored = found[1] if found is not None else None

        async def password_unchanged() -> bool:
            now = await directory.get_password_hash(name)
            return now is not None and now[0].id == user_id and now[1] == stored

        return password_unchanged

    async def user_exists() -> bool:
        return await directory.get_user_by_id(user_id) is not None

    return user_exists


async def login_with_probe(
    portal: Portal, directory: IDirectory, request: IRequest
) -> tuple[IPrincipal, CredentialProbe]:
    """
    Authenticate a request that opens a long-lived connection, and return
    the probe that re-checks its credentials later.
    """
    credentials = credentials_from_request(request, allow_query_token=True)
    _, avatar, _ = await portal.login(credentials, None, IPrincipal)
    principal = cast(IPrincipal, avatar)
    probe = await credential_probe(directory, credentials, principal.user.id)
    return principal, probe
