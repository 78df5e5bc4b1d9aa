"""
Header fields and their parsed forms (RFC 8621 §4.1.2):
:mod:`jmap_twisted.mime.headers`.

Input: a header field value (the octets after the colon); its first line
also serves as a ``header:`` property name and as a charset.
Properties: no parsed form raises, each returns strict JSON of its type;
a property name is refused only with ``ValueError``; charset decoding
never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzz.targets import strict_json
from jmap_twisted.mime import headers

FORMS: dict[str, Callable[[str], Any]] = {
    "Raw": headers.as_raw,
    "Text": headers.as_text,
    "Addresses": headers.as_addresses,
    "GroupedAddresses": headers.as_grouped_addresses,
    "MessageIds": headers.as_message_ids,
    "Date": headers.as_date,
    "URLs": headers.as_urls,
}


def check_value(value: str) -> dict[str, Any]:
    """
    Every parsed form of one raw header field value.
    """
    out: dict[str, Any] = {form: parse(value) for form, parse in FORMS.items()}
    strict_json(out)
    assert isinstance(out["Raw"], str) and isinstance(out["Text"], str)
    for address in out["Addresses"]:
        assert set(address) == {"name", "email"}
    for group in out["GroupedAddresses"]:
        assert set(group) == {"name", "addresses"}
    assert out["MessageIds"] is None or all(isinstance(i, str) for i in out["MessageIds"])
    assert out["Date"] is None or isinstance(out["Date"], str)
    media_type, parameters = headers.split_parameters(value)
    strict_json([media_type, parameters])
    strict_json([headers.decode_encoded_words(value), headers.unfold(value)])
    strict_json(headers.strip_comments(value))
    return out


def check_property(prop: str) -> headers.HeaderProperty | None:
    """
    Parse a ``header:`` property name; ``None`` if it is not one or is refused.
    """
    try:
        parsed = headers.parse_header_property(prop)
    except ValueError:
        return None
    if parsed is not None:
        assert parsed.form in headers.FORMS
    return parsed


def check_charset(data: bytes, charset: str) -> None:
    """
    Decode text in a named charset: never raises, gives a string.
    """
    text, problem = headers.decode_text(data, charset)
    assert isinstance(text, str) and isinstance(problem, bool)
    strict_json(text)
    decoded, damaged = headers.decode_base64(data)
    assert isinstance(decoded, bytes) and isinstance(damaged, bool)


def check_section(raw: bytes) -> None:
    """
    Split a header section: never raises, the body starts inside the input.
    """
    fields, body_start = headers.parse_header_section(raw)
    assert 0 <= body_start <= len(raw)
    strict_json([[name, value] for name, value in fields])


def as_field_text(data: bytes) -> str:
    """
    Octets as the message parser turns a header field into text: UTF-8
    when valid (RFC 6532), else Latin-1, NUL as U+FFFD.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\x00", "\ufffd")


def test_one_input(data: bytes) -> None:
    value = as_field_text(data)
    first = value.split("\n", 1)[0]
    check_value(value)
    check_property(first)
    check_charset(data, first[:40])
    check_section(data)
