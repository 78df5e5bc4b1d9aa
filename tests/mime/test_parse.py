"""
Raw messages to JMAP Email properties (RFC 8621 §4.1).
"""

import base64
import itertools
import time
from typing import Any

import pytest

from jmap_twisted.mime.parse import (
    BODY_STRUCTURE_PROPERTIES,
    DEFAULT_BODY_PROPERTIES,
    ParsedMessage,
    html_to_text,
    parse_message,
)

_boundaries = itertools.count()


def leaf(media_type: str, body: str = "", *, headers: str = "") -> str:
    """A MIME entity of *media_type* with extra header lines *headers*."""
    return f"Content-Type: {media_type}\n{headers}\n{body}"


def multipart(subtype: str, *parts: str, headers: str = "") -> str:
    """A multipart entity holding *parts*."""
    boundary = f"b{next(_boundaries)}"
    body = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n{headers}\n{body}--{boundary}--\n'


def message(entity: str, headers: str = "Subject: test\n") -> ParsedMessage:
    """Parse a message made of *headers* and *entity*, with CRLF line endings."""
    return parse_message((headers + entity).replace("\n", "\r\n").encode())


def ids(parts: list[dict[str, Any]]) -> list[Any]:
    return [part["partId"] for part in parts]


SIMPLE = (
    b'From: "Joe Bloggs" <joe@example.com>\r\n'
    b"Sender: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.com>\r\n"
    b"To: alice@example.com, Bob <bob@example.com>\r\n"
    b"Cc: Team: carol@example.com;\r\n"
    b"Reply-To: <replies@example.com>\r\n"
    b"Subject: =?UTF-8?Q?Caf=C3=A9?= news\r\n"
    b"Date: Tue, 07 Oct 2014 15:59:33 +0200\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"In-Reply-To: <m0@example.com>\r\n"
    b"References: <r1@example.com>\r\n <m0@example.com>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello\r\nworld\r\n"
)


# --- metadata and convenience properties ---------------------------------------------------


def test_convenience_properties() -> None:
    """
    The convenience properties equal their ``header:…:as{Form}`` definitions;
    absent headers give null.
    """
    parsed = parse_message(SIMPLE)
    assert parsed.size == len(SIMPLE)
    assert parsed.message_id == ["m1@example.com"]
    assert parsed.in_reply_to == ["m0@example.com"]
    assert parsed.references == ["r1@example.com", "m0@example.com"]
    assert parsed.from_ == [{"name": "Joe Bloggs", "email": "joe@example.com"}]
    assert parsed.sender == [{"name": "Jörg", "email": "jorg@example.com"}]
    assert parsed.to == [
        {"name": None, "email": "alice@example.com"},
        {"name": "Bob", "email": "bob@example.com"},
    ]
    assert parsed.cc == [{"name": None, "email": "carol@example.com"}]
    assert parsed.bcc is None
    assert parsed.reply_to == [{"name": None, "email": "replies@example.com"}]
    assert parsed.subject == "Café news"
    assert parsed.sent_at == "2014-10-07T15:59:33+02:00"
    assert parsed.header("header:Cc:asGroupedAddresses") == [
        {"name": "Team", "addresses": [{"name": None, "email": "carol@example.com"}]}
    ]


def test_headers_are_raw() -> None:
    """``headers`` lists every field in order with raw values (RFC 8621 §4.1.3)."""
    parsed = parse_message(SIMPLE)
    assert parsed.headers[0] == ("From", ' "Joe Bloggs" <joe@example.com>')
    assert parsed.header_objects()[9] == {
        "name": "References",
        "value": " <r1@example.com>\r\n <m0@example.com>",
    }
    assert len(parsed.header_objects()) == 11
    with pytest.raises(ValueError, match="not a header"):
        parsed.header("subject")


def test_single_part_message() -> None:
    """A message that is not multipart is the single part ``1``."""
    parsed = parse_message(SIMPLE)
    assert parsed.body_structure() == {
        "partId": "1",
        "blobId": "1",
        "size": 14,
        "name": None,
        "type": "text/plain",
        "charset": "utf-8",
        "disposition": None,
        "cid": None,
        "language": None,
        "location": None,
        "subParts": None,
    }
    assert ids(parsed.text_body()) == ids(parsed.html_body()) == ["1"]
    assert parsed.attachments() == []
    assert parsed.body_value("1") == {
        "value": "Hello\nworld\n",
        "isEncodingProblem": False,
        "isTruncated": False,
    }


# --- textBody, htmlBody, attachments (RFC 8621 §4.1.4) ----------------------------------------


def rfc_example() -> ParsedMessage:
    """The example structure of RFC 8621 §4.1.4, parts labelled A to K."""
    return message(
        multipart(
            "mixed",
            leaf("text/plain", "A"),
            multipart(
                "mixed",
                multipart(
                    "alternative",
                    multipart(
                        "mixed",
                        leaf("text/plain", "B"),
                        leaf("image/jpeg", "C"),
                        leaf("text/plain", "D"),
                    ),
                    multipart("related", leaf("text/html", "E"), leaf("image/jpeg", "F")),
                ),
                leaf("image/jpeg", "G", headers="Content-Disposition: attachment\n"),
                leaf("application/x-excel", "H"),
                leaf("message/rfc822", "Subject: J\n\nJ"),
            ),
            leaf("text/plain", "K", headers="Content-Disposition: inline\n"),
        )
    )


def test_rfc_example_body_lists() -> None:
    """
    RFC 8621 §4.1.4: textBody is [A, B, C, D, K], htmlBody [A, E, K] and
    attachments [C, F, G, H, J].
    """
    parsed = rfc_example()
    label = {
        "1": "A",
        "2-1-1-1": "B",
        "2-1-1-2": "C",
        "2-1-1-3": "D",
        "2-1-2-1": "E",
        "2-1-2-2": "F",
        "2-2": "G",
        "2-3": "H",
        "2-4": "J",
        "3": "K",
    }
    for part_id, name in label.items():
        assert parsed.part_content(part_id)[0].endswith(name.encode())
    assert [label[p] for p in ids(parsed.text_body())] == ["A", "B", "C", "D", "K"]
    assert [label[p] for p in ids(parsed.html_body())] == ["A", "E", "K"]
    assert [label[p] for p in ids(parsed.attachments())] == ["C", "F", "G", "H", "J"]


def test_body_structure_tree() -> None:
    """
    Multipart parts have null partId and blobId and carry subParts (even when
    not asked for); part ids use ``-`` between levels and only JMAP Id characters.
    """
    tree = rfc_example().body_structure(["partId", "blobId", "type"])
    assert tree["partId"] is None and tree["blobId"] is None
    assert [sub["partId"] for sub in tree["subParts"]] == ["1", None, "3"]
    inner = tree["subParts"][1]
    assert inner["type"] == "multipart/mixed"
    assert [sub["partId"] for sub in inner["subParts"]] == [None, "2-2", "2-3", "2-4"]
    # message/rfc822 is a leaf: never descended into.
    assert inner["subParts"][3] == {
        "partId": "2-4",
        "blobId": "2-4",
        "type": "message/rfc822",
        "subParts": None,
    }


def test_alternative_with_one_side_only() -> None:
    """
    An alternative with an HTML part only fills textBody with it, and one
    with a plain-text part only fills htmlBody with it.
    """
    html_only = message(multipart("alternative", leaf("text/html", "<p>x</p>")))
    assert ids(html_only.text_body()) == ids(html_only.html_body()) == ["1"]
    plain_only = message(multipart("alternative", leaf("text/plain", "x")))
    assert ids(plain_only.text_body()) == ids(plain_only.html_body()) == ["1"]


def test_related_html_with_inline_image() -> None:
    """
    In multipart/related only the first part is inline: the cid image is an
    attachment, but not one that makes ``hasAttachment`` true.
    """
    parsed = message(
        multipart(
            "alternative",
            leaf("text/plain", "see image"),
            multipart(
                "related",
                leaf("text/html", '<img src="cid:img1@x.test">'),
                leaf("image/png", "PNG", headers="Content-ID: <img1@x.test>\n"),
            ),
        )
    )
    assert ids(parsed.text_body()) == ["1"]
    assert ids(parsed.html_body()) == ["2-1"]
    assert ids(parsed.attachments()) == ["2-2"]
    assert parsed.attachments(["cid"]) == [{"cid": "img1@x.test"}]
    assert parsed.has_attachment is False


@pytest.mark.parametrize(
    "attachment, expected",
    [
        (leaf("application/pdf", "%PDF", headers="Content-Disposition: attachment\n"), True),
        # An inline part that is no image is still a download (a file name is given).
        (
            leaf(
                "application/pdf", "%PDF", headers="Content-Disposition: inline; filename=a.pdf\n"
            ),
            True,
        ),
        # Not referenced from the HTML: a real attachment.
        (leaf("image/png", "PNG", headers="Content-ID: <other@x.test>\n"), True),
        (leaf("image/png", "PNG", headers="Content-ID: <img1@x.test>\n"), False),
        (leaf("image/png", "PNG", headers="Content-Disposition: inline\n"), False),
        (leaf("message/rfc822", "Subject: fwd\n\nbody"), True),
    ],
)
def test_has_attachment(attachment: str, expected: bool) -> None:
    """
    hasAttachment counts attachments except images referenced by ``cid:`` from
    the HTML and inline-disposition media.
    """
    parsed = message(
        multipart(
            "related",
            multipart(
                "alternative",
                leaf("text/plain", "x"),
                leaf("text/html", '<img src="cid:img1@x.test">'),
            ),
            attachment,
        )
    )
    assert len(parsed.attachments()) == 1
    assert parsed.has_attachment is expected


def test_inline_image_in_mixed_is_body() -> None:
    """An inline image between text parts of multipart/mixed is shown in the body."""
    parsed = message(
        multipart(
            "mixed",
            leaf("text/plain", "before"),
            leaf("image/gif", "GIF", headers="Content-Disposition: inline\n"),
            leaf("text/plain", "after"),
        )
    )
    assert ids(parsed.text_body()) == ids(parsed.html_body()) == ["1", "2", "3"]
    assert parsed.attachments() == []
    assert parsed.has_attachment is False


def test_named_text_part_after_first_is_attachment() -> None:
    """A text part with a file name, not first in its multipart, is an attachment."""
    parsed = message(
        multipart(
            "mixed",
            leaf("text/plain", "body"),
            leaf("text/plain; name=notes.txt", "notes"),
        )
    )
    assert ids(parsed.text_body()) == ["1"]
    assert parsed.attachments(["partId", "name"]) == [{"partId": "2", "name": "notes.txt"}]
    assert "notes.txt" in parsed.search_text()


# --- EmailBodyPart properties ------------------------------------------------------------


def test_part_metadata() -> None:
    """
    name (RFC 2231 and RFC 2047), type, charset, disposition, cid, language and
    location follow RFC 8621 §4.1.4; size is that of the decoded content.
    """
    parsed = message(
        multipart(
            "mixed",
            leaf("text/plain", "hi"),
            leaf(
                'application/octet-stream; name="=?UTF-8?B?w6kudHh0?="',
                base64.b64encode(b"12345").decode(),
                headers=(
                    "Content-Transfer-Encoding: base64\n"
                    "Content-Disposition: ATTACHMENT; filename*=utf-8''%E2%82%AC%20rates.csv\n"
                    "Content-ID: <part2@x.test>\n"
                    "Content-Language: en, fr (comment)\n"
                    "Content-Location: http://x.test/\n rates.csv\n"
                ),
            ),
            leaf("IMAGE/PNG; name==?UTF-8?B?w6kucG5n?=", "PNG"),
            "\nno content-type at all",
        )
    )
    parts = parsed.body_structure()["subParts"]
    assert parts[1] == {
        "partId": "2",
        "blobId": "2",
        "size": 5,
        "name": "€ rates.csv",
        "type": "application/octet-stream",
        "charset": None,
        "disposition": "attachment",
        "cid": "part2@x.test",
        "language": ["en", "fr"],
        "location": "http://x.test/rates.csv",
        "subParts": None,
    }
    assert parts[2]["name"] == "é.png"
    assert parts[2]["type"] == "image/png"
    assert (parts[3]["type"], parts[3]["charset"]) == ("text/plain", "us-ascii")
    assert parsed.part_content("2") == (b"12345", "application/octet-stream")


def test_digest_parts_default_to_message() -> None:
    """In multipart/digest a part without Content-Type is message/rfc822."""
    parsed = message(multipart("digest", "\nSubject: one\n\nbody"))
    assert parsed.body_structure(["type"])["subParts"] == [
        {"type": "message/rfc822", "subParts": None}
    ]


def test_body_properties_headers_and_forms() -> None:
    """
    bodyProperties may ask for ``headers`` and ``header:…`` forms; an unknown
    property raises ``ValueError``.
    """
    parsed = message(
        multipart("mixed", leaf("text/plain", "x", headers="X-Note: =?utf-8?q?caf=C3=A9?=\n"))
    )
    part = parsed.text_body(["partId", "headers", "header:X-Note:asText", "header:x-note:all"])
    assert part == [
        {
            "partId": "1",
            "headers": [
                {"name": "Content-Type", "value": " text/plain"},
                {"name": "X-Note", "value": " =?utf-8?q?caf=C3=A9?="},
            ],
            "header:X-Note:asText": "café",
            "header:x-note:all": [" =?utf-8?q?caf=C3=A9?="],
        }
    ]
    with pytest.raises(ValueError, match="unknown"):
        parsed.body_structure(["partId", "bogus"])
    with pytest.raises(ValueError, match="not allowed"):
        parsed.attachments(["header:From:asText"])


def test_default_property_lists() -> None:
    """textBody & co. default to RFC 8621's bodyProperties; bodyStructure adds subParts."""
    parsed = parse_message(SIMPLE)
    assert tuple(parsed.text_body()[0]) == DEFAULT_BODY_PROPERTIES
    assert tuple(parsed.body_structure()) == BODY_STRUCTURE_PROPERTIES


def test_blob_id_hook() -> None:
    """
    blobIds come from the ``blob_id_for_part`` hook given to ``parse_message``,
    which a method argument overrides.
    """
    raw = (
        "Subject: s\n" + multipart("mixed", leaf("text/plain", "x"), leaf("application/pdf", "y"))
    ).encode()
    parsed = parse_message(raw, blob_id_for_part=lambda part_id: f"Gmsg_{part_id}")
    assert [p["blobId"] for p in parsed.body_structure()["subParts"]] == ["Gmsg_1", "Gmsg_2"]
    assert parsed.attachments(["blobId"], blob_id_for_part=lambda p: "X" + p) == [{"blobId": "X2"}]


# --- body values -----------------------------------------------------------------------------


def test_body_value_decodes_transfer_encoding_and_charset() -> None:
    """Body values are transfer- and charset-decoded, with CRLF turned into LF."""
    parsed = message(
        multipart(
            "mixed",
            leaf(
                "text/plain; charset=iso-8859-1",
                "caf=E9 =\nsoft\n",
                headers="Content-Transfer-Encoding: quoted-printable\n",
            ),
            leaf(
                "text/html; charset=utf-8",
                base64.b64encode("<p>żółw</p>\r\n".encode()).decode(),
                headers="Content-Transfer-Encoding: Base64\n",
            ),
        )
    )
    assert parsed.body_value("1")["value"] == "café soft\n"
    assert parsed.body_value("2") == {
        "value": "<p>żółw</p>\n",
        "isEncodingProblem": False,
        "isTruncated": False,
    }


@pytest.mark.parametrize(
    "max_bytes, expected, truncated",
    [
        (0, "aé€😀z", False),
        (100, "aé€😀z", False),
        (11, "aé€😀z", False),
        (10, "aé€😀", True),
        (9, "aé€", True),
        (6, "aé€", True),
        (5, "aé", True),
        (2, "a", True),
        (1, "a", True),
    ],
)
def test_body_value_truncation(max_bytes: int, expected: str, truncated: bool) -> None:
    """Truncation keeps at most max_bytes UTF-8 octets and never splits a character."""
    parsed = message(leaf("text/plain; charset=utf-8", "aé€😀z"))
    value = parsed.body_value("1", max_bytes)
    assert (value["value"], value["isTruncated"]) == (expected, truncated)


def test_body_value_html_truncation_avoids_tags() -> None:
    """A truncated HTML value does not end inside a tag."""
    parsed = message(leaf("text/html", "<p>Hello</p><p>World</p>"))
    assert parsed.body_value("1", 14) == {
        "value": "<p>Hello</p>",
        "isEncodingProblem": False,
        "isTruncated": True,
    }


@pytest.mark.parametrize(
    "content_type, encoding, body, expected",
    [
        ("text/plain; charset=x-unknown", "7bit", "plain ascii", "plain ascii"),
        ("text/plain; charset=utf-8", "8bit", "bad \udce9 byte", "bad \ufffd byte"),
        ("text/plain", "base64", "aGVsbG8*gd29ybGQ=", "hello world"),
        ("text/plain", "quoted-printable", "a=ZZb", "a=ZZb"),
        ("text/plain", "x-uuencode", "begin", "begin"),
    ],
)
def test_body_value_encoding_problems(
    content_type: str, encoding: str, body: str, expected: str
) -> None:
    """
    Unknown charsets, invalid octets, damaged base64 or quoted-printable and
    unknown transfer encodings set isEncodingProblem; the text is still served.
    """
    raw = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}"
    ).encode("utf-8", "surrogateescape")
    value = parse_message(raw).body_value("1")
    assert value == {"value": expected, "isEncodingProblem": True, "isTruncated": False}


def test_unknown_part_ids() -> None:
    """body_value and part_content raise KeyError for unknown or multipart ids."""
    parsed = rfc_example()
    for part_id in ("0", "2", "2-1", "99", ""):
        with pytest.raises(KeyError):
            parsed.body_value(part_id)
        with pytest.raises(KeyError):
            parsed.part_content(part_id)


def test_attached_message_can_be_parsed() -> None:
    """The content of a message/rfc822 attachment is the attached message."""
    parsed = rfc_example()
    content, media_type = parsed.part_content("2-4")
    assert media_type == "message/rfc822"
    assert parse_message(content).subject == "J"


# --- preview, HTML, search text -------------------------------------------------------------


def test_preview_collapses_whitespace_and_is_bounded() -> None:
    """The preview is at most 256 characters with white space collapsed."""
    parsed = message(leaf("text/plain", "Hello\n\n   there,\tfriend.  " + "word " * 200))
    preview = parsed.preview
    assert preview.startswith("Hello there, friend. word word")
    assert len(preview) <= 256
    assert "  " not in preview


def test_preview_from_html_only() -> None:
    """With only an HTML body the preview is its text, without markup or scripts."""
    parsed = message(
        leaf(
            "text/html",
            "<html><head><title>T</title><style>p{}</style></head>"
            "<body><script>var x;</script><p>Caf&eacute;&nbsp;time</p><p>next</p></body></html>",
        )
    )
    assert parsed.preview == "Café time next"


def test_preview_of_empty_body() -> None:
    """A message without text has an empty preview."""
    assert message(leaf("image/png", "PNG")).preview == ""


@pytest.mark.parametrize(
    "markup, expected",
    [
        ("<p>one</p><p>two</p>", "one\ntwo"),
        ("<div><p>nested</p></div>\n<div>blocks</div>", "nested\nblocks"),
        ("a<br><br>b", "a\n\nb"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<ul><li>x</li><li>y</li></ul>", "x\ny"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
        ("x <script>alert('<p>')</script> y", "x y"),
        ("<style>p { color: red }</style>text", "text"),
        ("<!-- hidden --><b>bold</b> &amp; &lt;tag&gt;", "bold & <tag>"),
        ("<pre>  keep\n   spacing</pre>", "keep\nspacing"),
        ("<a href=\"x>y\" title='>'>link</a>", "link"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("<unclosed", "<unclosed"),
        ("", ""),
    ],
)
def test_html_to_text(markup: str, expected: str) -> None:
    """HTML to text drops tags, scripts and styles and keeps block line breaks."""
    assert html_to_text(markup) == expected


def test_search_text() -> None:
    """The search text holds every text body (HTML converted) and attachment names."""
    parsed = message(
        multipart(
            "mixed",
            multipart(
                "alternative", leaf("text/plain", "plain words"), leaf("text/html", "<b>x</b>")
            ),
            leaf("text/html", "<i>more</i> words"),
            leaf("application/pdf; name=report.pdf", "%PDF"),
        )
    )
    text = parsed.search_text()
    assert "plain words" in text
    assert "more words" in text
    assert "report.pdf" in text


def test_search_text_is_bounded() -> None:
    """
    Only the start of a huge body is converted and indexed: body text
    stops at the limit (HTML converted from that much markup), and the
    attachment names still follow.
    """
    parsed = message(
        multipart(
            "mixed",
            leaf("text/plain", "first " * 100),
            leaf("text/html", "<p>x</p>" * 1000),
            leaf("application/pdf; name=report.pdf", "%PDF"),
        )
    )
    text = parsed.search_text(limit=200)
    assert text.startswith("first first")
    assert len(text) <= 200 + len("\nreport.pdf")
    assert "x" not in text
    assert text.endswith("\nreport.pdf")
    assert parsed.search_text(limit=800).count("x") < 800 // len("<p>x</p>")


# --- line endings and performance ----------------------------------------------------------


def test_lf_and_crlf_give_the_same_structure() -> None:
    """Bare LF line endings parse to the same structure as CRLF."""
    text = "Subject: s\n" + multipart(
        "alternative", leaf("text/plain", "a"), leaf("text/html", "b")
    )
    lf = parse_message(text.encode())
    crlf = parse_message(text.replace("\n", "\r\n").encode())
    properties = ["partId", "type", "subParts"]
    assert lf.body_structure(properties) == crlf.body_structure(properties)
    assert lf.body_value("1") == crlf.body_value("1")
    assert lf.part_content("2") == crlf.part_content("2")


def test_typical_message_is_fast() -> None:
    """A typical 50 kB message is parsed and served in a few milliseconds."""
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10 + "\n"
    html_text = "".join(f"<p>{paragraph}</p>\n" for _ in range(40))
    raw = (
        SIMPLE.split(b"Content-Type")[0].decode()
        + multipart(
            "mixed",
            multipart(
                "alternative", leaf("text/plain", paragraph * 30), leaf("text/html", html_text)
            ),
            leaf(
                "image/png; name=a.png",
                base64.encodebytes(bytes(range(256)) * 40).decode(),
                headers="Content-Transfer-Encoding: base64\nContent-Disposition: attachment\n",
            ),
        )
    ).encode()
    assert 40_000 < len(raw) < 80_000

    def serve() -> None:
        parsed = parse_message(raw)
        parsed.body_structure()
        parsed.text_body()
        parsed.html_body()
        parsed.attachments()
        assert parsed.preview.startswith("Lorem")
        assert parsed.has_attachment
        parsed.body_value("1-1", 256)
        parsed.subject  # noqa: B018

    best = min(_timed(serve) for _ in range(5))
    assert best < 0.02


def _timed(function: object) -> float:
    start = time.perf_counter()
    assert callable(function)
    function()
    return time.perf_counter() - start
