"""
Header fields of a message and their parsed forms (RFC 8621 §4.1.2).

A header field is kept as the pair ``(name, raw value)`` exactly as it appears in
the message: the value runs from the octet after the colon to the end of the
field, folding line breaks included.  The parsed forms turn such a raw value into
the JSON value of the JMAP ``header:{name}:as{Form}`` properties.

The stdlib supplies the primitives (``binascii`` for base64 and quoted-printable,
``codecs`` for charsets, :func:`email.utils.parsedate_tz`,
:func:`urllib.parse.unquote_to_bytes` for RFC 2231).  The scanners around them are
our own, because the stdlib ones do not meet our requirements on hostile input:
``email.headerregistry`` raises on some malformed address lists and is quadratic on
long ones, ``email.message.Message.get_params`` is quadratic in the number of
parameters, and ``email.header.decode_header`` decodes encoded-words embedded in
words, which RFC 8621 forbids.  Every scanner here is linear in its input and never
raises on any string.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_tz
from functools import lru_cache
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from attrs import frozen

__all__ = [
    "FORMS",
    "HeaderProperty",
    "as_addresses",
    "as_date",
    "as_grouped_addresses",
    "as_message_ids",
    "as_raw",
    "as_text",
    "as_urls",
    "decode_base64",
    "decode_encoded_words",
    "decode_text",
    "header_value",
    "lookup_charset",
    "parse_header_property",
    "parse_header_section",
    "split_parameters",
    "strip_comments",
    "unfold",
]

#: The parsed-form names of RFC 8621 §4.1.2, as spelt after ``as`` in a property.
FORMS: Final = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")
_FORM_BY_KEYWORD: Final = {"as" + form.lower(): form for form in FORMS}

_ADDRESS_FORMS: Final = frozenset({"Raw", "Addresses", "GroupedAddresses"})
# Header fields defined in RFC 5322 and RFC 2369 may only use the forms listed for
# them in RFC 8621 §4.1.2; every other header field may use any form.
_ALLOWED_FORMS: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(
        (
            *("from", "sender", "reply-to", "to", "cc", "bcc"),
            *("resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc"),
        ),
        _ADDRESS_FORMS,
    ),
    **dict.fromkeys(("subject", "comments", "keywords"), frozenset({"Raw", "Text"})),
    **dict.fromkeys(
        ("message-id", "in-reply-to", "references", "resent-message-id"),
        frozenset({"Raw", "MessageIds"}),
    ),
    **dict.fromkeys(("date", "resent-date"), frozenset({"Raw", "Date"})),
    **dict.fromkeys(
        (
            *("list-help", "list-unsubscribe", "list-subscribe"),
            *("list-post", "list-owner", "list-archive"),
        ),
        frozenset({"Raw", "URLs"}),
    ),
    **dict.fromkeys(("return-path", "received"), frozenset({"Raw"})),
}

_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_FIELD_NAME_BYTES: Final = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


@frozen
class HeaderProperty:
    """
    A parsed ``header:{name}[:as{Form}][:all]`` Email or EmailBodyPart property.

    :ivar name: the header field name as written in the property.
    :ivar form: one of :data:`FORMS`.
    :ivar all: whether every instance is wanted (a list) rather than the last one.
    """

    name: str
    form: str = "Raw"
    all: bool = False


def parse_header_property(prop: str) -> HeaderProperty | None:
    """
    Parse a ``header:`` property name (RFC 8621 §4.1.3).

    The header field name and the form keyword are matched case-insensitively.

    :param prop: a property name such as ``header:From:asAddresses:all``.
    :return: the parsed property, or ``None`` if *prop* is not a ``header:`` property.
    :raises ValueError: if the property is malformed or asks for a form that
        RFC 8621 does not allow for that header field.
    """
    if not prop.startswith("header:"):
        return None
    name, *suffixes = prop[len("header:") :].split(":")
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"{prop!r}: the header field name must be printable ASCII")
    form, all_instances = "Raw", False
    if suffixes and suffixes[-1].lower() == "all":
        all_instances = True
        suffixes.pop()
    if len(suffixes) > 1:
        raise ValueError(f"{prop!r}: expected header:{{name}}[:as{{Form}}][:all]")
    if suffixes:
        found = _FORM_BY_KEYWORD.get(suffixes[0].lower())
        if found is None:
            raise ValueError(f"{prop!r}: unknown form {suffixes[0]!r}; known: {', '.join(FORMS)}")
        form = found
    allowed = _ALLOWED_FORMS.get(name.lower())
    if allowed is not None and form not in allowed:
        raise ValueError(f"{prop!r}: the {form} form is not allowed for the {name} header field")
    return HeaderProperty(name, form, all_instances)


def header_value(headers: Sequence[tuple[str, str]], prop: HeaderProperty) -> Any:
    """
    The JSON value of a ``header:`` property for a list of header fields.

    :param headers: ``(name, raw value)`` pairs in message order.
    :param prop: the property, from :func:`parse_header_property`.
    :return: the parsed last instance (``None`` if there is none), or with
        ``prop.all`` a list of every instance parsed, in message order.
    """
    wanted = prop.name.lower()
    convert = _FORM_FUNCTIONS[prop.form]
    values = [value for name, value in headers if name.lower() == wanted]
    if prop.all:
        return [convert(value) for value in values]
    return convert(values[-1]) if values else None


# --- reading the header section of a message or body part ---------------------


def _decode_field(data: bytes) -> str:
    """Header octets as text: UTF-8 when valid (RFC 6532), else Latin-1; NUL → U+FFFD."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\x00", "\ufffd")


def parse_header_section(
    raw: bytes, start: int = 0, end: int | None = None, *, skip_mbox_line: bool = False
) -> tuple[list[tuple[str, str]], int]:
    """
    Split the header section of an entity into fields.

    The section ends at the first empty line, or before the first line that is
    neither a header field nor a continuation line (that line then starts the
    body), or at *end*.  Both CRLF and bare LF line endings are accepted.

    :param raw: the buffer holding the entity.
    :param start: offset of the entity in *raw*.
    :param end: offset just after the entity (default: the end of *raw*).
    :param skip_mbox_line: ignore a leading mbox ``From `` separator line.
    :return: ``(name, raw value)`` pairs in order and the offset of the body.
    """
    end = len(raw) if end is None else end
    headers: list[tuple[str, str]] = []
    name = b""
    value_start = value_end = -1
    pos = start
    if skip_mbox_line and raw.startswith(b"From ", pos):
        colon = raw.find(b":", pos, min(end, pos + 1000))
        if colon < 0 or raw[pos:colon].strip() != b"From":
            newline = raw.find(b"\n", pos, end)
            pos = end if newline < 0 else newline + 1
    while pos < end:
        newline = raw.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline
        next_pos = end if newline < 0 else newline + 1
        content_end = line_end - 1 if line_end > pos and raw[line_end - 1] == 0x0D else line_end
        if content_end == pos:
            next_body = next_pos
            break
        if raw[pos] in (0x20, 0x09):
            if value_start >= 0:
                value_end = content_end
            pos = next_pos
            continue
        colon = raw.find(b":", pos, content_end)
        field = raw[pos:colon].rstrip(b" \t") if colon > pos else b""
        if not _FIELD_NAME_BYTES.fullmatch(field):
            next_body = pos
            break
        if value_start >= 0:
            headers.append((name.decode("ascii"), _decode_field(raw[value_start:value_end])))
        name, value_start, value_end = field, colon + 1, content_end
        pos = next_pos
    else:
        next_body = end
    if value_start >= 0:
        headers.append((name.decode("ascii"), _decode_field(raw[value_start:value_end])))
    return headers, next_body


# --- charsets -------------------------------------------------------------------

_CHARSET_ALIASES: Final = {
    **dict.fromkeys(("gb2312", "gbk", "x-gbk"), "gb18030"),
    **dict.fromkeys(("ks_c_5601-1987", "euc-kr"), "cp949"),
    **dict.fromkeys(("x-sjis", "shift-jis"), "shift_jis"),
    **{"iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6", "x-mac-roman": "mac_roman"},
    **{"unicode-1-1-utf-7": "utf-7", "ansi_x3.4-1968": "ascii"},
}
# Text codecs that are no charsets: they raise on any error handler but "strict" or
# interpret escapes.
_NOT_CHARSETS: Final = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"}
)
_CHARSET_NAME: Final = re.compile(r"[a-z0-9_.:+-]{1,40}")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=256)
def lookup_charset(charset: str) -> str | None:
    """
    The Python codec for a MIME charset name.

    :param charset: a charset label as found in a message (case-insensitive).
    :return: the codec name, or ``None`` if the charset is unknown.
    """
    label = charset.strip().strip("\"'").lower()
    if not _CHARSET_NAME.fullmatch(label):
        return None
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def decode_text(data: bytes, charset: str | None) -> tuple[str, bool]:
    """
    Decode octets in a MIME charset, never failing.

    US-ASCII (also the implicit charset) is read as UTF-8 when the octets are
    valid UTF-8 — a heuristic RFC 8621 allows for mislabelled 8-bit text.

    :param data: the octets.
    :param charset: the declared charset, or ``None`` for US-ASCII.
    :return: the text and whether there was a problem: an unknown charset
        (decoded as UTF-8) or malformed octets (replaced by U+FFFD).
    """
    codec = lookup_charset(charset) if charset else "ascii"
    problem = False
    if codec in ("ascii", "utf-8"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8" if codec == "utf-8" else "latin-1", "replace")
            problem = True
    elif codec is None:
        text, problem = data.decode("utf-8", "replace"), True
    else:
        try:
            text = data.decode(codec)
        except (UnicodeError, ValueError, LookupError):
            problem = True
            try:
                text = data.decode(codec, "replace")
            except (UnicodeError, ValueError, LookupError):
                text = data.decode("utf-8", "replace")
    if _SURROGATE.search(text):
        text, problem = _SURROGATE.sub("\ufffd", text), True
    return text, problem


# --- RFC 2047 encoded-words -----------------------------------------------------

_EW: Final = r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?="
_ENCODED_WORD: Final = re.compile(_EW)
_ONLY_ENCODED_WORDS: Final = re.compile(f"(?:{_EW})+")
_WSP_SPLIT: Final = re.compile(r"([ \t]+)")
_CONTROLS: Final = dict.fromkeys([*range(0x09), *range(0x0A, 0x20), 0x7F])  # all but HTAB
_LINE_BREAKS: Final = re.compile(r"[\r\n]+")


_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_JUNK: Final = bytes(sorted(set(range(256)) - set(_B64_ALPHABET + b"=")))
_B64_EXPECTED: Final = _B64_ALPHABET + b"= \t\r\n"


def decode_base64(data: bytes) -> tuple[bytes, bool]:
    """
    Base64-decode whatever alphabet characters there are; never raises.

    Padding ends a chunk: concatenated encodings decode one after the other.

    :param data: base64 text, possibly damaged.
    :return: the octets, and whether the input was damaged (characters outside the
        alphabet and white space, or a dangling character).
    """
    clean = data.translate(None, _B64_JUNK)
    problem = bool(data.translate(None, _B64_EXPECTED))
    decoded = bytearray()
    for chunk in clean.split(b"="):
        remainder = len(chunk) % 4
        if remainder == 1:
            chunk, problem = chunk[:-1], True
        elif remainder:
            chunk += b"=" * (4 - remainder)
        decoded += binascii.a2b_base64(chunk)
    return bytes(decoded), problem


def _decode_encoded_words(word: str) -> list[tuple[str, bytes]] | None:
    """The ``(codec, octets)`` of a word made only of encoded-words, else ``None``."""
    if not _ONLY_ENCODED_WORDS.fullmatch(word):
        return None
    decoded = []
    for match in _ENCODED_WORD.finditer(word):
        codec = lookup_charset(match[1])
        if codec is None:
            return None
        payload = match[3].encode("ascii", "replace")
        if match[2] in "Bb":
            decoded.append((codec, decode_base64(payload)[0]))
        else:
            decoded.append((codec, binascii.a2b_qp(payload, header=True)))
    return decoded


def decode_encoded_words(text: str) -> str:
    """
    Decode the RFC 2047 encoded-words of an unstructured value.

    An encoded-word is decoded only when it stands alone between white space (or
    several encoded-words stand together): text that looks like an encoded-word
    inside a longer word is left alone, as RFC 8621 §4.1.2.2 requires.  White
    space between two encoded-words is dropped, and adjacent encoded-words in one
    charset are decoded together, so a character split across them survives.
    Encoded-words in an unknown charset stay as they are; decoded control
    characters other than HTAB (white space) are dropped.

    :param text: the unfolded value.
    :return: the decoded text.
    """
    if "=?" not in text:
        return text
    pieces = _WSP_SPLIT.split(text)
    out: list[str] = []
    run_codec: str | None = None
    run = bytearray()

    def flush() -> None:
        nonlocal run_codec
        if run_codec is not None:
            out.append(decode_text(bytes(run), run_codec)[0].translate(_CONTROLS))
            run.clear()
            run_codec = None

    previous_encoded = False
    for index in range(0, len(pieces), 2):
        space = pieces[index - 1] if index else ""
        word = pieces[index]
        decoded = _decode_encoded_words(word) if "=?" in word else None
        if decoded is None:
            flush()
            out.append(space)
            out.append(word)
            previous_encoded = False
            continue
        if not previous_encoded:
            flush()
            out.append(space)
        for codec, data in decoded:
            if codec != run_codec:
                flush()
                run_codec = codec
            run += data
        previous_encoded = True
    flush()
    return "".join(out)


def unfold(value: str) -> str:
    """
    Unfold a raw header field value: remove its line breaks (RFC 5322 §2.2.3).

    :param value: the raw header field value.
    """
    return _LINE_BREAKS.sub("", value)


# --- the parsed forms -----------------------------------------------------------


def as_raw(value: str) -> str:
    """
    The Raw form: the value exactly as in the message.

    :param value: the raw header field value.
    """
    return value


def as_text(value: str) -> str:
    """
    The Text form: unfolded, RFC 2047 decoded, white space trimmed, NFC.

    :param value: the raw header field value.
    """
    text = decode_encoded_words(unfold(value)).strip(" \t")
    return unicodedata.normalize("NFC", text)


_COMMENT_SCAN: Final = re.compile(r'[\\"()]')


def strip_comments(value: str) -> str:
    """
    Replace RFC 5322 comments (nested, with quoted pairs) outside quoted strings by a space.

    :param value: an unfolded header field value.
    """
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    in_quote = False
    kept_from = 0
    skip_until = -1
    for match in _COMMENT_SCAN.finditer(value):
        index = match.start()
        if index < skip_until:
            continue
        char = match.group()
        if char == "\\":
            skip_until = index + 2
        elif in_quote:
            in_quote = char != '"'
        elif depth == 0:
            if char == '"':
                in_quote = True
            elif char == "(":
                out.append(value[kept_from:index])
                depth = 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                out.append(" ")
                kept_from = index + 1
    if depth == 0:
        out.append(value[kept_from:])
    return "".join(out)


_ANGLE_ITEM: Final = re.compile(r"<([^<>]*)>")
_SPACES: Final = re.compile(r"\s+")


def as_message_ids(value: str) -> list[str] | None:
    """
    The MessageIds form: the msg-ids without CFWS and angle brackets.

    Phrases between msg-ids (obsolete In-Reply-To syntax) are skipped; a value
    without brackets is accepted when every word of it contains ``@``.

    :param value: the raw header field value.
    :return: the ids, or ``None`` if none could be parsed.
    """
    text = strip_comments(unfold(value))
    ids = [_SPACES.sub("", match[1]) for match in _ANGLE_ITEM.finditer(text)]
    ids = [item for item in ids if item]
    if ids:
        return ids
    words = text.split()
    if words and all("@" in word and "<" not in word and ">" not in word for word in words):
        return words
    return None


def as_date(value: str) -> str | None:
    """
    The Date form: an RFC 3339 ``date-time`` keeping the message's UTC offset.

    The offset is written ``Z`` when zero (or unknown: ``-0000``), and the time is
    converted to UTC when the offset is out of the RFC 3339 range.

    :param value: the raw header field value.
    :return: e.g. ``2014-10-07T10:00:00+02:00``, or ``None`` if unparsable.
    """
    text = strip_comments(unfold(value)).strip()
    if not text or len(text) > 200:
        return None
    try:
        parsed = parsedate_tz(text)
        if parsed is None:
            return None
        year, month, day, hour, minute, second = parsed[:6]
        offset = parsed[9] or 0
        local = datetime(year, month, day, hour, minute, min(second, 59))
    except (ValueError, OverflowError, TypeError, IndexError):
        return None
    if abs(offset) >= 24 * 3600:
        try:
            local = local - timedelta(seconds=offset)
        except OverflowError:
            return None
        offset = 0
    stamp = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        f"T{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    if offset == 0:
        return stamp + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{stamp}{sign}{hours:02d}:{minutes:02d}"


def as_urls(value: str) -> list[str] | None:
    """
    The URLs form: the bracketed URLs of an RFC 2369 field, without comments.

    White space inside the brackets (folding) is removed.

    :param value: the raw header field value.
    :return: the URLs, or ``None`` if there are none (e.g. ``List-Post: NO``).
    """
    text = strip_comments(unfold(value))
    urls = [_SPACES.sub("", match[1]) for match in _ANGLE_ITEM.finditer(text)]
    return [url for url in urls if url] or None


# --- addresses --------------------------------------------------------------------

_ADDRESS_TOKEN: Final = re.compile(
    r"""
      (?P<ws>[ \t\r\n]+)
    | (?P<quoted>"(?:[^"\\]++|\\(?:.|\Z))*+(?:"|\Z))
    | (?P<comment>\()
    | (?P<special>[<>,:;])
    | (?P<atom>[^ \t\r\n"(<>,:;]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR: Final = re.compile(r"\\(.)", re.DOTALL)


def _read_comment(text: str, start: int) -> tuple[int, str]:
    """Read the comment opening at *start*: its end offset and unescaped content."""
    depth = 0
    skip_until = -1
    for match in _COMMENT_SCAN.finditer(text, start):
        index = match.start()
        if index < skip_until:
            continue
        char = match.group()
        if char == "\\":
            skip_until = index + 2
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1, _QUOTED_PAIR.sub(r"\1", text[start + 1 : index])
    return len(text), _QUOTED_PAIR.sub(r"\1", text[start + 1 :])


def _display_text(words: Sequence[tuple[str, str]]) -> str | None:
    """A phrase as display text: quotes removed, encoded-words decoded, trimmed."""
    parts = []
    for kind, word in words:
        if kind == "quoted":
            body = word[1:-1] if len(word) > 1 and word.endswith('"') else word[1:]
            word = _QUOTED_PAIR.sub(r"\1", body)
        parts.append(word)
    text = _SPACES.sub(" ", decode_encoded_words(" ".join(parts))).strip()
    return unicodedata.normalize("NFC", text) or None


class _AddressListParser:
    """Best-effort, linear parser of an RFC 5322 ``address-list``."""

    def __init__(self) -> None:
        self.groups: list[dict[str, Any]] = []
        self.in_group = False
        self._reset_mailbox()

    def _reset_mailbox(self) -> None:
        self.phrase: list[tuple[str, str]] = []
        self.spaced: list[bool] = []
        self.angle: list[str] | None = None
        self.in_angle = False
        self.comment: str | None = None
        self.space_pending = False

    def parse(self, text: str) -> list[dict[str, Any]]:
        pos, length = 0, len(text)
        while pos < length:
            match = _ADDRESS_TOKEN.match(text, pos)
            if match is None:  # unreachable: the alternatives match any character
                break
            kind = match.lastgroup or ""
            token = match.group()
            pos = match.end()
            if kind == "ws":
                self.space_pending = True
                continue
            if kind == "comment":
                pos, content = _read_comment(text, match.start())
                if not self.in_angle and self.comment is None and (self.phrase or self.angle):
                    self.comment = content
                self.space_pending = True
                continue
            if kind == "special":
                self._special(token)
            elif self.in_angle:
                assert self.angle is not None
                self.angle.append(token)
            elif self.angle is None:
                self.phrase.append((kind, token))
                self.spaced.append(self.space_pending)
            self.space_pending = False
        self._finish_mailbox()
        return self.groups

    def _special(self, char: str) -> None:
        if self.in_angle:
            if char == ">":
                self.in_angle = False
            else:
                assert self.angle is not None
                self.angle.append(char)
        elif char == "<":
            if self.angle is None:
                self.angle, self.in_angle = [], True
        elif char == ",":
            self._finish_mailbox()
        elif char == ":" and not self.in_group and self.angle is None:
            self.groups.append({"name": _display_text(self.phrase) or "", "addresses": []})
            self.in_group = True
            self._reset_mailbox()
        elif char == ";":
            self._finish_mailbox()
            self.in_group = False

    def _finish_mailbox(self) -> None:
        mailbox = self._mailbox()
        self._reset_mailbox()
        if mailbox is None:
            return
        if not self.in_group and (not self.groups or not self.groups[-1].get("_ungrouped")):
            self.groups.append({"name": None, "addresses": [], "_ungrouped": True})
        self.groups[-1]["addresses"].append(mailbox)

    def _mailbox(self) -> dict[str, str | None] | None:
        name: str | None
        if self.angle is not None:
            email = "".join(self.angle).strip()
            if email.startswith("@") and ":" in email:
                email = email.rsplit(":", 1)[1]  # obsolete source route
            name = _display_text(self.phrase)
        else:
            words = [word for _, word in self.phrase]
            if not words:
                return None
            last = words[-1]
            if (
                len(words) > 1
                and self.spaced[-1]
                and "@" in last
                and not last.startswith((".", "@"))
                and not words[-2].endswith((".", "@"))
                and all("@" not in word for word in words[:-1])
            ):  # "John Smith john@example.com": a display name without brackets
                name, email = _display_text(self.phrase[:-1]), last
            else:
                name = None
                email = ("" if any("@" in word for word in words) else " ").join(words)
        if name is None and self.comment is not None:
            name = _display_text([("atom", self.comment)])
        if not email and name is None:
            return None
        return {"name": name, "email": email}


def as_grouped_addresses(value: str) -> list[dict[str, Any]]:
    """
    The GroupedAddresses form: address groups, best effort.

    Consecutive mailboxes outside any group are collected in a group whose
    ``name`` is ``None``.  Display names are RFC 2047 decoded; a comment after an
    address without display name is used as the name.

    :param value: the raw header field value.
    :return: a list of ``{"name": str | None, "addresses": [EmailAddress]}``.
    """
    groups = _AddressListParser().parse(unfold(value))
    for group in groups:
        group.pop("_ungrouped", None)
    return groups


def as_addresses(value: str) -> list[dict[str, str | None]]:
    """
    The Addresses form: every mailbox, groups flattened.

    :param value: the raw header field value.
    :return: a list of ``{"name": str | None, "email": str}``.
    """
    groups = _AddressListParser().parse(unfold(value))
    return [address for group in groups for address in group["addresses"]]


_FORM_FUNCTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "Raw": as_raw,
    "Text": as_text,
    "Addresses": as_addresses,
    "GroupedAddresses": as_grouped_addresses,
    "MessageIds": as_message_ids,
    "Date": as_date,
    "URLs": as_urls,
}


# --- MIME parameters (RFC 2045, RFC 2231) ---------------------------------------

_PARAMETER: Final = re.compile(
    r"""
    ;[ \t]*(?P<name>[^\s=;"]+)[ \t]*
    (?:=[ \t]*(?P<value>"(?:[^"\\]++|\\.)*+(?:"|\Z)|[^;]*))?
    """,
    re.VERBOSE | re.DOTALL,
)
_CONTINUATION: Final = re.compile(r"(?P<name>[^*]+)\*(?:(?P<number>[0-9]{1,4})(?P<star>\*)?)?")


def split_parameters(value: str) -> tuple[str, dict[str, str]]:
    """
    Split a parameterised MIME header value (``Content-Type``, ``Content-Disposition``).

    RFC 2231 continuations and charset-encoded values are assembled and decoded
    (unknown charsets as UTF-8); an RFC 2231 value wins over a plain one of the
    same name.  Comments are removed.

    :param value: the raw header field value.
    :return: the lower-cased main value and the parameters by lower-cased name.
    """
    text = strip_comments(unfold(value))
    main, _, rest = text.partition(";")
    plain: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[str, bool]]] = {}
    for match in _PARAMETER.finditer(";" + rest):
        name = match["name"].lower()
        raw = (match["value"] or "").strip()
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(
                r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            )
        continuation = _CONTINUATION.fullmatch(name)
        if continuation is None:
            plain.setdefault(name, raw)
        else:
            number = int(continuation["number"] or 0)
            encoded = continuation["number"] is None or bool(continuation["star"])
            extended.setdefault(continuation["name"], {}).setdefault(number, (raw, encoded))
    for name, sections in extended.items():
        plain[name] = _join_rfc2231(sections)
    return _SPACES.sub("", main).lower(), plain


def _join_rfc2231(sections: dict[int, tuple[str, bool]]) -> str:
    charset: str | None = None
    octets = bytearray()
    numbers = sorted(sections)
    for number in numbers:
        raw, encoded = sections[number]
        if encoded and number == numbers[0] and raw.count("'") >= 2:
            charset, _, raw = raw.split("'", 2)
        octets += unquote_to_bytes(raw) if encoded else raw.encode("utf-8")
    return decode_text(bytes(octets), charset or "utf-8")[0]
