"""
What the mail store derives from a message when storing it: threading
keys, sort keys, filterable text (see :class:`~jmap_twisted.records.EmailSummary`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from jmap_twisted.mime.parse import parse_message
from jmap_twisted.records import EmailSummary

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv|antw|vs)\s*(?:\[\d+\])?\s*:|\[[^\]]*\])\s*", re.I)
_SUFFIX = re.compile(r"\s*\((?:fwd)\)\s*$", re.I)
_SPACE = re.compile(r"\s+")


def base_subject(subject: str) -> str:
    """
    The subject without reply/forward prefixes, list tags and the
    ``(fwd)`` trailer, whitespace collapsed and case folded — in the manner
    of RFC 5256 §2.1 — for threading and subject sorting.
    """
    text = _SPACE.sub(" ", subject).strip()
    while True:
        stripped = _SUFFIX.sub("", _PREFIX.sub("", text))
        if stripped == text:
            break
        text = stripped
    return text.casefold()


def _addresses_text(addresses: list[dict[str, Any]] | None) -> str:
    if not addresses:
        return ""
    return ", ".join(
        f"{a['name']} <{a['email']}>" if a.get("name") else str(a.get("email") or "")
        for a in addresses
    )


def _sort_text(addresses: list[dict[str, Any]] | None) -> str:
    if not addresses:
        return ""
    first = addresses[0]
    return str(first.get("name") or first.get("email") or "").casefold()


def _timestamp(date: str | None) -> float | None:
    if not date:
        return None
    try:
        return datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def summarize(raw: bytes) -> EmailSummary:
    """
    Parse a message once and keep what the store indexes.
    """
    message = parse_message(raw)
    subject = message.subject or ""
    return EmailSummary(
        message_ids=tuple(message.message_id or ()),
        in_reply_to=tuple(message.in_reply_to or ()),
        references=tuple(message.references or ()),
        subject=subject,
        base_subject=base_subject(subject),
        from_text=_addresses_text(message.from_),
        to_text=_addresses_text(message.to),
        cc_text=_addresses_text(message.cc),
        bcc_text=_addresses_text(message.bcc),
        from_sort=_sort_text(message.from_),
        to_sort=_sort_text(message.to),
        sent_at=_timestamp(message.sent_at),
        preview=message.preview,
        has_attachment=message.has_attachment,
        body_text=message.search_text(),
    )
