"""
Tests of :mod:`jmap_twisted.auth.passwords`.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from jmap_twisted.auth.passwords import PasswordHasher, new_token, token_hash

# Tests use cheap parameters; test_default_parameters_memory_hard checks the
# real ones.
CHEAP = PasswordHasher(n=2**4, r=8, p=1)


def test_roundtrip():
    """
    A password verifies against its own hash.
    """
    assert CHEAP.verify("correct horse", CHEAP.hash("correct horse"))


def test_wrong_password():
    """
    Any other password does not verify, including near misses.
    """
    encoded = CHEAP.hash("correct horse")
    for wrong in ["correct horse ", "Correct horse", "", "correct hors"]:
        assert not CHEAP.verify(wrong, encoded)


def test_encoding_self_describing():
    """
    The hash is scrypt$n$r$p$salt$key, with a 16-byte salt and a 32-byte key
    in base64, and never contains the password.
    """
    encoded = CHEAP.hash("correct horse")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(key, validate=True)) == 32
    assert "correct" not in encoded


def test_salt_differs_per_hash():
    """
    Hashing the same password twice gives different salts and keys, and
    both verify.
    """
    first, second = CHEAP.hash("pw"), CHEAP.hash("pw")
    assert first.split("$")[4] != second.split("$")[4]
    assert first != second
    assert CHEAP.verify("pw", first) and CHEAP.verify("pw", second)


def test_parameters_read_from_hash():
    """
    A hash verifies with a hasher of other parameters: they are read from
    the hash.
    """
    other = PasswordHasher(n=2**5, r=2, p=2)
    encoded = other.hash("pw")
    assert encoded.startswith("scrypt$32$2$2$")
    assert CHEAP.verify("pw", encoded)
    assert not CHEAP.verify("wrong", encoded)


def test_unicode_normalised():
    """
    The same password in composed or decomposed Unicode verifies.
    """
    assert CHEAP.verify("cafe\u0301", CHEAP.hash("caf\u00e9"))
    assert CHEAP.verify("caf\u00e9", CHEAP.hash("cafe\u0301"))


def test_unencodable_password():
    """
    A password with a lone surrogate cannot be hashed (ValueError) and never
    verifies.
    """
    with pytest.raises(ValueError):
        CHEAP.hash("bad\udcff")
    assert not CHEAP.verify("bad\udcff", CHEAP.hash("bad"))


def _replace_field(encoded: str, index: int, value: str) -> str:
    fields = encoded.split("$")
    fields[index] = value
    return "$".join(fields)


VALID = CHEAP.hash("pw")
B64_16 = base64.b64encode(b"\0" * 16).decode()
MALFORMED = [
    "",
    "pw",
    "scrypt",
    "scrypt$16$8$1$",
    VALID + "$extra",
    VALID.replace("$", "$$", 1),
    _replace_field(VALID, 0, "bcrypt"),
    _replace_field(VALID, 0, "SCRYPT"),
    _replace_field(VALID, 1, "15"),  # not a power of 2
    _replace_field(VALID, 1, "1"),
    _replace_field(VALID, 1, "0"),
    _replace_field(VALID, 1, "-16"),
    _replace_field(VALID, 1, "+16"),
    _replace_field(VALID, 1, " 16"),
    _replace_field(VALID, 1, "016"),
    _replace_field(VALID, 1, "\uff11\uff16"),  # fullwidth digits
    _replace_field(VALID, 1, "sixteen"),
    _replace_field(VALID, 1, str(2**30)),  # more memory than allowed
    _replace_field(VALID, 1, "9" * 40),
    _replace_field(VALID, 2, "0"),
    _replace_field(VALID, 3, "0"),
    _replace_field(VALID, 2, "1000000"),
    _replace_field(VALID, 4, ""),
    _replace_field(VALID, 4, "not base64!"),
    _replace_field(VALID, 4, B64_16[:-1]),  # bad padding
    _replace_field(VALID, 5, ""),
    _replace_field(VALID, 5, base64.b64encode(b"\0" * 8).decode()),  # key too short
    _replace_field(VALID, 5, base64.b64encode(b"\0" * 65).decode()),  # key too long
    _replace_field(VALID, 5, "%%%%"),
]


@pytest.mark.parametrize("encoded", MALFORMED)
def test_malformed_hash(encoded):
    """
    A malformed or out-of-bounds hash never verifies, and verify() does not
    raise for it.
    """
    assert CHEAP.verify("pw", encoded) is False


def test_tampered_key():
    """
    A hash whose key was changed does not verify.
    """
    key = bytearray(base64.b64decode(VALID.split("$")[5]))
    key[0] ^= 1
    assert not CHEAP.verify("pw", _replace_field(VALID, 5, base64.b64encode(key).decode()))


@pytest.mark.parametrize(
    ("n", "r", "p"), [(1, 8, 1), (15, 8, 1), (2**4, 0, 1), (2**4, 8, 0), (2**25, 8, 1)]
)
def test_invalid_parameters(n, r, p):
    """
    A hasher cannot be made with invalid parameters, nor ones needing more
    memory than the verifier accepts.
    """
    with pytest.raises(ValueError):
        PasswordHasher(n=n, r=r, p=p)


def test_default_parameters_memory_hard():
    """
    The default hasher uses memory-hard parameters (n >= 2**14, r >= 8: at
    least 16 MiB per hash), and its hashes say so.
    """
    hasher = PasswordHasher()
    assert hasher.n >= 2**14
    assert hasher.r >= 8
    assert 128 * hasher.n * hasher.r >= 16 * 2**20
    encoded = hasher.hash("pw")
    assert int(encoded.split("$")[1]) >= 2**14
    assert CHEAP.verify("pw", encoded)


def test_new_token():
    """
    A token is jmt_ followed by 43 URL-safe characters (32 random bytes),
    and each is new.
    """
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert re.fullmatch(r"jmt_[A-Za-z0-9_-]{43}", token)


def test_token_hash():
    """
    The token hash is the SHA-256 of the token in hex: deterministic, and
    different for different tokens.
    """
    token = new_token()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_hash(token) == token_hash(token)
    assert token_hash(token) != token_hash(new_token())
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash(token))
