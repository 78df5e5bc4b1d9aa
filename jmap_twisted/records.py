"""
Immutable values exchanged through the interfaces in
:mod:`jmap_twisted.interfaces`.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class User:
    """
    A person who can log in.

    :ivar id: opaque, stable identifier (never reused).
    :ivar username: the login name, unique, compared case-sensitively.
    """

    id: str
    username: str


@frozen
class Account:
    """
    A JMAP account (RFC 8620 §1.6.2): a collection of data a user may access.

    :ivar id: the JMAP ``accountId``.
    :ivar name: user-friendly name, by default the owner's username.
    :ivar owner_id: the :class:`User` id owning the account.
    """

    id: str
    name: str
    owner_id: str


@frozen
class TokenInfo:
    """
    What is known about an issued bearer token (never the token itself).

    :ivar id: identifier used to list and revoke the token.
    :ivar user_id: the user the token authenticates.
    :ivar name: free-form label given when issuing it.
    :ivar created: POSIX timestamp of issue.
    """

    id: str
    user_id: str
    name: str
    created: float


@frozen
class BlobInfo:
    """
    Metadata of a blob stored for an account (RFC 8620 §6).

    :ivar account_id: the account the blob is visible to.
    :ivar blob_id: the JMAP ``blobId``.
    :ivar size: size in octets.
    :ivar type: media type given at upload.
    """

    account_id: str
    blob_id: str
    size: int
    type: str
