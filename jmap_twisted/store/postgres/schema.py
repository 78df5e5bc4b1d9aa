"""
The PostgreSQL schema, as an append-only list of migrations.

:data:`MIGRATIONS` holds one SQL script per schema version; table
``jmap_schema_migrations`` records which versions a database has.
:class:`jmap_twisted.store.postgres.database.PostgresDatabase` applies the rest at
start, each script with its record in one transaction, under a
transaction-level advisory lock (:data:`MIGRATION_LOCK`), so that several
nodes starting at once apply each migration exactly once.

To change the schema, append a script; never edit or reorder one that has
been released.  A script must not contain transaction control.

The tables mirror the SQLite schema (:mod:`jmap_twisted.store.sqlite.schema`), so
that the SQL shared by both backends reads the same, with these
differences:

- flags stay ``SMALLINT`` 0/1 (the shared SQL compares them with numbers);
- identifiers and sort keys are ``COLLATE "C"``: ordering by code point, as
  the reference implementation orders Python strings, whatever the
  database's default collation;
- an email's body text is a column of ``emails``; its searchable text is
  column ``search_doc`` (see :mod:`jmap_twisted.store.postgres.query`)
  with a trigram GIN index (extension ``pg_trgm``, which the database owner
  may create since PostgreSQL 13), and its case-folded header fields are
  ``headers`` (JSON);
- the blob trigger of SQLite is replaced by explicit conditions in the
  statements that delete blobs.
"""

from __future__ import annotations

#: The advisory lock key held while migrating ("jmap" in ASCII).
MIGRATION_LOCK = 0x6A6D6170

_V1 = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    username      TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT,
    created       DOUBLE PRECISION NOT NULL
);

CREATE TABLE accounts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    owner_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_personal SMALLINT NOT NULL DEFAULT 0 CHECK (is_personal IN (0, 1)),
    created     DOUBLE PRECISION NOT NULL
);
CREATE INDEX accounts_by_owner ON accounts (owner_id);
CREATE UNIQUE INDEX accounts_one_personal ON accounts (owner_id) WHERE is_personal = 1;

CREATE TABLE tokens (
    num        BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created    DOUBLE PRECISION NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id, created, num);

CREATE TABLE blobs (
    id   TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL
);

CREATE TABLE account_blobs (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blob_id    TEXT COLLATE "C" NOT NULL REFERENCES blobs (id),
    type       TEXT NOT NULL,
    created    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);
CREATE INDEX account_blobs_by_blob ON account_blobs (blob_id);

CREATE TABLE delegations (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX delegations_by_user ON delegations (user_id, account_id);

CREATE TABLE access_version (
    singleton SMALLINT PRIMARY KEY CHECK (singleton = 1),
    version   BIGINT NOT NULL
);
INSERT INTO access_version (singleton, version) VALUES (1, 0);

CREATE TABLE access_changes (
    version BIGINT NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL
);
CREATE INDEX access_changes_by_version ON access_changes (version);

-- Mail.  The row of mail_accounts is locked (FOR UPDATE) by every write
-- transaction of the account, which serialises the account's writers
-- across nodes.
CREATE TABLE mail_accounts (
    account_id TEXT COLLATE "C" PRIMARY KEY,
    seq        BIGINT NOT NULL DEFAULT 0,
    modseq     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE mail_states (
    account_id TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    oldest     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, type)
);

CREATE TABLE mail_changes (
    account_id  TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    object_id   TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'destroyed')),
    counts_only SMALLINT NOT NULL CHECK (counts_only IN (0, 1)),
    modseq      BIGINT NOT NULL,
    committed   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX mail_changes_by_type ON mail_changes (account_id, type, seq);
CREATE INDEX mail_changes_by_time ON mail_changes (committed);

CREATE TABLE mailboxes (
    num           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    TEXT COLLATE "C" NOT NULL,
    id            TEXT COLLATE "C" NOT NULL,
    name          TEXT NOT NULL,
    parent_id     TEXT COLLATE "C",
    role          TEXT,
    sort_order    BIGINT NOT NULL,
    is_subscribed SMALLINT NOT NULL CHECK (is_subscribed IN (0, 1)),
    UNIQUE (account_id, id)
);

CREATE TABLE emails (
    num            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,
    blob_id        TEXT COLLATE "C" NOT NULL,
    thread_id      TEXT COLLATE "C" NOT NULL,
    size           BIGINT NOT NULL,
    received_at    DOUBLE PRECISION NOT NULL,
    seen           SMALLINT NOT NULL,
    subject        TEXT NOT NULL,
    base_subject   TEXT COLLATE "C" NOT NULL,
    from_text      TEXT NOT NULL,
    to_text        TEXT NOT NULL,
    cc_text        TEXT NOT NULL,
    bcc_text       TEXT NOT NULL,
    from_sort      TEXT COLLATE "C" NOT NULL,
    to_sort        TEXT COLLATE "C" NOT NULL,
    sent_at        DOUBLE PRECISION,
    preview        TEXT NOT NULL,
    has_attachment SMALLINT NOT NULL CHECK (has_attachment IN (0, 1)),
    message_ids    TEXT NOT NULL,
    in_reply_to    TEXT NOT NULL,
    refs           TEXT NOT NULL,
    body_text      TEXT NOT NULL,
    search_doc     TEXT COLLATE "C" NOT NULL,  -- case-folded fields, see postgres_mail_query
    headers        JSONB NOT NULL,             -- [[folded name, folded value], ...]
    UNIQUE (account_id, id)
);
CREATE INDEX emails_by_received ON emails (account_id, received_at DESC, id);
CREATE INDEX emails_by_thread ON emails (account_id, thread_id, received_at, id);
CREATE INDEX emails_by_blob ON emails (blob_id);
CREATE INDEX emails_unread_by_thread ON emails (account_id, thread_id, id) WHERE seen = 0;
CREATE INDEX emails_search ON emails USING gin (search_doc gin_trgm_ops);

CREATE TABLE email_mailboxes (
    account_id  TEXT COLLATE "C" NOT NULL,
    email_id    TEXT COLLATE "C" NOT NULL,
    mailbox_id  TEXT COLLATE "C" NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    thread_id   TEXT COLLATE "C" NOT NULL,
    seen        SMALLINT NOT NULL,
    PRIMARY KEY (account_id, email_id, mailbox_id)
);
CREATE INDEX email_mailboxes_by_mailbox
    ON email_mailboxes (account_id, mailbox_id, received_at DESC, email_id, thread_id);
CREATE INDEX email_mailboxes_by_thread
    ON email_mailboxes (account_id, mailbox_id, thread_id, seen);

CREATE TABLE email_keywords (
    account_id TEXT COLLATE "C" NOT NULL,
    email_id   TEXT COLLATE "C" NOT NULL,
    keyword    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, email_id, keyword)
);

CREATE TABLE email_message_ids (
    account_id TEXT COLLATE "C" NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    email_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, message_id, email_id)
);

CREATE TABLE mail_documents (
    num        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    document   TEXT NOT NULL,
    UNIQUE (account_id, type, id)
);

CREATE TABLE dead_letters (
    num                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    insertion_id        TEXT COLLATE "C" NOT NULL UNIQUE,
    group_name          TEXT COLLATE "C" NOT NULL,
    event_type          TEXT NOT NULL,
    account_id          TEXT,
    event               TEXT NOT NULL,
    created             DOUBLE PRECISION NOT NULL,
    redeliver_requested SMALLINT NOT NULL DEFAULT 0 CHECK (redeliver_requested IN (0, 1))
);
CREATE INDEX dead_letters_by_group ON dead_letters (group_name, num);
CREATE INDEX dead_letters_requested ON dead_letters (num) WHERE redeliver_requested = 1;
"""

_V2_PUSH_SUBSCRIPTIONS = """
CREATE TABLE push_subscriptions (
    num               BIGINT GENERATED ALWAYS AS IDENTITY,
    id                TEXT COLLATE "C" PRIMARY KEY,
    user_id           TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_client_id  TEXT NOT NULL,
    url               TEXT NOT NULL,
    p256dh            BYTEA,
    auth              BYTEA,
    verification_code TEXT NOT NULL,
    verified          SMALLINT NOT NULL CHECK (verified IN (0, 1)),
    expires           DOUBLE PRECISION,
    types             TEXT,
    created           DOUBLE PRECISION NOT NULL
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id, created, num);

CREATE TABLE push_subscriptions_version (
    singleton SMALLINT PRIMARY KEY CHECK (singleton = 1),
    version   BIGINT NOT NULL
);
INSERT INTO push_subscriptions_version (singleton, version) VALUES (1, 0);

CREATE TABLE server_keys (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);
"""

_V3_TICKETS = """
CREATE TABLE tickets (
    digest        TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL,
    expires       DOUBLE PRECISION NOT NULL,
    client        TEXT,
    origin        TEXT,
    issued        DOUBLE PRECISION NOT NULL,
    stream        SMALLINT NOT NULL CHECK (stream IN (0, 1)),
    holder        TEXT COLLATE "C" UNIQUE,
    held_until    DOUBLE PRECISION NOT NULL,
    holder_client TEXT,
    generation    BIGINT NOT NULL
);
CREATE INDEX tickets_by_user ON tickets (user_id, issued);
CREATE INDEX tickets_by_expiry ON tickets (expires);
"""

_V4_QUOTAS = """
ALTER TABLE mail_accounts
    ADD COLUMN used_octets BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN used_messages BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN storage_limit BIGINT,
    ADD COLUMN message_limit BIGINT;

INSERT INTO mail_accounts (account_id) SELECT DISTINCT account_id FROM emails
ON CONFLICT (account_id) DO NOTHING;
UPDATE mail_accounts SET
    used_octets = (SELECT COALESCE(SUM(size), 0) FROM emails
                   WHERE emails.account_id = mail_accounts.account_id),
    used_messages = (SELECT COUNT(*) FROM emails
                     WHERE emails.account_id = mail_accounts.account_id);
"""

_V5_SHARES = """
CREATE TABLE mailbox_shares (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rights     TEXT COLLATE "C" NOT NULL CHECK (rights <> ''),
    subscribed SMALLINT NOT NULL DEFAULT 1 CHECK (subscribed IN (0, 1)),
    granted_by TEXT COLLATE "C",
    created    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, user_id)
);
CREATE INDEX mailbox_shares_by_user ON mailbox_shares (user_id, account_id);

CREATE TABLE share_views (
    account_id    TEXT COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation    BIGINT NOT NULL,
    subscriptions BIGINT NOT NULL,
    PRIMARY KEY (account_id, user_id)
);

CREATE TABLE principal_changes (
    seq     BIGINT PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'destroyed')),
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE principal_version (
    singleton SMALLINT PRIMARY KEY CHECK (singleton = 1),
    seq       BIGINT NOT NULL
);
INSERT INTO principal_version (singleton, seq) VALUES (1, 0);

ALTER TABLE mail_changes
    ADD COLUMN audience SMALLINT NOT NULL DEFAULT 0 CHECK (audience IN (0, 1, 2));

CREATE TABLE mail_change_mailboxes (
    account_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    mailbox_id TEXT COLLATE "C" NOT NULL,
    was_in     SMALLINT NOT NULL CHECK (was_in IN (0, 1)),
    is_in      SMALLINT NOT NULL CHECK (is_in IN (0, 1)),
    PRIMARY KEY (account_id, seq, mailbox_id)
);
CREATE INDEX mail_change_mailboxes_by_mailbox
    ON mail_change_mailboxes (account_id, type, mailbox_id, seq);

CREATE TABLE mail_mailbox_states (
    account_id TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    mailbox_id TEXT COLLATE "C" NOT NULL,
    audience   SMALLINT NOT NULL CHECK (audience IN (0, 1, 2)),
    seq        BIGINT NOT NULL,
    PRIMARY KEY (account_id, type, mailbox_id, audience)
);
"""

_V6_MAILBOX_COUNTERS = """
ALTER TABLE mailboxes
    ADD COLUMN total_emails BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN unread_emails BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN total_threads BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN unread_threads BIGINT NOT NULL DEFAULT 0;

CREATE TABLE mailbox_threads (
    account_id TEXT COLLATE "C" NOT NULL,
    thread_id  TEXT COLLATE "C" NOT NULL,
    mailbox_id TEXT COLLATE "C" NOT NULL,
    emails     BIGINT NOT NULL CHECK (emails > 0),
    unread     BIGINT NOT NULL CHECK (unread >= 0),
    PRIMARY KEY (account_id, thread_id, mailbox_id)
);

CREATE TABLE thread_unread (
    account_id TEXT COLLATE "C" NOT NULL,
    thread_id  TEXT COLLATE "C" NOT NULL,
    unread     BIGINT NOT NULL CHECK (unread > 0),
    PRIMARY KEY (account_id, thread_id)
);

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
                    THEN CASE WHEN m.unread > 0 THEN 1 ELSE 0 END
                    ELSE CASE WHEN u.unread IS NULL THEN 0 ELSE 1 END END) AS unread_threads
    FROM mailbox_threads m LEFT JOIN thread_unread u
    ON u.account_id = m.account_id AND u.thread_id = m.thread_id
    GROUP BY m.account_id, m.mailbox_id
) AS c
WHERE mailboxes.account_id = c.account_id AND mailboxes.id = c.mailbox_id;
"""

MIGRATIONS: list[str] = [
    _V1,
    _V2_PUSH_SUBSCRIPTIONS,
    _V3_TICKETS,
    _V4_QUOTAS,
    _V5_SHARES,
    _V6_MAILBOX_COUNTERS,
]
"""
The schema, one SQL script per version; append only.
"""
