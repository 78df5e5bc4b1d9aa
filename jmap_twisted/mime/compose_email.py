# -*- test-case-name: tests.mime.test_compose -*-
"""
Reading the Email object of an ``Email/set`` create (RFC 8621 §4.6): the
properties it may hold, ``mailboxIds``, ``keywords``, ``receivedAt``, and
the header fields its properties give (convenience properties and
``header:Name[:asForm][:all]``, RFC 8621 §4.1.3).  Every violation is
collected, so that one :class:`InvalidEmail` reports them all as property
paths (the SetError of RFC 8620 §5.3).

Choices made where the RFC leaves room: the ``headers`` property is refused
on the Email and on body parts (RFC 8621 §4.6: each header field is set as
its own property), as are ``header:MIME-Version`` (the server writes it)
and, on body parts, ``header:Content-Type`` (use ``type``/``charset``/
``name``) and ``header:Content-Transfer-Encoding``.  ``null`` means "not
given".  ``header:…`` property names are parsed by
:func:`jmap_twisted.mime.headers.parse_header_property`, which also refuses
the forms RFC 8621 §4.1.2 forbids for a field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from attrs import frozen

from jmap_twisted.errors import JMAPError
from jmap_twisted.mime.compose_values import UTC_DATE, InvalidValue, parse_date, render
from jmap_twisted.mime.headers import parse_header_property

_KEYWORD = re.compile(r"[\x21-\x7e]{1,255}")
_KEYWORD_FORBIDDEN = frozenset('(){]%*"\\')

_SERVER_SET = ("id", "blobId", "threadId", "size", "preview", "hasAttachment")
_BODY_PROPERTIES = ("bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues")
_CONVENIENCE = {
    "messageId": ("Message-ID", "MessageIds"),
    "inReplyTo": ("In-Reply-To", "MessageIds"),
    "references": ("References", "MessageIds"),
    "sender": ("Sender", "Addresses"),
    "from": ("From", "Addresses"),
    "to": ("To", "Addresses"),
    "cc": ("Cc", "Addresses"),
    "bcc": ("Bcc", "Addresses"),
    "replyTo": ("Reply-To", "Addresses"),
    "subject": ("Subject", "Text"),
    "sentAt": ("Date", "Date"),
}


class ComposeError(JMAPError):
    """
    An Email create that cannot become a message, reported to the client as
    the SetError :meth:`to_set_error` returns (RFC 8620 §5.3).

    :ivar description: human-readable explanation.
    """

    set_error_type: ClassVar[str] = "invalidProperties"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def to_set_error(self) -> dict[str, Any]:
        """
        The SetError object for ``notCreated``.
        """
        return {"type": self.set_error_type, "description": self.description}


class InvalidEmail(ComposeError):
    """
    The Email breaks the rules of RFC 8621 §4.6 (``invalidProperties``).

    :ivar properties: the path of every offending property, e.g. ``from``
        or ``bodyStructure/subParts/1/partId``.
    """

    set_error_type = "invalidProperties"

    def __init__(self, properties: list[str], description: str) -> None:
        super().__init__(description)
        self.properties = properties

    def to_set_error(self) -> dict[str, Any]:
        return {**super().to_set_error(), "properties": list(self.properties)}


class BlobNotFound(ComposeError):
    """
    A body part names a blob the account cannot use (``blobNotFound``).

    :ivar blob_ids: the unknown blob ids, in order of appearance.
    """

    set_error_type = "blobNotFound"

    def __init__(self, blob_ids: list[str]) -> None:
        super().__init__("no such blob: " + ", ".join(blob_ids))
        self.blob_ids = blob_ids

    def to_set_error(self) -> dict[str, Any]:
        return {**super().to_set_error(), "notFound": list(self.blob_ids)}


class TooLarge(ComposeError):
    """
    The message would be larger than allowed (``tooLarge``).

    :ivar max_size: the limit, in octets.
    """

    set_error_type = "tooLarge"

    def __init__(self, max_size: int) -> None:
        super().__init__(f"the message would exceed {max_size} octets")
        self.max_size = max_size


class Problems:
    """
    Collects offending property paths and why, to report them all at once.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.reasons: list[str] = []

    def add(self, path: str, reason: str) -> None:
        """
        Record that the property at ``path`` is invalid, once per path.
        """
        if path not in self.paths:
            self.paths.append(path)
            self.reasons.append(f"{path}: {reason}")

    def raise_any(self) -> None:
        """
        :raises InvalidEmail: naming every path recorded, if any.
        """
        if self.paths:
            raise InvalidEmail(self.paths, "; ".join(self.reasons))


@frozen
class HeaderSpec:
    """
    One header field a property asks for, before its value is written.

    :ivar path: the property's path, for reporting.
    :ivar name: the field name as given.
    :ivar form: the parsed form the value is in (RFC 8621 §4.1.2).
    :ivar all: whether the value lists every instance (``:all``).
    :ivar value: the JSON value as the client sent it.
    """

    path: str
    name: str
    form: str
    all: bool
    value: Any


def property_path(base: str, *keys: str | int) -> str:
    """
    The path ``base`` (a JSON Pointer without its leading ``/``) extended
    by ``keys``, escaped as RFC 6901 requires.
    """
    return "/".join([base, *(str(k).replace("~", "~0").replace("/", "~1") for k in keys)])


def read_email_headers(email: Mapping[str, Any], problems: Problems) -> list[tuple[str, str]]:
    """
    The header fields the Email's properties give, ready to write; also
    records server-set, unknown and ``headers`` properties as invalid.
    """
    specs: list[HeaderSpec] = []
    for prop, value in email.items():
        if prop in _SERVER_SET:
            problems.add(prop, "is set by the server")
        elif prop == "headers":
            problems.add(prop, "set each header field as its own property (RFC 8621 §4.6)")
        elif prop in _CONVENIENCE:
            if value is not None:
                specs.append(HeaderSpec(prop, *_CONVENIENCE[prop], False, value))
        elif prop.startswith("header:"):
            spec = read_header_property(prop, prop, value, problems, on_part=False)
            if spec is not None:
                specs.append(spec)
        elif prop not in ("mailboxIds", "keywords", "receivedAt", *_BODY_PROPERTIES):
            problems.add(prop, "is not a property of an Email")
    check_duplicates(specs, {}, problems)
    return render_headers(specs, problems)


def read_mailbox_ids(value: Any, problems: Problems) -> dict[str, bool]:
    """
    The ``mailboxIds`` (at least one, every value ``true``).
    """
    if not isinstance(value, Mapping) or not value:
        problems.add("mailboxIds", "at least one Mailbox must be given")
        return {}
    for mailbox_id, flag in value.items():
        if flag is not True or not mailbox_id:
            problems.add(
                property_path("mailboxIds", mailbox_id), "must be a Mailbox id set to true"
            )
    return {mailbox_id: True for mailbox_id in value}


def read_keywords(value: Any, problems: Problems) -> dict[str, bool]:
    """
    The ``keywords``, lowercased (RFC 8621 §4.1.1 syntax, every value
    ``true``).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add("keywords", "must be an object of keywords set to true")
        return {}
    for keyword, flag in value.items():
        if (
            flag is not True
            or not _KEYWORD.fullmatch(keyword)
            or not _KEYWORD_FORBIDDEN.isdisjoint(keyword)
        ):
            problems.add(
                property_path("keywords", keyword), "not a keyword set to true (RFC 8621 §4.1.1)"
            )
    return {keyword.lower(): True for keyword in value}


def read_received_at(value: Any, now: datetime, problems: Problems) -> datetime:
    """
    The Email's ``receivedAt`` (a UTCDate), or ``now`` when it is not given
    or invalid (and recorded).
    """
    if value is None:
        return now
    try:
        return parse_date(value, UTC_DATE)
    except InvalidValue as e:
        problems.add("receivedAt", str(e))
        return now


def read_header_property(
    prop: str, path: str, value: Any, problems: Problems, *, on_part: bool
) -> HeaderSpec | None:
    """
    Validate a ``header:Name[:asForm][:all]`` property; ``None`` when it is
    invalid (and recorded) or its value is ``null``.
    """
    try:
        parsed = parse_header_property(prop)
    except ValueError as e:
        problems.add(path, str(e))
        return None
    field = parsed.name.lower() if parsed else ""
    if parsed is None:
        problems.add(path, "not a header: property")
    elif field == "mime-version":
        problems.add(path, "MIME-Version is set by the server")
    elif not on_part and field.startswith("content-"):
        problems.add(path, "Content-* header fields belong on body parts (RFC 8621 §4.6)")
    elif on_part and field == "content-transfer-encoding":
        problems.add(path, "the server chooses the Content-Transfer-Encoding (RFC 8621 §4.6)")
    elif on_part and field == "content-type":
        problems.add(path, "set type, charset and name instead")
    elif value is not None:
        return HeaderSpec(path, parsed.name, parsed.form, parsed.all, value)
    return None


def check_duplicates(
    specs: list[HeaderSpec], implied: Mapping[str, list[str]], problems: Problems
) -> None:
    """
    Record every property of a header field given more than once: by two
    header properties, or by one and a property standing for that field.
    """
    by_field: dict[str, list[str]] = {}
    for spec in specs:
        by_field.setdefault(spec.name.lower(), []).append(spec.path)
    for field, paths in by_field.items():
        clashing = paths + list(implied.get(field, ()))
        if len(clashing) > 1:
            for path in clashing:
                problems.add(path, f"the {field} header field is given more than once")


def render_headers(specs: list[HeaderSpec], problems: Problems) -> list[tuple[str, str]]:
    """
    The header fields of ``specs``, each value folded and ready to write.
    """
    rendered: list[tuple[str, str]] = []
    for spec in specs:
        if spec.all and not isinstance(spec.value, list):
            problems.add(spec.path, "must be an array (:all)")
            continue
        try:
            for value in spec.value if spec.all else [spec.value]:
                if value is not None:
                    text = render(spec.form, spec.name, value)
                    if text is not None:
                        rendered.append((spec.name, text))
        except InvalidValue as e:
            problems.add(spec.path, str(e))
    return rendered
