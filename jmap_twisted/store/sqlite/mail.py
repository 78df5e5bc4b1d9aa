"""
The mail store in an SQLite database: :class:`SQLiteMailStore`.

It behaves as the reference :class:`~jmap_twisted.store.memory.mail.MemoryMailStore`,
over the tables of schema version 2 (:mod:`jmap_twisted.store.sqlite.schema`); what
every SQL backend shares is in :mod:`jmap_twisted.store.sql.mail`.  Here:

- writes run on the database's single writer thread (``BEGIN IMMEDIATE``),
  reads on a reader thread against one WAL snapshot; several processes, or
  several :class:`~jmap_twisted.store.sqlite.database.SQLiteDatabase` instances,
  may share the file;
- the searchable text of an email lives in the FTS5 table ``email_search``
  (rowid = ``emails.num``), which also holds its body text;
- ``Email/query`` is SQL of :mod:`jmap_twisted.store.sqlite.query`.
"""

# SQL is assembled from fixed fragments and placeholder lists only; every
# value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3

from twisted.internet.interfaces import IReactorTime

from jmap_twisted.records import EmailRecord
from jmap_twisted.store.changelog import ChangeRecorder
from jmap_twisted.store.sql.mail import SQLMailStore, SQLReader, SQLWriter
from jmap_twisted.store.sqlite.database import SQLiteDatabase
from jmap_twisted.store.sqlite.query import SQLiteQueryCompiler, register_functions


class _Reader(SQLReader):
    """
    One account's mail seen through an SQLite connection.
    """

    EMAIL_FROM = ", s.body_text FROM emails e LEFT JOIN email_search s ON s.rowid = e.num"

    def __init__(self, connection: sqlite3.Connection, account_id: str) -> None:
        register_functions(connection)
        super().__init__(connection, account_id)

    QUERY_COMPILER = SQLiteQueryCompiler

    def _query_connection(self) -> sqlite3.Connection:
        assert isinstance(self._db, sqlite3.Connection)
        return self._db


class _Writer(SQLWriter, _Reader):
    """
    One account's mail inside an SQLite write transaction.
    """

    def __init__(
        self, connection: sqlite3.Connection, account_id: str, recorder: ChangeRecorder
    ) -> None:
        register_functions(connection)
        SQLWriter.__init__(self, connection, account_id, recorder)

    def _insert_email(self, record: EmailRecord, raw: bytes, seen: int) -> None:
        cursor = self._db.execute(
            f"INSERT INTO emails ({self.EMAIL_INSERT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._email_values(record, seen),
        )
        summary = record.summary
        self._db.execute(
            "INSERT INTO email_search (rowid, subject, from_text, to_text, cc_text, bcc_text,"
            " body_text) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                cursor.lastrowid,
                summary.subject,
                summary.from_text,
                summary.to_text,
                summary.cc_text,
                summary.bcc_text,
                summary.body_text,
            ),
        )

    def _delete_email(self, email_id: str) -> None:
        key = (self.account_id, email_id)
        self._db.execute(
            "DELETE FROM email_search WHERE rowid ="
            " (SELECT num FROM emails WHERE account_id = ? AND id = ?)",
            key,
        )
        self._db.execute("DELETE FROM emails WHERE account_id = ? AND id = ?", key)


class SQLiteMailStore(SQLMailStore):
    """
    :class:`~jmap_twisted.interfaces.IMailStore` in an SQLite database.

    :param db: the started database (schema version 2 or later), possibly
        shared with the directory and blob stores.
    :param clock: gives the commit time recorded with change-log entries,
        for :meth:`prune_changes`; read on the reactor thread.
    """

    reader_class = _Reader
    writer_class = _Writer

    def __init__(self, db: SQLiteDatabase, clock: IReactorTime) -> None:
        super().__init__(db, clock)
