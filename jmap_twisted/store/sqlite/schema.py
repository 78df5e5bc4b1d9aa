"""
The SQLite schema, as an append-only list of migrations.

:data:`MIGRATIONS` holds one SQL script per schema version.  A database's
``PRAGMA user_version`` counts the scripts already applied to it;
:class:`jmap_twisted.store.sqlite.database.SQLiteDatabase` applies the rest at
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

_V2_MAIL = """
-- Mail (jmap_twisted.store.sqlite.mail).  Mail tables have no foreign key to
-- accounts: an account's mail may be set up before, or without, a directory row.

-- Where each account's change log stands.
CREATE TABLE mail_accounts (
    account_id TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL DEFAULT 0,  -- last change-log entry
    modseq     INTEGER NOT NULL DEFAULT 0   -- last committed operation
) WITHOUT ROWID;

-- Per type (Mailbox, Email, Thread, document types): its state and how far back
-- it can be computed.
CREATE TABLE mail_states (
    account_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    seq        INTEGER NOT NULL,            -- the state: seq of the type's latest entry
    oldest     INTEGER NOT NULL DEFAULT 0,  -- states older than this were pruned
    PRIMARY KEY (account_id, type)
) WITHOUT ROWID;

-- The change log: one row per changed object per operation.
CREATE TABLE mail_changes (
    account_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'destroyed')),
    counts_only INTEGER NOT NULL CHECK (counts_only IN (0, 1)),
    modseq      INTEGER NOT NULL,
    committed   REAL NOT NULL,              -- POSIX time of the commit, for pruning
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
CREATE INDEX mail_changes_by_type ON mail_changes (account_id, type, seq);

CREATE TABLE mailboxes (
    num           INTEGER PRIMARY KEY,      -- creation order
    account_id    TEXT NOT NULL,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    parent_id     TEXT,
    role          TEXT,
    sort_order    INTEGER NOT NULL,
    is_subscribed INTEGER NOT NULL CHECK (is_subscribed IN (0, 1)),
    UNIQUE (account_id, id)
);

-- One row per email, with its EmailSummary (body_text lives in email_search).
CREATE TABLE emails (
    num            INTEGER PRIMARY KEY,     -- also the rowid of email_search
    account_id     TEXT NOT NULL,
    id             TEXT NOT NULL,
    blob_id        TEXT NOT NULL,           -- octets in blobs, not via account_blobs
    thread_id      TEXT NOT NULL,
    size           INTEGER NOT NULL,
    received_at    REAL NOT NULL,
    seen           INTEGER NOT NULL,        -- has $seen (copy of email_keywords)
    subject        TEXT NOT NULL,
    base_subject   TEXT NOT NULL,
    from_text      TEXT NOT NULL,
    to_text        TEXT NOT NULL,
    cc_text        TEXT NOT NULL,
    bcc_text       TEXT NOT NULL,
    from_sort      TEXT NOT NULL,
    to_sort        TEXT NOT NULL,
    sent_at        REAL,
    preview        TEXT NOT NULL,
    has_attachment INTEGER NOT NULL CHECK (has_attachment IN (0, 1)),
    message_ids    TEXT NOT NULL,           -- JSON arrays of Message-IDs
    in_reply_to    TEXT NOT NULL,
    refs           TEXT NOT NULL,
    UNIQUE (account_id, id)
);
CREATE INDEX emails_by_received ON emails (account_id, received_at DESC, id);
CREATE INDEX emails_by_thread ON emails (account_id, thread_id, received_at, id);
CREATE INDEX emails_by_blob ON emails (blob_id);
CREATE INDEX emails_unread_by_thread ON emails (account_id, thread_id, id) WHERE seen = 0;

-- Mailbox membership, with receivedAt, thread and $seen copied from the email so
-- that a mailbox listing and its counts read this table's indexes only.
CREATE TABLE email_mailboxes (
    account_id  TEXT NOT NULL,
    email_id    TEXT NOT NULL,
    mailbox_id  TEXT NOT NULL,
    received_at REAL NOT NULL,
    thread_id   TEXT NOT NULL,
    seen        INTEGER NOT NULL,
    PRIMARY KEY (account_id, email_id, mailbox_id)
) WITHOUT ROWID;
-- Listing a mailbox newest first (and collapsing its threads) reads this index only.
CREATE INDEX email_mailboxes_by_mailbox
    ON email_mailboxes (account_id, mailbox_id, received_at DESC, email_id, thread_id);
-- Mailbox counts: threads in order (no sort for COUNT DISTINCT), unread, thread probes.
CREATE INDEX email_mailboxes_by_thread
    ON email_mailboxes (account_id, mailbox_id, thread_id, seen);

CREATE TABLE email_keywords (
    account_id TEXT NOT NULL,
    email_id   TEXT NOT NULL,
    keyword    TEXT NOT NULL,
    PRIMARY KEY (account_id, email_id, keyword)
) WITHOUT ROWID;

-- Threading: every Message-ID an email mentions (its own, In-Reply-To, References).
CREATE TABLE email_message_ids (
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    email_id   TEXT NOT NULL,
    PRIMARY KEY (account_id, message_id, email_id)
) WITHOUT ROWID;

-- Other JSON documents (Identity, VacationResponse, EmailSubmission, …), by type.
CREATE TABLE mail_documents (
    num        INTEGER PRIMARY KEY,         -- creation order
    account_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    id         TEXT NOT NULL,
    document   TEXT NOT NULL,               -- JSON object
    UNIQUE (account_id, type, id)
);

-- Full-text search; rowid = emails.num.  The trigram tokenizer makes a phrase
-- query a case-insensitive substring match (needles of 3 characters or more).
CREATE VIRTUAL TABLE email_search USING fts5 (
    subject, from_text, to_text, cc_text, bcc_text, body_text,
    tokenize = 'trigram'
);

-- Octets an email still refers to are never deleted, whoever deletes them.
CREATE TRIGGER blobs_keep_email_octets BEFORE DELETE ON blobs
WHEN EXISTS (SELECT 1 FROM emails WHERE blob_id = old.id)
BEGIN
    SELECT RAISE(IGNORE);
END;
"""

_V3_DELEGATION_AND_DEAD_LETTERS = """
-- Delegation (jmap_twisted.store.sqlite.directory): a user may access an account they
-- do not own.  Deleting the account or the user deletes the delegation.
CREATE TABLE delegations (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created    REAL NOT NULL,
    PRIMARY KEY (account_id, user_id)
) WITHOUT ROWID;
CREATE INDEX delegations_by_user ON delegations (user_id, account_id);

-- One row, bumped in the transaction of every change to who may access which
-- account (delegation granted or revoked, user deleted), so that a running
-- server notices changes made by another process by polling it.
CREATE TABLE access_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO access_version (singleton, version) VALUES (1, 0);

-- Group events that failed every retry (jmap_twisted.store.sqlite.deadletters).
CREATE TABLE dead_letters (
    num                 INTEGER PRIMARY KEY,    -- insertion order
    insertion_id        TEXT NOT NULL UNIQUE,
    group_name          TEXT NOT NULL,
    event_type          TEXT NOT NULL,          -- copied from the JSON, for listing
    account_id          TEXT,                   -- likewise; NULL if the event has none
    event               TEXT NOT NULL,          -- jmap_twisted.bus.events.to_json
    created             REAL NOT NULL,
    redeliver_requested INTEGER NOT NULL DEFAULT 0 CHECK (redeliver_requested IN (0, 1))
);
CREATE INDEX dead_letters_by_group ON dead_letters (group_name, num);
CREATE INDEX dead_letters_requested ON dead_letters (num) WHERE redeliver_requested = 1;
"""

_V4_ACCESS_CHANGES = """
-- Whose access or credentials each access-version bump concerned, so a
-- running server re-checks only their connections.
CREATE TABLE access_changes (
    version INTEGER NOT NULL,
    user_id TEXT NOT NULL
);
CREATE INDEX access_changes_by_version ON access_changes (version);
"""

_V5_PUSH_SUBSCRIPTIONS = """
-- Push subscriptions (RFC 8620 §7.2, jmap_twisted.store.sql.push): where a
-- user's state changes are POSTed.  Deleting the user deletes them.
CREATE TABLE push_subscriptions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_client_id  TEXT NOT NULL,
    url               TEXT NOT NULL,
    p256dh            BLOB,            -- NULL: pushes go unencrypted
    auth              BLOB,
    verification_code TEXT NOT NULL,
    verified          INTEGER NOT NULL CHECK (verified IN (0, 1)),
    expires           REAL,            -- POSIX timestamp; NULL: never
    types             TEXT,            -- JSON array of type names; NULL: all
    created           REAL NOT NULL
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id, created);

-- One row, bumped in the transaction of every change to the push
-- subscriptions, so that every process pushing notices changes by polling it.
CREATE TABLE push_subscriptions_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO push_subscriptions_version (singleton, version) VALUES (1, 0);

-- The server's own keys, by name: 'vapid' is the PKCS#8 PEM of its VAPID
-- key pair (RFC 8292).
CREATE TABLE server_keys (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

_V6_TICKETS = """
-- Tickets of POST /jmap/ticket (jmap_twisted.store.sql.tickets), by the
-- SHA-256 of their value, shared by every process over this database.
CREATE TABLE tickets (
    digest        TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    expires       REAL NOT NULL,
    client        TEXT,                -- the address that asked for it
    origin        TEXT,                -- JSON: what the asking credentials rest on
    issued        REAL NOT NULL,
    stream        INTEGER NOT NULL CHECK (stream IN (0, 1)),
    holder        TEXT UNIQUE,         -- the EventSource stream holding it
    held_until    REAL NOT NULL,
    holder_client TEXT,
    generation    INTEGER NOT NULL     -- bumped by every redemption
);
CREATE INDEX tickets_by_user ON tickets (user_id, issued);
CREATE INDEX tickets_by_expiry ON tickets (expires);
"""

_V7_QUOTAS = """
-- Quotas (RFC 9425, jmap_twisted.store.quota): each account's usage, kept
-- by the transaction that adds or destroys an email, and its limits.
ALTER TABLE mail_accounts ADD COLUMN used_octets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mail_accounts ADD COLUMN used_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mail_accounts ADD COLUMN storage_limit INTEGER;  -- NULL: no limit
ALTER TABLE mail_accounts ADD COLUMN message_limit INTEGER;  -- NULL: no limit

-- The usage of the mail stored before quotas, counted once here.
INSERT INTO mail_accounts (account_id) SELECT DISTINCT account_id FROM emails WHERE true
ON CONFLICT (account_id) DO NOTHING;
UPDATE mail_accounts SET
    used_octets = (SELECT COALESCE(SUM(size), 0) FROM emails
                   WHERE emails.account_id = mail_accounts.account_id),
    used_messages = (SELECT COUNT(*) FROM emails
                     WHERE emails.account_id = mail_accounts.account_id);
"""

_V8_SHARES = """
-- Mailbox sharing (RFC 4314 rights, RFC 9670; jmap_twisted.store.sql.directory):
-- a mailbox of an account shared with a user who does not own it.
CREATE TABLE mailbox_shares (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rights     TEXT NOT NULL CHECK (rights <> ''),  -- RFC 4314 letters, canonical order
    subscribed INTEGER NOT NULL DEFAULT 1 CHECK (subscribed IN (0, 1)),  -- the sharee's own
    granted_by TEXT,                                -- a user id; NULL: the administrator
    created    REAL NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, user_id)
) WITHOUT ROWID;
CREATE INDEX mailbox_shares_by_user ON mailbox_shares (user_id, account_id);

-- Each sharee's view of an account: generation bumped by every change of
-- their rights there, subscriptions by every change of their subscriptions.
-- Kept after the last share goes, so that a new share never reuses a
-- generation.
CREATE TABLE share_views (
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation    INTEGER NOT NULL,
    subscriptions INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id)
) WITHOUT ROWID;

-- Principal/changes (RFC 9670): users created and deleted, never pruned.
-- The single row of principal_version numbers the entries (its row lock
-- orders concurrent writers).
CREATE TABLE principal_changes (
    seq     INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'destroyed')),
    created REAL NOT NULL
);
CREATE TABLE principal_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq       INTEGER NOT NULL
);
INSERT INTO principal_version (singleton, seq) VALUES (1, 0);

-- Sharees' views of the mail (jmap_twisted.store.changelog).  An entry's
-- audience: 0 everyone seeing a mailbox it concerns, 1 a change of a
-- mailbox's sharing (of sharees, only its administrators see it), 2 sharees
-- only (the account's own states skip it).
ALTER TABLE mail_changes ADD COLUMN
    audience INTEGER NOT NULL DEFAULT 0 CHECK (audience IN (0, 1, 2));

-- The mailboxes each entry concerns: whether its object was in the mailbox
-- before the operation and is in it after.  Pruned with the entry.
CREATE TABLE mail_change_mailboxes (
    account_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT NOT NULL,
    mailbox_id TEXT NOT NULL,
    was_in     INTEGER NOT NULL CHECK (was_in IN (0, 1)),
    is_in      INTEGER NOT NULL CHECK (is_in IN (0, 1)),
    PRIMARY KEY (account_id, seq, mailbox_id)
) WITHOUT ROWID;
CREATE INDEX mail_change_mailboxes_by_mailbox
    ON mail_change_mailboxes (account_id, type, mailbox_id, seq);

-- High-water marks: the latest entry of a type concerning a mailbox, per
-- audience; a sharee's state is the largest of their mailboxes'.  Never
-- pruned (none predates this version: no mailbox was shared before).
CREATE TABLE mail_mailbox_states (
    account_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    mailbox_id TEXT NOT NULL,
    audience   INTEGER NOT NULL CHECK (audience IN (0, 1, 2)),
    seq        INTEGER NOT NULL,
    PRIMARY KEY (account_id, type, mailbox_id, audience)
) WITHOUT ROWID;
"""

_V9_MAILBOX_COUNTERS = """
-- Mailbox counts kept as counters (jmap_twisted.store.counters), changed in the
-- transaction of every change of an email's mailboxes or $seen.
ALTER TABLE mailboxes ADD COLUMN total_emails INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN unread_emails INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN total_threads INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN unread_threads INTEGER NOT NULL DEFAULT 0;

-- Per thread and mailbox: how many of the thread's emails, and unread emails,
-- the mailbox holds (no row: none).  Mailbox ids are those of email_mailboxes,
-- including mailboxes destroyed while holding emails.
CREATE TABLE mailbox_threads (
    account_id TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    mailbox_id TEXT NOT NULL,
    emails     INTEGER NOT NULL CHECK (emails > 0),
    unread     INTEGER NOT NULL CHECK (unread >= 0),
    PRIMARY KEY (account_id, thread_id, mailbox_id)
) WITHOUT ROWID;

-- Per thread: its unread emails that are not only in the trash (no row: none).
CREATE TABLE thread_unread (
    account_id TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    unread     INTEGER NOT NULL CHECK (unread > 0),
    PRIMARY KEY (account_id, thread_id)
) WITHOUT ROWID;

-- The counters of the mail stored before, counted once here.
INSERT INTO mailbox_threads (account_id, thread_id, mailbox_id, emails, unread)
SELECT account_id, thread_id, mailbox_id, COUNT(*), SUM(1 - seen) FROM email_mailboxes
GROUP BY account_id, thread_id, mailbox_id;

INSERT INTO thread_unread (account_id, thread_id, unread)
SELECT e.account_id, e.thread_id, COUNT(*) FROM emails e
WHERE e.seen = 0 AND NOT EXISTS (
    SELECT 1 FROM mailboxes t
    WHERE t.num = (SELECT MIN(num) FROM mailboxes
                   WHERE account_id = e.account_id AND role = 'trash')
    AND EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = e.account_id
                AND x.email_id = e.id AND x.mailbox_id = t.id)
    AND NOT EXISTS (SELECT 1 FROM email_mailboxes x WHERE x.account_id = e.account_id
                    AND x.email_id = e.id AND x.mailbox_id <> t.id))
GROUP BY e.account_id, e.thread_id;

UPDATE mailboxes SET
    total_emails = c.emails,
    unread_emails = c.unread,
    total_threads = c.threads,
    unread_threads = c.unread_threads
FROM (
    SELECT m.account_id, m.mailbox_id, SUM(m.emails) AS emails, SUM(m.unread) AS unread,
           COUNT(*) AS threads,
           SUM(CASE WHEN m.mailbox_id = (SELECT id FROM mailboxes WHERE account_id = m.account_id
                                         AND role = 'trash' ORDER BY num LIMIT 1)
                    THEN m.unread > 0 ELSE u.unread IS NOT NULL END) AS unread_threads
    FROM mailbox_threads m LEFT JOIN thread_unread u
    ON u.account_id = m.account_id AND u.thread_id = m.thread_id
    GROUP BY m.account_id, m.mailbox_id
) AS c
WHERE mailboxes.account_id = c.account_id AND mailboxes.id = c.mailbox_id;
"""

MIGRATIONS: list[str] = [
    _V1_DIRECTORY_AND_BLOBS,
    _V2_MAIL,
    _V3_DELEGATION_AND_DEAD_LETTERS,
    _V4_ACCESS_CHANGES,
    _V5_PUSH_SUBSCRIPTIONS,
    _V6_TICKETS,
    _V7_QUOTAS,
    _V8_SHARES,
    _V9_MAILBOX_COUNTERS,
]
"""
The schema, one SQL script per version; append only.
"""
