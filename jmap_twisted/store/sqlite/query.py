"""
The SQLite dialect of ``Email/query`` (:mod:`jmap_twisted.store.sql.query`
builds the rest) for :mod:`jmap_twisted.store.sqlite.mail`.

- Where it starts: text conditions that must all hold and that the
  full-text index can answer come first, merged into one FTS5 query whose
  matches are joined to ``emails`` by rowid (the matches are usually few,
  and they must all be visited anyway for the total).  Otherwise the query
  walks a mailbox or the account's emails, as
  :class:`~jmap_twisted.store.sql.query.QueryCompiler` does.
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
from typing import Any

from jmap_twisted.store.sql.query import (
    SEARCH_COLUMNS,
    TEXT_CONDITIONS,
    CompiledQuery,
    Driver,
    QueryCompiler,
    conjuncts,
    header_match,
    mailbox_driver,
)
from jmap_twisted.store.sql.query import compile_query as compile_for

#: The shortest needle the trigram index can answer.
TRIGRAM = 3

_registered = threading.local()


def _casefold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def register_functions(connection: sqlite3.Connection) -> None:
    """
    Make the SQL functions of compiled queries (``jmap_casefold``,
    ``jmap_header_match``) available on ``connection``.

    Registration happens once per connection: connections of
    :class:`~jmap_twisted.store.sqlite.database.SQLiteDatabase` belong to one
    thread each, so the connection last prepared is remembered per thread.
    """
    if getattr(_registered, "connection", None) is connection:
        return
    connection.create_function("jmap_casefold", 1, _casefold, deterministic=True)
    connection.create_function("jmap_header_match", 3, header_match, deterministic=True)
    _registered.connection = connection


def fts_phrase(needle: str, column: str | None = None) -> str:
    """
    An FTS5 query matching ``needle`` as one phrase, in one column or in
    any; quotes are doubled so every character is literal.
    """
    phrase = '"' + needle.replace('"', '""') + '"'
    return phrase if column is None else "{" + column + "} : " + phrase


def _searchable(part: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """
    The needle and column of a text condition the trigram index answers.
    """
    if "operator" in part:
        return None
    ((name, value),) = part.items()
    if name == "text" and len(value) >= TRIGRAM:
        return value, None
    if name in TEXT_CONDITIONS and len(value) >= TRIGRAM:
        return value, TEXT_CONDITIONS[name]
    return None


class SQLiteQueryCompiler(QueryCompiler):
    """
    ``Email/query`` in SQLite: named parameters ``:name``, FTS5 search,
    headers parsed by ``jmap_header_match``.
    """

    @classmethod
    def choose_driver(
        cls, filter: Mapping[str, Any] | None
    ) -> tuple[Driver, list[Mapping[str, Any]]]:
        """
        Text conditions answered by the index come first: the matches are
        usually far fewer than a mailbox's members, and a query must visit
        every match anyway to count them.  Otherwise a top-level
        ``inMailbox`` walks that mailbox.
        """
        parts = conjuncts(filter)
        searches = [(i, found) for i, part in enumerate(parts) if (found := _searchable(part))]
        if searches:
            search = " AND ".join(fts_phrase(needle, column) for _, (needle, column) in searches)
            used = {i for i, _ in searches}
            return Driver(search=search), [p for i, p in enumerate(parts) if i not in used]
        return mailbox_driver(parts)

    def placeholder(self, name: str) -> str:
        return ":" + name

    def search(self, needle: str, column: str | None) -> str:
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

    def header(self, name: str, needle: str | None) -> str:
        return (
            "jmap_header_match((SELECT b.data FROM blobs b"
            f" WHERE b.id = {self.email('blob_id')}),"
            f" {self.param(name)}, {self.param(needle)})"
        )

    def source(self, with_emails: bool) -> str:
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
    Compile a validated ``Email/query`` of one account for SQLite.

    :raises ValueError: an unknown condition or sort property.
    """
    return compile_for(SQLiteQueryCompiler, account_id, filter, sort, collapse_threads)
