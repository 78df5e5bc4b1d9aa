"""
Bodies written with ``Email/set`` and read with ``Email/get`` (RFC 8621
§4.1.4, §4.6): the text a client writes reads back as written, body parts
may carry header fields, a part of any type may take its content from
``bodyValues``, and leaf parts have ``subParts: null``.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.methods.harness import ACCOUNT, HarnessFactory, MailHarness

#: Texts a client may write: open or closed last line, LF, CRLF or a lone
#: CR as line breaks, blank lines, trailing blanks, long and non-ASCII
#: lines, and nothing at all.
TEXTS = [
    "x",
    "x\n",
    "x\r\n",
    "",
    "\n",
    "a\nb",
    "a\r\nb\r\n",
    "a\nb\r\nc\rd",
    "para\n\n\nend\n\n",
    "trailing blanks  \nand tab\t",
    "w" * 200,
    "word " * 60 + "\n",
    "Grüße, Jörg",
    "日本語のテキスト。\n" * 20,
    "=3D and =\n",
    ".\nFrom the start\n",
]


def as_read(text: str) -> str:
    """
    What RFC 8621 §4.1.4 makes of a written text when it is read: line
    breaks become LF (a lone CR is a line break too).
    """
    return text.replace("\r\n", "\n").replace("\r", "\n")


async def create(h: MailHarness, **email: Any) -> str:
    """
    Create a draft with the given properties; its id.
    """
    drafts = (await h.roles())["drafts"]
    result = await h.ok("Email/set", {"create": {"c": {"mailboxIds": {drafts: True}, **email}}})
    assert result["notCreated"] is None, result["notCreated"]
    return str(result["created"]["c"]["id"])


async def get(h: MailHarness, email_id: str, **arguments: Any) -> dict[str, Any]:
    got = await h.ok("Email/get", {"ids": [email_id], **arguments})
    return dict(got["list"][0])


@pytest_twisted.ensureDeferred
async def test_written_body_values_read_back_as_written(make_harness: HarnessFactory) -> None:
    """
    A text/plain or text/html body value, alone or in a multipart/
    alternative, reads back exactly as written (line breaks as LF, which
    RFC 8621 §4.1.4 requires): no line break is added or removed.
    """
    h = await make_harness()
    for text in TEXTS:
        expected = as_read(text)
        for prop, media_type, fetch in (
            ("textBody", "text/plain", "fetchTextBodyValues"),
            ("htmlBody", "text/html", "fetchHTMLBodyValues"),
        ):
            email_id = await create(
                h,
                bodyValues={"1": {"value": text}},
                **{prop: [{"partId": "1", "type": media_type}]},
            )
            got = await get(h, email_id, properties=[prop, "bodyValues"], **{fetch: True})
            value = got["bodyValues"][got[prop][0]["partId"]]
            assert value == {"value": expected, "isEncodingProblem": False, "isTruncated": False}, (
                media_type,
                text,
            )
        email_id = await create(
            h,
            bodyValues={"t": {"value": text}, "h": {"value": "<p>" + text}},
            textBody=[{"partId": "t"}],
            htmlBody=[{"partId": "h", "type": "text/html"}],
        )
        got = await get(h, email_id, properties=["bodyValues"], fetchAllBodyValues=True)
        assert sorted(v["value"] for v in got["bodyValues"].values()) == sorted(
            [expected, "<p>" + expected]
        ), text


@pytest_twisted.ensureDeferred
async def test_body_parts_may_carry_header_fields(make_harness: HarnessFactory) -> None:
    """
    header: properties on a textBody part are accepted, even for a field
    the Email sets too (RFC 8621 §4.6 forbids only Content-Transfer-Encoding
    and repeats within one object): each reads back where it was written.
    """
    h = await make_harness()
    email_id = await create(
        h,
        **{"from": [{"email": "alice@example.com"}]},
        subject="Outer",
        bodyValues={"1": {"value": "Hi"}},
        textBody=[
            {
                "partId": "1",
                "header:From": " part@example.com",
                "header:X-Part:asText": "one",
            }
        ],
    )
    part_properties = ["partId", "header:From:asAddresses", "header:X-Part:asText"]
    got = await get(
        h,
        email_id,
        properties=["from", "subject", "textBody", "bodyValues"],
        bodyProperties=part_properties,
        fetchTextBodyValues=True,
    )
    assert got["from"] == [{"name": None, "email": "alice@example.com"}]
    assert got["subject"] == "Outer"
    (part,) = got["textBody"]
    assert part["header:From:asAddresses"] == [{"name": None, "email": "part@example.com"}]
    assert part["header:X-Part:asText"] == "one"
    assert got["bodyValues"][part["partId"]]["value"] == "Hi"

    alone = await create(
        h,
        bodyValues={"1": {"value": "Hi"}},
        textBody=[{"partId": "1", "header:From": " part@example.com"}],
    )
    got = await get(h, alone, properties=["from", "bodyStructure"])
    assert got["from"] == [{"name": None, "email": "part@example.com"}]
    assert got["bodyStructure"]["type"] == "text/plain"


@pytest_twisted.ensureDeferred
async def test_refused_body_parts_say_why(make_harness: HarnessFactory) -> None:
    """
    What RFC 8621 §4.6 forbids on body parts is invalidProperties naming
    the property, and the description says why.
    """
    h = await make_harness()
    drafts = (await h.roles())["drafts"]
    cases = {
        "cte": (
            {
                "bodyValues": {"1": {"value": "x"}},
                "textBody": [{"partId": "1", "header:Content-Transfer-Encoding": " base64"}],
            },
            "textBody/0/header:Content-Transfer-Encoding",
            "Content-Transfer-Encoding",
        ),
        "repeat": (
            {
                "subject": "s",
                "bodyValues": {"1": {"value": "x"}},
                "bodyStructure": {"partId": "1", "header:Subject:asText": "t"},
            },
            "bodyStructure/header:Subject:asText",
            "already sets subject",
        ),
        "nul": (
            {"bodyValues": {"1": {"value": "a\x00b"}}, "textBody": [{"partId": "1"}]},
            "bodyValues/1",
            "NUL",
        ),
        "twice": (
            {
                "bodyValues": {"1": {"value": "x"}},
                "textBody": [{"partId": "1", "header:X-A": " 1", "header:x-a:asText": "2"}],
            },
            "textBody/0/header:X-A",
            "more than once",
        ),
    }
    result = await h.ok(
        "Email/set",
        {"create": {k: {"mailboxIds": {drafts: True}, **v[0]} for k, v in cases.items()}},
    )
    for key, (_, path, reason) in cases.items():
        error = result["notCreated"][key]
        assert error["type"] == "invalidProperties"
        assert path in error["properties"]
        assert reason in error["description"], error


@pytest_twisted.ensureDeferred
async def test_non_text_parts_may_come_from_body_values(make_harness: HarnessFactory) -> None:
    """
    An attachment of a non-text type may take its content from bodyValues:
    its blob holds the text's UTF-8 octets.
    """
    h = await make_harness()
    document = '{"größe": 1}\n'
    email_id = await create(
        h,
        bodyValues={"1": {"value": "See attached."}, "2": {"value": document}},
        textBody=[{"partId": "1"}],
        attachments=[{"partId": "2", "type": "application/json", "name": "data.json"}],
    )
    got = await get(h, email_id, properties=["attachments", "hasAttachment"])
    (attachment,) = got["attachments"]
    assert (attachment["type"], attachment["name"]) == ("application/json", "data.json")
    assert attachment["size"] == len(document.encode())
    assert await h.resolver.download(h.principal, ACCOUNT, attachment["blobId"]) == (
        document.encode(),
        "application/json",
    )


@pytest_twisted.ensureDeferred
async def test_leaf_parts_have_null_sub_parts(make_harness: HarnessFactory) -> None:
    """
    RFC 8621 §4.1.4: subParts lists the children of a multipart/* part;
    every other part has subParts null, in bodyStructure and in textBody,
    htmlBody and attachments alike.
    """
    h = await make_harness()
    email_id = await create(
        h,
        bodyValues={"t": {"value": "text"}, "h": {"value": "<p>html"}, "a": {"value": "a"}},
        bodyStructure={
            "type": "multipart/mixed",
            "subParts": [
                {
                    "type": "multipart/alternative",
                    "subParts": [
                        {"partId": "t", "type": "text/plain"},
                        {"partId": "h", "type": "text/html"},
                    ],
                },
                {"partId": "a", "type": "text/plain", "disposition": "attachment"},
            ],
        },
    )
    got = await get(
        h,
        email_id,
        properties=["bodyStructure", "textBody", "htmlBody", "attachments"],
        bodyProperties=["partId", "type", "subParts"],
    )

    def check(part: dict[str, Any]) -> int:
        if part["type"].startswith("multipart/"):
            assert part["partId"] is None
            assert isinstance(part["subParts"], list) and part["subParts"]
            return sum(check(child) for child in part["subParts"])
        assert part["subParts"] is None
        return 1

    assert check(got["bodyStructure"]) == 3
    lists = [got["textBody"], got["htmlBody"], got["attachments"]]
    assert [len(parts) for parts in lists] == [1, 1, 1]
    for part in (p for parts in lists for p in parts):
        assert part["subParts"] is None
