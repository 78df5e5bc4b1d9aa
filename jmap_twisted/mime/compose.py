"""
Building an RFC 5322 message from the Email object of an ``Email/set``
create (RFC 8621 §4.6).

:func:`compose_message` checks the object against the creation rules of
RFC 8621 §4.6, fetches the blobs its body parts name, and serialises the
message with the stdlib :mod:`email` package.  Every violation found is
reported at once, as the property paths of one :class:`InvalidEmail`.

Choices made where the RFC leaves room:

- The ``headers`` property is refused on the Email and on body parts
  (RFC 8621 §4.6: each header field is set as its own property), as are
  ``header:MIME-Version`` (the server writes it) and, on body parts,
  ``header:Content-Type`` (use ``type``/``charset``/``name``) and
  ``header:Content-Transfer-Encoding``.  ``null`` means "not given".
- No header value may contain control characters (C0 but TAB, DEL, C1),
  U+2028/U+2029 or lone surrogates, and only Text and Raw values a TAB; a
  Raw value may contain CRLF only as folding (CRLF then white space), and
  no line of it may exceed 998 octets.  So a subject with
  ``"\\r\\nBcc: x"`` is refused, never written.
- Text values that are ASCII (without ``=?``, which a reader would
  decode) are folded at spaces into lines of 78 octets; any other is
  written wholly as RFC 2047 encoded-words by :class:`email.header.Header`
  (the stdlib policy folder leaves spaces between encoded-words, which
  RFC 2047 readers drop).  A Raw value is written after ``Name: ``, its
  leading white space dropped.
- Addresses: display names are RFC 2047 encoded.  An address whose local
  part is ASCII is written in ASCII, its domain as IDNA A-labels; one with
  a non-ASCII local part (or a domain IDNA refuses) is written in UTF-8 as
  RFC 6532 allows, and :attr:`ComposedMessage.smtputf8` says that
  submitting the message needs SMTPUTF8.  Half-typed addresses (no ``@``)
  are kept, as drafts may be incomplete (RFC 8621 §4.6).
- Bodies are 7-bit: text from ``bodyValues`` is 7bit when ASCII with
  lines of at most 78 octets, else the shorter of quoted-printable and
  base64; a text blob is 7bit when it could be, else base64; other blobs
  are base64, except ``message/*`` blobs (RFC 2046 forbids base64 there):
  7bit, or 8bit when not ASCII, or ``application/octet-stream`` in base64
  when neither fits.  ``raw.isascii()`` is false only when the message
  needs SMTPUTF8 or 8BITMIME.
- With ``textBody``/``htmlBody``/``attachments``: text and HTML make a
  ``multipart/alternative``; attachments with a ``cid`` (and no
  ``attachment`` disposition) join the HTML in a ``multipart/related``;
  the other attachments make a ``multipart/mixed``.  Attachments without
  a disposition get ``inline`` (related) or ``attachment`` (mixed).  An
  empty list means "no such body"; nothing at all gives an empty
  ``text/plain`` body.
- A generated Message-ID is ``<144 random bits, base64url@host>``: unlike
  :func:`email.utils.make_msgid` it reveals no process id and reads no
  clock.  A generated Date is ``now``; ``sentAt`` keeps its offset.

``header:…`` property names are parsed by
:func:`jmap_twisted.mime.headers.parse_header_property`, which also refuses
the forms RFC 8621 §4.1.2 forbids for a field.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email import policy as email_policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import MIMEPart
from email.utils import format_datetime
from io import BytesIO
from typing import Any, ClassVar

import idna
from attrs import Factory, define, frozen

from jmap_twisted.errors import JMAPError
from jmap_twisted.mime.headers import parse_header_property

#: The default limit on the size of a composed message, in octets.
DEFAULT_MAX_SIZE = 50 * 1024 * 1024

_MAX_DEPTH = 16
_MAX_LINE = 998
_FOLD_AT = 78

# Policy of the MIME parts (7-bit bodies, 78-octet lines) and of the
# generator, which writes our pre-folded header values verbatim and UTF-8
# held as surrogate escapes unchanged.
_PART_POLICY = email_policy.SMTP.clone(cte_type="7bit")
_WRITE_POLICY = email_policy.SMTP.clone(refold_source="none")

# Control characters (C0 but TAB, DEL, C1), Unicode line separators, and
# lone surrogates (JSON can carry them; UTF-8 cannot).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROL_OR_TAB = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_UTF8_DOT_ATOM = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_QUOTED_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"')
_DOMAIN_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
_PHRASE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_ANGLE_CONTENT = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but < >
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_MEDIA_TYPE = re.compile(rf"{_TOKEN.pattern}/{_TOKEN.pattern}")
_LANGUAGE_TAG = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_KEYWORD = re.compile(r"[\x21-\x7e]{1,255}")
_KEYWORD_FORBIDDEN = frozenset('(){]%*"\\')
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_UTC_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_FOLD_POINT = re.compile(r"(?<=\S) (?=\S)")
_MSG_ID_IN_VALUE = re.compile(r"<([^<>\s]+)>")

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
# Body part properties and the header field each one stands for.
_PART_FIELDS = {
    "partId": None,
    "blobId": None,
    "size": None,
    "subParts": None,
    "type": "content-type",
    "charset": "content-type",
    "name": "content-disposition",
    "disposition": "content-disposition",
    "cid": "content-id",
    "language": "content-language",
    "location": "content-location",
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


class _Invalid(Exception):
    """
    A value cannot be used; the caller knows which property holds it.
    """


class _Problems:
    """
    Collects offending property paths and why, to report them all at once.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.reasons: list[str] = []

    def add(self, path: str, reason: str) -> None:
        if path not in self.paths:
            self.paths.append(path)
            self.reasons.append(f"{path}: {reason}")

    def raise_any(self) -> None:
        if self.paths:
            raise InvalidEmail(self.paths, "; ".join(self.reasons))


@frozen
class _HeaderSpec:
    path: str
    name: str
    form: str
    all: bool
    value: Any


@define
class _Part:
    path: str
    type: str | None = None
    text: str | None = None
    blob_id: str | None = None
    charset: str | None = None
    name: str | None = None
    disposition: str | None = None
    cid: str | None = None
    language: list[str] | None = None
    location: str | None = None
    headers: list[tuple[str, str]] = Factory(list)
    fields: dict[str, str] = Factory(dict)
    sub_parts: list[_Part] | None = None


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
    problems = _Problems()
    mailbox_ids = _read_mailbox_ids(email.get("mailboxIds"), problems)
    keywords = _read_keywords(email.get("keywords"), problems)
    received_at = now
    if email.get("receivedAt") is not None:
        try:
            received_at = _parse_date(email["receivedAt"], _UTC_DATE)
        except _Invalid as e:
            problems.add("receivedAt", str(e))

    headers = _read_email_headers(email, problems)
    root = _read_body(email, problems)
    defined = {name.lower() for name, _ in headers} | {"date", "message-id", "mime-version"}
    for field, path in root.fields.items():
        if field in defined:
            problems.add(path, "this header field belongs on the Email object")
    problems.raise_any()

    blobs = _fetch_blobs(root, fetch_blob)
    content_size = sum(len(data) for data, _ in blobs.values())
    content_size += sum(len(p.text.encode()) for p in _walk(root) if p.text is not None)
    if content_size > max_size:
        raise TooLarge(max_size)

    fields = {name.lower() for name, _ in headers}
    if "date" not in fields:
        headers.append(("Date", format_datetime(now.replace(microsecond=0))))
    if "message-id" not in fields:
        headers.append(("Message-ID", f"<{secrets.token_urlsafe(18)}@{id_host}>"))
    headers.append(("MIME-Version", "1.0"))
    message_id = _MSG_ID_IN_VALUE.findall(
        [v for n, v in headers if n.lower() == "message-id"][-1].replace("\r\n", "")
    )
    raw = _serialise(headers, _build_mime(root, blobs))
    if len(raw) > max_size:
        raise TooLarge(max_size)
    part_headers = [field for part in _walk(root) for field in part.headers]
    smtputf8 = not all(value.isascii() for _, value in headers + part_headers)
    return ComposedMessage(raw, message_id, mailbox_ids, keywords, received_at, smtputf8)


def _read_email_headers(email: Mapping[str, Any], problems: _Problems) -> list[tuple[str, str]]:
    """
    The header fields the Email's properties give, ready to write; also
    records server-set, unknown and ``headers`` properties as invalid.
    """
    specs: list[_HeaderSpec] = []
    for prop, value in email.items():
        if prop in _SERVER_SET:
            problems.add(prop, "is set by the server")
        elif prop == "headers":
            problems.add(prop, "set each header field as its own property (RFC 8621 §4.6)")
        elif prop in _CONVENIENCE:
            if value is not None:
                specs.append(_HeaderSpec(prop, *_CONVENIENCE[prop], False, value))
        elif prop.startswith("header:"):
            spec = _read_header_property(prop, prop, value, problems, on_part=False)
            if spec is not None:
                specs.append(spec)
        elif prop not in ("mailboxIds", "keywords", "receivedAt", *_BODY_PROPERTIES):
            problems.add(prop, "is not a property of an Email")
    _check_duplicates(specs, {}, problems)
    return _render_headers(specs, problems)


def _path(base: str, *keys: str | int) -> str:
    """
    The path ``base`` (a JSON Pointer without its leading ``/``) extended
    by ``keys``, escaped as RFC 6901 requires.
    """
    return "/".join([base, *(str(k).replace("~", "~0").replace("/", "~1") for k in keys)])


def _message_id_host(host: str) -> str:
    try:
        ascii_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError as e:
        raise ValueError(f"not a domain name: {host!r}") from e
    if not _DOT_ATOM.fullmatch(ascii_host):
        raise ValueError(f"not a domain name: {host!r}")
    return ascii_host


def _read_mailbox_ids(value: Any, problems: _Problems) -> dict[str, bool]:
    if not isinstance(value, Mapping) or not value:
        problems.add("mailboxIds", "at least one Mailbox must be given")
        return {}
    for mailbox_id, flag in value.items():
        if flag is not True or not mailbox_id:
            problems.add(_path("mailboxIds", mailbox_id), "must be a Mailbox id set to true")
    return {mailbox_id: True for mailbox_id in value}


def _read_keywords(value: Any, problems: _Problems) -> dict[str, bool]:
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
            problems.add(_path("keywords", keyword), "not a keyword set to true (RFC 8621 §4.1.1)")
    return {keyword.lower(): True for keyword in value}


def _parse_date(value: Any, syntax: re.Pattern[str]) -> datetime:
    if not isinstance(value, str) or not syntax.fullmatch(value):
        raise _Invalid("must be an RFC 3339 date-time" + (" in UTC" if syntax is _UTC_DATE else ""))
    try:
        return datetime.fromisoformat(value)
    except ValueError as e:
        raise _Invalid("not a valid date-time") from e


# Header fields


def _read_header_property(
    prop: str, path: str, value: Any, problems: _Problems, *, on_part: bool
) -> _HeaderSpec | None:
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
        return _HeaderSpec(path, parsed.name, parsed.form, parsed.all, value)
    return None


def _check_duplicates(
    specs: list[_HeaderSpec], implied: Mapping[str, list[str]], problems: _Problems
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


def _render_headers(specs: list[_HeaderSpec], problems: _Problems) -> list[tuple[str, str]]:
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
                    text = _RENDERERS[spec.form](spec.name, value)
                    if text is not None:
                        rendered.append((spec.name, text))
        except _Invalid as e:
            problems.add(spec.path, str(e))
    return rendered


def _fold(name: str, value: str, limit: int = _MAX_LINE) -> str:
    """
    Fold a value at its single spaces, lines at most 78 octets if possible.

    :raises _Invalid: when a line would still exceed ``limit`` octets.
    """
    lines: list[str] = []
    width = len(name) + 2
    for word in _FOLD_POINT.split(value):
        size = len(word.encode())
        if lines and width + 1 + size <= _FOLD_AT:
            lines[-1] += " " + word
            width += 1 + size
        else:
            if lines:
                width = 1
            lines.append(word)
            width += size
        if width > limit:
            raise _Invalid(f"has a part too long for a {limit}-octet line")
    return "\r\n ".join(lines)


def _render_raw(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a String")
    value = value.lstrip(" \t")
    for i, line in enumerate(value.split("\r\n")):
        if _CONTROL.search(line):
            raise _Invalid("contains a control character or a bare CR or LF")
        if i and line[:1] not in (" ", "\t"):
            raise _Invalid("a line break must be folding: CRLF followed by white space")
        if len(line.encode()) + (len(name) + 2 if i == 0 else 0) > _MAX_LINE:
            raise _Invalid("has a line longer than 998 octets")
    return value


def _render_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a String")
    if _CONTROL.search(value):
        raise _Invalid("contains a control character")
    if value.isascii() and "=?" not in value:
        try:
            return _fold(name, value, _FOLD_AT)
        except _Invalid:
            pass
    # All of it as encoded-words, spaces inside them: a literal "=?…?=" must
    # not be decoded, and the stdlib policy folder leaves spaces between
    # encoded-words, where RFC 2047 readers drop them.
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=76)


def _render_addresses(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        raise _Invalid("must be an array of EmailAddress objects")
    return _fold(name, ", ".join(map(_mailbox, value))) if value else None


def _render_grouped_addresses(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        raise _Invalid("must be an array of EmailAddressGroup objects")
    pieces = []
    for group in value:
        if not isinstance(group, Mapping) or not isinstance(group.get("addresses"), list):
            raise _Invalid("an EmailAddressGroup needs an addresses array")
        members = ", ".join(map(_mailbox, group["addresses"]))
        if group.get("name") is None:
            if members:
                pieces.append(members)
        else:
            pieces.append(f"{_phrase(group['name'])}:{' ' if members else ''}{members};")
    return _fold(name, ", ".join(pieces)) if pieces else None


def _mailbox(address: Any) -> str:
    if not isinstance(address, Mapping) or not isinstance(address.get("email"), str):
        raise _Invalid("an EmailAddress needs an email String")
    spec = _addr_spec(address["email"])
    name = address.get("name")
    return f"{_phrase(name)} <{spec}>" if name else spec


def _addr_spec(email: str) -> str:
    if not email or _CONTROL_OR_TAB.search(email):
        raise _Invalid("an email must be a non-empty String without control characters")
    local, at, domain = email.rpartition("@")
    if not at:
        local, domain = email, ""
    if not _UTF8_DOT_ATOM.fullmatch(local) and not _QUOTED_STRING.fullmatch(local):
        local = _quote(local)
    if not at:
        return local
    if local.isascii() and not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except UnicodeError:
            pass  # left in UTF-8 (RFC 6532)
    if not _UTF8_DOT_ATOM.fullmatch(domain) and not _DOMAIN_LITERAL.fullmatch(domain):
        raise _Invalid(f"{domain!r} is not a domain")
    return f"{local}@{domain}"


def _phrase(name: Any) -> str:
    """
    A display name: atoms as they are, other ASCII quoted, the rest
    RFC 2047 encoded words.
    """
    if not isinstance(name, str) or _CONTROL_OR_TAB.search(name):
        raise _Invalid("a name must be a String without control characters")
    if name.isascii() and "=?" not in name:
        return name if _PHRASE.fullmatch(name) else _quote(name)
    return Header(name, "utf-8").encode(linesep="\r\n", maxlinelen=76).replace("\r\n ", " ")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_message_ids(name: str, value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _ANGLE_CONTENT.fullmatch(v) for v in value
    ):
        raise _Invalid("must be an array of message ids, without angle brackets")
    return _fold(name, " ".join(f"<{v}>" for v in value)) if value else None


def _render_date(name: str, value: Any) -> str:
    return format_datetime(_parse_date(value, _DATE).replace(microsecond=0))


def _render_urls(name: str, value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _ANGLE_CONTENT.fullmatch(v) for v in value
    ):
        raise _Invalid("must be an array of URLs (printable ASCII, no spaces or angle brackets)")
    return _fold(name, ", ".join(f"<{v}>" for v in value)) if value else None


_RENDERERS: dict[str, Callable[[str, Any], str | None]] = {
    "Raw": _render_raw,
    "Text": _render_text,
    "Addresses": _render_addresses,
    "GroupedAddresses": _render_grouped_addresses,
    "MessageIds": _render_message_ids,
    "Date": _render_date,
    "URLs": _render_urls,
}


# Body structure


def _read_body(email: Mapping[str, Any], problems: _Problems) -> _Part:
    """
    The validated body of ``email``: its ``bodyStructure``, or the tree
    built from ``textBody``, ``htmlBody`` and ``attachments``.
    """
    values = _read_body_values(email.get("bodyValues"), problems)
    if email.get("bodyStructure") is not None:
        for prop in ("textBody", "htmlBody", "attachments"):
            if email.get(prop) is not None:
                problems.add(prop, "cannot be given with bodyStructure (RFC 8621 §4.6)")
        part = _read_part(email["bodyStructure"], "bodyStructure", values, problems, None, 0)
        return part or _Part("")
    text = _read_part_list(email, "textBody", values, problems, "text/plain")
    html = _read_part_list(email, "htmlBody", values, problems, "text/html")
    attachments = _read_part_list(email, "attachments", values, problems, None)
    html_root = html[0] if html else None
    related: list[_Part] = []
    mixed: list[_Part] = []
    for part in attachments:
        inline = bool(html_root and part.cid and part.disposition != "attachment")
        (related if inline else mixed).append(part)
        part.disposition = part.disposition or ("inline" if inline else "attachment")
    if html_root and related:
        html_root = _Part("", "multipart/related", sub_parts=[html_root, *related])
    body = text[0] if text else None
    if body and html_root:
        body = _Part("", "multipart/alternative", sub_parts=[body, html_root])
    body = body or html_root
    if mixed:
        body = _Part("", "multipart/mixed", sub_parts=[body, *mixed] if body else mixed)
    return body or _Part("", "text/plain", text="")


def _read_body_values(value: Any, problems: _Problems) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add("bodyValues", "must be an object of EmailBodyValue objects")
        return {}
    texts = {}
    for part_id, body_value in value.items():
        path = _path("bodyValues", part_id)
        text = body_value.get("value") if isinstance(body_value, Mapping) else None
        if not isinstance(text, str) or _SURROGATE.search(text):
            problems.add(path, "an EmailBodyValue needs a value String of Unicode text")
            continue
        for flag in ("isEncodingProblem", "isTruncated"):
            if body_value.get(flag) not in (None, False):
                problems.add(f"{path}/{flag}", "must be false or omitted (RFC 8621 §4.6)")
        texts[part_id] = text
    return texts


def _read_part_list(
    email: Mapping[str, Any],
    prop: str,
    values: Mapping[str, str],
    problems: _Problems,
    only_type: str | None,
) -> list[_Part]:
    value = email.get(prop)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(prop, "must be an array of EmailBodyPart objects")
        return []
    if only_type and len(value) > 1:
        problems.add(prop, f"must hold at most one {only_type} part (RFC 8621 §4.6)")
    parts = []
    for i, obj in enumerate(value):
        part = _read_part(obj, _path(prop, i), values, problems, only_type, _MAX_DEPTH)
        if part is None:
            continue
        if only_type and part.type != only_type:
            problems.add(_path(prop, i, "type"), f"must be {only_type}")
        parts.append(part)
    return parts


def _read_part(
    obj: Any,
    path: str,
    values: Mapping[str, str],
    problems: _Problems,
    default_type: str | None,
    depth: int,
) -> _Part | None:
    """
    Validate one EmailBodyPart (and its subParts, up to a depth limit);
    ``None`` if it is not an object at all.
    """
    if not isinstance(obj, Mapping):
        problems.add(path, "must be an EmailBodyPart object")
        return None
    specs: list[_HeaderSpec] = []
    implied: dict[str, list[str]] = {}
    for prop, value in obj.items():
        here = _path(path, prop)
        if prop.startswith("header:"):
            spec = _read_header_property(prop, here, value, problems, on_part=True)
            if spec is not None:
                specs.append(spec)
        elif prop not in _PART_FIELDS:
            problems.add(here, "is not a property of an EmailBodyPart on create")
        elif _PART_FIELDS[prop] and value is not None:
            implied.setdefault(str(_PART_FIELDS[prop]), []).append(here)
    _check_duplicates(specs, implied, problems)

    def string(prop: str, syntax: re.Pattern[str] | None = None) -> str | None:
        value = obj.get(prop)
        ok = value is None or (
            isinstance(value, str)
            and not _CONTROL_OR_TAB.search(value)
            and (syntax is None or syntax.fullmatch(value))
        )
        if not ok:
            problems.add(_path(path, prop), "is not a valid value")
            return None
        return value

    part = _Part(
        path,
        type=(string("type", _MEDIA_TYPE) or "").lower() or None,
        charset=string("charset", _TOKEN),
        name=string("name"),
        disposition=(string("disposition", _TOKEN) or "").lower() or None,
        cid=string("cid", _ANGLE_CONTENT),
        location=string("location", _ANGLE_CONTENT),
        headers=_render_headers(specs, problems),
        fields={spec.name.lower(): spec.path for spec in specs},
    )
    language = obj.get("language")
    if language is not None:
        if not isinstance(language, list) or not all(
            isinstance(tag, str) and _LANGUAGE_TAG.fullmatch(tag) for tag in language
        ):
            problems.add(_path(path, "language"), "must be an array of language tags")
        else:
            part.language = language
    part_id, blob_id = obj.get("partId"), obj.get("blobId")
    for prop, value in (("partId", part_id), ("blobId", blob_id)):
        if value is not None and not isinstance(value, str):
            problems.add(_path(path, prop), "must be a String")

    sub_parts = obj.get("subParts")
    if sub_parts is not None or (part.type or "").startswith("multipart/"):
        part.type = part.type or "multipart/mixed"
        if not part.type.startswith("multipart/"):
            problems.add(_path(path, "type"), "a part with subParts must be multipart/*")
        for prop in ("partId", "blobId", "charset"):
            if obj.get(prop) is not None:
                problems.add(_path(path, prop), "cannot be given on a multipart part")
        if depth >= _MAX_DEPTH:
            problems.add(_path(path, "subParts"), "not allowed here, or nested too deeply")
        elif not isinstance(sub_parts, list) or not sub_parts:
            problems.add(_path(path, "subParts"), "a multipart part needs subParts")
        else:
            part.sub_parts = []
            for i, sub in enumerate(sub_parts):
                here = _path(path, "subParts", i)
                child = _read_part(sub, here, values, problems, None, depth + 1)
                if child is not None:
                    part.sub_parts.append(child)
    elif part_id is not None and blob_id is not None:
        problems.add(_path(path, "partId"), "give a partId or a blobId, not both")
        problems.add(_path(path, "blobId"), "give a partId or a blobId, not both")
    elif isinstance(part_id, str):
        if part_id not in values:
            problems.add(_path(path, "partId"), "has no entry in bodyValues")
        part.text = values.get(part_id, "")
        part.type = part.type or default_type or "text/plain"
        if not part.type.startswith("text/"):
            problems.add(_path(path, "type"), "the content of a bodyValues part is text/*")
        for prop in ("charset", "size"):
            if obj.get(prop) is not None:
                problems.add(_path(path, prop), "must be omitted when partId is given")
    elif isinstance(blob_id, str):
        part.blob_id = blob_id
        part.type = part.type or default_type
    elif part_id is None and blob_id is None:
        problems.add(path, "a part needs a partId, a blobId or subParts")
    return part


def _walk(part: _Part) -> Iterator[_Part]:
    yield part
    for child in part.sub_parts or ():
        yield from _walk(child)


def _fetch_blobs(
    root: _Part, fetch_blob: Callable[[str], tuple[bytes, str] | None]
) -> dict[str, tuple[bytes, str]]:
    """
    The content of every blob the body names, each fetched once.

    :raises BlobNotFound: naming every blob ``fetch_blob`` does not know.
    """
    found: dict[str, tuple[bytes, str]] = {}
    missing: list[str] = []
    for part in _walk(root):
        blob_id = part.blob_id
        if blob_id is not None and blob_id not in found and blob_id not in missing:
            blob = fetch_blob(blob_id)
            if blob is None:
                missing.append(blob_id)
            else:
                found[blob_id] = blob
    if missing:
        raise BlobNotFound(missing)
    return found


# Serialisation


def _build_mime(part: _Part, blobs: Mapping[str, tuple[bytes, str]]) -> MIMEPart:
    """
    The stdlib MIME tree of a validated part.
    """
    mime = MIMEPart(policy=_PART_POLICY)
    if part.sub_parts is not None:
        mime["Content-Type"] = part.type or "multipart/mixed"
        for child in part.sub_parts:
            mime.attach(_build_mime(child, blobs))
        if part.type == "multipart/related":
            first = part.sub_parts[0].type or "application/octet-stream"
            mime.set_param("type", first, replace=True)
    elif part.text is not None:
        subtype = (part.type or "text/plain").partition("/")[2]
        cte = "quoted-printable" if "\x00" in part.text else None
        mime.set_content(part.text, subtype=subtype, charset="utf-8", cte=cte)
    else:
        _set_blob_content(mime, part, *blobs[str(part.blob_id)])
    if part.disposition:
        mime["Content-Disposition"] = part.disposition
        if part.name:
            mime.set_param("filename", part.name, header="Content-Disposition")
    if part.name:
        mime.set_param("name", part.name, replace=True)
    if part.cid:
        mime.set_raw("Content-ID", f"<{part.cid}>")
    if part.language:
        mime.set_raw("Content-Language", _fold("Content-Language", ", ".join(part.language)))
    if part.location:
        mime.set_raw("Content-Location", part.location)
    for name, value in part.headers:
        # Non-ASCII octets travel as surrogate escapes, as the parser keeps them.
        mime.set_raw(name, value.encode().decode("ascii", "surrogateescape"))
    return mime


def _set_blob_content(mime: MIMEPart, part: _Part, data: bytes, stored_type: str) -> None:
    """
    Put a blob in ``mime`` with the part's type (else the blob's) and a
    transfer encoding keeping the message 7-bit where RFC 2046 allows.
    """
    stored = _PART_POLICY.header_factory("Content-Type", stored_type or "")
    stored_ok = bool(stored_type) and not stored.defects
    media_type = part.type or (stored.content_type if stored_ok else "application/octet-stream")
    charset = part.charset or (stored.params.get("charset") if stored_ok else None)
    if media_type.startswith("multipart/") or not _MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    lines = data.splitlines()
    short = all(len(line) <= _FOLD_AT for line in lines)
    if media_type.startswith("message/"):
        if b"\x00" in data or not all(len(line) <= _MAX_LINE for line in lines):
            media_type, cte = "application/octet-stream", "base64"
        else:
            # The generator writes message/* payloads as they are: end lines in CRLF here.
            data = b"".join(line + b"\r\n" for line in lines)
            cte = "7bit" if data.isascii() else "8bit"
    elif media_type.startswith("text/"):
        cte = "7bit" if data.isascii() and short and b"\x00" not in data else "base64"
        if charset is None and not data.isascii():
            try:
                data.decode("utf-8")
                charset = "utf-8"
            except UnicodeDecodeError:
                pass
    else:
        cte = "base64"
    maintype, _, subtype = media_type.partition("/")
    mime.set_content(data, maintype, subtype, cte=cte)
    if charset and maintype == "text":
        mime.set_param("charset", charset, replace=True)


class _Generator(BytesGenerator):
    """
    A :class:`~email.generator.BytesGenerator` that writes the text payload
    of a ``message/*`` part like every other payload, surrogate escapes back
    to octets, where the stdlib encodes it as strict ASCII (so 8bit fails).
    """

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", "surrogateescape")


def _serialise(headers: list[tuple[str, str]], root: MIMEPart) -> bytes:
    """
    The message: our header fields, then the MIME tree's, then its body.

    :raises RuntimeError: if a line ends up over 998 octets or with a bare
        CR or LF, which validation should have made impossible.
    """
    out = BytesIO()
    for name, value in headers:
        out.write(f"{name}: {value}\r\n".encode())
    _Generator(out, policy=_WRITE_POLICY).flatten(root, linesep="\r\n")
    raw = out.getvalue()
    for line in raw.split(b"\r\n"):
        if len(line) > _MAX_LINE or b"\r" in line or b"\n" in line:
            raise RuntimeError("composed a line over 998 octets or with a bare CR or LF")
    return raw
