"""
An OpenID provider in memory for unit tests: keys made in the test, its
discovery document and key set served by an in-memory fetcher that counts
what it is asked, and tokens signed as the provider (or an impostor) would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from jmap_twisted.auth.oidc_http import ProviderUnavailable

ISSUER = "https://id.example.com"
AUDIENCE = "https://jmap.example.com"
JWKS_URI = "https://id.example.com/keys"
INTROSPECTION = "https://id.example.com/introspect"
#: The clock's time in the tests.
NOW = 1_800_000_000.0

#: Made once: RSA key generation is slow.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: Any, kid: str, **members: Any) -> dict[str, Any]:
    """
    The public JWK of a private key, with its ``kid``.
    """
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig", **members}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """
    A token put together by hand (for algorithms PyJWT will not sign with).
    """
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def claims(**overrides: Any) -> dict[str, Any]:
    """
    The claims of a valid access token for alice, as the provider issues
    them at :data:`NOW`; ``None`` values remove a claim.
    """
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice-subject",
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "email": "alice@example.com",
        "scope": "jmap",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def token(
    key: Any = RSA_KEY,
    algorithm: str = "RS256",
    kid: str | None = "k1",
    header_typ: str | None = "at+jwt",
    **overrides: Any,
) -> str:
    """
    A JWT signed with ``key`` (the provider's by default), with
    :func:`claims` of ``overrides``.
    """
    headers: dict[str, Any] = {}
    if kid is not None:
        headers["kid"] = kid
    if header_typ is not None:
        headers["typ"] = header_typ
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


class MemoryFetcher:
    """
    Serves documents from a dictionary, counting requests per URL.

    :ivar documents: URL -> JSON object (or an exception to fail with).
    :ivar introspect: answers a form posted to :data:`INTROSPECTION`.
    :ivar hold: when set, ``get_json`` answers are held until
        :meth:`release` (to see concurrent requests share one fetch).
    """

    def __init__(self, issuer: str = ISSUER, keys: list[dict[str, Any]] | None = None) -> None:
        self.documents: dict[str, Any] = {
            issuer.rstrip("/") + "/.well-known/openid-configuration": {
                "issuer": issuer,
                "jwks_uri": JWKS_URI,
                "introspection_endpoint": INTROSPECTION,
            },
            JWKS_URI: {"keys": keys if keys is not None else [public_jwk(RSA_KEY, "k1")]},
        }
        self.gets: dict[str, int] = {}
        self.posts: list[tuple[str, dict[str, str], str]] = []
        self.introspect: Callable[[dict[str, str]], Any] = lambda form: {"active": False}
        self.hold = False
        self._held: list[tuple[Deferred[Any], str]] = []

    def fetches(self, url: str = JWKS_URI) -> int:
        return self.gets.get(url, 0)

    def get_json(self, url: str) -> Deferred[Any]:
        self.gets[url] = self.gets.get(url, 0) + 1
        if self.hold:
            waiting: Deferred[Any] = Deferred()
            self._held.append((waiting, url))
            return waiting
        return self._answer(url)

    def _answer(self, url: str) -> Deferred[Any]:
        value = self.documents.get(url)
        if value is None:
            return fail(ProviderUnavailable(f"nothing at {url}"))
        if isinstance(value, Exception):
            return fail(value)
        return succeed(json.loads(json.dumps(value)))

    def release(self) -> None:
        """
        Answer the held requests (and those their answers lead to).
        """
        self.hold = False
        while self._held:
            waiting, url = self._held.pop(0)
            self._answer(url).chainDeferred(waiting)

    def post_form(self, url: str, form: Mapping[str, str], authorization: str) -> Deferred[Any]:
        self.posts.append((url, dict(form), authorization))
        if url != INTROSPECTION:
            return fail(ProviderUnavailable(f"nothing at {url}"))
        return succeed(self.introspect(dict(form)))


def result(deferred: Deferred[Any]) -> Any:
    """
    What a Deferred that has fired holds: its result, or the exception it
    failed with (returned, not raised).
    """
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    value = outcome[0]
    return value.value if isinstance(value, Failure) else value
