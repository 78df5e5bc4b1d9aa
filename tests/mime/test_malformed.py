"""
Malformed and hostile messages: parsing never raises, stays fast, and still
serves what can be served.
"""

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets.mime import exercise
from jmap_twisted.mime.headers import (
    as_addresses,
    as_date,
    as_grouped_addresses,
    as_message_ids,
    as_text,
    as_urls,
    split_parameters,
)
from jmap_twisted.mime.parse import MAX_DEPTH, MAX_PARTS, ParsedMessage, html_to_text, parse_message


def first_text(parsed: ParsedMessage) -> dict[str, Any]:
    """The body value of the first textBody part."""
    return parsed.body_value(parsed.text_body(["partId"])[0]["partId"])


def nested_multipart(depth: int) -> bytes:
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    return b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\ninnermost"


CASES: list[Any] = []


def case(name: str, raw: bytes) -> Callable[[Callable[[ParsedMessage], None]], None]:
    """Register a hostile message and the sensible output expected from it."""

    def register(check: Callable[[ParsedMessage], None]) -> None:
        CASES.append(pytest.param(raw, check, id=name))

    return register


@case("empty message", b"")
def _empty(parsed: ParsedMessage) -> None:
    assert parsed.headers == [] and parsed.subject is None
    assert parsed.body_structure(["partId", "type", "size"]) == {
        "partId": "1",
        "type": "text/plain",
        "size": 0,
        "subParts": None,
    }
    assert first_text(parsed)["value"] == ""
    assert parsed.preview == ""


@case("only headers", b"Subject: only headers\r\nFrom: a@b.test")
def _only_headers(parsed: ParsedMessage) -> None:
    assert parsed.subject == "only headers"
    assert parsed.from_ == [{"name": None, "email": "a@b.test"}]
    assert first_text(parsed)["value"] == ""


@case("no headers at all", b"just some text\nand more\n")
def _no_headers(parsed: ParsedMessage) -> None:
    assert parsed.headers == []
    assert first_text(parsed)["value"] == "just some text\nand more\n"


@case("empty header section", b"\r\nbody after a blank line")
def _empty_header_section(parsed: ParsedMessage) -> None:
    assert parsed.headers == []
    assert parsed.preview == "body after a blank line"


@case(
    "duplicated headers",
    b"Subject: first\r\nSubject: second\r\nFrom: a@b.test\r\nFrom: c@d.test\r\n"
    b"Content-Type: text/html\r\nContent-Type: text/plain\r\n\r\n<b>x</b>",
)
def _duplicated(parsed: ParsedMessage) -> None:
    assert parsed.subject == "second"
    assert parsed.header("header:Subject:asText:all") == ["first", "second"]
    assert parsed.from_ == [{"name": None, "email": "c@d.test"}]
    # The first Content-Type decides the MIME structure.
    assert parsed.text_body(["type"]) == [{"type": "text/html"}]


@case(
    "bad encoded-words",
    b"Subject: =?utf-8?b?not base64!?= =?nope?q?x?= =?utf-8?q?ok?= plain =?utf-8?q?open\r\n"
    b"From: =?utf-8?q?=ZZ?= <a@b.test>\r\n\r\nbody",
)
def _bad_encoded_words(parsed: ParsedMessage) -> None:
    subject = parsed.subject
    assert subject is not None
    assert "ok plain =?utf-8?q?open" in subject
    assert "=?nope?q?x?=" in subject
    assert parsed.from_ == [{"name": "=ZZ", "email": "a@b.test"}]


@case("raw UTF-8 headers", "Subject: Grüße 👋\r\nFrom: Jörg <jörg@exämple.test>\r\n\r\nx".encode())
def _raw_utf8(parsed: ParsedMessage) -> None:
    assert parsed.subject == "Grüße 👋"
    assert parsed.from_ == [{"name": "Jörg", "email": "jörg@exämple.test"}]


@case("raw Latin-1 headers", b"Subject: Caf\xe9 cr\xe8me\r\nFrom: Andr\xe9 <a@b.test>\r\n\r\nx")
def _raw_latin1(parsed: ParsedMessage) -> None:
    assert parsed.subject == "Café crème"
    assert parsed.from_ == [{"name": "André", "email": "a@b.test"}]


@case(
    "unknown charset",
    b"Content-Type: text/plain; charset=x-klingon\r\n\r\nreadable ascii",
)
def _unknown_charset(parsed: ParsedMessage) -> None:
    assert first_text(parsed) == {
        "value": "readable ascii",
        "isEncodingProblem": True,
        "isTruncated": False,
    }


@case(
    "bad base64",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8g\r\n%%%d29y\r\nbGQ=\r\n====\r\nZ",
)
def _bad_base64(parsed: ParsedMessage) -> None:
    value = first_text(parsed)
    assert value["value"] == "hello world"
    assert value["isEncodingProblem"] is True


@case(
    "bad quoted-printable",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\ncaf=C3=A9 =ZZ tail=",
)
def _bad_qp(parsed: ParsedMessage) -> None:
    value = first_text(parsed)
    assert value["value"].startswith("café =ZZ tail")
    assert value["isEncodingProblem"] is True


@case(
    "missing closing boundary",
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n\r\none\r\n--XX\r\n"
    b"Content-Type: text/plain\r\n\r\ntwo, never closed",
)
def _missing_close(parsed: ParsedMessage) -> None:
    assert [p["partId"] for p in parsed.text_body()] == ["1", "2"]
    assert parsed.body_value("2")["value"] == "two, never closed"


@case(
    "multipart without boundary parameter",
    b"Subject: s\r\nContent-Type: multipart/alternative\r\n\r\n--x\r\n\r\nvisible body",
)
def _no_boundary(parsed: ParsedMessage) -> None:
    assert parsed.body_structure(["partId", "type"]) == {
        "partId": "1",
        "type": "text/plain",
        "subParts": None,
    }
    assert "visible body" in first_text(parsed)["value"]


@case(
    "boundary never used",
    b"Content-Type: multipart/mixed; boundary=unused\r\n\r\nplain text after all",
)
def _boundary_unused(parsed: ParsedMessage) -> None:
    assert parsed.preview == "plain text after all"


@case("deep multipart nesting", nested_multipart(500))
def _deep_multipart(parsed: ParsedMessage) -> None:
    tree = parsed.body_structure(["partId", "type", "subParts"])
    depth = 0
    while tree["subParts"]:
        tree = tree["subParts"][0]
        depth += 1
    assert depth == MAX_DEPTH
    assert tree["type"] == "application/octet-stream"
    assert parsed.part_content(tree["partId"])[0].endswith(b"innermost")


@case(
    "deep message/rfc822 nesting",
    b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
    + b"Content-Type: message/rfc822\r\n\r\n" * 2000
    + b"Subject: innermost\r\n\r\nbody\r\n--m--\r\n",
)
def _deep_rfc822(parsed: ParsedMessage) -> None:
    assert parsed.attachments(["partId", "type"]) == [{"partId": "1", "type": "message/rfc822"}]
    assert parsed.has_attachment is True
    inner = parse_message(parsed.part_content("1")[0])
    assert inner.attachments(["type"]) == [{"type": "message/rfc822"}]


@case("huge header", b"Subject: " + b"word " * 200_000 + b"\r\nTo: " + b"a@b.test, " * 20_000)
def _huge_header(parsed: ParsedMessage) -> None:
    subject = parsed.subject
    assert subject is not None and subject.startswith("word word") and len(subject) == 999_999
    assert parsed.to is not None and len(parsed.to) == 20_000


@case(
    "NUL bytes",
    b"Subject: nul\x00here\r\nContent-Type: text/plain\r\n\r\nbody\x00with nul",
)
def _nul(parsed: ParsedMessage) -> None:
    assert parsed.subject == "nul\ufffdhere"
    assert first_text(parsed) == {
        "value": "body\ufffdwith nul",
        "isEncodingProblem": True,
        "isTruncated": False,
    }


@case(
    "mixed line endings and padded boundaries",
    b"Subject: mixed\nContent-Type: multipart/alternative; boundary=pad\r\n\n"
    b"--pad   \r\nContent-Type: text/plain\n\nplain\r\n--pad\t\n"
    b"Content-Type: text/html\r\n\r\n<p>html</p>\n--pad--  \r\n",
)
def _line_endings(parsed: ParsedMessage) -> None:
    assert parsed.body_value("1")["value"] == "plain"
    assert parsed.body_value("2")["value"] == "<p>html</p>"


@case(
    "garbage content headers",
    b"Content-Type: garbage;;; =\r\nContent-Transfer-Encoding:\r\nContent-Disposition: ;\r\n"
    b"Content-ID: \r\nContent-Language: ,,\r\n\r\nstill text",
)
def _garbage_content_headers(parsed: ParsedMessage) -> None:
    part = parsed.body_structure()
    assert (part["type"], part["charset"], part["disposition"]) == ("text/plain", "us-ascii", None)
    assert (part["cid"], part["language"]) == (None, None)
    assert first_text(parsed)["value"] == "still text"


@case(
    "unknown transfer encoding",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n",
)
def _unknown_transfer_encoding(parsed: ParsedMessage) -> None:
    assert first_text(parsed)["value"] == "begin 644 f\n"
    assert first_text(parsed)["isEncodingProblem"] is True


@case("binary junk", b"Content-Type: text/plain\r\n\r\n" + bytes(range(256)) * 4)
def _binary_junk(parsed: ParsedMessage) -> None:
    value = first_text(parsed)
    assert value["isEncodingProblem"] is True
    assert len(value["value"]) > 900


@case(
    "too many parts",
    b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + b"--p\r\n\r\nx\r\n" * (MAX_PARTS + 500),
)
def _too_many_parts(parsed: ParsedMessage) -> None:
    assert len(parsed.body_structure(["partId", "subParts"])["subParts"]) == MAX_PARTS - 1


@case(
    "inner multipart reuses the outer boundary",
    b"Content-Type: multipart/mixed; boundary=same\r\n\r\n--same\r\n"
    b"Content-Type: multipart/alternative; boundary=same\r\n\r\n--same\r\n\r\ninner\r\n"
    b"--same--\r\n",
)
def _same_boundary(parsed: ParsedMessage) -> None:
    assert "inner" in parsed.search_text()


@case(
    "broken RFC 2231 parameters",
    b"Content-Type: application/pdf; name*0*=x'y'%zz; name*=; name*1=tail\r\n"
    b"Content-Disposition: attachment; filename*1=b; filename*0*=utf-8''%E2%82\r\n\r\nPDF",
)
def _broken_rfc2231(parsed: ParsedMessage) -> None:
    (attachment,) = parsed.attachments(["name", "type"])
    assert attachment["type"] == "application/pdf"
    assert attachment["name"].endswith("b")


@case(
    "non-header line in the header section",
    b"Subject: kept\r\nthis line is no header\r\nFrom: x@y.test\r\n\r\nrest",
)
def _non_header_line(parsed: ParsedMessage) -> None:
    assert parsed.subject == "kept" and parsed.from_ is None
    assert first_text(parsed)["value"].startswith("this line is no header\nFrom: x@y.test")


@case("mbox From line", b"From someone@x.test Mon Jan  1 00:00:00 2024\nSubject: s\n\nbody")
def _mbox(parsed: ParsedMessage) -> None:
    assert parsed.subject == "s" and parsed.preview == "body"


@case("8-bit body without charset", b"Content-Type: text/plain\r\n\r\ncaf\xe9")
def _undeclared_8bit(parsed: ParsedMessage) -> None:
    assert first_text(parsed) == {"value": "café", "isEncodingProblem": True, "isTruncated": False}


@case("CR-only line endings", b"Subject: a\rFrom: b@c.test\r\rbody")
def _cr_only(parsed: ParsedMessage) -> None:
    assert parsed.subject is not None and parsed.subject.startswith("a")


@case(
    "HTML with unclosed constructs",
    b"Content-Type: text/html\r\n\r\n<p>visible<script>never closed <b>" + b"<a " * 1000,
)
def _bad_html(parsed: ParsedMessage) -> None:
    assert parsed.preview == "visible"


@pytest.mark.parametrize("raw, check", CASES)
def test_hostile_message(raw: bytes, check: Callable[[ParsedMessage], None]) -> None:
    """
    A hostile message parses without an exception, every public method answers
    with JSON-serialisable values, and what can be served still is.
    """
    parsed = parse_message(raw)
    exercise(parsed)
    check(parsed)


#: Hostile shapes, each built at a given size (the sizes of the largest
#: are what the server must take in stride).
PATHOLOGICAL: dict[str, Callable[[int], bytes]] = {
    "nesting": lambda n: nested_multipart(n // 12),
    "delimiters": lambda n: b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b " * n,
    "tags": lambda n: b"Content-Type: text/html\r\n\r\n" + b"<a" * n,
    "lt": lambda n: b"Content-Type: text/html\r\n\r\n" + b"a<b" * (n * 4 // 5),
    "comments": lambda n: b"Content-Type: text/html\r\n\r\n" + b"<!--<script>" * (n // 5),
    "comments in headers": lambda n: b"To: " + b"(" * n + b"\r\nReferences: " + b"<" * n,
    "encoded-words": lambda n: b"Subject: " + b"=?utf-8?q?a?=" * (n // 5) + b"\r\n\r\nx",
    "parameters": lambda n: b"Content-Type: text/plain" + b"; a=b" * (n // 5) + b"\r\n\r\nx",
    "continuations": lambda n: (
        b"Content-Type: text/plain" + b"".join(b"; n*%d*=%%41" % i for i in range(n // 25))
    ),
    "base64": lambda n: b"Content-Transfer-Encoding: base64\r\n\r\n" + b"!QUJD\r\n" * (n * 4 // 5),
}


def _cpu_seconds(raw: bytes, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        exercise(parse_message(raw))
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("shape", sorted(PATHOLOGICAL))
def test_pathological_input_is_linear(shape: str) -> None:
    """
    Inputs that are quadratic for naive parsers cost time linear in their
    size: four times the input costs about four times the processor time
    (a quadratic parser would take sixteen).  Measured as a ratio of this
    process's own processor time, so a busy machine does not change it.
    """
    build = PATHOLOGICAL[shape]
    small, large = build(31_250), build(125_000)
    ratio = _cpu_seconds(large, 2) / max(_cpu_seconds(small, 3), 1e-3)
    assert ratio < 9, f"{shape}: 4x the input took {ratio:.1f}x the time"


# --- property-based ------------------------------------------------------------------------

SEEDS = [
    b"From: a@b.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: multipart/mixed;"
    b' boundary="b1"\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nh=C3=A9llo\r\n--b2\r\nContent-Type: text/html\r\n\r\n"
    b"<p>hi<img src=cid:c1></p>\r\n--b2--\r\n--b1\r\nContent-Type: image/png; name=a.png\r\n"
    b"Content-ID: <c1>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1\r\n"
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n--b1--\r\n",
    b'To: Friends: a@b.test, "Q" <c@d.test>;\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n'
    b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html;"
    b" charset=iso-8859-1\r\n\r\ncaf\xe9\r\n--r\r\nContent-Disposition: attachment;"
    b" filename*=utf-8''%E2%82%AC\r\n\r\nEUR\r\n--r--\r\n",
    b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n--d\n\n"
    b"Subject: two\n\n2\n--d--\n",
]
FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"--b",
    b"--b--",
    b"--c",
    b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: multipart/alternative; boundary=c",
    b"Content-Type: multipart/related; boundary=b",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Type: text/html",
    b"Content-Type: message/rfc822",
    b"Content-Type: image/png; name*=utf-8''%E2%82",
    b"Content-Disposition: attachment",
    b"Content-Disposition: inline",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-ID: <x@y>",
    b"Subject: =?utf-8?b?w6k=?=",
    b'From: "a" <b@c>, (',
    b" folded",
    b"=C3=A9=",
    b"aGk=",
    b"<p>x<img src=cid:x@y>",
    b"\xff\xfe\x00",
]


def _exercise_quietly(raw: bytes) -> None:
    exercise(parse_message(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes(raw: bytes) -> None:
    """Any octets parse, and every public method answers with JSON values."""
    _exercise_quietly(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_random_mime_fragments(fragments: list[bytes]) -> None:
    """Messages assembled from MIME fragments in any order parse and are served."""
    _exercise_quietly(b"".join(fragments))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(
            st.sampled_from(["replace", "insert", "delete", "truncate"]),
            st.integers(min_value=0, max_value=1000),
            st.binary(min_size=1, max_size=8),
        ),
        max_size=12,
    ),
)
def test_mutated_messages(seed: bytes, mutations: list[tuple[str, int, bytes]]) -> None:
    """Valid messages with random octets replaced, inserted or cut still parse."""
    raw = bytearray(seed)
    for kind, position, data in mutations:
        position %= len(raw) + 1
        if kind == "replace":
            raw[position : position + len(data)] = data
        elif kind == "insert":
            raw[position:position] = data
        elif kind == "delete":
            del raw[position : position + len(data)]
        else:
            del raw[position:]
    _exercise_quietly(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_header_forms_accept_any_text(value: str) -> None:
    """Every parsed form, the parameter splitter and html_to_text accept any string."""
    results = [
        as_text(value),
        as_addresses(value),
        as_grouped_addresses(value),
        as_message_ids(value),
        as_date(value),
        as_urls(value),
        split_parameters(value),
        html_to_text(value),
    ]
    json.dumps(results, ensure_ascii=False)
