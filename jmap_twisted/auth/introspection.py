# -*- test-case-name: tests.auth.test_oidc -*-
"""
Opaque access tokens of OpenID Connect providers, checked by asking the
provider (OAuth 2.0 Token Introspection, RFC 7662).

The server authenticates to each provider's ``introspection_endpoint``
(from its discovery document) as a client, with ``client_secret_basic``
(RFC 6749 §2.3.1).  An answer counts only when it is ``active``, names
this server in ``aud``, comes from the provider asked (``iss``, when
given), is within its ``nbf``/``exp`` and names a user.  Answers are kept
for a short while by the token's SHA-256, so a client sending the same
token with every request costs one introspection a minute; questions
about one token asked at once share one request; and only so many
introspections run at once, so a flood of made-up tokens cannot queue
requests to the provider without bound.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jmap_twisted.auth.oidc_http import JSONFetcher, ProviderUnavailable
from jmap_twisted.auth.oidc_providers import (
    Providers,
    TokenRefused,
    Verified,
    check_times,
    claimed_username,
)
from jmap_twisted.auth.throttle import InFlight, LoginRefused
from jmap_twisted.config import OIDCOptions

log = Logger()

#: Seconds an active answer is kept (less when the token expires sooner).
ACTIVE_TTL = 60.0
#: Seconds an inactive (or refused) answer is kept.
INACTIVE_TTL = 10.0
#: Answers kept at most (the least recently used go first).
MAX_CACHED = 10_000
#: Introspection requests in progress at once, across providers.
MAX_CONCURRENT = 16


class IntrospectionBusy(LoginRefused):
    """
    As many introspections as allowed are in progress: try again shortly
    (503).
    """

    status = 503


def basic_authorization(client_id: str, secret: str) -> str:
    """
    The ``Authorization`` value of ``client_secret_basic``: both parts
    form-urlencoded, then joined and base64-encoded (RFC 6749 §2.3.1).
    """
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def _names_audience(aud: object, audience: str) -> bool:
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud


class Introspection:
    """
    Asks the providers about opaque tokens.

    :param providers: where each provider's endpoint is found.
    :param options: the audience, user claim and client credentials.
    :param fetcher: posts the questions.
    :param clock: the time answers are checked at and kept for.
    """

    def __init__(
        self,
        providers: Providers,
        options: OIDCOptions,
        fetcher: JSONFetcher,
        clock: IReactorTime,
    ) -> None:
        if options.client_id is None or options.client_secret is None:
            raise ValueError("introspection needs a client id and secret")
        self._providers = providers
        self._options = options
        self._fetcher = fetcher
        self._clock = clock
        self._authorization = basic_authorization(options.client_id, options.client_secret)
        #: token digest -> (kept until, what it said or None for inactive)
        self._answers: OrderedDict[bytes, tuple[float, Verified | None]] = OrderedDict()
        self._asking = InFlight()
        self._running = 0
        #: Introspection requests made, for operators and tests.
        self.requests = 0

    def check(self, token: str) -> Deferred[Verified]:
        """
        What an opaque token says, asking the providers (in the configured
        order) unless a recent answer is kept.

        :raises TokenRefused: no provider says it is active for this server.
        :raises IntrospectionBusy: too many introspections are in progress.
        """
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        return self._asking.join(digest, lambda: Deferred.fromCoroutine(self._check(digest, token)))

    async def _check(self, digest: bytes, token: str) -> Verified:
        now = self._clock.seconds()
        kept = self._answers.get(digest)
        if kept is not None and kept[0] > now:
            self._answers.move_to_end(digest)
            verified = kept[1]
        else:
            verified = await self._ask(token)
            now = self._clock.seconds()
            if verified is None:
                until = now + INACTIVE_TTL
            else:
                until = now + ACTIVE_TTL
                if verified.expires is not None:
                    until = min(until, verified.expires)
            self._answers[digest] = (until, verified)
            self._answers.move_to_end(digest)
            while len(self._answers) > MAX_CACHED:
                self._answers.popitem(last=False)
        if verified is None:
            raise TokenRefused("no provider says the token is active for this server")
        if verified.expires is not None and self._clock.seconds() > verified.expires:
            raise TokenRefused("the token expired")
        return verified

    async def _ask(self, token: str) -> Verified | None:
        for provider in self._providers.providers.values():
            if not await self._providers.ready(provider):
                continue
            endpoint = provider.introspection_endpoint
            if endpoint is None:
                continue
            if self._running >= MAX_CONCURRENT:
                raise IntrospectionBusy(1)
            self._running += 1
            self.requests += 1
            try:
                answer = await self._fetcher.post_form(
                    endpoint,
                    {"token": token, "token_type_hint": "access_token"},
                    self._authorization,
                )
            except ProviderUnavailable as e:
                log.warn(
                    "Could not introspect a token at {issuer}: {why}",
                    issuer=provider.issuer,
                    why=str(e),
                )
                continue
            finally:
                self._running -= 1
            try:
                return self._read(answer, provider.issuer)
            except TokenRefused as refused:
                log.debug(
                    "{issuer} does not vouch for a token: {why}",
                    issuer=provider.issuer,
                    why=str(refused),
                )
        return None

    def _read(self, answer: Any, issuer: str) -> Verified:
        """
        What an introspection answer vouches for.

        :raises TokenRefused: it does not vouch for a token of this server.
        """
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise TokenRefused("the token is not active")
        if answer.get("iss", issuer) != issuer:
            raise TokenRefused("the answer names another issuer")
        audience = self._options.audience
        assert audience is not None
        if not _names_audience(answer.get("aud"), audience):
            raise TokenRefused("the token is not for this server (aud)")
        token_type = answer.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in ("bearer", "access_token")
        ):
            raise TokenRefused("the token is not an access token (token_type)")
        expires = check_times(answer, self._clock.seconds(), require_exp=False)
        subject = answer.get("sub")
        return Verified(
            issuer,
            subject if isinstance(subject, str) else "",
            claimed_username(answer, self._options.user_claim),
            expires,
        )
