"""
``Email/query`` compiled to SQL for :mod:`jmap_twisted.store.sqlite_mail`,
and the mailbox counts (:func:`mailbox_counts`).

Filters, sorts and thread collapsing mean exactly what they mean in
:mod:`jmap_twisted.store.mailquery` (the reference semantics), with one
documented difference in case folding for text conditions (below).

How the query is built:

- Where it starts (:func:`_choose_driver`): text conditions that must all
  hold and that the full-text index can answer come first, merged into one
  FTS5 query whose matches are joined to ``emails`` by rowid (the matches
  are usually few, and they must all be visited anyway for the total).
  Otherwise a top-level ``inMailbox`` (alone, or in a top-level ``AND``)
  makes the query *walk the mailbox*: it reads index
  ``email_mailboxes_by_mailbox`` (account, mailbox, receivedAt descending,
  email id, thread) and joins ``emails`` only when some condition or sort
  needs one of its columns.  Sorting by ``receivedAt`` descending then
  reads the index in order and stops after ``LIMIT`` rows, and the total is
  a count over an index of the mailbox's members alone.  Otherwise the
  query reads the account's emails (by ``receivedAt`` descending, through
  ``emails_by_received``).
- Other conditions are SQL expressions on each candidate: correlated
  ``EXISTS`` subqueries on ``email_mailboxes`` and ``email_keywords``
  (primary-key probes, so a walk that finds its ``LIMIT`` early stops
  early), subqueries on the thread for the three thread-keyword
  conditions, column comparisons for dates, sizes and ``hasAttachment``.
- Text conditions (``text``, ``body``, ``from``, ``to``, ``cc``, ``bcc``,
  ``subject``) are case-insensitive substring matches.  A needle of three
  characters or more is a phrase query on the FTS5 table ``email_search``,
  whose ``trigram`` tokenizer makes a phrase match any substring; SQLite
  folds case there with its Unicode simple case folding, so it agrees with
  Python's :meth:`str.casefold` except for the few characters whose full
  folding expands (``ß`` → ``ss``, …).  Shorter needles, which trigrams
  cannot index, are compared with ``instr(jmap_casefold(column), needle)``
  over the stored text, exactly as the reference does.
- ``header`` runs Python over candidate rows: the SQL function
  ``jmap_header_match`` parses the message's header section (as the
  in-memory store does) from the blob.
- ``collapseThreads`` keeps the first email of each thread in sort order
  with ``ROW_NUMBER() OVER (PARTITION BY thread …)``.

The SQL functions used here are registered on each connection with
:func:`register_functions`.
"""

# SQL is assembled from fixed fragments and placeholder lists only; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from attrs import frozen

from jmap_twisted.records import MailboxCounts

#: Columns of the ``email_search`` FTS5 table, in order.
SEARCH_COLUMNS = ("subject", "from_text", "to_text", "cc_text", "bcc_text", "body_text")

#: The column each text condition searches.
_TEXT_CONDITIONS = {
    "from": "from_text",
    "to": "to_text",
    "cc": "cc_text",
    "bcc": "bcc_text",
    "subject": "subject",
    "body": "body_text",
}

#: The shortest needle the trigram index can answer.
TRIGRAM = 3

_registered = threading.local()


def _casefold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def _header_match(data: bytes | None, name: str, needle: str | None) -> int:
    message = BytesHeaderParser(policy=compat32).parsebytes(bytes(data or b""))
    wanted = name.casefold()
    found = [str(value) for key, value in message.items() if key.casefold() == wanted]
    if needle is None:
        return int(bool(found))
    folded = needle.casefold()
    return int(any(folded in value.casefold() for value in found))


def register_functions(connection: sqlite3.Connection) -> None:
    """
    Make the SQL functions of compiled queries (``jmap_casefold``,
    ``jmap_header_match``) available on ``connection``.

    Registration happens once per connection: connections of
    :class:`~jmap_twisted.store.sqlite_db.SQLiteDatabase` belong to one
    thread each, so the connection last prepared is remembered per thread.
    """
    if getattr(_registered, "connection", None) is connection:
        return
    connection.create_function("jmap_casefold", 1, _casefold, deterministic=True)
    connection.create_function("jmap_header_match", 3, _header_match, deterministic=True)
    _registered.connection = connection


def fts_phrase(needle: str, column: str | None = None) -> str:
    """
    An FTS5 query matching ``needle`` as one phrase, in one column or in
    any; quotes are doubled so every character is literal.
    """
    phrase = '"' + needle.replace('"', '""') + '"'
    return phrase if column is None else "{" + column + "} : " + phrase


@frozen
class CompiledQuery:
    """
    An ``Email/query`` as SQL.

    :ivar select: the ids, in order, with parameters ``:limit`` and
        ``:offset`` for the window.
    :ivar count: the number of results (threads, when collapsing).
    :ivar params: the named parameters of both statements (without the
        window's).
    """

    select: str
    count: str
    params: dict[str, Any]


@frozen
class _Driver:
    """
    Where a query starts: the FTS5 matches of ``search``, the members of
    mailbox ``mailbox_id``, or (neither) all the account's emails.
    """

    search: str | None = None
    mailbox_id: str | None = None


def _conjuncts(filter: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """
    The parts of a filter that must all hold: single conditions and
    ``OR``/``NOT`` operators (nested ``AND`` operators are flattened).
    """
    if filter is None:
        return []
    if "operator" not in filter:
        return [{name: value} for name, value in filter.items()]
    if filter["operator"] == "AND":
        return [part for condition in filter["conditions"] for part in _conjuncts(condition)]
    return [filter]


def _searchable(part: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """
    The needle and column of a text condition the trigram index answers.
    """
    if "operator" in part:
        return None
    ((name, value),) = part.items()
    if name == "text" and len(value) >= TRIGRAM:
        return value, None
    if name in _TEXT_CONDITIONS and len(value) >= TRIGRAM:
        return value, _TEXT_CONDITIONS[name]
    return None


def _choose_driver(
    filter: Mapping[str, Any] | None,
) -> tuple[_Driver, list[Mapping[str, Any]]]:
    """
    Where to start the query, and the conditions left to check.

    Text conditions answered by the index come first: the matches are
    usually far fewer than a mailbox's members, and a query must visit
    every match anyway to count them.  Otherwise a top-level ``inMailbox``
    walks that mailbox.
    """
    parts = _conjuncts(filter)
    searches = [(i, found) for i, part in enumerate(parts) if (found := _searchable(part))]
    if searches:
        search = " AND ".join(fts_phrase(needle, column) for _, (needle, column) in searches)
        used = {i for i, _ in searches}
        return _Driver(search=search), [p for i, p in enumerate(parts) if i not in used]
    for index, part in enumerate(parts):
        if "operator" not in part and "inMailbox" in part:
            return _Driver(mailbox_id=part["inMailbox"]), parts[:index] + parts[index + 1 :]
    return _Driver(), parts


class _Compiler:
    """
    Builds SQL expressions for one query, collecting named parameters.

    Expressions refer to ``e`` (``emails``) or, when walking a mailbox, to
    ``mb`` (``email_mailboxes``) for the columns it has.
    """

    def __init__(self, account_id: str, driver: _Driver) -> None:
        self.params: dict[str, Any] = {"account": account_id}
        self.driver = driver
        self.walks_mailbox = driver.mailbox_id is not None
        if driver.mailbox_id is not None:
            self.params["mailbox"] = driver.mailbox_id
        if driver.search is not None:
            self.params["search"] = driver.search
        self.uses_emails = False

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def email(self, column: str) -> str:
        self.uses_emails = True
        return "e." + column

    @property
    def id(self) -> str:
        return "mb.email_id" if self.walks_mailbox else self.email("id")

    @property
    def received_at(self) -> str:
        return "mb.received_at" if self.walks_mailbox else self.email("received_at")

    @property
    def thread_id(self) -> str:
        return "mb.thread_id" if self.walks_mailbox else self.email("thread_id")

    # Filters

    def filter(self, condition: Mapping[str, Any]) -> str:
        if "operator" in condition:
            parts = [self.filter(c) for c in condition["conditions"]]
            operator = condition["operator"]
            if operator == "AND":
                return "(" + " AND ".join(parts) + ")" if parts else "1"
            if operator == "OR":
                return "(" + " OR ".join(parts) + ")" if parts else "0"
            return "NOT (" + " OR ".join(parts) + ")" if parts else "1"
        parts = [self.condition(name, value) for name, value in condition.items()]
        return "(" + " AND ".join(parts) + ")" if parts else "1"

    def condition(self, name: str, value: Any) -> str:
        if name == "inMailbox":
            return (
                "EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = :account"
                f" AND x.email_id = {self.id} AND x.mailbox_id = {self.param(value)})"
            )
        if name == "inMailboxOtherThan":
            excluded = ", ".join(self.param(v) for v in value)
            return (
                "EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = :account"
                f" AND x.email_id = {self.id} AND x.mailbox_id NOT IN ({excluded}))"
            )
        if name == "before":
            return f"{self.received_at} < {self.param(value)}"
        if name == "after":
            return f"{self.received_at} >= {self.param(value)}"
        if name == "minSize":
            return f"{self.email('size')} >= {self.param(value)}"
        if name == "maxSize":
            return f"{self.email('size')} < {self.param(value)}"
        if name == "hasKeyword":
            return self._has_keyword(value)
        if name == "notKeyword":
            return f"NOT {self._has_keyword(value)}"
        if name == "allInThreadHaveKeyword":
            return self._all_in_thread(value)
        if name == "someInThreadHaveKeyword":
            return self._some_in_thread(value)
        if name == "noneInThreadHaveKeyword":
            return f"NOT {self._some_in_thread(value)}"
        if name == "hasAttachment":
            return f"{self.email('has_attachment')} = {self.param(int(bool(value)))}"
        if name == "text":
            return self._search(value, None)
        if name in _TEXT_CONDITIONS:
            return self._search(value, _TEXT_CONDITIONS[name])
        if name == "header":
            needle = value[1] if len(value) > 1 else None
            return (
                "jmap_header_match((SELECT b.data FROM blobs b"
                f" WHERE b.id = {self.email('blob_id')}),"
                f" {self.param(value[0])}, {self.param(needle)})"
            )
        raise ValueError(f"unknown filter condition {name!r}")

    def _has_keyword(self, keyword: str | None) -> str:
        return (
            "EXISTS (SELECT 1 FROM email_keywords k WHERE k.account_id = :account"
            f" AND k.email_id = {self.id} AND k.keyword = {self.param(keyword)})"
        )

    def _some_in_thread(self, keyword: str | None) -> str:
        return (
            "EXISTS (SELECT 1 FROM emails t JOIN email_keywords k"
            " ON k.account_id = t.account_id AND k.email_id = t.id"
            f" WHERE t.account_id = :account AND t.thread_id = {self.thread_id}"
            f" AND k.keyword = {self.param(keyword)})"
        )

    def _all_in_thread(self, keyword: str | None) -> str:
        return (
            "NOT EXISTS (SELECT 1 FROM emails t"
            f" WHERE t.account_id = :account AND t.thread_id = {self.thread_id}"
            " AND NOT EXISTS (SELECT 1 FROM email_keywords k WHERE k.account_id = :account"
            f" AND k.email_id = t.id AND k.keyword = {self.param(keyword)}))"
        )

    def _search(self, needle: str, column: str | None) -> str:
        if len(needle) >= TRIGRAM:
            return (
                # The unary + keeps SQLite from using the list as an index
                # constraint of a joined ``emails`` lookup (which would probe
                # every listed value for every row): it is a membership test.
                f"+{self.email('num')} IN (SELECT rowid FROM email_search"
                f" WHERE email_search MATCH {self.param(fts_phrase(needle, column))})"
            )
        folded = self.param(needle.casefold())
        if column is not None and column != "body_text":
            return f"instr(jmap_casefold({self.email(column)}), {folded}) > 0"
        columns = SEARCH_COLUMNS if column is None else (column,)
        found = " OR ".join(f"instr(jmap_casefold(s.{c}), {folded}) > 0" for c in columns)
        return (
            "EXISTS (SELECT 1 FROM email_search s"
            f" WHERE s.rowid = {self.email('num')} AND ({found}))"
        )

    # Sorts

    def sort_value(self, comparator: Mapping[str, Any]) -> str:
        prop = comparator["property"]
        if prop == "receivedAt":
            return self.received_at
        if prop == "size":
            return self.email("size")
        if prop == "from":
            return self.email("from_sort")
        if prop == "to":
            return self.email("to_sort")
        if prop == "subject":
            return self.email("base_subject")
        if prop == "sentAt":
            return f"COALESCE({self.email('sent_at')}, {self.email('received_at')})"
        keyword = comparator.get("keyword")
        if prop == "hasKeyword":
            return self._has_keyword(keyword)
        if prop == "allInThreadHaveKeyword":
            return self._all_in_thread(keyword)
        if prop == "someInThreadHaveKeyword":
            return self._some_in_thread(keyword)
        raise ValueError(f"unknown sort property {prop!r}")

    def source(self, with_emails: bool) -> str:
        """
        The ``FROM … WHERE`` start: the search's matches, the mailbox's
        members, or the account's emails.
        """
        if self.driver.search is not None:
            return (
                "FROM email_search f CROSS JOIN emails e ON e.num = f.rowid"
                " WHERE email_search MATCH :search AND e.account_id = :account"
            )
        if not self.walks_mailbox:
            return "FROM emails e WHERE e.account_id = :account"
        join = (
            " CROSS JOIN emails e ON e.account_id = mb.account_id AND e.id = mb.email_id"
            if with_emails
            else ""
        )
        return (
            f"FROM email_mailboxes mb{join}"
            " WHERE mb.account_id = :account AND mb.mailbox_id = :mailbox"
        )


def compile_query(
    account_id: str,
    filter: Mapping[str, Any] | None,
    sort: Sequence[Mapping[str, Any]],
    collapse_threads: bool,
) -> CompiledQuery:
    """
    Compile a validated ``Email/query`` of one account.

    :raises ValueError: an unknown condition or sort property.
    """
    driver, rest = _choose_driver(filter)
    compiler = _Compiler(account_id, driver)
    where = "".join(f" AND {compiler.filter(part)}" for part in rest)
    count_needs_emails = compiler.uses_emails
    values = [compiler.sort_value(c) for c in sort]
    directions = ["ASC" if c.get("isAscending", True) else "DESC" for c in sort]
    email_id = compiler.id
    window = " LIMIT :limit OFFSET :offset"
    if not collapse_threads:
        order = ", ".join(
            [*(f"{v} {d}" for v, d in zip(values, directions, strict=True)), f"{email_id} ASC"]
        )
        select = f"SELECT {email_id} {compiler.source(compiler.uses_emails)}{where} ORDER BY {order}{window}"
        count = f"SELECT COUNT(*) {compiler.source(count_needs_emails)}{where}"
        return CompiledQuery(select, count, compiler.params)
    thread_id = compiler.thread_id
    inner_order = ", ".join(
        [*(f"{v} {d}" for v, d in zip(values, directions, strict=True)), f"{email_id} ASC"]
    )
    columns = "".join(f", {v} AS s{i}" for i, v in enumerate(values))
    outer_order = ", ".join([*(f"s{i} {d}" for i, d in enumerate(directions)), "email_id ASC"])
    select = (
        f"SELECT email_id FROM (SELECT {email_id} AS email_id{columns},"
        f" ROW_NUMBER() OVER (PARTITION BY {thread_id} ORDER BY {inner_order}) AS thread_rank"
        f" {compiler.source(compiler.uses_emails)}{where})"
        f" WHERE thread_rank = 1 ORDER BY {outer_order}{window}"
    )
    count = f"SELECT COUNT(DISTINCT {thread_id}) {compiler.source(count_needs_emails)}{where}"
    return CompiledQuery(select, count, compiler.params)


def run_query(
    connection: sqlite3.Connection,
    account_id: str,
    filter: Mapping[str, Any] | None,
    sort: Sequence[Mapping[str, Any]],
    collapse_threads: bool,
    position: int = 0,
    limit: int | None = None,
) -> tuple[list[str], int]:
    """
    Run a query in the current transaction: the window of ids and the
    total, from one snapshot.
    """
    register_functions(connection)
    query = compile_query(account_id, filter, sort, collapse_threads)
    params = dict(query.params, limit=-1 if limit is None else limit, offset=position)
    found = [email_id for (email_id,) in connection.execute(query.select, params)]
    (total,) = connection.execute(query.count, query.params).fetchone()
    return found, int(total)


def mailbox_counts(
    connection: sqlite3.Connection, account_id: str, mailbox_id: str, trash_id: str | None
) -> MailboxCounts:
    """
    RFC 8621 counts of one mailbox, exactly as
    :func:`jmap_twisted.store.mailquery.mailbox_counts` computes them,
    including the trash rule for ``unreadThreads``.

    :param trash_id: the account's trash mailbox, if any.
    """
    params = {"account": account_id, "mailbox": mailbox_id, "trash": trash_id}
    # Two statements: COUNT(DISTINCT) alone reads email_mailboxes_by_thread
    # in thread order, without building a temporary B-tree.
    total, unread = connection.execute(
        "SELECT COUNT(*), TOTAL(seen = 0) FROM email_mailboxes"
        " WHERE account_id = :account AND mailbox_id = :mailbox",
        params,
    ).fetchone()
    (threads,) = connection.execute(
        "SELECT COUNT(DISTINCT thread_id) FROM email_mailboxes"
        " WHERE account_id = :account AND mailbox_id = :mailbox",
        params,
    ).fetchone()
    if trash_id is not None and mailbox_id == trash_id:
        # Only emails in the trash count, and those are the trash's threads.
        (unread_threads,) = connection.execute(
            "SELECT COUNT(DISTINCT thread_id) FROM email_mailboxes"
            " WHERE account_id = :account AND mailbox_id = :mailbox AND seen = 0",
            params,
        ).fetchone()
    else:
        # Unread emails of the mailbox's threads, wherever they are, except
        # (when there is a trash) those that are only in the trash.
        only_in_trash = (
            ""
            if trash_id is None
            else " AND NOT (EXISTS (SELECT 1 FROM email_mailboxes x"
            " WHERE x.account_id = :account AND x.email_id = u.id AND x.mailbox_id = :trash)"
            " AND NOT EXISTS (SELECT 1 FROM email_mailboxes x"
            " WHERE x.account_id = :account AND x.email_id = u.id AND x.mailbox_id != :trash))"
        )
        (unread_threads,) = connection.execute(
            "SELECT COUNT(DISTINCT u.thread_id) FROM emails u"
            " WHERE u.account_id = :account AND u.seen = 0"
            " AND EXISTS (SELECT 1 FROM email_mailboxes t WHERE t.account_id = :account"
            " AND t.thread_id = u.thread_id AND t.mailbox_id = :mailbox)" + only_in_trash,
            params,
        ).fetchone()
    return MailboxCounts(
        total_emails=int(total),
        unread_emails=int(unread),
        total_threads=int(threads),
        unread_threads=int(unread_threads),
    )
