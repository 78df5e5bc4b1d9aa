"""
Builds test messages.
"""

from __future__ import annotations


def message(
    subject: str = "Hello",
    sender: str = "Ann <ann@example.com>",
    to: str = "bob@example.com",
    body: str = "Hi there.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    date: str = "Tue, 24 Nov 2026 10:00:00 +0000",
    extra: str = "",
) -> bytes:
    """
    A small RFC 5322 message with CRLF line endings.
    """
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
    ]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
        lines.append(f"References: <{in_reply_to}>")
    if extra:
        lines.append(extra)
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode("utf-8")
