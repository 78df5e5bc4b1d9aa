"""
The SQLite schema, as an append-only list of migrations.

:data:`MIGRATIONS` holds one SQL script per schema version.  A database's
``PRAGMA user_version`` counts the scripts already applied to it;
:class:`jmap_twisted.store.sqlite_db.SQLiteDatabase` applies the rest at
start, each script and its version bump in one transaction.

To change the schema, append a script; never edit or reorder one that has
been released, since databases in the field already ran it.  A script may
hold several statements, including ``CREATE TRIGGER … BEGIN … END``; it must
not contain transaction control (``BEGIN``/``COMMIT``) of its own.
"""

from __future__ import annotations

_V1_DIRECTORY_AND_BLOBS = """
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT,              -- NULL: password login disabled
    created       REAL NOT NULL      -- POSIX timestamp
);

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    owner_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_personal INTEGER NOT NULL DEFAULT 0 CHECK (is_personal IN (0, 1)),
    created     REAL NOT NULL
);
CREATE INDEX accounts_by_owner ON accounts (owner_id);
CREATE UNIQUE INDEX accounts_one_personal ON accounts (owner_id) WHERE is_personal = 1;

-- Bearer tokens, by the SHA-256 of the token (never the token itself).
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created    REAL NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id, created);

-- Content-addressed octets, shared by every account that stored them.
CREATE TABLE blobs (
    id   TEXT PRIMARY KEY,           -- 'G' + sha256 hex of data
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);

-- Which accounts may see which blobs (RFC 8620 §6: blobs are per account).
CREATE TABLE account_blobs (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blob_id    TEXT NOT NULL REFERENCES blobs (id),
    type       TEXT NOT NULL,
    created    REAL NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);
CREATE INDEX account_blobs_by_blob ON account_blobs (blob_id);
"""

MIGRATIONS: list[str] = [
    _V1_DIRECTORY_AND_BLOBS,
]
"""
The schema, one SQL script per version; append only.
"""
