"""
Web push encryption (RFC 8291) and VAPID (RFC 8292).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jmap_twisted.push.webpush.crypto import (
    MAX_VAPID_LIFETIME,
    InvalidKey,
    VapidKey,
    decode_b64url,
    encrypt,
    read_auth,
    read_p256dh,
)

# RFC 8291 Appendix A (the example of §5).
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_AS_PUBLIC = (
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS"
    "6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qu"
    "lcy4a-fN"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def scalar_key(text: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(decode_b64url(text), "big"), ec.SECP256R1())


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def user_agent() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes]:
    """
    A browser's subscription: its private key, ``p256dh`` and ``auth``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key, raw_public(key), os.urandom(16)


# Encryption


def test_rfc8291_appendix_a_vector() -> None:
    """
    With the RFC's salt and keys, the body is the RFC's, octet for octet.
    """
    as_key = scalar_key(RFC_AS_PRIVATE)
    assert b64url(raw_public(as_key)) == RFC_AS_PUBLIC
    body = encrypt(
        RFC_PLAINTEXT,
        read_p256dh(RFC_UA_PUBLIC),
        read_auth(RFC_AUTH),
        salt=decode_b64url(RFC_SALT),
        private_key=as_key,
    )
    assert b64url(body) == RFC_BODY


def test_rfc8291_vector_decrypts_with_user_agent_key() -> None:
    """
    The RFC's user agent key reads the RFC's body back with an independent
    implementation, which also checks the vector was copied correctly.
    """
    plaintext = http_ece.decrypt(
        decode_b64url(RFC_BODY),
        private_key=scalar_key(RFC_UA_PRIVATE),
        auth_secret=decode_b64url(RFC_AUTH),
        version="aes128gcm",
    )
    assert plaintext == RFC_PLAINTEXT


@pytest.mark.parametrize("size", [0, 1, 41, 3000, 3993])
def test_user_agent_decrypts(size: int) -> None:
    """
    A user agent holding the subscription's keys decrypts the message with
    an independent implementation; the header carries rs 4096 and the
    server's fresh public key as keyid.
    """
    ua_key, p256dh, auth = user_agent()
    plaintext = os.urandom(size)
    body = encrypt(plaintext, p256dh, auth)
    assert len(body) == 86 + size + 1 + 16
    assert body[16:20] == (4096).to_bytes(4, "big")
    assert body[20] == 65
    assert body[21] == 0x04
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), body[21:86])
    decrypted = http_ece.decrypt(body, private_key=ua_key, auth_secret=auth, version="aes128gcm")
    assert decrypted == plaintext


def test_fresh_salt_and_key_per_message() -> None:
    """
    Two encryptions of one message share neither salt nor server key.
    """
    _, p256dh, auth = user_agent()
    first = encrypt(b"same", p256dh, auth)
    second = encrypt(b"same", p256dh, auth)
    assert first[:16] != second[:16]
    assert first[21:86] != second[21:86]


def test_wrong_auth_does_not_decrypt() -> None:
    """
    The auth secret is bound into the key: another secret cannot decrypt.
    """
    ua_key, p256dh, auth = user_agent()
    body = encrypt(b"secret", p256dh, auth)
    with pytest.raises(http_ece.ECEException):
        http_ece.decrypt(body, private_key=ua_key, auth_secret=os.urandom(16), version="aes128gcm")


def test_message_larger_than_one_record_refused() -> None:
    """
    A message that would not fit a 4096-octet body (3993 octets of
    plaintext) raises ValueError; a smaller record size lowers the bound.
    """
    _, p256dh, auth = user_agent()
    with pytest.raises(ValueError, match="3993"):
        encrypt(bytes(3994), p256dh, auth)
    assert len(encrypt(bytes(100), p256dh, auth, record_size=203)) == 203
    with pytest.raises(ValueError):
        encrypt(bytes(101), p256dh, auth, record_size=203)


def test_encrypt_checks_its_arguments() -> None:
    """
    Malformed keys, salts and server keys are refused before encrypting.
    """
    _, p256dh, auth = user_agent()
    with pytest.raises(InvalidKey):
        encrypt(b"x", p256dh, auth[:15])
    with pytest.raises(InvalidKey):
        encrypt(b"x", p256dh[:33], auth)
    with pytest.raises(InvalidKey):
        encrypt(b"x", b"\x04" + bytes(64), auth)
    with pytest.raises(ValueError, match="salt"):
        encrypt(b"x", p256dh, auth, salt=bytes(15))
    with pytest.raises(ValueError, match="P-256"):
        encrypt(b"x", p256dh, auth, private_key=ec.generate_private_key(ec.SECP384R1()))


# Key parsing


def test_b64url_unpadded_and_padded() -> None:
    """
    Unpadded base64url is the form browsers send; correct padding is
    tolerated and means the same.
    """
    data = bytes(range(250, 256)) + b"\xfb\xff"
    unpadded = b64url(data)
    assert "-" in unpadded or "_" in unpadded
    assert decode_b64url(unpadded) == data
    padded = base64.urlsafe_b64encode(data[:7]).decode()
    assert padded.endswith("=")
    assert decode_b64url(padded) == data[:7]
    assert decode_b64url("") == b""


@pytest.mark.parametrize(
    "text",
    [
        "+/+/",  # standard alphabet
        "ab cd",  # whitespace
        "abc=d",  # padding inside
        "ab=",  # wrong padding
        "a===",  # too much padding
        "abcde",  # impossible length
        "AB",  # nonzero trailing bits (canonical is "AA")
        "ab\u00e9d",  # not ASCII
    ],
)
def test_b64url_rejects(text: str) -> None:
    """
    Anything but (possibly padded) canonical base64url raises InvalidKey.
    """
    with pytest.raises(InvalidKey):
        decode_b64url(text)


def test_b64url_rejects_non_string() -> None:
    """
    A JSON value that is not a string is not a key.
    """
    with pytest.raises(InvalidKey):
        decode_b64url(b"AAAA")  # type: ignore[arg-type]


def test_read_p256dh_accepts_browser_key() -> None:
    """
    A browser's uncompressed P-256 key, unpadded or padded, reads as its 65
    octets.
    """
    _, p256dh, _ = user_agent()
    assert read_p256dh(b64url(p256dh)) == p256dh
    assert read_p256dh(base64.urlsafe_b64encode(p256dh).decode()) == p256dh


def test_read_p256dh_rejects_standard_alphabet() -> None:
    """
    A key written with ``+``/``/`` is not base64url and is refused.
    """
    for _ in range(64):
        _, p256dh, _ = user_agent()
        standard = base64.b64encode(p256dh).decode().rstrip("=")
        if "+" in standard or "/" in standard:
            break
    with pytest.raises(InvalidKey):
        read_p256dh(standard)


def key_failures() -> list[tuple[str, str]]:
    """
    Bad p256dh values and the word the error must use.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    compressed = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return [
        (b64url(compressed), "65 octets"),
        (b64url(raw_public(key)[:64]), "65 octets"),
        (b64url(raw_public(key) + b"\x00"), "65 octets"),
        (b64url(b"\x04" + (1).to_bytes(32, "big") * 2), "not a point"),
        (b64url(b"\x05" + raw_public(key)[1:]), "uncompressed"),
    ]


@pytest.mark.parametrize(("text", "reason"), key_failures())
def test_read_p256dh_rejects(text: str, reason: str) -> None:
    """
    A compressed point (RFC 8291 requires uncompressed), a wrong length, a
    bad prefix or a point off the curve is refused, naming the problem and
    not the key.
    """
    with pytest.raises(InvalidKey, match=reason) as caught:
        read_p256dh(text)
    assert text not in str(caught.value)
    assert text not in repr(caught.value)


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_read_auth_rejects_wrong_length(size: int) -> None:
    """
    The auth secret is exactly 16 octets.
    """
    text = b64url(os.urandom(size))
    with pytest.raises(InvalidKey, match="16 octets") as caught:
        read_auth(text)
    if text:
        assert text not in str(caught.value)


def test_read_auth() -> None:
    """
    A 16-octet secret reads back.
    """
    secret = os.urandom(16)
    assert read_auth(b64url(secret)) == secret


def test_parse_errors_do_not_echo_input() -> None:
    """
    No error message repeats what it was given, even for garbage.
    """
    for text in ["+secretsecret+", "secret secret", "c2VjcmV0c2VjcmV0==="]:
        for reader in (read_p256dh, read_auth, decode_b64url):
            with pytest.raises(InvalidKey) as caught:
                reader(text)
            assert "secret" not in str(caught.value)
            assert "c2VjcmV0" not in str(caught.value)


# VAPID

NOW = 1_800_000_000.0


def b64url_json(part: str) -> Any:
    return json.loads(decode_b64url(part))


def parse_authorization(value: str) -> tuple[str, str]:
    """
    Split ``vapid t=<JWT>, k=<key>`` into the token and the key.
    """
    scheme, _, params = value.partition(" ")
    assert scheme == "vapid"
    t, k = params.split(", ")
    assert t.startswith("t=")
    assert k.startswith("k=")
    return t[2:], k[2:]


def verify_jwt(token: str, public: bytes) -> None:
    """
    Check an ES256 JWS signature (``r || s``) against ``public``.
    """
    signing_input, _, signature_text = token.rpartition(".")
    signature = decode_b64url(signature_text)
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    key.verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))


def test_vapid_authorization_header() -> None:
    """
    The header is ``vapid t=…, k=…``: a JWT with the ES256 header, the
    endpoint's origin as ``aud``, ``exp`` = now + lifetime and the ``sub``
    given, signed by the key ``k`` names, which is the application server key.
    """
    vapid = VapidKey.generate()
    value = vapid.authorization(
        "https://push.example.net:8443/p/abc?x=1", "mailto:ops@example.com", NOW
    )
    token, k = parse_authorization(value)
    assert k == vapid.application_server_key()
    assert decode_b64url(k) == vapid.public_raw()
    assert len(vapid.public_raw()) == 65
    header, claims, _ = token.split(".")
    assert b64url_json(header) == {"typ": "JWT", "alg": "ES256"}
    assert b64url_json(claims) == {
        "aud": "https://push.example.net:8443",
        "exp": int(NOW) + 12 * 3600,
        "sub": "mailto:ops@example.com",
    }
    verify_jwt(token, decode_b64url(k))
    verify_jwt(token, decode_b64url(vapid.application_server_key()))


def test_vapid_signature_fails_for_other_key_or_claims() -> None:
    """
    The signature covers the claims and belongs to this key only.
    """
    vapid = VapidKey.generate()
    token, _ = parse_authorization(vapid.authorization("https://push.example.net/x", None, NOW))
    with pytest.raises(InvalidSignature):
        verify_jwt(token, VapidKey.generate().public_raw())
    header, _, signature = token.split(".")
    forged = b64url(json.dumps({"aud": "https://evil.example", "exp": int(NOW)}).encode())
    with pytest.raises(InvalidSignature):
        verify_jwt(f"{header}.{forged}.{signature}", vapid.public_raw())


def test_vapid_sub_only_when_given() -> None:
    """
    Without a subject the claims carry no ``sub``.
    """
    token, _ = parse_authorization(
        VapidKey.generate().authorization("https://push.example.net/x", None, NOW, lifetime=60)
    )
    assert b64url_json(token.split(".")[1]) == {
        "aud": "https://push.example.net",
        "exp": int(NOW) + 60,
    }


@pytest.mark.parametrize(
    ("endpoint", "aud"),
    [
        ("https://push.example.net/wpush/v2/abc", "https://push.example.net"),
        ("https://Push.Example.NET:443/abc", "https://push.example.net"),
        ("HTTPS://push.example.net:8443/p/abc?x=1#f", "https://push.example.net:8443"),
        ("http://push.example.net:80/abc", "http://push.example.net"),
        ("http://push.example.net:443/abc", "http://push.example.net:443"),
        ("https://user:pw@push.example.net/abc", "https://push.example.net"),
        ("https://[2001:db8::1]:8443/abc", "https://[2001:db8::1]:8443"),
    ],
)
def test_vapid_audience_is_origin(endpoint: str, aud: str) -> None:
    """
    ``aud`` is the RFC 6454 origin: lowercase scheme and host, the port
    only when it is not the scheme's default, no path, query or user info.
    """
    token, _ = parse_authorization(VapidKey.generate().authorization(endpoint, None, NOW))
    assert b64url_json(token.split(".")[1])["aud"] == aud


@pytest.mark.parametrize(
    "endpoint", ["ftp://push.example.net/x", "https:///x", "push.example.net/x", "https://h:99999/"]
)
def test_vapid_refuses_non_http_endpoint(endpoint: str) -> None:
    """
    Only http(s) URLs with a host have an origin to sign for.
    """
    with pytest.raises(ValueError):
        VapidKey.generate().authorization(endpoint, None, NOW)


def test_vapid_lifetime_at_most_a_day() -> None:
    """
    RFC 8292 caps ``exp`` at 24 hours after the request: a day is allowed,
    more (or a non-positive lifetime) raises ValueError.
    """
    vapid = VapidKey.generate()
    token, _ = parse_authorization(
        vapid.authorization("https://p.example/x", None, NOW, lifetime=MAX_VAPID_LIFETIME)
    )
    assert b64url_json(token.split(".")[1])["exp"] == int(NOW) + 24 * 3600
    for lifetime in (24 * 3600 + 1, 0, -5):
        with pytest.raises(ValueError):
            vapid.authorization("https://p.example/x", None, NOW, lifetime=lifetime)


def test_vapid_subject_must_be_contact_uri() -> None:
    """
    ``sub`` is a ``mailto:`` or ``https:`` contact (RFC 8292 §2.1).
    """
    vapid = VapidKey.generate()
    vapid.authorization("https://p.example/x", "https://example.com/contact", NOW)
    with pytest.raises(ValueError):
        vapid.authorization("https://p.example/x", "ops@example.com", NOW)


def test_vapid_pem_round_trip() -> None:
    """
    A key saved as PKCS#8 PEM loads back as the same key.
    """
    vapid = VapidKey.generate()
    pem = vapid.pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = VapidKey.from_pem(pem)
    assert loaded.public_raw() == vapid.public_raw()
    assert loaded.application_server_key() == vapid.application_server_key()
    token, _ = parse_authorization(loaded.authorization("https://p.example/x", None, NOW))
    verify_jwt(token, vapid.public_raw())
    assert VapidKey.generate().public_raw() != vapid.public_raw()


def test_vapid_from_pem_refuses_other_keys() -> None:
    """
    Garbage and keys on other curves are refused with ValueError.
    """
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for pem in (b"not a key", p384):
        with pytest.raises(ValueError):
            VapidKey.from_pem(pem)


def test_vapid_repr_hides_private_key() -> None:
    """
    The repr names the public key only.
    """
    vapid = VapidKey.generate()
    assert repr(vapid) == f"<VapidKey {vapid.application_server_key()}>"
