"""
Building messages from Email/set creates (RFC 8621 §4.6): round trips
through the stdlib parser and :mod:`jmap_twisted.mime.headers`, and every
rule that makes a create invalid.
"""

from __future__ import annotations

import email
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jmap_twisted.errors import JMAPError
from jmap_twisted.mime.compose import (
    DEFAULT_MAX_SIZE,
    BlobNotFound,
    ComposedMessage,
    InvalidEmail,
    TooLarge,
    compose_message,
)
from jmap_twisted.mime.headers import (
    as_addresses,
    header_value,
    parse_header_property,
    parse_header_section,
)
from jmap_twisted.mime.parse import parse_message

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
HOST = "mail.example.org"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 10
BLOBS: dict[str, tuple[bytes, str]] = {
    "Bpng": (PNG, "image/png"),
    "Bpdf": (PDF, "application/pdf"),
    "Btext": (b"plain text blob\nsecond line\n", "text/plain"),
    "Butf8": ("déjà vu\n".encode(), "text/plain"),
    "Bnotype": (b"\x00\x01\x02", ""),
    "Bmsg": (b"Subject: inner\nFrom: a@b.example\n\ninner body\n", "message/rfc822"),
    "Bmsg8": ("Subject: inner\n\nnaïve body\n".encode(), "message/rfc822"),
}


def compose(obj: dict[str, Any], **kwargs: Any) -> ComposedMessage:
    kwargs.setdefault("fetch_blob", BLOBS.get)
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("host", HOST)
    return compose_message(obj, **kwargs)


def draft(**properties: Any) -> dict[str, Any]:
    """
    A minimal valid create, with ``properties`` added.
    """
    return {"mailboxIds": {"drafts": True}, **properties}


def parse(raw: bytes) -> EmailMessage:
    """
    The message as the stdlib reads it; UTF-8 header fields decoded, line
    ends LF.
    """
    text = raw.decode("utf-8").replace("\r\n", "\n")
    message = email.message_from_string(text, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def jmap(raw: bytes, prop: str) -> Any:
    """
    What ``Email/get`` would return for a ``header:`` property of ``raw``.
    """
    fields, _ = parse_header_section(raw)
    parsed = parse_header_property(prop)
    assert parsed is not None
    return header_value(fields, parsed)


def assert_well_formed(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    for line in raw[:-2].split(b"\r\n"):
        assert len(line) <= 998
        assert b"\r" not in line and b"\n" not in line


def invalid(obj: dict[str, Any], **kwargs: Any) -> list[str]:
    """
    The properties ``InvalidEmail`` names for ``obj``.
    """
    with pytest.raises(InvalidEmail) as caught:
        compose(obj, **kwargs)
    return caught.value.properties


def text_draft(text: str = "Hello.\n", /, **properties: Any) -> dict[str, Any]:
    return draft(
        textBody=[{"partId": "t", "type": "text/plain"}],
        bodyValues={"t": {"value": text}},
        **properties,
    )


# Round trips


RFC_EXAMPLE: dict[str, Any] = {
    "mailboxIds": {"2ea1ca41b38e": True},
    "keywords": {"$seen": True, "$draft": True},
    "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
    "subject": "World domination",
    "receivedAt": "2018-07-10T01:03:11Z",
    "sentAt": "2018-07-10T11:03:11+10:00",
    "bodyStructure": {
        "type": "text/plain",
        "partId": "bd48",
        "header:Content-Language": "en",
    },
    "bodyValues": {
        "bd48": {
            "value": "I have the most brilliant plan. Let me tell you all about it. "
            "What we do is, we",
            "isTruncated": False,
        }
    },
}


def test_rfc8621_example() -> None:
    """
    The Email/set example of RFC 8621 §4.6 becomes a text/plain message with
    its subject, sender, Date (offset kept), Content-Language and body, and
    the store values are returned.
    """
    composed = compose(RFC_EXAMPLE)
    assert_well_formed(composed.raw)
    message = parse(composed.raw)
    assert message["Subject"] == "World domination"
    assert message["From"].addresses[0].display_name == "Joe Bloggs"
    assert message["From"].addresses[0].addr_spec == "joe@example.com"
    assert message["Date"] == "Tue, 10 Jul 2018 11:03:11 +1000"
    assert message["Content-Language"] == "en"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message.get_content().startswith("I have the most brilliant plan.")
    assert composed.mailbox_ids == {"2ea1ca41b38e": True}
    assert composed.keywords == {"$seen": True, "$draft": True}
    assert composed.received_at == datetime(2018, 7, 10, 1, 3, 11, tzinfo=UTC)
    assert jmap(composed.raw, "header:Date:asDate") == "2018-07-10T11:03:11+10:00"
    assert not composed.smtputf8


def test_generated_message_id_and_date() -> None:
    """
    Without messageId or sentAt the server writes a random Message-ID on the
    given host, a Date of ``now``, and reports the id without brackets.
    """
    composed = compose(text_draft())
    message = parse(composed.raw)
    assert re.fullmatch(r"<[A-Za-z0-9_-]{24}@mail\.example\.org>", message["Message-ID"])
    assert composed.message_id == [message["Message-ID"][1:-1]]
    assert message["Date"] == "Mon, 06 May 2024 07:08:09 +0000"
    assert composed.received_at == NOW
    assert compose(text_draft()).message_id != composed.message_id


def test_naive_now_is_utc_and_idn_host() -> None:
    """
    A naive ``now`` is taken as UTC; an internationalised host is written as
    IDNA A-labels in the Message-ID.
    """
    composed = compose(text_draft(), now=datetime(2024, 1, 1), host="bücher.example")
    message = parse(composed.raw)
    assert message["Date"] == "Mon, 01 Jan 2024 00:00:00 +0000"
    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert composed.received_at == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("host", ["", "bad host", "a..b", "[1.2.3.4]"])
def test_bad_host(host: str) -> None:
    """
    A host that cannot be a Message-ID domain is a programming error.
    """
    with pytest.raises(ValueError):
        compose(text_draft(), host=host)


def test_threading_headers() -> None:
    """
    messageId, inReplyTo and references become Message-ID, In-Reply-To and
    References, read back as the same ids.
    """
    refs = [f"ref{i}.{'x' * 20}@example.com" for i in range(8)]
    composed = compose(
        text_draft(messageId=["new@example.com"], inReplyTo=[refs[-1]], references=refs)
    )
    assert_well_formed(composed.raw)
    message = parse(composed.raw)
    assert message["Message-ID"] == "<new@example.com>"
    assert message["In-Reply-To"] == f"<{refs[-1]}>"
    assert composed.message_id == ["new@example.com"]
    assert jmap(composed.raw, "header:References:asMessageIds") == refs
    assert jmap(composed.raw, "header:In-Reply-To:asMessageIds") == [refs[-1]]
    assert message.get_all("Message-ID") == ["<new@example.com>"]


def test_addresses_with_non_ascii_names() -> None:
    """
    Non-ASCII display names are RFC 2047 encoded (the header stays ASCII)
    and read back unchanged; ASCII names needing quotes are quoted.  (The
    stdlib parser keeps the space between the encoded-words of a long name,
    against RFC 2047 §6.2, so only the JMAP parser checks that one.)
    """
    people: list[dict[str, str | None]] = [
        {"name": "Jörg Müller", "email": "jorg@example.com"},
        {"name": "Doe, John (Jr.)", "email": "john@example.com"},
        {"name": 'Ann "Q" Smith', "email": "ann@example.com"},
        {"name": "李小龍" * 20, "email": "bruce@example.com"},
        {"name": "=?utf-8?q?not_encoded?=", "email": "lit@example.com"},
        {"name": None, "email": "bare@example.com"},
    ]
    composed = compose(
        text_draft(to=people, cc=people[:2], bcc=people[2:3], replyTo=people[:1], sender=people[:1])
    )
    assert_well_formed(composed.raw)
    head = composed.raw.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert not composed.smtputf8
    message = parse(composed.raw)
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses][:3] == [
        (p["name"] or "", p["email"]) for p in people[:3]
    ]
    assert jmap(composed.raw, "header:To:asAddresses") == people
    assert jmap(composed.raw, "header:Bcc:asAddresses") == people[2:3]
    assert jmap(composed.raw, "header:Reply-To:asAddresses") == people[:1]
    assert jmap(composed.raw, "header:Sender:asAddresses") == people[:1]


def test_idna_domain() -> None:
    """
    An ASCII local part with an internationalised domain is written in ASCII,
    the domain as IDNA A-labels.
    """
    composed = compose(text_draft(to=[{"name": "B", "email": "info@bücher.example"}]))
    assert composed.raw.isascii() and not composed.smtputf8
    assert parse(composed.raw)["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_utf8_local_part_needs_smtputf8() -> None:
    """
    A non-ASCII local part is written in UTF-8 (RFC 6532), domain included,
    and the message is flagged as needing SMTPUTF8.
    """
    composed = compose(text_draft(to=[{"name": "Ли", "email": "用户@例子.广告"}]))
    assert composed.smtputf8
    assert "用户@例子.广告".encode() in composed.raw
    address = parse(composed.raw)["To"].addresses[0]
    assert (address.display_name, address.addr_spec) == ("Ли", "用户@例子.广告")


def test_half_typed_and_odd_addresses() -> None:
    """
    A draft may hold an address without ``@``; a local part that is not a
    dot-atom is quoted; a domain literal is kept.
    """
    composed = compose(
        text_draft(
            to=[
                {"email": "bob"},
                {"email": "john doe@example.com"},
                {"email": "x@[192.0.2.1]"},
            ]
        )
    )
    to = parse(composed.raw)["To"]
    assert [a.addr_spec for a in to.addresses] == ["bob", '"john doe"@example.com', "x@[192.0.2.1]"]


def test_many_recipients_are_folded() -> None:
    """
    A long address list is folded into lines of at most 78 octets.
    """
    people = [{"name": f"Person {i}", "email": f"person{i}@example.com"} for i in range(200)]
    composed = compose(text_draft(to=people))
    head = composed.raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert jmap(composed.raw, "header:To:asAddresses") == people


def test_subject_round_trip() -> None:
    """
    Subjects, ASCII or not, long or not, read back unchanged (text that looks
    like an encoded-word included), folded within 78 octets.
    """
    for subject in [
        "Hello",
        "Héllo wörld " * 20 + "end",
        " lead  two  trail ",
        "x" * 200 + " " + "y" * 200,
        "x" * 1500,
        "see =?utf-8?q?hi?= literally",
        "tab\there",
        "日本語の件名",
    ]:
        composed = compose(text_draft(subject=subject))
        assert_well_formed(composed.raw)
        head = composed.raw.split(b"\r\n\r\n")[0]
        assert head.isascii()
        assert max(len(line) for line in head.split(b"\r\n")) <= 78
        assert jmap(composed.raw, "header:Subject:asText") == subject.strip()
        assert parse(composed.raw)["Subject"].strip() == subject.strip()


def test_plain_text_body() -> None:
    """
    A textBody alone is a single text/plain UTF-8 part; lines end in CRLF,
    and nothing is added to the text.
    """
    composed = compose(text_draft("line one\nline two\r\nline three\n"))
    message = parse(composed.raw)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert composed.raw.endswith(b"\r\n\r\nline one\r\nline two\r\nline three\r\n")


def test_text_without_final_line_break_is_the_whole_message() -> None:
    """
    A text that is the whole message and does not end in a line break is
    quoted-printable ended by a soft line break: the message ends in CRLF,
    the text reads back without a line break added.
    """
    composed = compose(text_draft("line one\nline two"))
    assert_well_formed(composed.raw)
    message = parse(composed.raw)
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert composed.raw.endswith(b"\r\n\r\nline one\r\nline two=\r\n")
    assert message.get_content() == "line one\nline two"


def test_html_body_only() -> None:
    """
    An htmlBody alone is a single text/html part.
    """
    composed = compose(draft(htmlBody=[{"partId": "h"}], bodyValues={"h": {"value": "<p>Hi</p>"}}))
    message = parse(composed.raw)
    assert message.get_content_type() == "text/html"
    assert message.get_content() == "<p>Hi</p>"


def test_alternative_body() -> None:
    """
    textBody and htmlBody make a multipart/alternative, text first.
    """
    composed = compose(
        draft(
            textBody=[{"partId": "t"}],
            htmlBody=[{"partId": "h", "type": "text/html"}],
            bodyValues={"t": {"value": "Hi"}, "h": {"value": "<b>Hi</b>"}},
        )
    )
    message = parse(composed.raw)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), text.get_content()) == ("text/plain", "Hi")
    assert (html.get_content_type(), html.get_content()) == ("text/html", "<b>Hi</b>")
    assert "7bit" == text["Content-Transfer-Encoding"] == html["Content-Transfer-Encoding"]


def test_long_lines_use_quoted_printable() -> None:
    """
    A text body with lines over 78 octets is quoted-printable, so no line of
    the message exceeds 998 octets, and decodes to the same text.
    """
    text = "word " * 1000 + "\n" + "x" * 5000 + "\n"
    composed = compose(text_draft(text))
    assert_well_formed(composed.raw)
    message = parse(composed.raw)
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_content() == text


def test_non_ascii_bodies_stay_7bit() -> None:
    """
    Non-ASCII text bodies are encoded (quoted-printable or base64), keeping
    the message 7-bit, and decode to the same text (in canonical CRLF form).
    """
    for text in ["Grüße, Jörg\n", "日本語のテキスト。\n" * 30]:
        composed = compose(text_draft(text))
        assert composed.raw.isascii()
        message = parse(composed.raw)
        assert message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert message.get_content().replace("\r\n", "\n") == text


def test_empty_body() -> None:
    """
    A create without any body gives an empty text/plain message.
    """
    message = parse(compose(draft(subject="No body")).raw)
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == ""


def test_attachments_from_blobs() -> None:
    """
    Attachments come from fetch_blob, binary ones in base64, with their
    non-ASCII names (RFC 2231) and byte-exact content; the body and them make
    a multipart/mixed, and attachments default to the attachment disposition.
    """
    composed = compose(
        text_draft(
            attachments=[
                {"blobId": "Bpdf", "name": "Résumé très long " * 8 + ".pdf"},
                {"blobId": "Bpng", "name": "写真.png", "type": "image/png", "size": 1},
                {"blobId": "Bnotype"},
            ]
        )
    )
    assert_well_formed(composed.raw)
    assert composed.raw.isascii()
    message = parse(composed.raw)
    assert message.get_content_type() == "multipart/mixed"
    body, pdf, png, unknown = message.iter_parts()
    assert body.get_content_type() == "text/plain"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "Résumé très long " * 8 + ".pdf"
    assert pdf.get_content_disposition() == "attachment"
    assert pdf["Content-Transfer-Encoding"] == "base64"
    assert pdf.get_content() == PDF
    assert (png.get_filename(), png.get_content()) == ("写真.png", PNG)
    assert png.get_param("name") == "写真.png"
    assert unknown.get_content_type() == "application/octet-stream"
    assert unknown.get_content() == b"\x00\x01\x02"


def test_attachment_type_and_disposition_given() -> None:
    """
    A part's own type and disposition win over the blob's stored type and
    the default disposition.
    """
    composed = compose(
        text_draft(
            attachments=[{"blobId": "Bpng", "type": "image/x-custom", "disposition": "inline"}]
        )
    )
    part = list(parse(composed.raw).iter_parts())[1]
    assert part.get_content_type() == "image/x-custom"
    assert part.get_content_disposition() == "inline"


def test_text_blobs() -> None:
    """
    A short-lined ASCII text blob is sent 7bit with CRLF line ends; a UTF-8
    one is base64 and labelled utf-8.
    """
    composed = compose(text_draft(attachments=[{"blobId": "Btext"}, {"blobId": "Butf8"}]))
    assert b"\r\n\r\nplain text blob\r\nsecond line\r\n" in composed.raw
    _, ascii_part, utf8_part = parse(composed.raw).iter_parts()
    assert ascii_part["Content-Transfer-Encoding"] == "7bit"
    assert utf8_part["Content-Transfer-Encoding"] == "base64"
    assert utf8_part.get_content_charset() == "utf-8"
    assert utf8_part.get_content() == "déjà vu\n"


def test_message_attachments() -> None:
    """
    message/rfc822 blobs are never base64 (RFC 2046): 7bit when ASCII, 8bit
    otherwise, with CRLF line ends.
    """
    composed = compose(text_draft(attachments=[{"blobId": "Bmsg"}, {"blobId": "Bmsg8"}]))
    assert_well_formed(composed.raw)
    _, seven, eight = parse(composed.raw).iter_parts()
    assert seven.get_content_type() == "message/rfc822"
    assert seven["Content-Transfer-Encoding"] == "7bit"
    assert seven.get_content()["Subject"] == "inner"
    assert eight["Content-Transfer-Encoding"] == "8bit"
    assert "naïve body".encode() in composed.raw
    assert not composed.smtputf8 and not composed.raw.isascii()


def test_inline_cid_images() -> None:
    """
    Attachments with a cid join the HTML in a multipart/related (type
    text/html), inline by default, inside the alternative; others stay in
    the mixed.
    """
    composed = compose(
        draft(
            textBody=[{"partId": "t"}],
            htmlBody=[{"partId": "h"}],
            attachments=[
                {"blobId": "Bpng", "cid": "logo@example.com", "name": "logo.png"},
                {"blobId": "Bpdf", "name": "doc.pdf"},
            ],
            bodyValues={
                "t": {"value": "Hi"},
                "h": {"value": '<img src="cid:logo@example.com">'},
            },
        )
    )
    message = parse(composed.raw)
    assert message.get_content_type() == "multipart/mixed"
    alternative, pdf = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "text/html"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    assert pdf.get_filename() == "doc.pdf"


def test_inline_image_with_html_only() -> None:
    """
    With only an htmlBody, the related part is the root of the message.
    """
    composed = compose(
        draft(
            htmlBody=[{"partId": "h"}],
            attachments=[{"blobId": "Bpng", "cid": "c1"}],
            bodyValues={"h": {"value": '<img src="cid:c1">'}},
        )
    )
    assert parse(composed.raw).get_content_type() == "multipart/related"


def test_custom_headers_in_every_form() -> None:
    """
    header: properties are written in the form they name, and read back in
    that form unchanged.
    """
    values: dict[str, Any] = {
        "header:X-Raw": " raw  value\r\n\tfolded",
        "header:X-Text:asText": "Ünïcode text",
        "header:X-Addr:asAddresses": [{"name": "Zoë", "email": "zoe@example.com"}],
        "header:X-Group:asGroupedAddresses": [
            {"name": "Friends", "addresses": [{"name": "A", "email": "a@example.com"}]},
            {"name": None, "addresses": [{"name": None, "email": "solo@example.com"}]},
            {"name": "Nobody", "addresses": []},
        ],
        "header:X-Ids:asMessageIds": ["one@example.com", "two@example.com"],
        "header:X-When:asDate": "2020-02-03T04:05:06-08:00",
        "header:List-Unsubscribe:asURLs": ["mailto:leave@example.com", "https://example.com/u"],
        "header:Comments:asText": "A comment",
        "header:X-Many:asText:all": ["first", "second"],
    }
    composed = compose(text_draft(**values))
    assert_well_formed(composed.raw)
    assert composed.raw.startswith(b"X-Raw: raw  value\r\n\tfolded\r\n")
    for prop, value in values.items():
        if prop == "header:X-Raw":
            value = " raw  value\r\n\tfolded"
        if prop == "header:X-Group:asGroupedAddresses":
            value = [
                value[0],
                {"name": None, "addresses": [{"name": None, "email": "solo@example.com"}]},
                value[2],
            ]
        assert jmap(composed.raw, prop) == value, prop
    message = parse(composed.raw)
    assert message.get_all("X-Many") == ["first", "second"]


def test_raw_header_without_leading_space() -> None:
    """
    A Raw value is written after ``Name: ``; one given without leading space
    reads back with it.
    """
    composed = compose(text_draft(**{"header:X-Raw:asRaw": "value"}))
    assert composed.raw.startswith(b"X-Raw: value\r\n")
    assert jmap(composed.raw, "header:X-Raw") == " value"


def test_header_property_as_subject_and_message_id() -> None:
    """
    Header fields may be set with header: properties instead of the
    convenience ones; a Raw Message-ID is not replaced, and its id reported.
    """
    composed = compose(
        text_draft(**{"header:Subject": " Raw subject", "header:Message-ID": " <raw@id>"})
    )
    message = parse(composed.raw)
    assert message["Subject"] == "Raw subject"
    assert message.get_all("Message-ID") == ["<raw@id>"]
    assert composed.message_id == ["raw@id"]


def test_null_and_empty_values_are_omitted() -> None:
    """
    A null property, or an empty address or id list, writes no header field;
    an empty messageId still gets a generated Message-ID.
    """
    composed = compose(text_draft(subject=None, to=[], messageId=[], keywords=None))
    message = parse(composed.raw)
    assert "Subject" not in message and "To" not in message
    assert composed.message_id and message["Message-ID"] == f"<{composed.message_id[0]}>"
    assert composed.keywords == {}


def test_body_structure_tree() -> None:
    """
    A bodyStructure is written as given: nested multiparts, part headers in
    their forms, language, location, cid, charset of a blob.
    """
    composed = compose(
        draft(
            bodyStructure={
                "type": "multipart/mixed",
                "header:X-Root:asText": "root header",
                "subParts": [
                    {
                        "type": "multipart/alternative",
                        "subParts": [
                            {"partId": "1", "language": ["en", "fr-CA"]},
                            {"partId": "2", "type": "text/html", "location": "https://e.com/x"},
                        ],
                    },
                    {
                        "blobId": "Btext",
                        "charset": "iso-8859-1",
                        "header:X-Part:asAddresses": [{"name": "Ü", "email": "u@example.com"}],
                        "header:Content-Description:asText": "A description",
                    },
                ],
            },
            bodyValues={"1": {"value": "text"}, "2": {"value": "<p>html</p>"}},
        )
    )
    assert_well_formed(composed.raw)
    message = parse(composed.raw)
    assert message["X-Root"] == "root header"
    alternative, blob = message.iter_parts()
    text, html = alternative.iter_parts()
    assert text["Content-Language"] == "en, fr-CA"
    assert html["Content-Location"] == "https://e.com/x"
    assert blob.get_content_charset() == "iso-8859-1"
    assert as_addresses(str(blob["X-Part"])) == [{"name": "Ü", "email": "u@example.com"}]
    assert blob["Content-Description"] == "A description"


def test_multipart_defaults_to_mixed() -> None:
    """
    A part with subParts and no type is multipart/mixed.
    """
    composed = compose(draft(bodyStructure={"subParts": [{"blobId": "Btext"}]}))
    assert parse(composed.raw).get_content_type() == "multipart/mixed"


def test_keywords_are_lowercased() -> None:
    """
    Keywords are returned lowercased, each set to true.
    """
    composed = compose(text_draft(keywords={"$Seen": True, "$FLAGGED": True, "Custom": True}))
    assert composed.keywords == {"$seen": True, "$flagged": True, "custom": True}


def test_sent_at_fraction_and_received_at() -> None:
    """
    sentAt keeps its offset (fractions dropped); receivedAt is returned as
    an aware UTC datetime.
    """
    composed = compose(
        text_draft(sentAt="2021-12-31T23:59:59.250-05:30", receivedAt="2022-01-01T05:30:00.5Z")
    )
    assert parse(composed.raw)["Date"] == "Fri, 31 Dec 2021 23:59:59 -0530"
    assert composed.received_at == datetime(2022, 1, 1, 5, 30, 0, 500000, tzinfo=UTC)
    assert composed.received_at.utcoffset() == timedelta(0)
    other = compose(
        text_draft(sentAt="2021-06-01T12:00:00+02:00"),
        now=NOW.astimezone(timezone(timedelta(hours=3))),
    )
    assert other.received_at == NOW


def test_header_with_all_writes_each_instance() -> None:
    """
    ``:all`` writes one header field per value, in order.
    """
    composed = compose(
        text_draft(
            **{
                "header:Resent-To:asAddresses:all": [
                    [{"email": "one@example.com"}],
                    [{"email": "two@example.com"}],
                ]
            }
        )
    )
    assert parse(composed.raw).get_all("Resent-To") == ["one@example.com", "two@example.com"]


def test_round_trip_through_parse_message() -> None:
    """
    parse_message reads back what was created: the header properties in
    their forms, textBody/htmlBody/attachments with names, types, cids and
    dispositions, the body values and the attachments' content.
    """
    sender = [{"name": "Jörg Müller", "email": "jorg@example.com"}]
    to = [
        {"name": "Ann Smith", "email": "ann@example.com"},
        {"name": "Ли Чжан", "email": "li@example.com"},
    ]
    obj = draft(
        **{
            "from": sender,
            "to": to,
            "cc": [{"name": None, "email": "cc@example.com"}],
            "subject": "Réunion — ordre du jour",
            "sentAt": "2024-03-04T05:06:07+01:00",
            "messageId": ["m1@example.com"],
            "inReplyTo": ["m0@example.com"],
            "references": ["r@example.com", "m0@example.com"],
            "header:X-Text:asText": "Ça va ?",
            "header:List-Post:asURLs": ["mailto:list@example.com"],
        },
        textBody=[{"partId": "t"}],
        htmlBody=[{"partId": "h"}],
        attachments=[
            {"blobId": "Bpng", "cid": "logo@x", "name": "logo.png"},
            {"blobId": "Bpdf", "name": "Compte rendu été.pdf", "type": "application/pdf"},
        ],
        bodyValues={
            "t": {"value": "Bonjour à tous,\nvoici l'ordre du jour.\n"},
            "h": {"value": '<p>Bonjour à tous</p><img src="cid:logo@x">'},
        },
    )
    composed = compose(obj)
    parsed = parse_message(composed.raw)
    assert parsed.from_ == sender
    assert parsed.to == to
    assert parsed.cc == [{"name": None, "email": "cc@example.com"}]
    assert parsed.subject == "Réunion — ordre du jour"
    assert parsed.sent_at == "2024-03-04T05:06:07+01:00"
    assert parsed.message_id == composed.message_id == ["m1@example.com"]
    assert parsed.in_reply_to == ["m0@example.com"]
    assert parsed.references == ["r@example.com", "m0@example.com"]
    assert parsed.header("header:X-Text:asText") == "Ça va ?"
    assert parsed.header("header:List-Post:asURLs") == ["mailto:list@example.com"]
    (text,) = parsed.text_body()
    (html,) = parsed.html_body()
    assert text["type"] == "text/plain" and html["type"] == "text/html"
    assert parsed.body_value(text["partId"])["value"] == "Bonjour à tous,\nvoici l'ordre du jour.\n"
    assert parsed.body_value(html["partId"])["value"].startswith("<p>Bonjour à tous</p>")
    by_name = {part["name"]: part for part in parsed.attachments()}
    assert set(by_name) == {"logo.png", "Compte rendu été.pdf"}
    logo, pdf = by_name["logo.png"], by_name["Compte rendu été.pdf"]
    assert (logo["type"], logo["cid"], logo["disposition"]) == ("image/png", "logo@x", "inline")
    assert (pdf["type"], pdf["disposition"]) == ("application/pdf", "attachment")
    assert parsed.part_content(logo["partId"]) == (PNG, "image/png")
    assert parsed.part_content(pdf["partId"]) == (PDF, "application/pdf")
    assert parsed.has_attachment


# Errors


@pytest.mark.parametrize("prop", ["id", "blobId", "threadId", "size", "preview", "hasAttachment"])
def test_server_set_properties(prop: str) -> None:
    """
    Server-set properties cannot be given on create.
    """
    assert invalid(text_draft(**{prop: None})) == [prop]


def test_headers_property_refused() -> None:
    """
    The headers property is refused on the Email and on body parts.
    """
    obj = draft(
        headers=[{"name": "X-A", "value": "b"}],
        bodyStructure={"partId": "1", "headers": []},
        bodyValues={"1": {"value": "x"}},
    )
    assert invalid(obj) == ["headers", "bodyStructure/headers"]


@pytest.mark.parametrize(
    "properties, offending",
    [
        ({"subject": "a", "header:Subject": " b"}, ["subject", "header:Subject"]),
        (
            {"from": [{"email": "a@b.c"}], "header:from:asAddresses": [{"email": "a@b.c"}]},
            ["from", "header:from:asAddresses"],
        ),
        (
            {"header:X-A": " 1", "header:x-a:asText:all": ["2"]},
            ["header:X-A", "header:x-a:asText:all"],
        ),
        (
            {"sentAt": "2020-01-01T00:00:00Z", "header:Date:asDate": "2020-01-01T00:00:00Z"},
            ["sentAt", "header:Date:asDate"],
        ),
        (
            {"messageId": ["a@b"], "header:Message-ID:asMessageIds": ["a@b"]},
            ["messageId", "header:Message-ID:asMessageIds"],
        ),
    ],
)
def test_duplicate_header_fields(properties: dict[str, Any], offending: list[str]) -> None:
    """
    Two properties for the same header field (names compared case-blind)
    are both invalid.
    """
    assert invalid(text_draft(**properties)) == offending


def test_duplicate_header_fields_on_parts() -> None:
    """
    On a body part, a header: property clashes with the part property for
    the same field (cid/Content-ID, name/Content-Disposition, ...).
    """
    obj = draft(
        bodyStructure={
            "blobId": "Bpng",
            "cid": "c",
            "header:Content-ID": " <c>",
            "name": "n",
            "header:Content-Disposition:asRaw": " inline",
            "language": ["en"],
            "header:content-language:asText": "en",
        }
    )
    assert invalid(obj) == [
        "bodyStructure/header:Content-ID",
        "bodyStructure/cid",
        "bodyStructure/header:Content-Disposition:asRaw",
        "bodyStructure/name",
        "bodyStructure/header:content-language:asText",
        "bodyStructure/language",
    ]


@pytest.mark.parametrize(
    "prop",
    [
        "header:Subject:asAddresses",
        "header:From:asDate",
        "header:Date:asText",
        "header:Message-ID:asURLs",
        "header:List-Post:asMessageIds",
        "header:X-A:asNothing",
        "header:X-A:asText:asRaw",
        "header:Bad Name",
        "header:",
    ],
)
def test_bad_header_properties(prop: str) -> None:
    """
    A malformed header: property, or a form RFC 8621 §4.1.2 forbids for
    the field, is invalid.
    """
    assert invalid(text_draft(**{prop: "x"})) == [prop]


@pytest.mark.parametrize(
    "prop", ["header:Content-Type", "header:content-disposition:asText", "header:MIME-Version"]
)
def test_content_headers_not_on_email(prop: str) -> None:
    """
    Content-* header fields go on body parts; MIME-Version is the server's.
    """
    assert invalid(text_draft(**{prop: "x"})) == [prop]


@pytest.mark.parametrize(
    "prop",
    ["header:Content-Transfer-Encoding", "header:Content-Type:asText", "header:MIME-Version"],
)
def test_content_headers_refused_on_parts(prop: str) -> None:
    """
    A body part may not set its Content-Transfer-Encoding (RFC 8621 §4.6),
    nor its Content-Type or MIME-Version by header: property.
    """
    obj = draft(
        bodyStructure={"subParts": [{"partId": "1", prop: "x"}]}, bodyValues={"1": {"value": "a"}}
    )
    assert invalid(obj) == [f"bodyStructure/subParts/0/{prop}"]


def test_body_structure_excludes_other_body_properties() -> None:
    """
    bodyStructure cannot be combined with textBody, htmlBody or attachments.
    """
    obj = draft(
        bodyStructure={"partId": "1"},
        textBody=[{"partId": "1"}],
        htmlBody=[],
        attachments=[{"blobId": "Bpng"}],
        bodyValues={"1": {"value": "a"}},
    )
    assert invalid(obj) == ["textBody", "htmlBody", "attachments"]


def test_text_and_html_body_rules() -> None:
    """
    textBody and htmlBody hold at most one part each, of type text/plain
    and text/html respectively, without subParts.
    """
    values = {"1": {"value": "a"}, "2": {"value": "b"}}
    assert invalid(draft(textBody=[{"partId": "1"}, {"partId": "2"}], bodyValues=values)) == [
        "textBody"
    ]
    assert invalid(draft(textBody=[{"partId": "1", "type": "text/html"}], bodyValues=values)) == [
        "textBody/0/type"
    ]
    assert invalid(draft(htmlBody=[{"blobId": "Bpng", "type": "image/png"}])) == ["htmlBody/0/type"]
    assert invalid(draft(htmlBody=[{"subParts": [{"partId": "1"}]}], bodyValues=values)) == [
        "htmlBody/0/subParts",
        "htmlBody/0/type",
    ]
    assert invalid(draft(textBody={"partId": "1"}, bodyValues=values)) == ["textBody"]


def test_part_content_rules() -> None:
    """
    A leaf part has a partId with a bodyValues entry or a blobId, not both;
    charset and size go with blobId only.
    """
    obj = draft(
        bodyStructure={
            "subParts": [
                {"partId": "missing"},
                {"partId": "1", "blobId": "Bpng"},
                {"partId": "1", "charset": "utf-8", "size": 3},
                {"type": "text/plain"},
                {"partId": 7},
            ]
        },
        bodyValues={"1": {"value": "a"}},
    )
    assert invalid(obj) == [
        "bodyStructure/subParts/0/partId",
        "bodyStructure/subParts/1/partId",
        "bodyStructure/subParts/1/blobId",
        "bodyStructure/subParts/2/charset",
        "bodyStructure/subParts/2/size",
        "bodyStructure/subParts/3",
        "bodyStructure/subParts/4/partId",
    ]


def test_multipart_rules() -> None:
    """
    A multipart part needs non-empty subParts and no content of its own; a
    part with subParts must be multipart/*.
    """
    obj = draft(
        bodyStructure={
            "type": "multipart/mixed",
            "subParts": [
                {"type": "multipart/alternative"},
                {"type": "text/plain", "subParts": [{"blobId": "Bpng"}]},
                {"subParts": [], "partId": "1", "blobId": "Bpng", "charset": "x"},
                "not an object",
            ],
        },
        bodyValues={"1": {"value": "a"}},
    )
    assert invalid(obj) == [
        "bodyStructure/subParts/0/subParts",
        "bodyStructure/subParts/1/type",
        "bodyStructure/subParts/2/partId",
        "bodyStructure/subParts/2/blobId",
        "bodyStructure/subParts/2/charset",
        "bodyStructure/subParts/2/subParts",
        "bodyStructure/subParts/3",
    ]


def test_nesting_limit() -> None:
    """
    Body structures nested absurdly deep are refused, not recursed into.
    """
    part: dict[str, Any] = {"blobId": "Bpng"}
    for _ in range(100):
        part = {"subParts": [part]}
    properties = invalid(draft(bodyStructure=part))
    assert len(properties) == 1 and properties[0].endswith("/subParts")


def test_part_property_values() -> None:
    """
    Part properties must have valid values: media type, charset and
    disposition tokens, cid and location without spaces or brackets,
    language tags, and no unknown properties.
    """
    obj = draft(
        bodyStructure={
            "blobId": "Bpng",
            "type": "image png",
            "charset": "utf 8",
            "disposition": "in line",
            "cid": "<c>",
            "location": "has space",
            "language": ["en", "not a tag"],
            "name": "new\r\nline",
            "isTruncated": False,
        }
    )
    assert invalid(obj) == [
        "bodyStructure/isTruncated",
        "bodyStructure/type",
        "bodyStructure/charset",
        "bodyStructure/name",
        "bodyStructure/disposition",
        "bodyStructure/cid",
        "bodyStructure/location",
        "bodyStructure/language",
    ]


def test_body_values_rules() -> None:
    """
    bodyValues entries need a value String; isEncodingProblem and
    isTruncated must be false or omitted.
    """
    obj = draft(
        textBody=[{"partId": "1"}],
        bodyValues={
            "1": {"value": "a", "isTruncated": True, "isEncodingProblem": True},
            "2": {"value": 5},
            "3": {"value": "lone \ud800 surrogate"},
            "a/b": "x",
        },
    )
    assert invalid(obj) == [
        "bodyValues/1/isEncodingProblem",
        "bodyValues/1/isTruncated",
        "bodyValues/2",
        "bodyValues/3",
        "bodyValues/a~1b",
    ]
    assert invalid(draft(bodyValues=[])) == ["bodyValues"]
    nul = {"1": {"value": "nul\x00here"}}
    assert invalid(draft(textBody=[{"partId": "1"}], bodyValues=nul)) == ["bodyValues/1"]
    binary = draft(attachments=[{"partId": "1", "type": "application/octet-stream"}])
    assert b"bnVsAGhlcmU=" in compose(binary | {"bodyValues": nul}).raw


def test_root_part_cannot_repeat_email_headers() -> None:
    """
    The bodyStructure root may not define a header field the Email defines
    (RFC 8621 §4.6); a Date or Message-ID it gives is the message's, and
    none is generated.
    """
    obj = draft(
        subject="s",
        bodyStructure={
            "partId": "1",
            "header:Subject:asText": "t",
            "header:Date": " Mon, 1 Jan 2024 00:00:00 +0000",
            "header:X-Fine": " ok",
        },
        bodyValues={"1": {"value": "a"}},
    )
    with pytest.raises(InvalidEmail) as caught:
        compose(obj)
    assert caught.value.properties == ["bodyStructure/header:Subject:asText"]
    assert "already sets subject" in caught.value.description
    del obj["bodyStructure"]["header:Subject:asText"]
    composed = compose(obj)
    fields = [name.lower() for name, _ in parse_header_section(composed.raw)[0]]
    assert fields.count("date") == 1
    assert jmap(composed.raw, "header:Date:asDate") == "2024-01-01T00:00:00Z"
    with_id = compose(
        draft(
            bodyStructure={"partId": "1", "header:Message-ID:asMessageIds": ["a@b"]},
            bodyValues={"1": {"value": "a"}},
        )
    )
    assert with_id.message_id == ["a@b"]
    assert jmap(with_id.raw, "header:Message-ID:asMessageIds:all") == [["a@b"]]


def test_lone_part_repeating_email_headers_is_nested() -> None:
    """
    A header field set on the Email and on the one part of textBody keeps
    both: the part is nested in a multipart/mixed, each with its own field.
    """
    single = text_draft("body", subject="s")
    single["textBody"][0]["header:Subject"] = " t"
    composed = compose(single)
    message = parse(composed.raw)
    assert message.get_content_type() == "multipart/mixed"
    (part,) = message.iter_parts()
    assert (message["Subject"], part["Subject"]) == ("s", "t")
    assert part.get_content() == "body"


def test_unknown_properties() -> None:
    """
    Properties that are not part of an Email are invalid.
    """
    assert invalid(text_draft(foo=1, mailboxIds={"m": True})) == ["foo"]


@pytest.mark.parametrize(
    "mailbox_ids, offending",
    [
        (None, "mailboxIds"),
        ({}, "mailboxIds"),
        ([], "mailboxIds"),
        ({"m": False}, "mailboxIds/m"),
        ({"": True}, "mailboxIds/"),
    ],
)
def test_mailbox_ids_required(mailbox_ids: Any, offending: str) -> None:
    """
    mailboxIds must name at least one Mailbox, each set to true.
    """
    obj = text_draft()
    obj["mailboxIds"] = mailbox_ids
    assert invalid(obj) == [offending]
    del obj["mailboxIds"]
    assert invalid(obj) == ["mailboxIds"]


@pytest.mark.parametrize(
    "keywords, offending",
    [
        ({"has space": True}, "keywords/has space"),
        ({"(paren": True}, "keywords/(paren"),
        ({"star*": True}, "keywords/star*"),
        ({"brace]": True}, "keywords/brace]"),
        ({"": True}, "keywords/"),
        ({"x" * 256: True}, "keywords/" + "x" * 256),
        ({"é": True}, "keywords/é"),
        ({"$seen": False}, "keywords/$seen"),
        ({"a/b~": 1}, "keywords/a~1b~0"),
        (["$seen"], "keywords"),
    ],
)
def test_bad_keywords(keywords: Any, offending: str) -> None:
    """
    Keywords must follow RFC 8621 §4.1.1 and be set to true.
    """
    assert invalid(text_draft(keywords=keywords)) == [offending]


@pytest.mark.parametrize(
    "properties, offending",
    [
        ({"receivedAt": "2020-01-01T00:00:00+01:00"}, "receivedAt"),
        ({"receivedAt": "2020-01-01"}, "receivedAt"),
        ({"receivedAt": "2020-13-01T00:00:00Z"}, "receivedAt"),
        ({"sentAt": "Mon, 1 Jan 2024 00:00:00 +0000"}, "sentAt"),
        ({"sentAt": "2020-01-01t00:00:00z"}, "sentAt"),
        ({"header:X-D:asDate": 5}, "header:X-D:asDate"),
    ],
)
def test_bad_dates(properties: dict[str, Any], offending: str) -> None:
    """
    receivedAt is a UTCDate, sentAt and Date forms RFC 3339 date-times.
    """
    assert invalid(text_draft(**properties)) == [offending]


@pytest.mark.parametrize(
    "properties, offending",
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\nBcc: victim@example.com"}, "subject"),
        ({"subject": "Hi\rBcc: victim@example.com"}, "subject"),
        ({"subject": "nul\x00"}, "subject"),
        ({"subject": "line\u2028separator"}, "subject"),
        ({"subject": "next\x85line"}, "subject"),
        ({"subject": "lone \udc00 surrogate"}, "subject"),
        ({"to": [{"name": "\ud800", "email": "a@example.com"}]}, "to"),
        ({"header:X-T:asText": "a\r\n b"}, "header:X-T:asText"),
        ({"header:X-R": " a\r\nBcc: victim@example.com"}, "header:X-R"),
        ({"header:X-R": " a\nb"}, "header:X-R"),
        ({"header:X-R": " a\r\n"}, "header:X-R"),
        ({"to": [{"name": "A\r\nBcc: x", "email": "a@example.com"}]}, "to"),
        ({"to": [{"name": "A", "email": "a@example.com>\r\nBcc: x@y"}]}, "to"),
        ({"messageId": ["a@b>\r\nBcc: <x"]}, "messageId"),
        ({"references": ["has space@b"]}, "references"),
        ({"inReplyTo": ["<bracketed@b>"]}, "inReplyTo"),
        ({"header:List-Post:asURLs": ["mailto:a@b>, <evil"]}, "header:List-Post:asURLs"),
    ],
)
def test_header_injection_refused(properties: dict[str, Any], offending: str) -> None:
    """
    Values that would add a line break, or break out of their syntax, are
    refused rather than written: no extra header field can be created.
    """
    assert invalid(text_draft(**properties)) == [offending]


def test_header_value_types() -> None:
    """
    Each form takes its own JSON type.
    """
    obj = text_draft(
        subject=5,
        to="a@example.com",
        cc=[{"name": "x"}],
        bcc=[{"email": ""}],
        replyTo=[{"email": "a@b c"}],
        sender=[{"email": "a@b", "name": 3}],
        messageId="a@b",
        **{
            "header:X-G:asGroupedAddresses": [{"name": "g"}],
            "header:X-U:asURLs": "http://x",
            "header:X-A:all": "not a list",
            "header:X-Raw": 1,
        },
    )
    assert invalid(obj) == [
        "subject",
        "to",
        "cc",
        "bcc",
        "replyTo",
        "sender",
        "messageId",
        "header:X-G:asGroupedAddresses",
        "header:X-U:asURLs",
        "header:X-A:all",
        "header:X-Raw",
    ]


def test_overlong_lines_refused() -> None:
    """
    A Raw value with a line over 998 octets, or an address too long to fold
    into one, is refused; long Text values are folded instead.
    """
    assert invalid(text_draft(**{"header:X-R": " " + "a" * 995})) == ["header:X-R"]
    assert invalid(text_draft(**{"header:X-R": " " + "é" * 497})) == ["header:X-R"]
    assert invalid(text_draft(to=[{"email": "a" * 990 + "@example.com"}])) == ["to"]
    assert invalid(text_draft(messageId=["a" * 1000 + "@b"])) == ["messageId"]
    composed = compose(
        text_draft(**{"header:X-T:asText": "a" * 5000, "header:X-R": " " + "a" * 990})
    )
    assert_well_formed(composed.raw)


def test_all_problems_reported_at_once() -> None:
    """
    InvalidEmail lists every offending property, and its SetError is
    invalidProperties with those properties and a description.
    """
    with pytest.raises(InvalidEmail) as caught:
        compose({"keywords": {"bad kw": True}, "subject": "a\nb", "id": "x", "textBody": 5})
    error = caught.value
    assert error.properties == ["mailboxIds", "keywords/bad kw", "id", "subject", "textBody"]
    assert isinstance(error, JMAPError)
    set_error = error.to_set_error()
    assert set_error["type"] == "invalidProperties"
    assert set_error["properties"] == error.properties
    assert "keywords/bad kw" in set_error["description"]


def test_email_must_be_an_object() -> None:
    """
    A create that is not a JSON object is invalid.
    """
    with pytest.raises(InvalidEmail):
        compose_message([], fetch_blob=BLOBS.get, now=NOW, host=HOST)  # type: ignore[arg-type]


def test_unknown_blobs() -> None:
    """
    Blobs fetch_blob does not know are reported together, each once, as the
    blobNotFound SetError with notFound; known blobs are fetched once.
    """
    fetched: list[str] = []

    def fetch(blob_id: str) -> tuple[bytes, str] | None:
        fetched.append(blob_id)
        return BLOBS.get(blob_id)

    obj = text_draft(
        attachments=[
            {"blobId": "nope1"},
            {"blobId": "Bpng"},
            {"blobId": "nope2"},
            {"blobId": "nope1"},
            {"blobId": "Bpng"},
        ]
    )
    with pytest.raises(BlobNotFound) as caught:
        compose(obj, fetch_blob=fetch)
    assert caught.value.blob_ids == ["nope1", "nope2"]
    assert caught.value.to_set_error()["type"] == "blobNotFound"
    assert caught.value.to_set_error()["notFound"] == ["nope1", "nope2"]
    assert fetched == ["nope1", "Bpng", "nope2"]


def test_invalid_properties_checked_before_blobs() -> None:
    """
    An invalid create is reported as such without fetching any blob.
    """

    def fetch(blob_id: str) -> tuple[bytes, str] | None:
        raise AssertionError("fetched")

    assert invalid(text_draft(subject=1, attachments=[{"blobId": "x"}]), fetch_blob=fetch) == [
        "subject"
    ]


def test_too_large() -> None:
    """
    A message over max_size raises TooLarge (tooLarge), whether the blobs
    alone exceed it or the encoded message does; the default is 50 MB.
    """
    assert DEFAULT_MAX_SIZE == 50 * 1024 * 1024
    obj = text_draft(attachments=[{"blobId": "Bpdf"}])
    with pytest.raises(TooLarge) as caught:
        compose(obj, max_size=len(PDF) - 1)
    assert caught.value.to_set_error()["type"] == "tooLarge"
    with pytest.raises(TooLarge):
        compose(obj, max_size=len(PDF) + 100)
    assert len(compose(obj, max_size=len(PDF) * 2).raw) <= len(PDF) * 2


# Properties

_TEXT = st.text(st.characters(codec="utf-8"), max_size=120)
_ADDRESS = st.fixed_dictionaries(
    {"email": st.one_of(st.emails(), _TEXT)}, optional={"name": st.one_of(st.none(), _TEXT)}
)


@settings(max_examples=300, deadline=None)
@given(
    subject=_TEXT,
    to=st.lists(_ADDRESS, max_size=4),
    raw=_TEXT,
    body=st.text(max_size=300),
)
def test_any_input_is_refused_or_well_formed(
    subject: str, to: list[dict[str, Any]], raw: str, body: str
) -> None:
    """
    Whatever the strings, compose_message either raises InvalidEmail or
    returns a well-formed message (CRLF lines of at most 998 octets, exactly
    one of each header field set) whose subject, recipients and text read
    back as given (the text's line breaks as LF).
    """
    obj = text_draft(body, subject=subject, to=to, **{"header:X-Raw": raw})
    try:
        composed = compose(obj)
    except InvalidEmail as e:
        assert set(e.properties) <= {"subject", "to", "header:X-Raw", "bodyValues/t"}
        return
    assert_well_formed(composed.raw)
    fields = [name.lower() for name, _ in parse_header_section(composed.raw)[0]]
    assert fields.count("subject") == 1
    assert fields.count("x-raw") == 1
    assert fields.count("bcc") == 0
    assert jmap(composed.raw, "header:Subject:asText") == unicodedata.normalize(
        "NFC", subject.strip(" \t")
    )
    if to:
        emails = [a["email"] for a in jmap(composed.raw, "header:To:asAddresses")]
        assert len(emails) == len(to)
    expected = re.sub("\r\n?", "\n", body)
    assert parse(composed.raw).get_content().replace("\r\n", "\n") == expected
