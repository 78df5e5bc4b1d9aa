# -*- test-case-name: tests.push.test_webpush_crypto -*-
"""
The cryptography of web push: message encryption (RFC 8291 on the
``aes128gcm`` content coding of RFC 8188) and the server's VAPID
identification (RFC 8292).

Encryption (RFC 8291 §3): the server makes an ephemeral P-256 key pair per
message, agrees an ECDH secret with the subscription's ``p256dh`` key and
mixes in its ``auth`` secret (§3.3)::

    IKM   = HKDF(salt=auth, ikm=ecdh_secret,
                 info="WebPush: info" 0x00 ua_public as_public, L=32)
    CEK   = HKDF(salt=salt, ikm=IKM, info="Content-Encoding: aes128gcm" 0x00, L=16)
    NONCE = HKDF(salt=salt, ikm=IKM, info="Content-Encoding: nonce" 0x00, L=12)

The body is the RFC 8188 §2.1 header (salt, record size, and the ephemeral
public key as ``keyid``, RFC 8291 §4) followed by exactly one record:
``AES-128-GCM(CEK, NONCE, plaintext || 0x02)``.

VAPID (RFC 8292 §2, §3): a JWT signed with ES256 (ECDSA P-256 SHA-256, the
signature in the JWS ``r || s`` form, RFC 7518 §3.4) whose ``aud`` is the
origin of the push resource, sent as ``Authorization: vapid t=<JWT>,
k=<public key>``.

Keys arrive as base64url text (RFC 4648 §5). :func:`decode_b64url` accepts
the unpadded form the web platform produces and tolerates correct ``=``
padding; the standard alphabet's ``+`` and ``/``, whitespace, and encodings
with stray trailing bits are refused, so a key has one spelling. Error
messages never repeat the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jmap_twisted.origins import origin_of

__all__ = [
    "MAX_VAPID_LIFETIME",
    "InvalidKey",
    "VapidKey",
    "decode_b64url",
    "encrypt",
    "read_auth",
    "read_p256dh",
]

#: Octets of an uncompressed P-256 point (X9.62: 0x04, X, Y).
PUBLIC_KEY_LENGTH = 65
#: Octets of a subscription's authentication secret (RFC 8291 §3.2).
AUTH_LENGTH = 16
#: Octets of the RFC 8188 salt.
SALT_LENGTH = 16
#: RFC 8188 header with a P-256 ``keyid``: salt, rs (4), idlen (1), keyid.
HEADER_LENGTH = SALT_LENGTH + 4 + 1 + PUBLIC_KEY_LENGTH
#: The AES-GCM authentication tag.
TAG_LENGTH = 16
#: The padding delimiter of the last (here: only) record, RFC 8188 §2.
LAST_RECORD_DELIMITER = b"\x02"
#: The longest a VAPID token may live, RFC 8292 §2.
MAX_VAPID_LIFETIME = 24 * 3600.0

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class InvalidKey(ValueError):
    """
    A subscription key that is not what RFC 8291 requires. The message says
    what is wrong without repeating the key.
    """


def _b64url(data: bytes) -> str:
    """
    Encode as unpadded base64url.
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_b64url(text: str) -> bytes:
    """
    Decode base64url text (RFC 4648 §5), unpadded or correctly padded.

    :param text: the encoded value.
    :raises InvalidKey: for anything else: other characters (including the
        standard alphabet's ``+`` and ``/``), wrong padding, an impossible
        length, or nonzero trailing bits.
    :return: the decoded octets.
    """
    if not isinstance(text, str):
        raise InvalidKey("key is not a string")
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if padding and (padding > 2 or len(text) % 4):
        raise InvalidKey("key has wrong base64url padding")
    if not _B64URL.fullmatch(body):
        raise InvalidKey("key is not base64url")
    if len(body) % 4 == 1:
        raise InvalidKey("key has an impossible base64url length")
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidKey("key is not base64url") from None
    if _b64url(data) != body:
        raise InvalidKey("key is not canonical base64url")
    return data


def read_p256dh(text: str) -> bytes:
    """
    Read a subscription's ``p256dh`` key (RFC 8291 §3.2).

    :param text: base64url of the user agent's public key.
    :raises InvalidKey: unless it is a 65-octet uncompressed point on P-256.
    :return: the 65 octets.
    """
    raw = decode_b64url(text)
    if len(raw) != PUBLIC_KEY_LENGTH:
        raise InvalidKey(f"p256dh must be {PUBLIC_KEY_LENGTH} octets, got {len(raw)}")
    if raw[0] != 0x04:
        raise InvalidKey("p256dh must be an uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidKey("p256dh is not a point on P-256") from None
    return raw


def read_auth(text: str) -> bytes:
    """
    Read a subscription's ``auth`` secret (RFC 8291 §3.2).

    :param text: base64url of the secret.
    :raises InvalidKey: unless it decodes to exactly 16 octets.
    :return: the 16 octets.
    """
    raw = decode_b64url(text)
    if len(raw) != AUTH_LENGTH:
        raise InvalidKey(f"auth must be {AUTH_LENGTH} octets, got {len(raw)}")
    return raw


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """
    HKDF-SHA256 (RFC 5869), extract and expand.
    """
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def encrypt(
    plaintext: bytes,
    p256dh: bytes,
    auth: bytes,
    *,
    salt: bytes | None = None,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    record_size: int = 4096,
) -> bytes:
    """
    Encrypt a push message for one subscription (RFC 8291 §3.4, §4).

    :param plaintext: the message.
    :param p256dh: the user agent's public key, as :func:`read_p256dh`
        returns it.
    :param auth: the subscription's secret, as :func:`read_auth` returns it.
    :param salt: 16 random octets; fresh ones when ``None``. Only tests
        should pass one: reusing a salt with the same keys reuses the nonce.
    :param private_key: the server's P-256 key for this message; a fresh
        ephemeral one when ``None``. Only tests should pass one.
    :param record_size: the ``rs`` of the header and the bound on the whole
        body: a push service need not accept more than 4096 octets (RFC 8291
        §4), which leaves 3993 octets of plaintext.
    :raises InvalidKey: if ``p256dh`` or ``auth`` is malformed.
    :raises ValueError: if the plaintext does not fit, or ``salt``,
        ``private_key`` or ``record_size`` are unusable.
    :return: the ``Content-Encoding: aes128gcm`` request body.
    """
    if len(auth) != AUTH_LENGTH:
        raise InvalidKey(f"auth must be {AUTH_LENGTH} octets, got {len(auth)}")
    if len(p256dh) != PUBLIC_KEY_LENGTH or p256dh[:1] != b"\x04":
        raise InvalidKey("p256dh must be a 65-octet uncompressed P-256 point")
    try:
        ua_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise InvalidKey("p256dh is not a point on P-256") from None
    if not 0 < record_size < 2**32:
        raise ValueError("record_size must fit in 32 bits")
    limit = record_size - HEADER_LENGTH - TAG_LENGTH - len(LAST_RECORD_DELIMITER)
    if len(plaintext) > limit:
        raise ValueError(
            f"push message of {len(plaintext)} octets exceeds the {max(limit, 0)} that fit"
            f" one {record_size}-octet body"
        )
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    elif len(salt) != SALT_LENGTH:
        raise ValueError(f"salt must be {SALT_LENGTH} octets")
    if private_key is None:
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("private_key must be on P-256")

    as_public = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    ecdh_secret = private_key.exchange(ec.ECDH(), ua_key)
    ikm = _hkdf(auth, ecdh_secret, b"WebPush: info\x00" + p256dh + as_public, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    # One record, so the sequence number is 0 and the nonce is NONCE itself.
    record = AESGCM(cek).encrypt(nonce, plaintext + LAST_RECORD_DELIMITER, None)
    header = salt + struct.pack("!IB", record_size, len(as_public)) + as_public
    return header + record


class VapidKey:
    """
    The server's VAPID key pair (RFC 8292): a P-256 key whose public half
    clients name as ``applicationServerKey`` and which signs the token sent
    with every push request.
    """

    __slots__ = ("_private_key",)

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        """
        :param private_key: a P-256 private key.
        :raises ValueError: for a key on another curve.
        """
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("a VAPID key must be on P-256")
        self._private_key = private_key

    @classmethod
    def generate(cls) -> VapidKey:
        """
        Make a new random key.
        """
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> VapidKey:
        """
        Load a key saved by :meth:`pem` (any unencrypted PEM P-256 private
        key does).

        :raises ValueError: if ``pem`` is not an unencrypted PEM P-256
            private key.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("a VAPID key must be an EC key")
        return cls(key)

    def pem(self) -> bytes:
        """
        The private key as unencrypted PKCS#8 PEM, for a file only the server
        reads.
        """
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_raw(self) -> bytes:
        """
        The public key as a 65-octet uncompressed point.
        """
        return self._private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def application_server_key(self) -> str:
        """
        The public key as clients pass it to ``PushManager.subscribe``:
        unpadded base64url of :meth:`public_raw` (RFC 8292 §3.2, RFC 9749).
        """
        return _b64url(self.public_raw())

    def authorization(
        self,
        endpoint: str,
        subject: str | None,
        now: float,
        lifetime: float = 12 * 3600,
    ) -> str:
        """
        The ``Authorization`` header value for a request to a push resource
        (RFC 8292 §3): ``vapid t=<JWT>, k=<public key>``.

        :param endpoint: the push resource URL; its origin is the ``aud``.
        :param subject: a ``mailto:`` or ``https:`` contact for the push
            service's operator (the ``sub`` claim), or ``None`` for none.
        :param now: the current POSIX time.
        :param lifetime: seconds until the token expires, at most 24 hours.
        :raises ValueError: for a lifetime outside (0, 24 h], a subject that
            is not a ``mailto:`` or ``https:`` URI, or an endpoint that is
            not an ``http``/``https`` URL.
        """
        if not 0 < lifetime <= MAX_VAPID_LIFETIME:
            raise ValueError("a VAPID token lives more than 0 and at most 24 hours")
        claims: dict[str, Any] = {"aud": origin_of(endpoint), "exp": int(now + lifetime)}
        if subject is not None:
            if not subject.lower().startswith(("mailto:", "https:")):
                raise ValueError("the VAPID subject must be a mailto: or https: URI")
            claims["sub"] = subject
        header = {"typ": "JWT", "alg": "ES256"}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
            for part in (header, claims)
        )
        der = self._private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        token = f"{signing_input}.{_b64url(signature)}"
        return f"vapid t={token}, k={self.application_server_key()}"

    def __repr__(self) -> str:
        """
        Name the public key only.
        """
        return f"<VapidKey {self.application_server_key()}>"
