"""
``Email/query`` filters and sorts (RFC 8621 §4.4):
:func:`jmap_twisted.methods.email_query.normalise_filter` and
``normalise_sort``, then the in-memory evaluation in
:mod:`jmap_twisted.store.mailquery` that every backend must match.

Input: the JSON object ``{"filter": …, "sort": …}`` (either may be left
out).
Properties: validation raises only ``invalidArguments``,
``unsupportedFilter`` and ``unsupportedSort``; whatever it accepts, the
query evaluation runs without raising over a few stored emails and
returns each matching id once.
"""

from __future__ import annotations

from typing import Any

from fuzz.targets import json_input, strict_json
from jmap_twisted.errors import (
    InvalidArguments,
    MethodError,
    UnsupportedFilter,
    UnsupportedSort,
)
from jmap_twisted.methods.email_query import MAX_FILTER_DEPTH, normalise_filter, normalise_sort
from jmap_twisted.records import EmailRecord, EmailSummary
from jmap_twisted.store.mailquery import run_query

RECORDS = [
    EmailRecord(
        id=f"M{n}",
        blob_id=f"B{n}",
        thread_id=f"T{n % 2}",
        mailbox_ids=frozenset({"inbox"} if n else {"inbox", "trash"}),
        keywords=frozenset({"$seen"} if n % 2 else {"$flagged", "custom"}),
        size=1000 * (n + 1),
        received_at=1.7e9 + 3600 * n,
        summary=EmailSummary(
            subject=f"Hello {n} wörld",
            base_subject=f"hello {n} wörld",
            from_text=f"Sender {n} sender{n}@example.com",
            to_text="me@example.org",
            from_sort=f"sender {n}",
            to_sort="me",
            sent_at=None if n == 2 else 1.7e9 + 60 * n,
            body_text="Lorem ipsum ⅯⅯ résumé",
            has_attachment=n == 1,
        ),
    )
    for n in range(3)
]
HEADERS = [("Subject", "Hello"), ("X-Tag", "one two"), ("x-tag", "THREE")]


def _depth(node: dict[str, Any]) -> int:
    if "operator" not in node:
        return 0
    return 1 + max(_depth(c) for c in node["conditions"])


def check_query(filter: Any, sort: Any) -> list[str] | None:
    """
    Validate a filter and sort as ``Email/query`` does and, if they pass,
    evaluate them; return the matching ids or ``None``.
    """
    try:
        normal = None if filter is None else normalise_filter(filter)
        comparators = normalise_sort(sort)
    except (InvalidArguments, UnsupportedFilter, UnsupportedSort) as error:
        strict_json(error.to_arguments())
        return None
    except MethodError as error:
        raise AssertionError(f"unexpected method error {error.type}") from None
    if normal is not None:
        assert _depth(normal) <= MAX_FILTER_DEPTH + 1
    ids = []
    for collapse in (False, True):
        ids = run_query(
            RECORDS,
            normal,
            comparators,
            collapse,
            lambda thread_id: [r for r in RECORDS if r.thread_id == thread_id],
            lambda record: HEADERS,
        )
        assert len(ids) == len(set(ids)) and set(ids) <= {r.id for r in RECORDS}
    return ids


def test_one_input(data: bytes) -> None:
    parsed, value = json_input(data)
    if parsed and isinstance(value, dict):
        check_query(value.get("filter"), value.get("sort"))
