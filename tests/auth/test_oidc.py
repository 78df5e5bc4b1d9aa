"""
OpenID Connect bearer tokens against a provider in memory: which tokens
are accepted and for whom, each reason to refuse one, how often the
provider's keys are fetched, opaque tokens through introspection, and a
server without OpenID Connect left as it was.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jmap_twisted.auth.checkers import BearerToken, TokenChecker
from jmap_twisted.auth.introspection import (
    ACTIVE_TTL,
    MAX_CONCURRENT,
    IntrospectionBusy,
    basic_authorization,
)
from jmap_twisted.auth.oidc import OIDC, BearerChecker
from jmap_twisted.auth.oidc_providers import REFETCH_INTERVAL, REFRESH_INTERVAL, looks_like_jwt
from jmap_twisted.auth.passwords import new_token, token_hash
from jmap_twisted.config import OIDCOptions, ServerConfig
from jmap_twisted.interfaces import IBearerToken
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.auth.oidc_support import (
    AUDIENCE,
    EC_KEY,
    ED_KEY,
    INTROSPECTION,
    ISSUER,
    JWKS_URI,
    NOW,
    OTHER_RSA_KEY,
    RSA_KEY,
    MemoryFetcher,
    b64,
    claims,
    public_jwk,
    result,
    token,
    unsigned,
)
from tests.support import CHEAP_HASHER


class Setup:
    """
    A directory with alice, OpenID Connect over a provider in memory, and
    the checker of bearer tokens.
    """

    def __init__(self, fetcher: MemoryFetcher | None = None, **options: Any) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = MemoryDirectory(self.clock)
        self.alice = result(self.directory.create_user("alice@example.com", None))
        self.fetcher = fetcher or MemoryFetcher()
        settings: dict[str, Any] = {"issuers": (ISSUER,), "audience": AUDIENCE, **options}
        self.oidc = OIDC(OIDCOptions(**settings), self.directory, self.clock, self.fetcher)
        self.checker = BearerChecker(self.directory, self.oidc)

    def check(self, value: str) -> Any:
        """
        The user id a token logs in as, or the exception refusing it.
        """
        return result(self.checker.requestAvatarId(BearerToken(value)))

    def fresh(self, *args: Any, **overrides: Any) -> str:
        """
        A token issued now (by the test's clock), valid five minutes.
        """
        now = int(self.clock.seconds())
        return token(*args, **{"iat": now, "exp": now + 300, **overrides})

    def credentials(self, value: str) -> tuple[Any, BearerToken]:
        credentials = BearerToken(value)
        return result(self.checker.requestAvatarId(credentials)), credentials


@pytest.fixture
def setup() -> Setup:
    return Setup()


def refused(outcome: Any, why: str = "") -> bool:
    """
    Whether a check refused the token (for the reason containing ``why``).
    """
    return isinstance(outcome, UnauthorizedLogin) and why in str(outcome)


# -- accepted ------------------------------------------------------------------


def test_checker_interface(setup: Setup) -> None:
    assert verifyObject(ICredentialsChecker, setup.checker)
    assert setup.checker.credentialInterfaces == (IBearerToken,)


def test_valid_token_names_its_user(setup: Setup) -> None:
    """
    A token signed by the provider, for this server, unexpired, logs in
    as the user its email claim names, and stamps what it rests on.
    """
    user_id, credentials = setup.credentials(token())
    assert user_id == setup.alice.id
    assert credentials.origin == ("oidc", ISSUER, "alice-subject", repr(NOW + 300))


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [(RSA_KEY, "PS256"), (RSA_KEY, "RS512"), (EC_KEY, "ES256"), (ED_KEY, "EdDSA")],
)
def test_every_asymmetric_algorithm(key: Any, algorithm: str) -> None:
    """
    RSA-PSS, other RSA hashes, ECDSA and EdDSA keys verify as well.
    """
    setup = Setup(MemoryFetcher(keys=[public_jwk(key, "k1")]))
    assert setup.check(token(key, algorithm)) == setup.alice.id


def test_token_without_kid_uses_the_only_fitting_key() -> None:
    setup = Setup(MemoryFetcher(keys=[public_jwk(RSA_KEY, "k1"), public_jwk(EC_KEY, "k2")]))
    assert setup.check(token(kid=None)) == setup.alice.id


def test_other_user_claim() -> None:
    setup = Setup(user_claim="preferred_username")
    assert setup.check(token(preferred_username="alice@example.com", email=None)) == (
        setup.alice.id
    )


def test_clock_skew_within_leeway_is_tolerated(setup: Setup) -> None:
    """
    A token expired 20 s ago, or valid from 20 s on, is still accepted
    (the provider's clock may differ from ours).
    """
    assert setup.check(token(exp=int(NOW) - 20)) == setup.alice.id
    assert setup.check(token(nbf=int(NOW) + 20)) == setup.alice.id


# -- refused -------------------------------------------------------------------


def test_bad_signature(setup: Setup) -> None:
    """
    A token signed with another key under the provider's kid is refused.
    """
    assert refused(setup.check(token(OTHER_RSA_KEY)), "InvalidSignatureError")


def test_tampered_claims(setup: Setup) -> None:
    header, _, signature = token().split(".")
    forged = b64(json.dumps(claims(email="bob@example.com")).encode())
    assert refused(setup.check(f"{header}.{forged}.{signature}"), "InvalidSignatureError")


def test_wrong_issuer(setup: Setup) -> None:
    """
    A token from an issuer not configured is refused without a fetch.
    """
    before = dict(setup.fetcher.gets)
    assert refused(setup.check(token(iss="https://evil.example.com")), "issuer")
    assert setup.fetcher.gets == before


def test_wrong_audience(setup: Setup) -> None:
    assert refused(setup.check(token(aud="https://other.example.com")), "InvalidAudience")
    assert refused(setup.check(token(aud=None)))
    assert setup.check(token(aud=["https://other.example.com", AUDIENCE])) == setup.alice.id


def test_expired(setup: Setup) -> None:
    assert refused(setup.check(token(exp=int(NOW) - 31)), "expired")


def test_expires_while_in_use(setup: Setup) -> None:
    """
    The same token is refused once the clock passes its expiry (and the
    leeway).
    """
    value = token(exp=int(NOW) + 60)
    assert setup.check(value) == setup.alice.id
    setup.clock.advance(91)
    assert refused(setup.check(value), "expired")


def test_not_yet_valid(setup: Setup) -> None:
    assert refused(setup.check(token(nbf=int(NOW) + 60)), "not valid yet")


def test_issued_in_the_future(setup: Setup) -> None:
    assert refused(setup.check(token(iat=int(NOW) + 3600)), "future")


def test_missing_exp(setup: Setup) -> None:
    assert refused(setup.check(token(exp=None)), "MissingRequiredClaim")


def test_malformed_exp(setup: Setup) -> None:
    assert refused(setup.check(token(exp="tomorrow")))


def test_missing_user_claim(setup: Setup) -> None:
    assert refused(setup.check(token(email=None)), "'email' claim")


@pytest.mark.parametrize("value", ["", "a:b@example.com", "al ice@example.com", 42, ["x"]])
def test_user_claim_that_cannot_be_a_username(setup: Setup, value: Any) -> None:
    assert refused(setup.check(token(email=value)))


def test_unverified_email(setup: Setup) -> None:
    assert refused(setup.check(token(email_verified=False)), "not verified")
    assert setup.check(token(email_verified=True)) == setup.alice.id


def test_not_an_access_token(setup: Setup) -> None:
    """
    Tokens typed as something else are refused: a DPoP proof by its
    header, a Keycloak ID or refresh token by its ``typ`` claim.  Plain
    ``JWT`` headers and Keycloak's ``Bearer`` claim are access tokens.
    """
    assert refused(setup.check(token(header_typ="dpop+jwt")))
    assert refused(setup.check(token(typ="ID")))
    assert refused(setup.check(token(typ="Refresh")))
    assert setup.check(token(header_typ="JWT", typ="Bearer")) == setup.alice.id
    assert setup.check(token(header_typ=None)) == setup.alice.id


def test_alg_none(setup: Setup) -> None:
    """
    An unsigned token is refused, with or without a signature segment.
    """
    header = {"alg": "none", "typ": "at+jwt", "kid": "k1"}
    assert refused(setup.check(unsigned(header, claims())))
    assert refused(setup.check(unsigned(header, claims(), b"anything")), "algorithm")
    assert refused(setup.check(unsigned({**header, "alg": "None"}, claims(), b"x")), "algorithm")


@pytest.mark.parametrize("secret_kind", ["pem", "jwk", "der"])
def test_hs256_with_the_public_key_as_secret(setup: Setup, secret_kind: str) -> None:
    """
    The algorithm confusion attack: an HMAC "signed" with the provider's
    public key (as PEM, as its JWK, as DER) is refused.
    """
    public = RSA_KEY.public_key()
    secret = {
        "pem": public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(public_jwk(RSA_KEY, "k1")).encode(),
        "der": public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
    }[secret_kind]
    for alg in ("HS256", "HS512"):
        header = {"alg": alg, "typ": "at+jwt", "kid": "k1"}
        signing_input = ".".join(
            [b64(json.dumps(header).encode()), b64(json.dumps(claims()).encode())]
        )
        digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
        signature = hmac.new(secret, signing_input.encode(), digest).digest()
        assert refused(setup.check(f"{signing_input}.{b64(signature)}"), "algorithm")


def test_algorithm_must_fit_the_key() -> None:
    """
    A key published for RS256 does not verify PS256, and an EC key does
    not verify RS256.
    """
    setup = Setup(
        MemoryFetcher(keys=[public_jwk(RSA_KEY, "k1", alg="RS256"), public_jwk(EC_KEY, "k2")])
    )
    assert refused(setup.check(token(algorithm="PS256")), "does not fit")
    assert refused(setup.check(token(kid="k2")), "does not fit")
    assert setup.check(token(EC_KEY, "ES256", kid="k2")) == setup.alice.id


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_unusable_keys_are_ignored() -> None:
    """
    Symmetric keys, encryption keys, published private keys and small RSA
    keys in the set verify nothing.
    """
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = {**RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True), "kid": "private"}
    keys = [
        {"kty": "oct", "k": b64(b"secret"), "kid": "oct"},
        public_jwk(RSA_KEY, "enc", use="enc"),
        private,
        public_jwk(small, "small"),
    ]
    setup = Setup(MemoryFetcher(keys=keys))
    assert refused(setup.check(token(kid="enc")), "does not publish")
    assert refused(setup.check(token(kid="private")), "does not publish")
    assert refused(setup.check(token(small, kid="small")), "does not publish")
    secret_signed = token(b"secret", "HS256", kid="oct")
    assert refused(setup.check(secret_signed))


def test_unknown_user_refused_without_create_users(setup: Setup) -> None:
    assert refused(setup.check(token(email="carol@example.com")), "does not know")
    assert result(setup.directory.get_user("carol@example.com")) is None


def test_unknown_user_created_with_create_users() -> None:
    """
    With create_users, a user the directory does not know is created on
    first sight, without a password, and logs in.
    """
    setup = Setup(create_users=True)
    user_id = setup.check(token(email="carol@example.com"))
    carol = result(setup.directory.get_user("carol@example.com"))
    assert carol is not None and user_id == carol.id
    assert result(setup.directory.get_password_hash("carol@example.com")) == (carol, None)
    assert result(setup.directory.accounts_for_user(carol.id))
    assert setup.check(token(email="carol@example.com")) == carol.id


def test_discovery_document_with_mismatched_issuer() -> None:
    """
    A discovery document naming another issuer is not followed: no key
    set is fetched and tokens are refused.
    """
    fetcher = MemoryFetcher()
    discovery = ISSUER + "/.well-known/openid-configuration"
    fetcher.documents[discovery]["issuer"] = "https://evil.example.com"
    setup = Setup(fetcher)
    assert refused(setup.check(token()), "does not publish")
    assert fetcher.fetches(discovery) == 1
    assert fetcher.fetches(JWKS_URI) == 0


def test_discovery_with_path_issuer() -> None:
    """
    An issuer with a path (as Keycloak's realms) is discovered below it,
    and must match to the last character.
    """
    issuer = "https://id.example.com/realms/mail"
    setup = Setup(MemoryFetcher(issuer=issuer), issuers=(issuer,))
    assert setup.check(token(iss=issuer)) == setup.alice.id
    assert refused(setup.check(token(iss=issuer + "/")))


def test_plain_http_provider_url_refused() -> None:
    """
    A discovery document pointing the key set at plain http (off
    loopback) is not followed.
    """
    fetcher = MemoryFetcher()
    fetcher.documents[ISSUER + "/.well-known/openid-configuration"]["jwks_uri"] = (
        "http://id.example.com/keys"
    )
    setup = Setup(fetcher)
    assert refused(setup.check(token()))
    assert fetcher.fetches("http://id.example.com/keys") == 0


# -- fetching keys -----------------------------------------------------------------


def test_keys_fetched_once_and_kept(setup: Setup) -> None:
    for _ in range(5):
        assert setup.check(token()) == setup.alice.id
    assert setup.fetcher.fetches() == 1


def test_unknown_kid_refetches_once_then_refuses(setup: Setup) -> None:
    """
    A token naming a key the set lacks fetches the set again once; the
    key still missing, it is refused.
    """
    assert setup.check(token()) == setup.alice.id
    setup.clock.advance(REFETCH_INTERVAL)
    assert refused(setup.check(token(kid="rotated")), "key")
    assert setup.fetcher.fetches() == 2
    assert refused(setup.check(token(kid="rotated")), "key")
    assert setup.fetcher.fetches() == 2


def test_rotated_key_found_by_the_refetch(setup: Setup) -> None:
    """
    After the provider rotates its key, the first token signed with the
    new one fetches the set and is accepted.
    """
    assert setup.check(token()) == setup.alice.id
    setup.fetcher.documents[JWKS_URI] = {
        "keys": [public_jwk(RSA_KEY, "k1"), public_jwk(OTHER_RSA_KEY, "k2")]
    }
    setup.clock.advance(REFETCH_INTERVAL)
    assert setup.check(token(OTHER_RSA_KEY, kid="k2")) == setup.alice.id
    assert setup.fetcher.fetches() == 2


def test_flood_of_unknown_kids_is_bounded(setup: Setup) -> None:
    """
    A thousand tokens naming made-up keys cost at most one fetch of the
    key set per REFETCH_INTERVAL, and the provider's real tokens are
    accepted throughout.
    """
    assert setup.check(setup.fresh()) == setup.alice.id
    for round_ in range(3):
        setup.clock.advance(REFETCH_INTERVAL)
        for _ in range(1000):
            assert refused(setup.check(setup.fresh(kid=uuid.uuid4().hex)), "does not publish")
        assert setup.fetcher.fetches() == 2 + round_
        assert setup.check(setup.fresh()) == setup.alice.id


def test_concurrent_misses_share_one_fetch(setup: Setup) -> None:
    """
    Tokens naming an unknown key while its set is being fetched all wait
    for that one fetch.
    """
    assert setup.check(token()) == setup.alice.id
    setup.clock.advance(REFETCH_INTERVAL)
    setup.fetcher.documents[JWKS_URI] = {
        "keys": [public_jwk(RSA_KEY, "k1"), public_jwk(OTHER_RSA_KEY, "k2")]
    }
    setup.fetcher.hold = True
    pending = [setup.checker.requestAvatarId(BearerToken(token(OTHER_RSA_KEY, kid="k2")))]
    pending += [
        setup.checker.requestAvatarId(BearerToken(token(kid=uuid.uuid4().hex))) for _ in range(50)
    ]
    assert not any(d.called for d in pending)
    assert setup.fetcher.fetches() == 2
    setup.fetcher.release()
    outcomes = [result(d) for d in pending]
    assert outcomes[0] == setup.alice.id
    assert all(refused(o) for o in outcomes[1:])
    assert setup.fetcher.fetches() == 2


def test_first_tokens_wait_for_the_first_fetch(setup: Setup) -> None:
    """
    Tokens arriving before the keys were ever fetched wait for one fetch.
    """
    setup.fetcher.hold = True
    pending = [setup.checker.requestAvatarId(BearerToken(token())) for _ in range(10)]
    setup.fetcher.release()
    assert [result(d) for d in pending] == [setup.alice.id] * 10
    assert setup.fetcher.fetches() == 1


def test_provider_down_keeps_the_keys(setup: Setup) -> None:
    """
    While the provider cannot be reached, the keys fetched before keep
    verifying tokens.
    """
    assert setup.check(setup.fresh()) == setup.alice.id
    setup.fetcher.documents.clear()
    setup.clock.advance(REFRESH_INTERVAL)
    result(Deferred.fromCoroutine(setup.oidc.providers.refresh_all()))
    assert setup.fetcher.fetches(ISSUER + "/.well-known/openid-configuration") == 2
    assert setup.check(setup.fresh()) == setup.alice.id


def test_background_refresh(setup: Setup) -> None:
    """
    Once started, the keys are fetched at once and every REFRESH_INTERVAL,
    so a removed key stops verifying without any token asking.
    """
    setup.oidc.start()
    assert setup.fetcher.fetches() == 1
    assert setup.check(setup.fresh()) == setup.alice.id
    setup.fetcher.documents[JWKS_URI] = {"keys": [public_jwk(OTHER_RSA_KEY, "k2")]}
    setup.clock.advance(REFRESH_INTERVAL)
    assert setup.fetcher.fetches() == 2
    assert refused(setup.check(setup.fresh()), "does not publish")
    assert setup.check(setup.fresh(OTHER_RSA_KEY, kid="k2")) == setup.alice.id
    setup.oidc.stop()
    setup.clock.advance(REFRESH_INTERVAL)
    assert setup.fetcher.fetches() == 2


# -- the directory's own tokens and introspection ----------------------------------------


def test_local_tokens_still_accepted(setup: Setup) -> None:
    value = new_token()
    result(setup.directory.add_token(setup.alice.id, token_hash(value), "laptop"))
    user_id, credentials = setup.credentials(value)
    assert user_id == setup.alice.id
    assert credentials.origin is None  # its hash is what it rests on


def active(**overrides: Any) -> dict[str, Any]:
    """
    What the provider says of an active token for alice.
    """
    return {
        "active": True,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(NOW) + 300,
        "iat": int(NOW),
        "sub": "alice-subject",
        "email": "alice@example.com",
        "token_type": "Bearer",
        **overrides,
    }


def introspecting(answer: Any) -> Setup:
    setup = Setup(client_id="jmap", client_secret="s3cret")
    setup.fetcher.introspect = lambda form: answer
    return setup


def test_introspection_active() -> None:
    """
    An opaque token the provider says is active for this server logs in,
    with the server's client credentials sent, and stamps its expiry.
    """
    setup = introspecting(active())
    user_id, credentials = setup.credentials("opaque-token")
    assert user_id == setup.alice.id
    assert credentials.origin == ("oidc", ISSUER, "alice-subject", repr(NOW + 300))
    ((url, form, authorization),) = setup.fetcher.posts
    assert url == INTROSPECTION
    assert form == {"token": "opaque-token", "token_type_hint": "access_token"}
    assert authorization == basic_authorization("jmap", "s3cret")


def test_introspection_inactive() -> None:
    assert refused(introspecting({"active": False}).check("opaque-token"))


@pytest.mark.parametrize(
    "answer",
    [
        active(active="true"),
        active(exp=int(NOW) - 31),
        active(aud="https://other.example.com"),
        active(aud=None),
        active(iss="https://evil.example.com"),
        active(nbf=int(NOW) + 60),
        active(email=None),
        active(token_type="refresh_token"),
        active(email_verified=False),
        ["active", True],
    ],
    ids=[
        "active-not-boolean",
        "expired",
        "wrong-aud",
        "no-aud",
        "wrong-iss",
        "not-yet-valid",
        "no-user-claim",
        "refresh-token",
        "unverified-email",
        "not-an-object",
    ],
)
def test_introspection_refusals(answer: Any) -> None:
    assert refused(introspecting(answer).check("opaque-token"))


def test_introspection_cached_by_token() -> None:
    """
    The answer is kept for a while: the same token again asks nothing,
    another token asks; past ACTIVE_TTL the token is asked about again.
    """
    setup = introspecting(active())
    assert setup.check("opaque-token") == setup.alice.id
    assert setup.check("opaque-token") == setup.alice.id
    assert len(setup.fetcher.posts) == 1
    assert setup.check("other-token") == setup.alice.id  # a second token is asked about
    assert len(setup.fetcher.posts) == 2
    setup.clock.advance(ACTIVE_TTL)
    assert setup.check("opaque-token") == setup.alice.id
    assert len(setup.fetcher.posts) == 3


def test_introspected_token_refused_once_expired() -> None:
    setup = introspecting(active(exp=int(NOW) + 10))
    assert setup.check("opaque-token") == setup.alice.id
    setup.clock.advance(11)
    assert refused(setup.check("opaque-token"))


def test_local_looking_tokens_never_introspected() -> None:
    """
    A token with the directory's prefix, unknown or revoked, is refused
    without being sent to the provider.
    """
    setup = introspecting(active())
    assert refused(setup.check(new_token()))
    assert setup.fetcher.posts == []


def test_local_tokens_before_introspection() -> None:
    setup = introspecting(active(email="bob@example.com"))
    value = new_token()
    result(setup.directory.add_token(setup.alice.id, token_hash(value), "laptop"))
    assert setup.check(value) == setup.alice.id
    assert setup.fetcher.posts == []


def test_no_introspection_without_client_credentials(setup: Setup) -> None:
    setup.fetcher.introspect = lambda form: active()
    assert refused(setup.check("opaque-token"))
    assert setup.fetcher.posts == []


def test_introspections_at_once_are_bounded() -> None:
    """
    Past MAX_CONCURRENT introspections in progress, more are refused with
    a retry (503) rather than queued at the provider.
    """
    setup = introspecting(None)
    answers: list[Deferred[Any]] = []

    def post_form(url: str, form: Any, authorization: str) -> Deferred[Any]:
        answers.append(Deferred())
        return answers[-1]

    setup.fetcher.post_form = post_form  # type: ignore[method-assign]
    pending = [
        setup.checker.requestAvatarId(BearerToken(f"opaque-{i}")) for i in range(MAX_CONCURRENT + 5)
    ]
    assert len(answers) == MAX_CONCURRENT
    busy = [result(d) for d in pending[MAX_CONCURRENT:]]
    assert all(isinstance(b, IntrospectionBusy) and b.status == 503 for b in busy)
    for answer in answers:
        answer.callback(active())
    assert [result(d) for d in pending[:MAX_CONCURRENT]] == [setup.alice.id] * MAX_CONCURRENT


# -- without OpenID Connect ----------------------------------------------------------


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(token())
    assert not looks_like_jwt(new_token())
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a..c")


def test_no_oidc_configuration_unchanged() -> None:
    """
    Without issuers the server checks bearer tokens exactly as before: the
    directory's tokens only, a provider's JWT refused, nothing fetched.
    """
    from jmap_twisted.server import JMAPServer
    from tests.support import ImmediateReactor

    reactor = ImmediateReactor()
    directory = MemoryDirectory(reactor)
    alice = result(directory.create_user("alice@example.com", CHEAP_HASHER.hash("pw")))
    value = new_token()
    result(directory.add_token(alice.id, token_hash(value), "laptop"))
    server = JMAPServer(
        ServerConfig(password_cost=2**4),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
    )
    assert server.oidc is None
    assert ServerConfig().oidc == OIDCOptions()
    assert not OIDCOptions().enabled
    checker = server.portal.checkers[IBearerToken]
    assert type(checker) is TokenChecker
    assert result(checker.requestAvatarId(BearerToken(value))) == alice.id
    assert refused(result(checker.requestAvatarId(BearerToken(token()))))


def test_oidc_configuration_uses_the_one_bearer_checker() -> None:
    from jmap_twisted.server import JMAPServer
    from tests.support import ImmediateReactor

    reactor = ImmediateReactor()
    reactor.advance(NOW)
    directory = MemoryDirectory(reactor)
    alice = result(directory.create_user("alice@example.com", None))
    server = JMAPServer(
        ServerConfig(password_cost=2**4, oidc=OIDCOptions(issuers=(ISSUER,), audience=AUDIENCE)),
        directory,
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
        oidc_fetcher=MemoryFetcher(),
    )
    assert server.oidc is not None
    checker = server.portal.checkers[IBearerToken]
    assert isinstance(checker, BearerChecker)
    assert result(checker.requestAvatarId(BearerToken(token()))) == alice.id


def test_options_keep_the_secret_out_of_repr() -> None:
    options = OIDCOptions(issuers=(ISSUER,), audience=AUDIENCE, client_id="c", client_secret="s3")
    assert "s3" not in repr(options)
    assert options.introspects


def test_tokens_never_logged() -> None:
    """
    Whatever happens to a token (accepted, refused for any reason,
    introspected, the provider failing), no log event holds it.
    """
    from twisted.logger import formatEvent, globalLogPublisher

    from jmap_twisted.auth.oidc_http import ProviderUnavailable

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        setup = Setup(create_users=True, client_id="jmap", client_secret="s3cret")
        tokens = [
            token(),
            token(OTHER_RSA_KEY),
            token(exp=int(NOW) - 100),
            token(email="dave@example.com"),
            token(kid="unknown"),
            "opaque-one",
        ]
        for value in tokens:
            setup.check(value)
        setup.fetcher.introspect = lambda form: active()
        setup.check("opaque-two")
        tokens.append("opaque-two")
        setup.fetcher.post_form = lambda url, form, authorization: fail(  # type: ignore[method-assign]
            ProviderUnavailable("id.example.com did not answer")
        )
        setup.check("opaque-three")
        tokens.append("opaque-three")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events  # refusals and the new user were logged
    logged = "\n".join(formatEvent(e) + repr(e) for e in events)
    for value in tokens:
        assert value not in logged
    assert "s3cret" not in logged
