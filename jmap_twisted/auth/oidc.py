# -*- test-case-name: tests.auth.test_oidc -*-
"""
Bearer tokens from OpenID Connect providers, as one piece of the server:
JWT access tokens verified against the providers' keys
(:mod:`~jmap_twisted.auth.oidc_providers`), opaque ones introspected
(:mod:`~jmap_twisted.auth.introspection`), the users they name (created
on first sight when so configured), and the one twisted.cred checker of
``Authorization: Bearer`` that also takes the directory's own tokens.

A token never reaches the log; refusals are logged at debug level with
their reason.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.auth.checkers import TokenChecker
from jmap_twisted.auth.introspection import Introspection
from jmap_twisted.auth.oidc_http import AgentFetcher, JSONFetcher
from jmap_twisted.auth.oidc_providers import (
    REFRESH_INTERVAL,
    Providers,
    TokenRefused,
    Verified,
    looks_like_jwt,
)
from jmap_twisted.auth.passwords import TOKEN_PREFIX
from jmap_twisted.config import OIDCOptions
from jmap_twisted.errors import UserExists
from jmap_twisted.interfaces import IBearerToken, IDirectory, IJMAPReactor
from jmap_twisted.loops import SupervisedLoop

log = Logger()


class OIDC:
    """
    OpenID Connect for one server: the providers, introspection when
    configured, the users tokens name, and the background refresh of the
    keys (:meth:`start` and :meth:`stop`, run by the server's life cycle).

    :param options: what is configured.
    :param directory: where users are found (and created, with
        ``options.create_users``).
    :param clock: the time tokens are checked at.
    :param fetcher: fetches from providers (see :func:`oidc_for` for the
        one over the network).
    """

    def __init__(
        self,
        options: OIDCOptions,
        directory: IDirectory,
        clock: IReactorTime,
        fetcher: JSONFetcher,
    ) -> None:
        self.options = options
        self.fetcher = fetcher
        self.directory = directory
        self.providers = Providers(options, fetcher, clock)
        self.introspection: Introspection | None = None
        if options.introspects:
            self.introspection = Introspection(self.providers, options, fetcher, clock)
        self._refresh = SupervisedLoop(
            self.providers.refresh_all, clock, REFRESH_INTERVAL, "OpenID key refresh"
        )

    def start(self) -> None:
        """
        Fetch every provider's keys now, and again every
        :data:`REFRESH_INTERVAL` seconds.
        """
        if not self._refresh.running:
            self._refresh.start(now=True)

    def stop(self) -> None:
        """
        Stop the refresh and close the connections kept to providers.
        """
        if self._refresh.running:
            self._refresh.stop()
        close = getattr(self.fetcher, "close", None)
        if close is not None:
            close().addErrback(
                lambda f: log.failure("Could not close the connections to OpenID providers", f)
            )

    async def user_for(self, verified: Verified) -> str:
        """
        The id of the user a valid token names, created on first sight
        with ``create_users``.

        :raises TokenRefused: the user is unknown (and not to be created).
        """
        directory = self.directory
        user = await directory.get_user(verified.username)
        if user is None and self.options.create_users:
            try:
                user = await directory.create_user(verified.username, None)
            except UserExists:
                user = await directory.get_user(verified.username)  # created meanwhile
            else:
                log.info(
                    "Created user {username} on first sight of a token from {issuer}",
                    username=verified.username,
                    issuer=verified.issuer,
                )
        if user is None:
            raise TokenRefused("the token names a user this server does not know")
        return user.id


def oidc_for(
    options: OIDCOptions,
    directory: IDirectory,
    reactor: IJMAPReactor,
    fetcher: JSONFetcher | None = None,
) -> OIDC:
    """
    OpenID Connect for a server, fetching from providers over the network
    (:class:`~jmap_twisted.auth.oidc_http.AgentFetcher`, trusting
    ``options.ca_file`` too) unless given a fetcher.

    :raises OSError: the CA file cannot be read.
    :raises ValueError: it holds no PEM certificate, or an issuer is not
        an allowed URL.
    """
    if fetcher is None:
        fetcher = AgentFetcher(reactor, options.ca_file)
    return OIDC(options, directory, reactor, fetcher)


@implementer(ICredentialsChecker)
class BearerChecker:
    """
    The checker of ``Authorization: Bearer`` when OpenID Connect is on (a
    portal keeps one checker per credential interface).

    A token shaped like a JWT is verified against the providers' keys.
    Any other is looked up among the directory's tokens, and when it is
    not one of them (nor has their prefix) it is introspected, if that is
    configured.  An accepted provider's token stamps the credentials with
    ``origin`` (see :attr:`Verified.origin`), for the connections it opens
    to end when it expires.
    """

    credentialInterfaces = (IBearerToken,)

    def __init__(self, directory: IDirectory, oidc: OIDC) -> None:
        self._local = TokenChecker(directory)
        self._oidc = oidc

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: ICredentials) -> str:
        token = IBearerToken(credentials).token
        try:
            if looks_like_jwt(token):
                verified = await self._oidc.providers.verify(token)
            else:
                try:
                    user_id: str = await self._local.requestAvatarId(credentials)
                    return user_id
                except UnauthorizedLogin:
                    introspection = self._oidc.introspection
                    if introspection is None or token.startswith(TOKEN_PREFIX):
                        raise
                verified = await introspection.check(token)
            user_id = await self._oidc.user_for(verified)
        except TokenRefused as refused:
            log.debug("Refused an OpenID Connect token: {why}", why=str(refused))
            raise
        credentials.origin = verified.origin  # type: ignore[attr-defined]
        return user_id
