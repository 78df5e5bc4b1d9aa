"""
Identifiers for stored objects.

JMAP Ids (RFC 8620 §1.2) are 1 to 255 characters of ``[A-Za-z0-9_-]``.  Users,
accounts and tokens get a one-letter prefix and 64 random bits in hex, so a
stray id in a log says what it names; blob ids are derived from the content
so storing the same octets twice yields the same id.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def is_valid_id(value: str) -> bool:
    """
    Whether ``value`` has the syntax of a JMAP Id.

    :param value: the candidate id.
    """
    return _ID.fullmatch(value) is not None


def _random_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def new_user_id() -> str:
    """
    A fresh user id: ``u`` followed by 16 random hex digits.
    """
    return _random_id("u")


def new_account_id() -> str:
    """
    A fresh account id: ``a`` followed by 16 random hex digits.
    """
    return _random_id("a")


def new_token_id() -> str:
    """
    A fresh token id: ``t`` followed by 16 random hex digits.  It names a
    token for listing and revocation; it is not the secret token itself.
    """
    return _random_id("t")


def blob_id(data: bytes) -> str:
    """
    The content-addressed id of some octets: ``G`` followed by the SHA-256 of
    ``data`` in hex.  This hashes the whole of ``data``: call it off the
    reactor thread for anything large.

    :param data: the blob's octets.
    """
    return "G" + hashlib.sha256(data).hexdigest()


def new_mailbox_id() -> str:
    """
    A new mailbox id: ``m`` + 16 random hex characters.
    """
    return _random_id("m")


def new_email_id() -> str:
    """
    A new email id: ``e`` + 16 random hex characters.
    """
    return _random_id("e")


def new_thread_id() -> str:
    """
    A new thread id: ``t`` + 16 random hex characters.
    """
    return _random_id("T")
