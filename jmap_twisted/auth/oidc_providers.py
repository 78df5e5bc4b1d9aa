# -*- test-case-name: tests.auth.test_oidc -*-
"""
OpenID Connect providers and the JWT access tokens (RFC 9068) they sign.

A provider is found from its issuer identifier through its discovery
document (OpenID Connect Discovery 1.0 §4), whose ``issuer`` must be the
configured one exactly (§4.3).  Its key set (RFC 7517 §5) is kept in
memory, fetched again in the background every :data:`REFRESH_INTERVAL`
seconds, and at once when a token names a key it lacks (rotation) — but
at most once per :data:`REFETCH_INTERVAL` seconds per provider, all the
tokens waiting for one fetch sharing it, so tokens naming made-up keys
cannot make the server hammer the provider.

Only signatures with a provider's public keys count: RSA (``RS*``,
``PS*``), ECDSA (``ES256/384/512``) and ``EdDSA``.  ``none`` and the
HMAC algorithms are refused before anything else, so a token "signed"
with a provider's public key as an HMAC secret is refused too.
Expiry (``exp``, required), ``nbf`` and ``iat`` are read on the injected
clock with :data:`LEEWAY` seconds of tolerance for clocks that differ.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

import jwt
from attrs import frozen
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jmap_twisted.auth.oidc_http import JSONFetcher, check_provider_url, url_host
from jmap_twisted.config import OIDCOptions

log = Logger()

#: The signature algorithms accepted: the providers' public keys only.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_RSA = frozenset(a for a in ALGORITHMS if a[:2] in ("RS", "PS"))
_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_EDWARDS = frozenset({"Ed25519", "Ed448"})
#: Members only a private or secret JWK has: a set publishing them is broken.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: The smallest RSA modulus accepted, in bits.
MIN_RSA_BITS = 2048
#: Seconds of tolerance on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30.0
#: Seconds between the background fetches of each provider's keys.
REFRESH_INTERVAL = 600.0
#: A token naming an unknown key fetches the key set again at most once
#: per provider in this many seconds.
REFETCH_INTERVAL = 60.0
#: The longest token looked at, in characters.
MAX_TOKEN = 16 * 1024
#: Keys of one set kept at most.
MAX_KEYS = 64
#: ``typ`` header values of an access token (RFC 9068 §2.1, and plain JWT).
_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")
#: The longest username taken from a claim.
MAX_USERNAME = 255


class TokenRefused(UnauthorizedLogin):
    """
    A provider's token that is not accepted; the message says why (never
    what the token holds beyond a claim's name).
    """


@frozen
class Verified:
    """
    What a valid token says.

    :ivar issuer: the provider that issued it.
    :ivar subject: its ``sub`` (``""`` when it has none).
    :ivar username: the value of the user claim.
    :ivar expires: its ``exp`` (POSIX time), or ``None`` when it has none
        (an introspected token may not say).
    """

    issuer: str
    subject: str
    username: str
    expires: float | None

    @property
    def origin(self) -> tuple[str, ...]:
        """
        What a connection opened with the token rests on, for
        :func:`jmap_twisted.http.auth.credential_probe`.
        """
        expires = "" if self.expires is None else repr(float(self.expires))
        return ("oidc", self.issuer, self.subject, expires)


@frozen
class _Key:
    kid: str | None
    algorithms: frozenset[str]
    key: Any


def looks_like_jwt(token: str) -> bool:
    """
    Whether a bearer token has the shape of a signed JWT (three base64url
    segments), so that it is verified, not looked up or introspected.
    """
    parts = token.split(".")
    return len(parts) == 3 and all(_SEGMENT.match(part) for part in parts)


def _segment(text: str) -> Any:
    padded = text + "=" * (-len(text) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        raise TokenRefused("a segment of the token is not base64url JSON") from None


def is_number(value: object) -> bool:
    """
    Whether a claim holds a JSON number (a NumericDate).
    """
    return isinstance(value, int | float) and not isinstance(value, bool)


def valid_username(value: object) -> bool:
    """
    Whether a claim's value can be a username: a non-empty string without
    ``:`` (HTTP Basic could not carry it), blanks or control characters.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USERNAME
        and ":" not in value
        and not any(c.isspace() or not c.isprintable() for c in value)
    )


def check_times(claims: Mapping[str, Any], now: float, require_exp: bool) -> float | None:
    """
    Check ``exp``, ``nbf`` and ``iat`` against ``now`` with
    :data:`LEEWAY`.

    :return: ``exp``, or ``None`` when absent and not required.
    :raises TokenRefused: expired, not yet valid, issued in the future, a
        malformed time, or ``exp`` missing when required.
    """
    exp = claims.get("exp")
    if exp is None:
        if require_exp:
            raise TokenRefused("the token has no exp")
    elif not is_number(exp):
        raise TokenRefused("the token's exp is not a number")
    elif now > exp + LEEWAY:
        raise TokenRefused("the token expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not is_number(nbf) or now + LEEWAY < nbf):
        raise TokenRefused("the token is not valid yet")
    iat = claims.get("iat")
    if iat is not None and (not is_number(iat) or now + LEEWAY < iat):
        raise TokenRefused("the token was issued in the future")
    return None if exp is None else float(exp)


def claimed_username(claims: Mapping[str, Any], user_claim: str) -> str:
    """
    The username a token's claims name.

    :raises TokenRefused: the claim is missing or cannot be a username,
        the token is not an access token by its ``typ`` claim, or it
        names an email address the provider says is not verified.
    """
    typ = claims.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() != "bearer"):
        raise TokenRefused("the token is not an access token (typ claim)")
    value = claims.get(user_claim)
    if not valid_username(value):
        raise TokenRefused(f"the token's {user_claim!r} claim cannot name a user")
    if user_claim == "email" and claims.get("email_verified") is False:
        raise TokenRefused("the token's email address is not verified")
    assert isinstance(value, str)
    return value


def parse_key(data: object) -> _Key | None:
    """
    A public signing key of a key set, or ``None`` for one that cannot
    verify an accepted algorithm (secret keys, encryption keys, small RSA
    moduli, unknown curves, malformed members).
    """
    if not isinstance(data, dict) or _PRIVATE_MEMBERS & data.keys():
        return None
    if data.get("use", "sig") != "sig":
        return None
    operations = data.get("key_ops")
    if operations is not None and (not isinstance(operations, list) or "verify" not in operations):
        return None
    kty = data.get("kty")
    algorithms: frozenset[str]
    if kty == "RSA":
        algorithms = _RSA
    elif kty == "EC" and data.get("crv") in _CURVES:
        algorithms = frozenset({_CURVES[data["crv"]]})
    elif kty == "OKP" and data.get("crv") in _EDWARDS:
        algorithms = frozenset({"EdDSA"})
    else:
        return None
    declared = data.get("alg")
    if declared is not None:
        if declared not in algorithms:
            return None
        algorithms = frozenset({declared})
    kid = data.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    try:
        parsed = jwt.PyJWK(data, algorithm=min(algorithms))
    except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
        return None
    if kty == "RSA" and parsed.key.key_size < MIN_RSA_BITS:
        return None
    return _Key(kid, algorithms, parsed.key)


class Provider:
    """
    What is known of one provider: where its keys and introspection
    endpoint are, its keys, and when they were last fetched.

    :ivar fetches: how many times its documents were fetched (discovery
        and key set count as one), for operators and tests.
    """

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        self.jwks_uri: str | None = None
        self.introspection_endpoint: str | None = None
        self.keys: dict[str, _Key] = {}
        self.unnamed: list[_Key] = []
        self.last_fetch: float | None = None
        self.fetches = 0
        self.refreshing: Deferred[None] | None = None
        self.waiters: list[Deferred[None]] = []

    def key(self, kid: object, algorithm: str) -> _Key | None:
        """
        The key a token's header names (by ``kid``, or the only key for
        its algorithm when it names none).
        """
        if isinstance(kid, str):
            return self.keys.get(kid)
        if kid is not None:
            return None
        fitting = [k for k in (*self.keys.values(), *self.unnamed) if algorithm in k.algorithms]
        return fitting[0] if len(fitting) == 1 else None


class Providers:
    """
    The configured providers and their keys: verifies JWT access tokens.

    :param options: issuers, audience, user claim.
    :param fetcher: fetches discovery documents and key sets.
    :param clock: the time tokens are checked at and fetches are paced by.
    """

    def __init__(self, options: OIDCOptions, fetcher: JSONFetcher, clock: IReactorTime) -> None:
        if options.audience is None:
            raise ValueError("OpenID Connect tokens need an audience")
        for issuer in options.issuers:
            check_provider_url(issuer)
        self._options = options
        self._audience = options.audience
        self._fetcher = fetcher
        self._clock = clock
        self.providers = {issuer: Provider(issuer) for issuer in options.issuers}

    # -- keys ----------------------------------------------------------------

    def refresh(self, provider: Provider, discover: bool = True) -> Deferred[None]:
        """
        Fetch a provider's documents, or join the fetch in progress; never
        fails (a failure is logged and the keys known stay).

        :param discover: fetch the discovery document too, not only the
            key set (always when it was never had).
        """
        waiter: Deferred[None] = Deferred()
        provider.waiters.append(waiter)
        if provider.refreshing is None:
            provider.last_fetch = self._clock.seconds()
            provider.fetches += 1
            running = Deferred.fromCoroutine(self._fetch(provider, discover))
            if not running.called:
                provider.refreshing = running
            running.addBoth(self._fetched, provider)
        return waiter

    def _fetched(self, outcome: object, provider: Provider) -> None:
        provider.refreshing = None
        if isinstance(outcome, Failure):
            log.warn(
                "Could not fetch the keys of OpenID provider {issuer}: {why}",
                issuer=provider.issuer,
                why=outcome.getErrorMessage(),
            )
        waiters, provider.waiters = provider.waiters, []
        for waiter in waiters:
            if not waiter.called:  # unless cancelled
                waiter.callback(None)

    async def _fetch(self, provider: Provider, discover: bool) -> None:
        if discover or provider.jwks_uri is None:
            metadata = await self._fetcher.get_json(provider.discovery_url)
            if not isinstance(metadata, dict) or metadata.get("issuer") != provider.issuer:
                raise ValueError("its discovery document names another issuer")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("its discovery document has no jwks_uri")
            check_provider_url(jwks_uri)
            endpoint = metadata.get("introspection_endpoint")
            if isinstance(endpoint, str):
                try:
                    check_provider_url(endpoint)
                except ValueError:
                    endpoint = None
            else:
                endpoint = None
            provider.jwks_uri = jwks_uri
            provider.introspection_endpoint = endpoint
        assert provider.jwks_uri is not None
        document = await self._fetcher.get_json(provider.jwks_uri)
        listed = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise ValueError(f"{url_host(provider.jwks_uri)} served no key set")
        named: dict[str, _Key] = {}
        unnamed: list[_Key] = []
        for data in listed[:MAX_KEYS]:
            key = parse_key(data)
            if key is None:
                continue
            if key.kid is None:
                unnamed.append(key)
            else:
                named.setdefault(key.kid, key)
        provider.keys, provider.unnamed = named, unnamed
        log.debug(
            "Fetched {count} keys of OpenID provider {issuer}",
            count=len(named) + len(unnamed),
            issuer=provider.issuer,
        )

    async def refresh_all(self) -> None:
        """
        Fetch every provider's documents again (the background refresh).
        """
        for provider in self.providers.values():
            await self.refresh(provider)

    def may_refetch(self, provider: Provider) -> bool:
        """
        Whether a token's need may start a fetch now (or join one).
        """
        last = provider.last_fetch
        return (
            provider.refreshing is not None
            or last is None
            or self._clock.seconds() - last >= REFETCH_INTERVAL
        )

    async def ready(self, provider: Provider) -> bool:
        """
        Whether the provider's discovery document is known, fetching it
        if that is allowed now.
        """
        if provider.jwks_uri is None and self.may_refetch(provider):
            await self.refresh(provider)
        return provider.jwks_uri is not None

    async def _key_for(self, provider: Provider, kid: object, algorithm: str) -> _Key:
        key = provider.key(kid, algorithm)
        if key is None and self.may_refetch(provider):
            await self.refresh(provider, discover=provider.jwks_uri is None)
            key = provider.key(kid, algorithm)
        if key is None:
            raise TokenRefused("the token names a key its provider does not publish")
        if algorithm not in key.algorithms:
            raise TokenRefused("the token's algorithm does not fit its key")
        return key

    # -- tokens ----------------------------------------------------------------

    async def verify(self, token: str) -> Verified:
        """
        Verify a JWT access token and read the user it names.

        :raises TokenRefused: for any reason not to accept it.
        """
        if len(token) > MAX_TOKEN:
            raise TokenRefused("the token is too long")
        if not looks_like_jwt(token):
            raise TokenRefused("the token is not a signed JWT")
        encoded_header, encoded_claims, _ = token.split(".")
        header = _segment(encoded_header)
        if not isinstance(header, dict):
            raise TokenRefused("the token's header is not an object")
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefused("the token's algorithm is not accepted")
        assert isinstance(algorithm, str)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TOKEN_TYPES):
            raise TokenRefused("the token is not an access token (typ header)")
        if "crit" in header:
            raise TokenRefused("the token names critical extensions")
        unverified = _segment(encoded_claims)
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        provider = self.providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise TokenRefused("the token's issuer is not trusted here")
        key = await self._key_for(provider, header.get("kid"), algorithm)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=provider.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    # Times are checked below, on the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as e:
            raise TokenRefused(f"the token does not verify: {type(e).__name__}") from None
        expires = check_times(claims, self._clock.seconds(), require_exp=True)
        subject = claims.get("sub")
        return Verified(
            provider.issuer,
            subject if isinstance(subject, str) else "",
            claimed_username(claims, self._options.user_claim),
            expires,
        )
