"""
Backing up and restoring the SQLite store of a data directory.

Everything the server keeps is in the one database file
``jmap.sqlite3`` of the data directory: users, tokens, mail, the octets of
every message and uploaded blob (table ``blobs``), push subscriptions, the
VAPID key, dead letters.  (The ``jmap.sqlite3-reserve`` file beside it is
free space kept for deletions on a full disk, remade by the server.)

:func:`backup` copies it with SQLite's online backup API while the server
runs: the copy is made inside one read transaction, so it is the database
as some committed transaction left it, and the server's writers go on
meanwhile (WAL readers do not block them).  :func:`restore` copies a
backup into an empty data directory.  Both check the copy before giving it
its final name, so an interrupted run leaves no half-written database
under that name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from attrs import frozen

from jmap_twisted.store.sqlite.database import DATABASE_FILENAME, database_path


class BackupError(Exception):
    """
    A backup or restore cannot be made; the message says why.
    """


@frozen
class Copied:
    """
    A database copied: where to, its size and its schema version.
    """

    path: Path
    size: int
    schema_version: int


def schema_version(path: Path) -> int | None:
    """
    The schema version (``PRAGMA user_version``) of the server database at
    ``path``, opened read-only; ``None`` when there is no such file.  A
    database the server never set up has version 0.

    :raises BackupError: the file is not an SQLite database.
    """
    if not path.is_file():
        return None
    try:
        connection = _read_only(path)
        try:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise BackupError(f"{path} is not a usable SQLite database: {error}") from None
    return int(version)


def _read_only(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    connection.execute("PRAGMA busy_timeout = 5000")
    return connection


def _empty_directory(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} exists and is not an empty directory")
    path.mkdir(parents=True, exist_ok=True)


def _copy(source: Path, target: Path, journal_mode: str) -> Copied:
    """
    Copy the database at ``source`` to ``target`` (through a temporary
    name beside it), check the copy and set its journal mode.
    """
    version = schema_version(source)
    if not version:
        raise BackupError(f"{source} holds no server data")
    partial = target.with_name(target.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    try:
        reading = _read_only(source)
        try:
            writing = sqlite3.connect(partial)
            try:
                # One step: the whole copy is one read transaction, a
                # consistent snapshot even while the server writes.
                reading.backup(writing)
                (check,) = writing.execute("PRAGMA quick_check").fetchone()
                if check != "ok":
                    raise BackupError(f"the copy of {source} does not check: {check}")
                # A backup is one self-contained file (reading it makes no
                # -wal or -shm beside it); a restored store is in WAL mode,
                # as the server keeps it.
                writing.execute(f"PRAGMA journal_mode = {journal_mode}")
            finally:
                writing.close()
        finally:
            reading.close()
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    except sqlite3.Error as error:
        raise BackupError(f"cannot copy {source}: {error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Copied(target, target.stat().st_size, version)


def backup(data_dir: Path, dest: Path) -> Copied:
    """
    Copy the store of ``data_dir`` into the directory ``dest`` (made when
    missing; it must be empty), also while a server runs on it.

    :raises BackupError: no server data in ``data_dir``, ``dest`` not
        empty, or a database error.
    """
    source = Path(database_path(str(data_dir)))
    if schema_version(source) is None:
        raise BackupError(f"no server data in {data_dir} (no {source})")
    _empty_directory(dest, "the backup directory")
    return _copy(source, dest / DATABASE_FILENAME, "DELETE")


def restore(src: Path, data_dir: Path) -> Copied:
    """
    Copy a backup (a directory made by :func:`backup`, or its database
    file) into the data directory ``data_dir``, which must be empty or
    missing: a server started on it then finds the data as it was backed
    up.

    :raises BackupError: no backup at ``src``, ``data_dir`` not empty, or
        a database error.
    """
    source = src / DATABASE_FILENAME if src.is_dir() else src
    if schema_version(source) is None:
        raise BackupError(f"no backup at {src} (no {source})")
    _empty_directory(data_dir, "the data directory")
    return _copy(source, Path(database_path(str(data_dir))), "WAL")
