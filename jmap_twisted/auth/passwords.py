"""
Password hashing, and the bearer tokens the server issues.

Passwords are hashed with scrypt, a memory-hard function, into a
self-describing string ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and key in
standard base64), so that hashes made with other parameters still verify
after the parameters change.

Hashing a password with the default parameters takes about 0.1 s of one
core and 32 MiB of memory: call :meth:`PasswordHasher.hash` and
:meth:`PasswordHasher.verify` from a thread, never on the reactor thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata

SCHEME = "scrypt"
"""
First field of an encoded password hash.
"""

TOKEN_PREFIX = "jmt_"  # noqa: S105 (a public prefix, not a secret)
"""
Prefix of every bearer token, so that a leaked token is recognisable (by
secret scanners, for instance).
"""

SALT_BYTES = 16
KEY_BYTES = 32

MAX_MEMORY = 256 * 1024 * 1024
"""
The most memory, in bytes, one hash may use.  :meth:`PasswordHasher.verify`
refuses stored hashes whose parameters need more, so a corrupt or hostile
entry in the directory cannot exhaust the server's memory.
"""

_NUMBER = re.compile(r"[1-9][0-9]{0,9}")


def _memory_needed(n: int, r: int, p: int) -> int:
    # What OpenSSL's scrypt allocates (and checks against maxmem).
    return 128 * r * (n + 2 + p)


def _check_parameters(n: int, r: int, p: int) -> None:
    if n < 2 or n & (n - 1):
        raise ValueError("scrypt n must be a power of 2 greater than 1")
    if r < 1 or p < 1:
        raise ValueError("scrypt r and p must be positive")
    if _memory_needed(n, r, p) > MAX_MEMORY:
        raise ValueError("these scrypt parameters need more than MAX_MEMORY")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # NFC, as RFC 8265's OpaqueString profile: the same password typed on
    # two systems that compose accents differently is the same password.
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    return hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_memory_needed(n, r, p)
    )


class PasswordHasher:
    """
    Hashes passwords with scrypt, and verifies them against such hashes.

    The defaults (``n=2**15, r=8, p=1``: 32 MiB, about 0.1 s of one core) follow
    OWASP's recommendation for scrypt; tests use a much smaller ``n``.

    :param n: CPU/memory cost, a power of 2.
    :param r: block size.
    :param p: parallelisation.
    :raises ValueError: the parameters are invalid, or need more memory than
        :data:`MAX_MEMORY`.
    """

    def __init__(self, n: int = 2**15, r: int = 8, p: int = 1) -> None:
        _check_parameters(n, r, p)
        self.n = n
        self.r = r
        self.p = p

    def hash(self, password: str) -> str:
        """
        Hash a password with a fresh random salt.

        :param password: the password; it is never logged nor kept.
        :return: ``scrypt$<n>$<r>$<p>$<salt b64>$<key b64>``.
        :raises ValueError: the password is not valid Unicode text (it has
            lone surrogates).
        """
        salt = secrets.token_bytes(SALT_BYTES)
        try:
            key = _derive(password, salt, self.n, self.r, self.p, KEY_BYTES)
        except UnicodeEncodeError:
            raise ValueError("the password is not valid Unicode text") from None
        return "$".join(
            [
                SCHEME,
                str(self.n),
                str(self.r),
                str(self.p),
                base64.b64encode(salt).decode("ascii"),
                base64.b64encode(key).decode("ascii"),
            ]
        )

    def verify(self, password: str, encoded: str) -> bool:
        """
        Whether ``password`` is the one ``encoded`` was made from.

        The parameters are read from ``encoded``, not from this hasher, so
        any valid hash verifies whatever this hasher's own parameters.  The
        comparison takes the same time wherever the keys differ.

        :param password: the candidate password.
        :param encoded: a hash made by :meth:`hash`.
        :return: ``False`` also when ``encoded`` is malformed or needs more
            than :data:`MAX_MEMORY`, and when ``password`` is not valid
            Unicode text; this never raises for bad input.
        """
        fields = encoded.split("$")
        if len(fields) != 6 or fields[0] != SCHEME:
            return False
        if not all(_NUMBER.fullmatch(field) for field in fields[1:4]):
            return False
        n, r, p = (int(field) for field in fields[1:4])
        try:
            _check_parameters(n, r, p)
            salt = base64.b64decode(fields[4], validate=True)
            expected = base64.b64decode(fields[5], validate=True)
        except (ValueError, binascii.Error):
            return False
        if not salt or not 16 <= len(expected) <= 64:
            return False
        try:
            actual = _derive(password, salt, n, r, p, len(expected))
        except (ValueError, MemoryError):
            # UnicodeEncodeError is a ValueError; OpenSSL may still refuse.
            return False
        return hmac.compare_digest(actual, expected)


def new_token() -> str:
    """
    A new bearer token: ``jmt_`` followed by 32 random bytes in URL-safe
    base64 (256 bits of entropy).  Show it to its owner once; store only
    :func:`token_hash` of it.
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """
    The SHA-256 of a bearer token, in hex: what the directory stores and
    looks tokens up by.

    A fast, unsalted hash is right here, unlike for passwords: a token is
    256 random bits, so no dictionary or brute force can invert its hash,
    and a deterministic hash lets the directory find a token with one
    indexed lookup on every request.

    :param token: the token as presented by a client.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
