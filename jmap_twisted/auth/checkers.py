# -*- test-case-name: tests.auth.test_checkers -*-
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
from twisted.cred.credentials import ICredentials, IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.auth.passwords import PasswordHasher, token_hash
from jmap_twisted.auth.throttle import (
    FailureLimiter,
    HashingQueue,
    InFlight,
    LoginLimits,
    LoginThrottled,
    client_key,
)
from jmap_twisted.interfaces import IBearerToken, IDirectory, IJMAPReactor

log = Logger()


@implementer(IBearerToken)
class BearerToken:
    """
    Credentials of ``Authorization: Bearer`` (and, for browsers, an
    ``access_token`` query parameter).

    :ivar origin: stamped by a checker that knows what the token rests on
        better than its hash (an OpenID Connect token: its provider,
        subject and expiry), else ``None``; see
        :func:`jmap_twisted.http.auth.credential_origin`.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.origin: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return "<BearerToken (redacted)>"


class PasswordCredentials(UsernamePassword):
    """
    ``Authorization: Basic`` credentials, with the address of the client
    that sent them (which failed logins are counted by).

    :ivar client: the client's IP address, or ``None`` when unknown.
    """

    def __init__(self, username: bytes, password: bytes, client: str | None) -> None:
        super().__init__(username, password)
        self.client = client

    def __repr__(self) -> str:
        return "<PasswordCredentials (redacted)>"


class _VerifiedPasswords:
    """
    Remembers recent successful password checks so that clients which send
    Basic credentials with every request do not pay for scrypt each time,
    and never wait behind other clients' checks.

    An entry holds keyed hashes, under a per-process secret, of the
    username with the password and of the stored hash: it proves nothing
    to anyone who reads memory, a wrong password never matches it, and it
    stops counting the moment the stored hash changes (a new password).
    """

    def __init__(self, clock: IReactorTime, ttl: float, size: int) -> None:
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._secret = secrets.token_bytes(32)
        #: username -> (password MAC, stored hash MAC, user id, expiry)
        self._entries: OrderedDict[str, tuple[bytes, bytes, str, float]] = OrderedDict()

    def _mac(self, *parts: str) -> bytes:
        message = b"\0".join(part.encode("utf-8", "surrogatepass") for part in parts)
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def fingerprint(self, username: str, password: str, stored: str) -> bytes:
        """
        A keyed hash naming one check of these credentials against this
        stored hash, safe to keep as a dictionary key.
        """
        return self._mac(username, password, stored)

    def known(self, username: str, password: str) -> tuple[str, bytes] | None:
        """
        The user id and stored hash MAC a live entry for these credentials
        holds, or ``None``; the caller checks the stored hash still is the
        one verified, with :meth:`still_valid`.
        """
        entry = self._entries.get(username)
        if entry is None:
            return None
        if entry[3] < self._clock.seconds():
            del self._entries[username]
            return None
        if not hmac.compare_digest(entry[0], self._mac(username, password)):
            return None
        return entry[2], entry[1]

    def still_valid(self, known: tuple[str, bytes], user_id: str, stored: str) -> bool:
        """
        Whether what :meth:`known` returned was for this user and hash.
        """
        return known[0] == user_id and hmac.compare_digest(known[1], self._mac(stored))

    def remember(self, username: str, password: str, user_id: str, stored: str) -> None:
        self._entries[username] = (
            self._mac(username, password),
            self._mac(stored),
            user_id,
            self._clock.seconds() + self._ttl,
        )
        self._entries.move_to_end(username)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, username: str) -> None:
        self._entries.pop(username, None)

    def __len__(self) -> int:
        return len(self._entries)


@implementer(ICredentialsChecker)
class PasswordChecker:
    """
    Checks usernames and passwords against the directory's scrypt hashes.

    Credentials that passed a check in the last few minutes (and whose
    stored hash has not changed) pass again at once, without hashing and
    whatever other clients do.  Others are refused with
    :class:`~jmap_twisted.auth.throttle.LoginThrottled` while their
    address or username has failed too often, and hashed in the
    :class:`~jmap_twisted.auth.throttle.HashingQueue`, which refuses
    them when full.  Unknown users cost the same hash as known ones, so
    response times do not reveal which names exist.

    :param reactor: the reactor whose thread pool hashes.
    :param clock: the time source of the limits and the cache.
    :param limits: the bounds; the defaults suit a small server.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        directory: IDirectory,
        hasher: PasswordHasher,
        reactor: IJMAPReactor,
        clock: IReactorTime,
        limits: LoginLimits | None = None,
    ) -> None:
        limits = limits or LoginLimits()
        self._directory = directory
        self._hasher = hasher
        self._verified = _VerifiedPasswords(clock, limits.cache_ttl, limits.cache_size)
        self._queue = HashingQueue(reactor, limits.threads, per_client=limits.per_client)
        self._addresses = (
            FailureLimiter(clock, limits.address_burst, limits.refill, limits.remembered)
            if limits.address_burst
            else None
        )
        self._users = FailureLimiter(clock, limits.user_burst, limits.refill, limits.remembered)
        self._checking = InFlight()
        self._decoy = hasher.hash(secrets.token_urlsafe(16))

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[Any]:
        client = None
        if (
            self._addresses is not None
            and isinstance(credentials, PasswordCredentials)
            and credentials.client is not None
        ):
            client = client_key(credentials.client)
        return Deferred.fromCoroutine(self._check(IUsernamePassword(credentials), client))

    def _throttle(self, client: str | None, username: str) -> None:
        wait = self._users.retry_after(username)
        if client is not None and self._addresses is not None:
            wait = max(wait, self._addresses.retry_after(client))
        if wait:
            raise LoginThrottled(wait)

    def _failed(self, client: str | None, username: str, known_user: bool) -> None:
        if client is not None and self._addresses is not None and self._addresses.failed(client):
            log.warn("Too many failed logins from {client}: throttling them", client=client)
        if self._users.failed(username) and known_user:
            log.warn("Too many failed logins as {username}: throttling them", username=username)

    async def _check(self, credentials: IUsernamePassword, client: str | None) -> str:
        username = _text(credentials.username)
        password = _text(credentials.password)
        known = self._verified.known(username, password)
        if known is None:
            # Refused before anything is read or hashed.
            self._throttle(client, username)
        found = await self._directory.get_password_hash(username)
        user, stored = found if found is not None else (None, None)
        if known is not None:
            if user is not None and stored is not None:
                if self._verified.still_valid(known, user.id, stored):
                    return user.id
            self._verified.forget(username)
            self._throttle(client, username)
        # Without an address (or with address limits off), no client
        # shares its place with another.
        share: object = client if client is not None else object()
        encoded = stored or self._decoy
        valid = await self._checking.join(
            self._verified.fingerprint(username, password, encoded),
            lambda: self._queue.run(share, self._hasher.verify, password, encoded),
        )
        if not valid or user is None or stored is None:
            self._failed(client, username, user is not None)
            raise UnauthorizedLogin()
        self._verified.remember(username, password, user.id, stored)
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
