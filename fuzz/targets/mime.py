"""
Internet messages (RFC 5322, MIME): :func:`jmap_twisted.mime.parse.parse_message`
and what the store derives from a message
(:func:`jmap_twisted.store.summary.summarize`).

Properties: parsing never raises; every Email property, body part, body
value and part content is served without raising and is strict JSON;
part ids are unique.
"""

from __future__ import annotations

from typing import Any

from fuzz.targets import strict_json
from jmap_twisted.mime.headers import FORMS, parse_header_property
from jmap_twisted.mime.parse import ParsedMessage, parse_message
from jmap_twisted.store.summary import summarize

PART_PROPERTIES = [
    *("partId", "blobId", "size", "headers", "name", "type", "charset", "disposition", "cid"),
    *("language", "location", "subParts", "header:Content-Type:asText"),
    "header:Content-Disposition:asRaw:all",
]


def _leaves(tree: dict[str, Any]) -> list[str]:
    found, stack = [], [tree]
    while stack:
        part = stack.pop()
        if part["subParts"] is None:
            found.append(part["partId"])
        else:
            stack.extend(part["subParts"])
    return found


def exercise(parsed: ParsedMessage) -> dict[str, Any]:
    """
    Every public property and method of a parsed message, as ``Email/get``
    would serve them.
    """
    out: dict[str, Any] = {
        "size": parsed.size,
        "headers": parsed.header_objects(),
        "messageId": parsed.message_id,
        "inReplyTo": parsed.in_reply_to,
        "references": parsed.references,
        "sender": parsed.sender,
        "from": parsed.from_,
        "to": parsed.to,
        "cc": parsed.cc,
        "bcc": parsed.bcc,
        "replyTo": parsed.reply_to,
        "subject": parsed.subject,
        "sentAt": parsed.sent_at,
        "hasAttachment": parsed.has_attachment,
        "preview": parsed.preview,
        "search": parsed.search_text(),
        "bodyStructure": parsed.body_structure(PART_PROPERTIES),
        "textBody": parsed.text_body(),
        "htmlBody": parsed.html_body(),
        "attachments": parsed.attachments(PART_PROPERTIES),
    }
    for name in list(dict.fromkeys(name for name, _ in parsed.headers))[:8]:
        for form in FORMS:
            prop = f"header:{name}:as{form}:all"
            try:
                parse_header_property(prop)
            except ValueError:
                continue
            out[prop] = parsed.header(prop)
    leaves = [p for p in _leaves(out["bodyStructure"]) if p is not None]
    assert len(leaves) == len(set(leaves)), "part ids repeat"
    out["bodyValues"] = {p: parsed.body_value(p, max_bytes=64) for p in leaves[:20]}
    for part_id in leaves[:20]:
        assert len(parsed.body_value(part_id, 7)["value"].encode()) <= 7
        content, media_type = parsed.part_content(part_id)
        assert isinstance(content, bytes) and isinstance(media_type, str)
    assert len(out["preview"]) <= 256
    return out


def check_message(raw: bytes) -> dict[str, Any]:
    """
    Parse ``raw`` and serve all of it; return what was served.
    """
    out = exercise(parse_message(raw, blob_id_for_part=lambda p: "B_" + p))
    strict_json(out)
    summary = summarize(raw)
    assert isinstance(summary.subject, str) and isinstance(summary.body_text, str)
    return out


def test_one_input(data: bytes) -> None:
    check_message(data)
