# -*- test-case-name: tests.mime.test_compose -*-
"""
Header field values written from their JMAP forms (RFC 8621 §4.1.2) as
RFC 5322 field bodies (§2.2.3 folding, §3.4 addresses, §3.3 dates, §3.6.4
message ids), for the Email objects of ``Email/set`` creates (RFC 8621 §4.6).

Choices made where the RFCs leave room:

- No value may contain control characters (C0 but TAB, DEL, C1),
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
  RFC 6532 allows.  Half-typed addresses (no ``@``) are kept, as drafts may
  be incomplete (RFC 8621 §4.6).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from email.header import Header
from email.utils import format_datetime
from typing import Any

import idna

#: The longest line RFC 5322 §2.1.1 allows, in octets without the CRLF.
MAX_LINE = 998
#: Where lines are folded when they can be (RFC 5322 §2.1.1 "SHOULD").
FOLD_AT = 78

# Control characters (C0 but TAB, DEL, C1), Unicode line separators, and
# lone surrogates (JSON can carry them; UTF-8 cannot).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CONTROL_OR_TAB = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_UTF8_DOT_ATOM = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_QUOTED_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"')
_DOMAIN_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
_PHRASE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
ANGLE_CONTENT = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but < >
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
UTC_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_FOLD_POINT = re.compile(r"(?<=\S) (?=\S)")


class InvalidValue(Exception):
    """
    A value cannot be used; the caller knows which property holds it.
    """


def render(form: str, name: str, value: Any) -> str | None:
    """
    The field body of header field ``name`` holding ``value`` in the
    parsed ``form`` (``Raw``, ``Text``, ``Addresses``, …), folded and ready
    to write after ``Name: ``; ``None`` when there is nothing to write (an
    empty list).

    :raises InvalidValue: when the value cannot be written in that form.
    """
    return _RENDERERS[form](name, value)


def parse_date(value: Any, syntax: re.Pattern[str]) -> datetime:
    """
    The date-time of an RFC 3339 string matching ``syntax`` (a ``Date``,
    or a ``UTCDate`` with :data:`UTC_DATE`).

    :raises InvalidValue: when it is not one.
    """
    if not isinstance(value, str) or not syntax.fullmatch(value):
        raise InvalidValue(
            "must be an RFC 3339 date-time" + (" in UTC" if syntax is UTC_DATE else "")
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError as e:
        raise InvalidValue("not a valid date-time") from e


def fold(name: str, value: str, limit: int = MAX_LINE) -> str:
    """
    Fold a value at its single spaces, lines at most 78 octets if possible.

    :raises InvalidValue: when a line would still exceed ``limit`` octets.
    """
    lines: list[str] = []
    width = len(name) + 2
    for word in _FOLD_POINT.split(value):
        size = len(word.encode())
        if lines and width + 1 + size <= FOLD_AT:
            lines[-1] += " " + word
            width += 1 + size
        else:
            if lines:
                width = 1
            lines.append(word)
            width += size
        if width > limit:
            raise InvalidValue(f"has a part too long for a {limit}-octet line")
    return "\r\n ".join(lines)


def _render_raw(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("must be a String")
    value = value.lstrip(" \t")
    for i, line in enumerate(value.split("\r\n")):
        if _CONTROL.search(line):
            raise InvalidValue("contains a control character or a bare CR or LF")
        if i and line[:1] not in (" ", "\t"):
            raise InvalidValue("a line break must be folding: CRLF followed by white space")
        if len(line.encode()) + (len(name) + 2 if i == 0 else 0) > MAX_LINE:
            raise InvalidValue("has a line longer than 998 octets")
    return value


def _render_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("must be a String")
    if _CONTROL.search(value):
        raise InvalidValue("contains a control character")
    if value.isascii() and "=?" not in value:
        try:
            return fold(name, value, FOLD_AT)
        except InvalidValue:
            pass
    # All of it as encoded-words, spaces inside them: a literal "=?…?=" must
    # not be decoded, and the stdlib policy folder leaves spaces between
    # encoded-words, where RFC 2047 readers drop them.
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=76)


def _render_addresses(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        raise InvalidValue("must be an array of EmailAddress objects")
    return fold(name, ", ".join(map(_mailbox, value))) if value else None


def _render_grouped_addresses(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        raise InvalidValue("must be an array of EmailAddressGroup objects")
    pieces = []
    for group in value:
        if not isinstance(group, Mapping) or not isinstance(group.get("addresses"), list):
            raise InvalidValue("an EmailAddressGroup needs an addresses array")
        members = ", ".join(map(_mailbox, group["addresses"]))
        if group.get("name") is None:
            if members:
                pieces.append(members)
        else:
            pieces.append(f"{_phrase(group['name'])}:{' ' if members else ''}{members};")
    return fold(name, ", ".join(pieces)) if pieces else None


def _mailbox(address: Any) -> str:
    if not isinstance(address, Mapping) or not isinstance(address.get("email"), str):
        raise InvalidValue("an EmailAddress needs an email String")
    spec = _addr_spec(address["email"])
    name = address.get("name")
    return f"{_phrase(name)} <{spec}>" if name else spec


def _addr_spec(email: str) -> str:
    if not email or CONTROL_OR_TAB.search(email):
        raise InvalidValue("an email must be a non-empty String without control characters")
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
        raise InvalidValue(f"{domain!r} is not a domain")
    return f"{local}@{domain}"


def _phrase(name: Any) -> str:
    """
    A display name: atoms as they are, other ASCII quoted, the rest
    RFC 2047 encoded words.
    """
    if not isinstance(name, str) or CONTROL_OR_TAB.search(name):
        raise InvalidValue("a name must be a String without control characters")
    if name.isascii() and "=?" not in name:
        return name if _PHRASE.fullmatch(name) else _quote(name)
    return Header(name, "utf-8").encode(linesep="\r\n", maxlinelen=76).replace("\r\n ", " ")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_message_ids(name: str, value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and ANGLE_CONTENT.fullmatch(v) for v in value
    ):
        raise InvalidValue("must be an array of message ids, without angle brackets")
    return fold(name, " ".join(f"<{v}>" for v in value)) if value else None


def _render_date(name: str, value: Any) -> str:
    return format_datetime(parse_date(value, _DATE).replace(microsecond=0))


def _render_urls(name: str, value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and ANGLE_CONTENT.fullmatch(v) for v in value
    ):
        raise InvalidValue(
            "must be an array of URLs (printable ASCII, no spaces or angle brackets)"
        )
    return fold(name, ", ".join(f"<{v}>" for v in value)) if value else None


_RENDERERS: dict[str, Callable[[str, Any], str | None]] = {
    "Raw": _render_raw,
    "Text": _render_text,
    "Addresses": _render_addresses,
    "GroupedAddresses": _render_grouped_addresses,
    "MessageIds": _render_message_ids,
    "Date": _render_date,
    "URLs": _render_urls,
}
