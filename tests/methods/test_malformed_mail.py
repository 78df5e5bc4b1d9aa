"""
Malformed messages are stored, threaded, searched and served through
Email/get without a method failing.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from jmap_twisted.methods.email import BODY_PROPERTIES, PROPERTIES
from tests.methods.harness import HarnessFactory
from tests.mime.test_malformed import CASES

EVERYTHING = [
    *PROPERTIES,
    "header:Subject:asText",
    "header:From:asAddresses:all",
    "header:Date:asDate",
    "header:Message-ID:asMessageIds",
    "header:List-Post:asURLs",
    "header:X-Anything:asRaw:all",
]


@pytest_twisted.ensureDeferred
async def test_hostile_messages_are_stored_and_served(make_harness: HarnessFactory) -> None:
    """
    Every hostile message of the MIME suite is delivered, found by a
    text query, and fetched with every property, every body value and
    every body property, without an error response.
    """
    h = await make_harness()
    ids = []
    for case in CASES:
        raw = case.values[0]
        ids.append((await h.deliver(raw)).id)
    query = await h.ok("Email/query", {"limit": 1000})
    assert sorted(query["ids"]) == sorted(ids)
    await h.ok("Email/query", {"filter": {"text": "a"}, "collapseThreads": True})
    got: dict[str, Any] = await h.ok(
        "Email/get",
        {
            "ids": ids,
            "properties": EVERYTHING,
            "bodyProperties": list(BODY_PROPERTIES),
            "fetchAllBodyValues": True,
            "maxBodyValueBytes": 100,
        },
    )
    assert len(got["list"]) == len(ids)
    threads = await h.ok("Thread/get", {"ids": [e["threadId"] for e in got["list"]]})
    assert threads["notFound"] == []
