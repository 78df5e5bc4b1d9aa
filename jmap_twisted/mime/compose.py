# -*- test-case-name: tests.mime.test_compose -*-
"""
Building an RFC 5322 message from the Email object of an ``Email/set``
create (RFC 8621 §4.6).

:func:`compose_message` runs the pipeline: it checks the object against
the creation rules of RFC 8621 §4.6, fetches the blobs its body parts name,
and serialises the message with the stdlib :mod:`email` package.  Every
violation found is reported at once, as the property paths of one
:class:`InvalidEmail`.  The stages, each documenting the choices it makes
where the RFCs leave room:

- :mod:`~jmap_twisted.mime.compose_email`: the Email object, its header
  properties, and the errors reported (:class:`ComposeError` and its
  subclasses, importable from here);
- :mod:`~jmap_twisted.mime.compose_values`: each header value written in
  its form (folding, encoded-words, addresses, dates, message ids, URLs);
- :mod:`~jmap_twisted.mime.compose_body`: the body parts and body values;
- :mod:`~jmap_twisted.mime.compose_serialise`: the MIME tree and its
  octets (transfer encodings).

Choices made here: a generated Message-ID is ``<144 random bits,
base64url@host>``: unlike :func:`email.utils.make_msgid` it reveals no
process id and reads no clock.  A generated Date is ``now``; ``sentAt``
keeps its offset.  The header fields of the root body part are the
message's: a ``bodyStructure`` root may not repeat a field the Email sets
(RFC 8621 §4.6), and when the one part of ``textBody``/``htmlBody``/
``attachments`` does, it is nested in a ``multipart/mixed`` so that both
keep their own; a root part's ``Date`` or ``Message-ID`` stands for the
generated one.  :attr:`ComposedMessage.smtputf8` says whether a header
field carries UTF-8 (RFC 6532), so that submitting the message needs
SMTPUTF8; ``raw.isascii()`` is false only when the message needs SMTPUTF8
or 8BITMIME.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import idna
from attrs import frozen

from jmap_twisted.mime.compose_body import Part, fetch_blobs, read_body, walk
from jmap_twisted.mime.compose_email import (
    BlobNotFound,
    ComposeError,
    InvalidEmail,
    Problems,
    TooLarge,
    read_email_headers,
    read_keywords,
    read_mailbox_ids,
    read_received_at,
)
from jmap_twisted.mime.compose_serialise import build_mime, serialise
from jmap_twisted.mime.compose_values import DOT_ATOM

__all__ = [
    "DEFAULT_MAX_SIZE",
    "BlobNotFound",
    "ComposeError",
    "ComposedMessage",
    "InvalidEmail",
    "TooLarge",
    "compose_message",
]

#: The default limit on the size of a composed message, in octets.
DEFAULT_MAX_SIZE = 50 * 1024 * 1024

_MSG_ID_IN_VALUE = re.compile(r"<([^<>\s]+)>")


@frozen
class ComposedMessage:
    """
    A message built from an Email create, with what the store needs.

    :ivar raw: the message, CRLF line ends, no line over 998 octets.
    :ivar message_id: the ids of its Message-ID field, without angle brackets.
    :ivar mailbox_ids: the validated ``mailboxIds`` (every value ``True``);
        ``#creationId`` references are left for the caller to resolve.
    :ivar keywords: the validated ``keywords``, lowercased.
    :ivar received_at: ``receivedAt``, or the ``now`` given.
    :ivar smtputf8: whether header fields carry UTF-8 (RFC 6532), so that
        sending needs the SMTPUTF8 extension.
    """

    raw: bytes
    message_id: list[str]
    mailbox_ids: dict[str, bool]
    keywords: dict[str, bool]
    received_at: datetime
    smtputf8: bool


def compose_message(
    email: Mapping[str, Any],
    *,
    fetch_blob: Callable[[str], tuple[bytes, str] | None],
    now: datetime,
    host: str,
    max_size: int = DEFAULT_MAX_SIZE,
) -> ComposedMessage:
    """
    Turn the Email object of an ``Email/set`` create into a message.

    :param email: the Email object as the client sent it (creation id
        references already resolved).
    :param fetch_blob: returns the octets and stored media type of a blob
        the account may use, or ``None``.
    :param now: the current time: the default Date and ``receivedAt``.
    :param host: the domain of a generated Message-ID.
    :param max_size: the largest message allowed, in octets.
    :raises InvalidEmail: when the object breaks RFC 8621 §4.6.
    :raises BlobNotFound: when a body part names an unknown blob.
    :raises TooLarge: when the message would exceed ``max_size``.
    :raises ValueError: when ``host`` is not a domain name.
    """
    if not isinstance(email, Mapping):
        raise InvalidEmail([], "an Email must be a JSON object")
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    id_host = _message_id_host(host)
    problems = Problems()
    mailbox_ids = read_mailbox_ids(email.get("mailboxIds"), problems)
    keywords = read_keywords(email.get("keywords"), problems)
    received_at = read_received_at(email.get("receivedAt"), now, problems)

    headers = read_email_headers(email, problems)
    root = read_body(email, problems)
    given = {name.lower() for name, _ in headers}
    repeated = {field: path for field, path in root.fields.items() if field in given}
    if repeated and email.get("bodyStructure") is not None:
        for field, path in repeated.items():
            problems.add(
                path,
                f"the Email already sets {field}; the header fields of the bodyStructure"
                " root are the message's, so it may not repeat them (RFC 8621 §4.6)",
            )
    elif repeated:
        # The one part of textBody/htmlBody/attachments would be the message
        # itself: nested, it keeps its header fields and the Email its own.
        root = Part("", "multipart/mixed", sub_parts=[root])
    problems.raise_any()

    blobs = fetch_blobs(root, fetch_blob)
    content_size = sum(len(data) for data, _ in blobs.values())
    content_size += sum(len(p.text.encode()) for p in walk(root) if p.text is not None)
    if content_size > max_size:
        raise TooLarge(max_size)

    # The root part's header fields are the message's too.
    fields = given | set(root.fields)
    if "date" not in fields:
        headers.append(("Date", format_datetime(now.replace(microsecond=0))))
    if "message-id" not in fields:
        headers.append(("Message-ID", f"<{secrets.token_urlsafe(18)}@{id_host}>"))
    headers.append(("MIME-Version", "1.0"))
    message_id = _MSG_ID_IN_VALUE.findall(
        [v for n, v in headers + root.headers if n.lower() == "message-id"][-1].replace("\r\n", "")
    )
    raw = serialise(headers, build_mime(root, blobs))
    if len(raw) > max_size:
        raise TooLarge(max_size)
    part_headers = [field for part in walk(root) for field in part.headers]
    smtputf8 = not all(value.isascii() for _, value in headers + part_headers)
    return ComposedMessage(raw, message_id, mailbox_ids, keywords, received_at, smtputf8)


def _message_id_host(host: str) -> str:
    try:
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError as e:
        raise ValueError(f"not a domain name: {host!r}") from e
    if not DOT_ATOM.fullmatch(ascii_host):
        raise ValueError(f"not a domain name: {host!r}")
    return ascii_host
