"""
twisted.cred checkers for HTTP Basic passwords and bearer tokens.

Both produce the user's id as the avatar id.  Neither logs a credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from jmap_twisted.auth.passwords import PasswordHasher, token_hash
from jmap_twisted.interfaces import IBearerToken, IDirectory


@implementer(IBearerToken)
class BearerToken:
    """
    Credentials of ``Authorization: Bearer`` (and, for browsers, an
    ``access_token`` query parameter).
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<BearerToken (redacted)>"


class _VerifiedPasswords:
    """
    Remembers recent successful password checks so that clients which send
    Basic credentials with every request do not pay for scrypt each time.

    An entry is a keyed hash of (stored hash, password) under a per-process
    secret, so it proves nothing to anyone who reads memory, and it stops
    matching the moment the stored hash changes (a new password).
    """

    def __init__(self, clock: IReactorTime, ttl: float, size: int) -> None:
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def _fingerprint(self, stored: str, password: str) -> bytes:
        message = stored.encode() + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def known(self, user_id: str, stored: str, password: str) -> bool:
        entry = self._entries.get(user_id)
        if entry is None or entry[1] < self._clock.seconds():
            return False
        return hmac.compare_digest(entry[0], self._fingerprint(stored, password))

    def remember(self, user_id: str, stored: str, password: str) -> None:
        self._entries[user_id] = (
            self._fingerprint(stored, password),
            self._clock.seconds() + self._ttl,
        )
        self._entries.move_to_end(user_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


@implementer(ICredentialsChecker)
class PasswordChecker:
    """
    Checks usernames and passwords against the directory's scrypt hashes.

    Hashing runs in the reactor's thread pool.  Unknown users cost the same
    hash as known ones, so response times do not reveal which names exist.

    :param cache_ttl: seconds a successful check is remembered.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        directory: IDirectory,
        hasher: PasswordHasher,
        reactor: Any,
        clock: IReactorTime,
        cache_ttl: float = 300.0,
        cache_size: int = 10_000,
    ) -> None:
        self._directory = directory
        self._hasher = hasher
        self._reactor = reactor
        self._verified = _VerifiedPasswords(clock, cache_ttl, cache_size)
        self._decoy = hasher.hash(secrets.token_urlsafe(16))

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(IUsernamePassword(credentials)))

    async def _verify(self, password: str, stored: str) -> bool:
        return await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            self._hasher.verify,
            password,
            stored,
        )

    async def _check(self, credentials: IUsernamePassword) -> str:
        username = _text(credentials.username)
        password = _text(credentials.password)
        found = await self._directory.get_password_hash(username)
        user, stored = found if found is not None else (None, None)
        if user is None or stored is None:
            await self._verify(password, self._decoy)
            raise UnauthorizedLogin()
        if self._verified.known(user.id, stored, password):
            return user.id
        if not await self._verify(password, stored):
            raise UnauthorizedLogin()
        self._verified.remember(user.id, stored, password)
        return user.id


@implementer(ICredentialsChecker)
class TokenChecker:
    """
    Checks bearer tokens against the hashes the directory stores.
    """

    credentialInterfaces = (IBearerToken,)

    def __init__(self, directory: IDirectory) -> None:
        self._directory = directory

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(IBearerToken(credentials)))

    async def _check(self, credentials: IBearerToken) -> str:
        found = await self._directory.find_token(token_hash(credentials.token))
        if found is None:
            raise UnauthorizedLogin()
        return found[0].id


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
