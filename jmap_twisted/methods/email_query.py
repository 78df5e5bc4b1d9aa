"""
``Email/query``, ``Email/queryChanges`` (RFC 8621 §4.4, §4.5) and
``SearchSnippet/get`` (§5).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from jmap_twisted.core.registry import CallContext, Registry
from jmap_twisted.core.request import is_id, parse_utc_date
from jmap_twisted.errors import (
    InvalidArguments,
    RequestTooLarge,
    UnsupportedFilter,
    UnsupportedSort,
)
from jmap_twisted.interfaces import IMailReader
from jmap_twisted.methods import querychanges
from jmap_twisted.methods.keywords import is_keyword
from jmap_twisted.methods.mailcontext import MAIL, MailMethods
from jmap_twisted.methods.standard import boolean, check_known, unsigned
from jmap_twisted.store.changelog import decode_view_state, later_state

_STRING_CONDITIONS = ("text", "from", "to", "cc", "bcc", "subject", "body")
_KEYWORD_CONDITIONS = (
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
    "noneInThreadHaveKeyword",
    "hasKeyword",
    "notKeyword",
)
SORT_PROPERTIES = (
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
)
COLLATIONS = ("i;ascii-casemap", "i;octet", "i;unicode-casemap")
MAX_FILTER_DEPTH = 16
#: The most conditions one filter may have: each property of a
#: FilterCondition, each FilterOperator and each mailbox of
#: ``inMailboxOtherThan`` counts as one.  Every condition is an SQL
#: expression evaluated for each candidate email, and SQLite refuses
#: expressions past a size; real clients send a handful.
MAX_FILTER_CONDITIONS = 64


def normalise_filter(node: Any, depth: int = 0) -> dict[str, Any]:
    """
    Validate an Email FilterOperator/FilterCondition and convert dates to
    POSIX times, as the stores expect.

    :raises InvalidArguments: malformed values.
    :raises UnsupportedFilter: an unknown condition, or more conditions
        than :data:`MAX_FILTER_CONDITIONS` (RFC 8620 §5.5: valid, but the
        server cannot process it).
    """
    size = _filter_size(node, MAX_FILTER_CONDITIONS)
    if size > MAX_FILTER_CONDITIONS:
        raise UnsupportedFilter(
            f"The filter has more than {MAX_FILTER_CONDITIONS} conditions;"
            " split the query or narrow it."
        )
    return _normalise(node, depth)


def _filter_size(node: Any, limit: int) -> int:
    """
    How many conditions ``node`` has, counting no further than just past
    ``limit`` (whatever its shape: it is not validated yet).
    """
    size = 0
    stack = [node]
    while stack and size <= limit:
        item = stack.pop()
        if not isinstance(item, dict):
            size += 1
        elif "operator" in item:
            size += 1
            conditions = item.get("conditions")
            if isinstance(conditions, list):
                stack.extend(conditions[: limit + 1])
        else:
            for name, value in item.items():
                many = name == "inMailboxOtherThan" and isinstance(value, list)
                size += max(1, len(value)) if many else 1
    return size


def _normalise(node: Any, depth: int) -> dict[str, Any]:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArguments(f"Filters nest at most {MAX_FILTER_DEPTH} deep.")
    if not isinstance(node, dict):
        raise InvalidArguments("A filter must be a FilterOperator or FilterCondition object.")
    if "operator" in node:
        if set(node) != {"operator", "conditions"} or node["operator"] not in ("AND", "OR", "NOT"):
            raise InvalidArguments(
                "A FilterOperator has an operator (AND, OR, NOT) and conditions."
            )
        if not isinstance(node["conditions"], list) or not node["conditions"]:
            raise InvalidArguments("A FilterOperator needs a non-empty conditions array.")
        return {
            "operator": node["operator"],
            "conditions": [_normalise(c, depth + 1) for c in node["conditions"]],
        }
    result: dict[str, Any] = {}
    for name, value in node.items():
        if name == "inMailbox":
            if not is_id(value):
                raise InvalidArguments("'inMailbox' must be an Id.")
        elif name == "inMailboxOtherThan":
            if not isinstance(value, list) or not all(is_id(v) for v in value):
                raise InvalidArguments("'inMailboxOtherThan' must be an array of Ids.")
        elif name in ("before", "after"):
            value = parse_utc_date(value)
            if value is None:
                raise InvalidArguments(f"'{name}' must be a UTCDate.")
        elif name in ("minSize", "maxSize"):
            value = unsigned(node, name, None)
            if value is None:
                raise InvalidArguments(f"'{name}' must be an unsigned integer, not null.")
        elif name in _KEYWORD_CONDITIONS:
            if not is_keyword(value):
                raise InvalidArguments(f"'{name}' must be a keyword.")
            value = value.lower()
        elif name == "hasAttachment":
            if not isinstance(value, bool):
                raise InvalidArguments("'hasAttachment' must be a boolean.")
        elif name in _STRING_CONDITIONS:
            if not isinstance(value, str):
                raise InvalidArguments(f"'{name}' must be a string.")
        elif name == "header":
            if (
                not isinstance(value, list)
                or not 1 <= len(value) <= 2
                or not all(isinstance(v, str) for v in value)
                or not value[0]
            ):
                raise InvalidArguments("'header' must be [name] or [name, value].")
        else:
            raise UnsupportedFilter(f"Unknown Email filter condition {name!r}.")
        result[name] = value
    return result


def normalise_sort(value: Any) -> list[dict[str, Any]]:
    """
    Validate Email Comparators.
    """
    if value is None:
        return [{"property": "receivedAt", "isAscending": False}]
    if not isinstance(value, list):
        raise InvalidArguments("'sort' must be an array of Comparators.")
    result = []
    for comparator in value:
        if not isinstance(comparator, dict) or not isinstance(comparator.get("property"), str):
            raise InvalidArguments("A Comparator needs a property.")
        unknown = set(comparator) - {"property", "isAscending", "collation", "keyword"}
        if unknown:
            raise InvalidArguments(
                "Unknown Comparator members: " + ", ".join(sorted(unknown)) + "."
            )
        prop = comparator["property"]
        if prop not in SORT_PROPERTIES:
            raise UnsupportedSort(f"Emails cannot be sorted by {prop!r}.")
        ascending = comparator.get("isAscending", True)
        if not isinstance(ascending, bool):
            raise InvalidArguments("'isAscending' must be a boolean.")
        collation = comparator.get("collation")
        if collation is not None and collation not in COLLATIONS:
            raise UnsupportedSort(f"Unsupported collation {collation!r}.")
        entry: dict[str, Any] = {"property": prop, "isAscending": ascending}
        if prop in ("hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"):
            keyword = comparator.get("keyword")
            if not isinstance(keyword, str) or not is_keyword(keyword):
                raise InvalidArguments(f"Sorting by {prop} needs a keyword.")
            entry["keyword"] = keyword.lower()
        result.append(entry)
    return result


class _Query:
    def __init__(self, arguments: Mapping[str, Any], query_changes: bool) -> None:
        allowed = {"accountId", "filter", "sort", "collapseThreads", "calculateTotal"}
        if query_changes:
            allowed |= {"sinceQueryState", "maxChanges", "upToId"}
        else:
            allowed |= {"position", "anchor", "anchorOffset", "limit"}
        check_known(arguments, allowed)
        raw_filter = arguments.get("filter")
        self.filter = None if raw_filter is None else normalise_filter(raw_filter)
        self.sort = normalise_sort(arguments.get("sort"))
        self.collapse = boolean(arguments, "collapseThreads", False)


class EmailQueryMethods(MailMethods):
    """
    Searching emails.
    """

    def install(self, registry: Registry) -> None:
        registry.add_method("Email/query", MAIL, self.query)
        registry.add_method("Email/queryChanges", MAIL, self.query_changes)
        registry.add_method("SearchSnippet/get", MAIL, self.search_snippets)

    async def query(self, context: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        account = await self.account(context, arguments)
        query = _Query(arguments, query_changes=False)
        windowed = (
            arguments.get("anchor") is None and unsigned(arguments, "limit", None) is not None
        )
        position, limit = querychanges.window_bounds(arguments)

        def read(reader: IMailReader) -> dict[str, Any]:
            state = reader.state("Email")
            if windowed and position >= 0:
                ids, total = reader.query_emails(
                    query.filter, query.sort, query.collapse, position, limit
                )
                return querychanges.window(account.id, ids, state, arguments, True, total, position)
            ids, total = reader.query_emails(query.filter, query.sort, query.collapse)
            return querychanges.window(account.id, ids, state, arguments, True)

        return await self.read(account, read)

    async def query_changes(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments)
        query = _Query(arguments, query_changes=True)

        def read(reader: IMailReader) -> dict[str, Any]:
            current, _ = reader.query_emails(query.filter, query.sort, query.collapse)
            also: list[str] = []
            if query.collapse:
                since = arguments.get("sinceQueryState")
                if isinstance(since, str) and (
                    since.isdigit() or decode_view_state(since) is not None
                ):
                    # The earlier of the two positions in the one log:
                    # queryState is an Email state.
                    thread_state = reader.state("Thread")
                    later = later_state(since, thread_state)
                    start = thread_state if later == since else since
                    threads = reader.changes("Thread", start, None)
                    members = reader.thread_emails([*threads.created, *threads.updated])
                    also = [e for ids in members.values() for e in ids]
            return querychanges.compute(reader, "Email", arguments, current, also)

        result = await self.read(account, read)
        result["accountId"] = account.id
        return result

    async def search_snippets(
        self, context: CallContext, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        account = await self.account(context, arguments)
        check_known(arguments, {"accountId", "filter", "emailIds"})
        raw_ids = arguments.get("emailIds")
        if not isinstance(raw_ids, list) or not all(isinstance(i, str) for i in raw_ids):
            raise InvalidArguments("'emailIds' must be an array of Ids.")
        if len(raw_ids) > context.limits.max_objects_in_get:
            raise RequestTooLarge()
        raw_filter = arguments.get("filter")
        terms = _terms(normalise_filter(raw_filter)) if raw_filter is not None else []

        def read(reader: IMailReader) -> dict[str, Any]:
            records = reader.emails(raw_ids)
            listed = []
            for email_id in raw_ids:
                record = records.get(email_id)
                if record is None:
                    continue
                listed.append(
                    {
                        "emailId": email_id,
                        "subject": _highlight(record.summary.subject, terms, whole=True),
                        "preview": _highlight(record.summary.body_text, terms, whole=False),
                    }
                )
            return {
                "accountId": account.id,
                "list": listed,
                # RFC 8621 §5.1: null, not [], when every id was found.
                "notFound": [i for i in raw_ids if i not in records] or None,
            }

        return await self.read(account, read)


def _terms(node: Mapping[str, Any]) -> list[str]:
    if "operator" in node:
        if node["operator"] == "NOT":
            return []
        return [t for c in node["conditions"] for t in _terms(c)]
    return [str(node[k]) for k in ("text", "subject", "body") if node.get(k)]


def _highlight(text: str, terms: list[str], whole: bool) -> str | None:
    """
    ``text`` HTML-escaped with matches of ``terms`` in ``<mark>``; for a
    body, an excerpt of about 200 characters around the first match.
    """
    if not terms or not text:
        return None
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)
    first = pattern.search(text)
    if first is None:
        return None
    if not whole:
        start = max(0, first.start() - 60)
        text = " ".join(text[start : start + 200].split())
    pieces = []
    last = 0
    for match in pattern.finditer(text):
        pieces.append(html.escape(text[last : match.start()]))
        pieces.append("<mark>" + html.escape(match.group()) + "</mark>")
        last = match.end()
    pieces.append(html.escape(text[last:]))
    return "".join(pieces)
