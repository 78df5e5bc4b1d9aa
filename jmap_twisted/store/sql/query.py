"""
``Email/query`` compiled to SQL, for every SQL mail store; the dialects
(:mod:`~jmap_twisted.store.sqlite.query`,
:mod:`~jmap_twisted.store.postgres.query`) say how parameters are written,
how text and headers are searched and where a query starts.

Filters, sorts and thread collapsing mean exactly what they mean in
:mod:`jmap_twisted.store.mailquery` (the reference semantics).

How the query is built:

- Where it starts (:meth:`QueryCompiler.choose_driver`): a dialect may
  start from its full-text index (SQLite's FTS5 table).  Otherwise a
  top-level ``inMailbox`` (alone, or in a top-level ``AND``), or the
  server's ``inAnyMailbox`` of a single mailbox, makes the query
  *walk the mailbox*: it reads index ``email_mailboxes_by_mailbox``
  (account, mailbox, receivedAt descending, email id, thread) and joins
  ``emails`` only when some condition or sort needs one of its columns.
  Sorting by ``receivedAt`` descending then reads the index in order and
  stops after ``LIMIT`` rows, and the total is a count over an index of the
  mailbox's members alone.  Otherwise the query reads the account's emails
  (by ``receivedAt`` descending, through ``emails_by_received``).
- Other conditions are SQL expressions on each candidate: correlated
  ``EXISTS`` subqueries on ``email_mailboxes`` and ``email_keywords``
  (primary-key probes, so a walk that finds its ``LIMIT`` early stops
  early), subqueries on the thread for the three thread-keyword
  conditions, column comparisons for dates, sizes and ``hasAttachment``.
- ``collapseThreads`` keeps the first email of each thread in sort order
  with ``ROW_NUMBER() OVER (PARTITION BY thread …)``.
"""

# SQL is assembled from fixed fragments and placeholder lists only; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Protocol

from attrs import frozen

#: Columns of the searchable text, in order.
SEARCH_COLUMNS = ("subject", "from_text", "to_text", "cc_text", "bcc_text", "body_text")

#: The column each text condition searches.
TEXT_CONDITIONS = {
    "from": "from_text",
    "to": "to_text",
    "cc": "cc_text",
    "bcc": "bcc_text",
    "subject": "subject",
    "body": "body_text",
}


class SQLConnection(Protocol):
    """
    What the SQL stores use of a connection: statements with ``?``
    placeholders (an :class:`sqlite3.Connection` as it is, a PostgreSQL
    connection through :class:`~jmap_twisted.store.postgres.database.Statements`).
    """

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


def folded_headers(data: bytes | None) -> list[tuple[str, str]]:
    """
    The header fields of a message's header section, name and value case
    folded, in order, as the ``header`` condition compares them.
    """
    message = BytesHeaderParser(policy=compat32).parsebytes(bytes(data or b""))
    return [(key.casefold(), str(value).casefold()) for key, value in message.items()]


def header_match(data: bytes | None, name: str, needle: str | None) -> int:
    """
    Whether a message has a header field ``name`` (containing ``needle``,
    when given), as :func:`jmap_twisted.store.mailquery.matches` decides.
    """
    wanted = name.casefold()
    found = [value for key, value in folded_headers(data) if key == wanted]
    if needle is None:
        return int(bool(found))
    folded = needle.casefold()
    return int(any(folded in value for value in found))


@frozen
class CompiledQuery:
    """
    An ``Email/query`` as SQL.

    :ivar select: the ids, in order, with parameters ``limit`` and
        ``offset`` for the window.
    :ivar count: the number of results (threads, when collapsing).
    :ivar params: the named parameters of both statements (without the
        window's).
    """

    select: str
    count: str
    params: dict[str, Any]


@frozen
class Driver:
    """
    Where a query starts: the full-text matches of ``search``, the members
    of mailbox ``mailbox_id``, or (neither) all the account's emails.
    """

    search: str | None = None
    mailbox_id: str | None = None


def conjuncts(filter: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """
    The parts of a filter that must all hold: single conditions and
    ``OR``/``NOT`` operators (nested ``AND`` operators are flattened).
    """
    if filter is None:
        return []
    if "operator" not in filter:
        return [{name: value} for name, value in filter.items()]
    if filter["operator"] == "AND":
        return [part for condition in filter["conditions"] for part in conjuncts(condition)]
    return [filter]


def mailbox_driver(parts: list[Mapping[str, Any]]) -> tuple[Driver, list[Mapping[str, Any]]]:
    """
    Walk the mailbox of the first top-level ``inMailbox``, if any, or else
    the one mailbox of a top-level ``inAnyMailbox`` of one.
    """
    for index, part in enumerate(parts):
        if "operator" not in part and "inMailbox" in part:
            return Driver(mailbox_id=part["inMailbox"]), parts[:index] + parts[index + 1 :]
    for index, part in enumerate(parts):
        if "operator" not in part and len(part.get("inAnyMailbox", ())) == 1:
            (mailbox_id,) = part["inAnyMailbox"]
            return Driver(mailbox_id=mailbox_id), parts[:index] + parts[index + 1 :]
    return Driver(), parts


class QueryCompiler:
    """
    Builds SQL expressions for one query, collecting named parameters.

    Expressions refer to ``e`` (``emails``) or, when walking a mailbox, to
    ``mb`` (``email_mailboxes``) for the columns it has.  Dialects override
    :meth:`placeholder`, :meth:`search`, :meth:`header`, :meth:`source` and
    may override :meth:`choose_driver`.
    """

    #: What an empty ``AND`` and an empty ``OR`` are.
    TRUE = "1"
    FALSE = "0"

    #: The ``limit`` parameter that means no limit.
    NO_LIMIT: Any = -1

    def __init__(self, account_id: str, driver: Driver) -> None:
        self.params: dict[str, Any] = {"account": account_id}
        self.driver = driver
        self.walks_mailbox = driver.mailbox_id is not None
        if driver.mailbox_id is not None:
            self.params["mailbox"] = driver.mailbox_id
        if driver.search is not None:
            self.params["search"] = driver.search
        self.uses_emails = False
        self.account = self.placeholder("account")

    @classmethod
    def choose_driver(
        cls, filter: Mapping[str, Any] | None
    ) -> tuple[Driver, list[Mapping[str, Any]]]:
        """
        Where to start the query, and the conditions left to check.
        """
        return mailbox_driver(conjuncts(filter))

    def placeholder(self, name: str) -> str:
        """
        How the SQL refers to named parameter ``name``.
        """
        raise NotImplementedError

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return self.placeholder(name)

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
                return "(" + " AND ".join(parts) + ")" if parts else self.TRUE
            if operator == "OR":
                return "(" + " OR ".join(parts) + ")" if parts else self.FALSE
            return "NOT (" + " OR ".join(parts) + ")" if parts else self.TRUE
        parts = [self.condition(name, value) for name, value in condition.items()]
        return "(" + " AND ".join(parts) + ")" if parts else self.TRUE

    def condition(self, name: str, value: Any) -> str:
        if name == "inMailbox":
            return (
                f"EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = {self.account}"
                f" AND x.email_id = {self.id} AND x.mailbox_id = {self.param(value)})"
            )
        if name == "inMailboxOtherThan":
            # No exclusions (an empty list) means in any mailbox; "NOT IN ()"
            # is not SQL that PostgreSQL accepts.
            excluded = ", ".join(self.param(v) for v in value)
            other = f" AND x.mailbox_id NOT IN ({excluded})" if value else ""
            return (
                f"EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = {self.account}"
                f" AND x.email_id = {self.id}{other})"
            )
        if name == "inAnyMailbox":
            # The server's own condition (a sharee's readable mailboxes).
            if not value:
                return self.FALSE
            wanted = ", ".join(self.param(v) for v in sorted(value))
            return (
                f"EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = {self.account}"
                f" AND x.email_id = {self.id} AND x.mailbox_id IN ({wanted}))"
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
            return self.has_keyword(value)
        if name == "notKeyword":
            return f"NOT {self.has_keyword(value)}"
        if name == "allInThreadHaveKeyword":
            return self.all_in_thread(value)
        if name == "someInThreadHaveKeyword":
            return self.some_in_thread(value)
        if name == "noneInThreadHaveKeyword":
            return f"NOT {self.some_in_thread(value)}"
        if name == "hasAttachment":
            return f"{self.email('has_attachment')} = {self.param(int(bool(value)))}"
        if name == "text":
            return self.search(value, None)
        if name in TEXT_CONDITIONS:
            return self.search(value, TEXT_CONDITIONS[name])
        if name == "header":
            return self.header(value[0], value[1] if len(value) > 1 else None)
        raise ValueError(f"unknown filter condition {name!r}")

    def search(self, needle: str, column: str | None) -> str:
        """
        Case-insensitive substring match of ``needle`` in one column of
        :data:`SEARCH_COLUMNS`, or in any (``None``).
        """
        raise NotImplementedError

    def header(self, name: str, needle: str | None) -> str:
        """
        The message has header field ``name`` (containing ``needle``).
        """
        raise NotImplementedError

    def has_keyword(self, keyword: str | None) -> str:
        return (
            f"EXISTS (SELECT 1 FROM email_keywords k WHERE k.account_id = {self.account}"
            f" AND k.email_id = {self.id} AND k.keyword = {self.param(keyword)})"
        )

    def some_in_thread(self, keyword: str | None) -> str:
        return (
            "EXISTS (SELECT 1 FROM emails t JOIN email_keywords k"
            " ON k.account_id = t.account_id AND k.email_id = t.id"
            f" WHERE t.account_id = {self.account} AND t.thread_id = {self.thread_id}"
            f" AND k.keyword = {self.param(keyword)})"
        )

    def all_in_thread(self, keyword: str | None) -> str:
        return (
            "NOT EXISTS (SELECT 1 FROM emails t"
            f" WHERE t.account_id = {self.account} AND t.thread_id = {self.thread_id}"
            " AND NOT EXISTS (SELECT 1 FROM email_keywords k"
            f" WHERE k.account_id = {self.account}"
            f" AND k.email_id = t.id AND k.keyword = {self.param(keyword)}))"
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
            return self.has_keyword(keyword)
        if prop == "allInThreadHaveKeyword":
            return self.all_in_thread(keyword)
        if prop == "someInThreadHaveKeyword":
            return self.some_in_thread(keyword)
        raise ValueError(f"unknown sort property {prop!r}")

    def source(self, with_emails: bool) -> str:
        """
        The ``FROM … WHERE`` start: the search's matches, the mailbox's
        members, or the account's emails.
        """
        raise NotImplementedError


def compile_query(
    compiler_class: type[QueryCompiler],
    account_id: str,
    filter: Mapping[str, Any] | None,
    sort: Sequence[Mapping[str, Any]],
    collapse_threads: bool,
) -> CompiledQuery:
    """
    Compile a validated ``Email/query`` of one account for a dialect.

    :raises ValueError: an unknown condition or sort property.
    """
    driver, rest = compiler_class.choose_driver(filter)
    compiler = compiler_class(account_id, driver)
    where = "".join(f" AND {compiler.filter(part)}" for part in rest)
    count_needs_emails = compiler.uses_emails
    values = [compiler.sort_value(c) for c in sort]
    directions = ["ASC" if c.get("isAscending", True) else "DESC" for c in sort]
    email_id = compiler.id
    limit, offset = compiler.placeholder("limit"), compiler.placeholder("offset")
    window = f" LIMIT {limit} OFFSET {offset}"
    order = ", ".join(
        [*(f"{v} {d}" for v, d in zip(values, directions, strict=True)), f"{email_id} ASC"]
    )
    if not collapse_threads:
        source = compiler.source(compiler.uses_emails)
        select = f"SELECT {email_id} {source}{where} ORDER BY {order}{window}"
        count = f"SELECT COUNT(*) {compiler.source(count_needs_emails)}{where}"
        return CompiledQuery(select, count, compiler.params)
    thread_id = compiler.thread_id
    columns = "".join(f", {v} AS s{i}" for i, v in enumerate(values))
    outer_order = ", ".join([*(f"s{i} {d}" for i, d in enumerate(directions)), "email_id ASC"])
    select = (
        f"SELECT email_id FROM (SELECT {email_id} AS email_id{columns},"
        f" ROW_NUMBER() OVER (PARTITION BY {thread_id} ORDER BY {order}) AS thread_rank"
        f" {compiler.source(compiler.uses_emails)}{where}) AS ranked"
        f" WHERE thread_rank = 1 ORDER BY {outer_order}{window}"
    )
    count = f"SELECT COUNT(DISTINCT {thread_id}) {compiler.source(count_needs_emails)}{where}"
    return CompiledQuery(select, count, compiler.params)


def run_query(
    connection: Any,
    compiler_class: type[QueryCompiler],
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

    :param connection: a DB-API connection taking the dialect's named
        parameters.
    """
    query = compile_query(compiler_class, account_id, filter, sort, collapse_threads)
    no_limit = compiler_class.NO_LIMIT
    params = dict(query.params, limit=no_limit if limit is None else limit, offset=position)
    found = [email_id for (email_id,) in connection.execute(query.select, params)]
    (total,) = connection.execute(query.count, query.params).fetchone()
    return found, int(total)
