"""
``SearchSnippet/get`` (RFC 8621 §5.1).
"""

from __future__ import annotations

import pytest_twisted

from tests.mailfactory import message
from tests.methods.harness import HarnessFactory


@pytest_twisted.ensureDeferred
async def test_snippets_not_found_is_null_when_every_email_is_found(
    make_harness: HarnessFactory,
) -> None:
    """
    notFound is null when every requested email exists (and for no ids at
    all), and lists exactly the unknown ids otherwise (RFC 8621 §5.1).
    """
    h = await make_harness()
    email = await h.deliver(message(subject="bananas"))
    found = await h.ok("SearchSnippet/get", {"filter": {"text": "banana"}, "emailIds": [email.id]})
    assert found["notFound"] is None
    assert found["list"] == [
        {"emailId": email.id, "subject": "<mark>banana</mark>s", "preview": None}
    ]
    empty = await h.ok("SearchSnippet/get", {"filter": {"text": "banana"}, "emailIds": []})
    assert (empty["list"], empty["notFound"]) == ([], None)
    missing = await h.ok(
        "SearchSnippet/get", {"filter": {"text": "x"}, "emailIds": ["nope", email.id]}
    )
    assert missing["notFound"] == ["nope"]
