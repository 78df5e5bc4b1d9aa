"""
The mail store in a PostgreSQL database shared by several server nodes:
:class:`PostgresMailStore`.

It behaves as the reference :class:`~jmap_twisted.store.memory.mail.MemoryMailStore`;
what every SQL backend shares is in :mod:`jmap_twisted.store.sql.mail`.  Here:

- Concurrency: every write transaction first locks the account's row of
  ``mail_accounts`` (``SELECT … FOR UPDATE``, the row created if needed),
  so the writers of one account run one after the other, on whatever node,
  while writers of different accounts proceed in parallel.  Under ``READ
  COMMITTED`` each later statement then sees everything committed before
  the lock was granted: change-log positions, modseqs and states are
  allocated without gaps or duplicates, threading sees the account's
  latest emails, and no change-log entry is lost.  Ids are random (64
  bits), so nodes never hand out the same one.
- Octets shared between accounts: adding an email updates (so locks) an
  existing ``blobs`` row, and destroying one locks the row before deciding
  whether anything still refers to it, so concurrent writers of different
  accounts cannot delete octets another is starting to use.
- Text search and headers: see :mod:`jmap_twisted.store.postgres.query`.
- PostgreSQL text cannot hold NUL characters: they are stored as U+FFFD.
"""

# SQL is assembled from fixed fragments only; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb
from twisted.internet.interfaces import IReactorTime

from jmap_twisted.records import EmailRecord
from jmap_twisted.store.postgres.database import PostgresDatabase, Statements
from jmap_twisted.store.postgres.query import PostgresQueryCompiler, search_doc
from jmap_twisted.store.sql.mail import SQLMailStore, SQLReader, SQLWriter
from jmap_twisted.store.sql.query import folded_headers


def _text(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class _Reader(SQLReader):
    """
    One account's mail seen through a PostgreSQL connection.
    """

    EMAIL_FROM = ", e.body_text FROM emails e"

    QUERY_COMPILER = PostgresQueryCompiler

    def _query_connection(self) -> Any:
        assert isinstance(self._db, Statements)
        return self._db.connection


class _Writer(SQLWriter, _Reader):
    """
    One account's mail inside a PostgreSQL write transaction.
    """

    def begin(self) -> None:
        self._db.execute(
            "INSERT INTO mail_accounts (account_id) VALUES (?) ON CONFLICT (account_id) DO NOTHING",
            (self.account_id,),
        )
        self._db.execute(
            "SELECT seq FROM mail_accounts WHERE account_id = ? FOR UPDATE", (self.account_id,)
        )

    def _insert_email(self, record: EmailRecord, raw: bytes, seen: int) -> None:
        values = tuple(_text(v) for v in self._email_values(record, seen))
        self._db.execute(
            f"INSERT INTO emails ({self.EMAIL_INSERT_COLUMNS}, body_text, search_doc, headers)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *values,
                _text(record.summary.body_text),
                _text(search_doc(record.summary)),
                Jsonb([[_text(k), _text(v)] for k, v in folded_headers(raw)]),
            ),
        )

    def _lock_blob(self, blob_id: str) -> None:
        self._db.execute("SELECT 1 FROM blobs WHERE id = ? FOR UPDATE", (blob_id,))

    def _delete_email(self, email_id: str) -> None:
        self._db.execute(
            "DELETE FROM emails WHERE account_id = ? AND id = ?", (self.account_id, email_id)
        )


class PostgresMailStore(SQLMailStore):
    """
    :class:`~jmap_twisted.interfaces.IMailStore` in a PostgreSQL database
    (``db``, possibly shared with other stores and nodes), with
    :meth:`prune_changes` as for SQLite; ``clock`` gives commit times.
    """

    reader_class = _Reader
    writer_class = _Writer

    def __init__(self, db: PostgresDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)
