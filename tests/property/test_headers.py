"""
Header field parsed forms (RFC 8621 §4.1.2) on generated values: no form
raises, each returns JSON of its type.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from fuzz.targets.headers import (
    as_field_text,
    check_charset,
    check_property,
    check_section,
    check_value,
)
from jmap_twisted.mime.headers import as_addresses, as_message_ids
from tests.property.strategies import PROPERTY

PIECES = st.sampled_from(
    [
        '"',
        "\\",
        "(",
        ")",
        "<",
        ">",
        "@",
        ",",
        ";",
        ":",
        "=?",
        "?=",
        "=?utf-8?q?",
        "=?utf-8?b?",
        "?q?",
        "\r\n ",
        "\n\t",
        " ",
        "a",
        "é",
        "\x00",
        "[",
        "]",
        ".",
        "Tue, 24 Nov 2026 10:00:00 +0000",
        "%",
        "'",
        "*0*=",
    ]
)
VALUES = st.lists(PIECES | st.text(max_size=5), max_size=30).map("".join)


@PROPERTY
@given(VALUES | st.binary(max_size=80).map(as_field_text))
def test_forms_never_raise(value: str) -> None:
    """
    Every parsed form of any header field value is JSON of its form's type.
    """
    check_value(value)


@PROPERTY
@given(
    st.text(max_size=40)
    | st.lists(
        st.sampled_from(
            ["header:", "From", ":asAddresses", ":all", ":asRaw", ":", "X-\u00e9", ":asurls"]
        ),
        max_size=5,
    ).map("".join)
)
def test_property_names(prop: str) -> None:
    """
    A property name is a ``header:`` property, not one, or refused with
    ``ValueError``.
    """
    check_property(prop)


@PROPERTY
@given(
    st.binary(max_size=80),
    st.sampled_from(
        [
            "utf-8",
            "iso-8859-1",
            "utf-7",
            "utf-16",
            "rot13",
            "hex",
            "base64",
            "idna",
            "punycode",
            "",
            "x-nope",
            "gb2312",
            "iso-2022-jp",
        ]
    )
    | st.text(max_size=12),
)
def test_charsets_never_raise(data: bytes, charset: str) -> None:
    """
    Text in any (named) charset decodes to a string without raising.
    """
    check_charset(data, charset)


@PROPERTY
@given(st.binary(max_size=200))
def test_header_sections(raw: bytes) -> None:
    """
    Any octets split into header fields and a body offset inside them.
    """
    check_section(raw)


EMAIL = st.from_regex(
    r"[a-z0-9+_-]{1,6}(\.[a-z0-9+_-]{1,4}){0,2}@[a-z0-9]{1,8}\.example", fullmatch=True
)


@PROPERTY
@example([("A  B", "a@b.example")])
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z ]{0,10}[A-Za-z]", fullmatch=True) | st.none(), EMAIL
        ),
        max_size=4,
    )
)
def test_address_lists_round_trip(addresses: list[tuple[str | None, str]]) -> None:
    """
    An address list written the usual way parses back to its names (white
    space collapsed, as display names are read) and addresses.
    """
    text = ", ".join(f'"{name}" <{email}>' if name else email for name, email in addresses)
    assert as_addresses(text) == [
        {"name": " ".join(name.split()) if name else None, "email": email}
        for name, email in addresses
    ]


@PROPERTY
@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9.$_-]{1,10}@[a-z0-9.-]{1,10}", fullmatch=True),
        min_size=1,
        max_size=4,
    )
)
def test_message_ids_round_trip(ids: list[str]) -> None:
    """
    Message ids written in angle brackets parse back without them.
    """
    assert as_message_ids(" ".join(f"<{i}>" for i in ids)) == ids
