"""
The PostgreSQL dialect of ``Email/query`` (:mod:`jmap_twisted.store.sql.query`
builds the rest) for :mod:`jmap_twisted.store.postgres.mail`.

Text conditions (``text``, ``body``, ``from``, ``to``, ``cc``, ``bcc``,
``subject``) are case-insensitive *substring* matches, as the reference
(:mod:`jmap_twisted.store.mailquery`) and the contract tests define them
(``banana`` finds ``bananas``, ``q3.pdf`` and ``50% off`` match as typed).
PostgreSQL's ``tsvector`` full-text search matches whole lexemes (or
prefixes), never arbitrary substrings, so it cannot answer them; this
backend uses trigrams instead (extension ``pg_trgm``):

- column ``search_doc`` of ``emails`` holds the six searchable fields
  (:data:`~jmap_twisted.store.sql.query.SEARCH_COLUMNS`), each case
  folded by Python's :meth:`str.casefold` (so folding agrees with the
  reference exactly, ``ß`` → ``ss`` included), joined by U+001F;
- a needle is case folded the same way and compared with ``LIKE
  '%needle%'`` (``%``, ``_`` and ``\\`` escaped): a GIN ``gin_trgm_ops``
  index on ``search_doc`` answers it for needles of three characters or
  more, and the planner decides whether to use it;
- a condition on one field also checks that field alone
  (``split_part(search_doc, chr(31), n)``), so a match never spans two
  fields.

``header`` compares the case-folded header fields stored with each email
(column ``headers``, JSON pairs) with ``strpos``, as the reference does.
"""

# SQL is assembled from fixed fragments and placeholder lists only; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from jmap_twisted.records import EmailSummary
from jmap_twisted.store.sql.query import SEARCH_COLUMNS, QueryCompiler

#: Separates the fields of ``search_doc``.
SEPARATOR = "\x1f"


def search_doc(summary: EmailSummary) -> str:
    """
    The case-folded searchable text of an email, one field after another.
    """
    return SEPARATOR.join(
        getattr(summary, column).replace(SEPARATOR, " ").casefold() for column in SEARCH_COLUMNS
    )


def like_pattern(needle: str) -> str:
    """
    A ``LIKE`` pattern matching any text that contains ``needle``.
    """
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresQueryCompiler(QueryCompiler):
    """
    ``Email/query`` in PostgreSQL: named parameters ``%(name)s``, trigram
    search over ``search_doc``, headers from ``headers``.
    """

    TRUE = "TRUE"
    FALSE = "FALSE"
    NO_LIMIT = None

    def placeholder(self, name: str) -> str:
        return f"%({name})s"

    def search(self, needle: str, column: str | None) -> str:
        folded = needle.casefold()
        if SEPARATOR in folded:
            return self.FALSE  # no field contains the separator
        doc = self.email("search_doc")
        pattern = self.param(like_pattern(folded))
        if column is None:
            return f"{doc} LIKE {pattern}"
        field = SEARCH_COLUMNS.index(column) + 1
        return f"({doc} LIKE {pattern} AND split_part({doc}, chr(31), {field}) LIKE {pattern})"

    def header(self, name: str, needle: str | None) -> str:
        condition = f"h.pair->>0 = {self.param(name.casefold())}"
        if needle is not None:
            condition += f" AND strpos(h.pair->>1, {self.param(needle.casefold())}) > 0"
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements({self.email('headers')}) AS h(pair)"
            f" WHERE {condition})"
        )

    def source(self, with_emails: bool) -> str:
        if not self.walks_mailbox:
            return f"FROM emails e WHERE e.account_id = {self.account}"
        join = (
            " JOIN emails e ON e.account_id = mb.account_id AND e.id = mb.email_id"
            if with_emails
            else ""
        )
        return (
            f"FROM email_mailboxes mb{join}"
            f" WHERE mb.account_id = {self.account} AND mb.mailbox_id = %(mailbox)s"
        )
