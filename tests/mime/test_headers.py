"""
Header fields and their parsed forms (RFC 8621 §4.1.2, §4.1.3).
"""

from typing import Any

import pytest

from jmap_twisted.mime.headers import (
    HeaderProperty,
    as_addresses,
    as_date,
    as_grouped_addresses,
    as_message_ids,
    as_raw,
    as_text,
    as_urls,
    decode_text,
    header_value,
    lookup_charset,
    parse_header_property,
    parse_header_section,
    split_parameters,
)

# RFC 8621 §4.1.2.3's example.
RFC_TO = (
    ' "James Smythe" <james@example.com>, Friends:\r\n'
    " jane@example.com, =?UTF-8?Q?John_Sm=C3=AEth?=\r\n"
    " <john@example.com>;"
)


# --- property names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "prop, expected",
    [
        ("header:Subject", HeaderProperty("Subject", "Raw", False)),
        ("header:From:asAddresses:all", HeaderProperty("From", "Addresses", True)),
        ("header:x-foo:asText", HeaderProperty("x-foo", "Text", False)),
        ("header:X-Foo:all", HeaderProperty("X-Foo", "Raw", True)),
        ("header:From:asRaw", HeaderProperty("From", "Raw", False)),
        ("header:to:ASGROUPEDADDRESSES", HeaderProperty("to", "GroupedAddresses", False)),
        ("header:Resent-To:asAddresses:all", HeaderProperty("Resent-To", "Addresses", True)),
        ("header:List-Id:asText", HeaderProperty("List-Id", "Text", False)),
        ("header:X-Date:asDate", HeaderProperty("X-Date", "Date", False)),
        ("header:X-Urls:asURLs", HeaderProperty("X-Urls", "URLs", False)),
        ("header:Message-ID:asMessageIds", HeaderProperty("Message-ID", "MessageIds", False)),
    ],
)
def test_parse_header_property(prop: str, expected: HeaderProperty) -> None:
    """
    ``header:{name}[:as{Form}][:all]`` parses to name, form and ``all``; the
    form keyword is case-insensitive.
    """
    assert parse_header_property(prop) == expected


@pytest.mark.parametrize("prop", ["subject", "from", "headers", "bodyValues", "Header:From"])
def test_parse_header_property_not_header(prop: str) -> None:
    """A property not starting with ``header:`` is not a header property."""
    assert parse_header_property(prop) is None


@pytest.mark.parametrize(
    "prop",
    [
        "header:",
        "header:From:",
        "header:From:asFoo",
        "header:From:all:asAddresses",
        "header:From:asAddresses:all:all",
        "header:Fr om",
        "header:Fröm",
    ],
)
def test_parse_header_property_malformed(prop: str) -> None:
    """A malformed ``header:`` property raises ``ValueError``."""
    with pytest.raises(ValueError, match="header"):
        parse_header_property(prop)


@pytest.mark.parametrize(
    "prop",
    [
        "header:Subject:asAddresses",
        "header:From:asText",
        "header:from:asDate",
        "header:Date:asMessageIds",
        "header:Message-ID:asDate",
        "header:References:asText",
        "header:List-Post:asAddresses",
        "header:Received:asText",
        "header:Return-Path:asAddresses",
        "header:Keywords:asURLs",
    ],
)
def test_parse_header_property_form_not_allowed(prop: str) -> None:
    """
    Header fields of RFC 5322 and RFC 2369 only accept the forms RFC 8621
    §4.1.2 lists for them (matched case-insensitively).
    """
    with pytest.raises(ValueError, match="not allowed"):
        parse_header_property(prop)


# --- header_value -------------------------------------------------------------------

HEADERS = [
    ("Received", " from a"),
    ("subject", " first"),
    ("Received", " from b"),
    ("SUBJECT", " =?utf-8?q?second?="),
]


@pytest.mark.parametrize(
    "prop, expected",
    [
        ("header:Subject", " =?utf-8?q?second?="),
        ("header:subject:asText", "second"),
        ("header:Subject:asText:all", ["first", "second"]),
        ("header:Received:all", [" from a", " from b"]),
        ("header:X-Missing", None),
        ("header:X-Missing:asAddresses", None),
        ("header:X-Missing:all", []),
    ],
)
def test_header_value(prop: str, expected: Any) -> None:
    """
    Without ``:all`` the last instance (or null), with ``:all`` every instance
    in message order (or an empty list); names match case-insensitively.
    """
    parsed = parse_header_property(prop)
    assert parsed is not None
    assert header_value(HEADERS, parsed) == expected


# --- Raw and Text -------------------------------------------------------------------


def test_as_raw_keeps_everything() -> None:
    """The Raw form is the value from after the colon, folding included."""
    assert as_raw(" a\r\n  b ") == " a\r\n  b "


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" Hello", "Hello"),
        (" folded\r\n line", "folded line"),
        (" Re: =?ISO-8859-1?Q?Caf=E9?=", "Re: Café"),
        (" =?UTF-8?B?SGVsbG8g4pyT?= world", "Hello ✓ world"),
        # White space between adjacent encoded-words is dropped.
        (" =?UTF-8?Q?a?=  =?UTF-8?Q?b?= c", "ab c"),
        # A character split across two encoded-words survives.
        (" =?utf-8?b?8J+Y?= =?utf-8?b?gA==?=", "😀"),
        (" =?utf-8?q?J=C3=B6rg_M=C3=BCller?=", "Jörg Müller"),
        # Inside a word, encoded-word syntax must not be decoded (§4.1.2.2).
        (" x=?utf-8?q?a?= y", "x=?utf-8?q?a?= y"),
        # Unknown charsets are left as they are.
        (" =?x-bogus?q?abc?= ok", "=?x-bogus?q?abc?= ok"),
        # Encoded control characters are dropped, HTAB (white space) is kept.
        (" =?utf-8?q?a=00b=07c=0D=0Ad?=", "abcd"),
        (" =?utf-8?q?a=09b?=", "a\tb"),
        # NFC normalisation.
        (" e\u0301t\u0065\u0301", "été"),
        (" =?utf-8*en?q?lang?=", "lang"),
    ],
)
def test_as_text(raw: str, expected: str) -> None:
    """
    The Text form is unfolded, RFC 2047 decoded where syntactically valid,
    trimmed, and in NFC.
    """
    assert as_text(raw) == expected


# --- Addresses and GroupedAddresses ---------------------------------------------------


def test_as_addresses_rfc_example() -> None:
    """RFC 8621 §4.1.2.3: groups are flattened, display names decoded."""
    assert as_addresses(RFC_TO) == [
        {"name": "James Smythe", "email": "james@example.com"},
        {"name": None, "email": "jane@example.com"},
        {"name": "John Smîth", "email": "john@example.com"},
    ]


def test_as_grouped_addresses_rfc_example() -> None:
    """RFC 8621 §4.1.2.4: ungrouped mailboxes are collected under a null name."""
    assert as_grouped_addresses(RFC_TO) == [
        {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
        {
            "name": "Friends",
            "addresses": [
                {"name": None, "email": "jane@example.com"},
                {"name": "John Smîth", "email": "john@example.com"},
            ],
        },
    ]


@pytest.mark.parametrize(
    "raw, expected",
    [
        # A comment after an address without display name is its name.
        (" bob@example.com (Bob Smith)", [("Bob Smith", "bob@example.com")]),
        (' "Smith, John" <john@x.test>', [("Smith, John", "john@x.test")]),
        (' "a\\"b" <a@b.test>', [('a"b', "a@b.test")]),
        (' "  James Smythe " <j@x.test>', [("James Smythe", "j@x.test")]),
        # Encoded-words inside quotes are decoded too (a common violation).
        (' "=?utf-8?q?J=C3=B6rg?=" <j@x.test>', [("Jörg", "j@x.test")]),
        # RFC 5322 appendix A.5: comments everywhere.
        (
            " Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            [("Pete", "pete@silly.test")],
        ),
        # Obsolete route and obsolete spaced addr-spec.
        (" <@a.net,@b.net:c@d.net>", [(None, "c@d.net")]),
        (" john . smith @ example . com", [(None, "john.smith@example.com")]),
        # A display name without brackets, seen in the wild.
        (" John Smith john@example.com", [("John Smith", "john@example.com")]),
        (" Undisclosed recipients:;", []),
        (" a@b.test, , <>", [(None, "a@b.test")]),
        (" MAILER-DAEMON", [(None, "MAILER-DAEMON")]),
        ("", []),
    ],
)
def test_as_addresses(raw: str, expected: list[tuple[str | None, str]]) -> None:
    """The Addresses form parses RFC 5322 address lists best effort."""
    assert as_addresses(raw) == [{"name": name, "email": email} for name, email in expected]


def test_as_grouped_addresses_empty_and_trailing_groups() -> None:
    """An empty group is kept; mailboxes after a group start a new null group."""
    assert as_grouped_addresses(" a@b.test, Team: c@d.test; Nobody:; e@f.test") == [
        {"name": None, "addresses": [{"name": None, "email": "a@b.test"}]},
        {"name": "Team", "addresses": [{"name": None, "email": "c@d.test"}]},
        {"name": "Nobody", "addresses": []},
        {"name": None, "addresses": [{"name": None, "email": "e@f.test"}]},
    ]


# --- MessageIds, Date, URLs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" <1234@local.machine.example>", ["1234@local.machine.example"]),
        (
            " <1234@local.machine.example>\r\n <3456@example.net>",
            ["1234@local.machine.example", "3456@example.net"],
        ),
        (" <a@b.test> (a comment)", ["a@b.test"]),
        # Obsolete In-Reply-To syntax: phrases between ids.
        (' Your message of "Monday" <a@b.test>', ["a@b.test"]),
        (" a@b.test", ["a@b.test"]),
        (" not an id", None),
        (" <>", None),
        ("", None),
    ],
)
def test_as_message_ids(raw: str, expected: list[str] | None) -> None:
    """The MessageIds form strips CFWS and brackets; null when unparsable."""
    assert as_message_ids(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        (" Tue, 1 Jul 2003 10:52:37 +0200", "2003-07-01T10:52:37+02:00"),
        (" Fri, 21 Nov 1997 09:55:06 -0600", "1997-11-21T09:55:06-06:00"),
        (" Thu, 13 Feb 1969 23:32:54 -0330", "1969-02-13T23:32:54-03:30"),
        (" 1 Jul 2003 10:52:37 +0000", "2003-07-01T10:52:37Z"),
        # -0000: the local offset is unknown; the time is UTC.
        (" 1 Jul 2003 10:52:37 -0000", "2003-07-01T10:52:37Z"),
        (" Tue, 1 Jul 2003 10:52:37 +0200 (CEST)", "2003-07-01T10:52:37+02:00"),
        (" 21 Nov 97 09:55 EST", "1997-11-21T09:55:00-05:00"),
        (" Sat, 31 Dec 2016 23:59:60 +0000", "2016-12-31T23:59:59Z"),
        (" Mon, 31 Feb 2020 00:00:00 +0000", None),
        (" yesterday", None),
        ("", None),
    ],
)
def test_as_date(raw: str, expected: str | None) -> None:
    """The Date form is an RFC 3339 date-time keeping the message's UTC offset."""
    assert as_date(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        # RFC 2369's examples.
        (
            " <mailto:list@host.com?subject=help> (List Instructions)",
            ["mailto:list@host.com?subject=help"],
        ),
        (
            " <http://www.host.com/list.cgi?cmd=sub&lst=list>,\r\n"
            "   <mailto:list-request@host.com?subject=subscribe>",
            [
                "http://www.host.com/list.cgi?cmd=sub&lst=list",
                "mailto:list-request@host.com?subject=subscribe",
            ],
        ),
        (" NO (posting not allowed on this list)", None),
        (" <http://www.host.com/list/\r\n archive>", ["http://www.host.com/list/archive"]),
        ("", None),
    ],
)
def test_as_urls(raw: str, expected: list[str] | None) -> None:
    """The URLs form lists the bracketed URLs without comments or folding."""
    assert as_urls(raw) == expected


# --- reading header sections, parameters, charsets -----------------------------------------


def test_parse_header_section_keeps_raw_values() -> None:
    """
    Values are raw (leading space and folding kept); CRLF and LF both end
    lines; the section ends at the empty line.
    """
    raw = b"Subject: hi\r\n\tthere\r\nX-A:b\nX-B : c\n\nbody"
    headers, body = parse_header_section(raw)
    assert headers == [("Subject", " hi\r\n\tthere"), ("X-A", "b"), ("X-B", " c")]
    assert raw[body:] == b"body"


def test_parse_header_section_stops_at_non_header_line() -> None:
    """A line that is no header field starts the body; an mbox From line is skipped."""
    raw = b"From someone@x.test Mon Jan  1 00:00:00 2024\nSubject: s\nnot a header\nmore"
    headers, body = parse_header_section(raw, skip_mbox_line=True)
    assert headers == [("Subject", " s")]
    assert raw[body:] == b"not a header\nmore"


def test_parse_header_section_eight_bit() -> None:
    """Raw UTF-8 header octets are read as UTF-8, other 8-bit octets as Latin-1."""
    headers, _ = parse_header_section("A: café\nB: ".encode() + b"caf\xe9\n\n")
    assert headers == [("A", " café"), ("B", " café")]


def test_split_parameters_rfc2231() -> None:
    """RFC 2231's examples: charset-encoded values and continuations are decoded."""
    assert split_parameters(
        "application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"
    ) == ("application/x-stuff", {"title": "This is ***fun***"})
    assert split_parameters(
        "application/x-stuff;\r\n title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
        ' title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n title*2="isn\'t it!"'
    ) == ("application/x-stuff", {"title": "This is even more ***fun*** isn't it!"})


def test_split_parameters_quoting_and_comments() -> None:
    """Types are lower-cased, comments removed, quoted values may hold ``;``."""
    assert split_parameters(' Text/Plain (comment); charset="UTF-8"; name="a;b.txt"') == (
        "text/plain",
        {"charset": "UTF-8", "name": "a;b.txt"},
    )


@pytest.mark.parametrize(
    "data, charset, expected",
    [
        (b"caf\xc3\xa9", "utf-8", ("café", False)),
        (b"caf\xe9", "ISO-8859-1", ("café", False)),
        (b"caf\xc3\xa9", None, ("café", False)),
        (b"caf\xe9", "us-ascii", ("café", True)),
        (b"caf\xe9", "utf-8", ("caf\ufffd", True)),
        (b"abc", "x-no-such-charset", ("abc", True)),
        (b"abc", "base64", ("abc", True)),
        (b"\x82\xa0", "shift_jis", ("あ", False)),
        (b"\xc4\xe3", "gb2312", ("你", False)),
    ],
)
def test_decode_text(data: bytes, charset: str | None, expected: tuple[str, bool]) -> None:
    """
    Decoding never fails; an unknown charset or malformed octets are reported
    as a problem.
    """
    assert decode_text(data, charset) == expected


def test_lookup_charset_rejects_non_charsets() -> None:
    """Codecs that are not charsets (base64, rot13, idna) are unknown charsets."""
    assert lookup_charset("UTF8") == "utf-8"
    assert lookup_charset("base64") is None
    assert lookup_charset("rot13") is None
    assert lookup_charset("idna") is None
    assert lookup_charset("utf-8\x00") is None
