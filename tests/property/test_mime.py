"""
The MIME parser (RFC 5322, RFC 2045-2049, RFC 8621 §4.1) on generated
messages: it never raises, serves strict JSON, and reads back what the
composer writes.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from fuzz.targets.mime import check_message
from jmap_twisted.mime.compose import InvalidEmail, compose_message
from jmap_twisted.mime.parse import parse_message
from tests.property.strategies import MESSAGES

LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])
FIELD_NAMES = st.sampled_from(
    [
        b"From",
        b"To",
        b"Cc",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"References",
        b"Content-Type",
        b"Content-Transfer-Encoding",
        b"Content-Disposition",
        b"MIME-Version",
        b"X-Other",
        b"",
        b"Bad Name",
    ]
)
VALUES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"multipart/mixed; boundary=b",
            b'multipart/alternative; boundary="b"',
            b"text/html; charset=utf-8",
            b"text/plain; charset=x-unknown",
            b"message/rfc822",
            b"base64",
            b"quoted-printable",
            b"=?utf-8?q?caf=C3=A9?= <a@b.c>",
            b"attachment; filename*=utf-8''%C3%A9.txt",
            b"<a@b> <c@d>",
            b"Tue, 24 Nov 2026 10:00:00 +0000",
            b'"Doe, J" <j@d.e>, g: a@b, c@d;',
        ]
    ),
)
BODY_LINES = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"--b",
            b"--b--",
            b"",
            b"<p>hi</p>",
            b"=C3=A9=",
            b"aGVsbG8=",
            b"From x",
            b"Content-Type: text/plain",
        ]
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """
    Octets shaped like a message: header fields (some malformed), a
    blank line or not, body lines with boundaries, any line ends.
    """
    end = draw(LINE_ENDS)
    fields = draw(st.lists(st.tuples(FIELD_NAMES, VALUES), max_size=8))
    head = [name + b": " + value for name, value in fields]
    if draw(st.booleans()):
        head.append(b" continued")
    body = draw(st.lists(BODY_LINES, max_size=12))
    return end.join([*head, b"", *body]) if draw(st.booleans()) else end.join([*head, *body])


@MESSAGES
@given(messages() | st.binary(max_size=300))
def test_any_octets_parse(raw: bytes) -> None:
    """
    Any octets parse into a message whose every property, part, body
    value and part content is served as strict JSON without raising.
    """
    check_message(raw)


ADDRESS = st.tuples(
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=12
    ).map(str.strip),
    st.from_regex(
        r"[a-z0-9+_-]{1,6}(\.[a-z0-9+_-]{1,4}){0,2}@[a-z0-9]{1,8}\.example", fullmatch=True
    ),
)
SUBJECT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=80
)


def _addresses(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"name": name or None, "email": email} for name, email in pairs]


def _as_read(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """
    Addresses as the parser reads display names: white space collapsed and
    trimmed, NFC.
    """
    return [
        {"name": unicodedata.normalize("NFC", " ".join(name.split())) or None, "email": email}
        for name, email in pairs
    ]


@MESSAGES
@given(
    st.lists(ADDRESS, min_size=1, max_size=3),
    st.lists(ADDRESS, max_size=3),
    SUBJECT,
    st.text(max_size=200),
)
@example(senders=[("", "0@0.example")], recipients=[], subject="", body="\x00")
def test_compose_then_parse(
    senders: list[tuple[str, str]], recipients: list[tuple[str, str]], subject: str, body: str
) -> None:
    """
    A message composed from an Email object parses back to the same
    addresses, subject and text (white space in names and subject
    collapsed as the parser reads them, line breaks read as LF, nothing
    added at the end); a text with NUL, which cannot read back, is refused.
    """
    email: dict[str, Any] = {
        "mailboxIds": {"drafts": True},
        "from": _addresses(senders),
        "subject": subject,
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "bodyValues": {"t": {"value": body}},
    }
    if recipients:
        email["to"] = _addresses(recipients)
    try:
        composed = compose_message(
            email,
            fetch_blob=lambda blob_id: None,
            now=datetime(2026, 1, 2, tzinfo=UTC),
            host="h.example",
        )
    except InvalidEmail as e:
        assert "\x00" in body and e.properties == ["bodyValues/t"]
        return
    parsed = parse_message(composed.raw)
    check_message(composed.raw)
    assert parsed.from_ == _as_read(senders)
    assert parsed.to == (_as_read(recipients) if recipients else None)
    assert " ".join((parsed.subject or "").split()) == " ".join(subject.split())
    (part,) = parsed.text_body(["partId"])
    value = parsed.body_value(part["partId"])["value"]
    assert value == body.replace("\r\n", "\n").replace("\r", "\n")
