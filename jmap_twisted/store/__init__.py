"""
Storage backends: one module per backend, each implementing the storage
interfaces of :mod:`jmap_twisted.interfaces`.

- :mod:`~jmap_twisted.store.memory`: in-memory directory and blob store, for
  tests.
- :mod:`~jmap_twisted.store.sqlite`: the directory and blob store over an
  SQLite database (the embedded default).
- :mod:`~jmap_twisted.store.sqlite_db`: the SQLite database file (where it
  lives in a data directory, its connection settings, schema migrations)
  and the writer and reader threads that run transactions on it.
- :mod:`~jmap_twisted.store.schema`: the SQLite schema as a list of
  migrations.
- :mod:`~jmap_twisted.store.sqlite_mail`, :mod:`~jmap_twisted.store.sqlite_mail_query`,
  :mod:`~jmap_twisted.store.sqlite_deadletters`: the SQLite mail store, its
  ``Email/query`` dialect, its dead letters.
- :mod:`~jmap_twisted.store.postgres_db`, :mod:`~jmap_twisted.store.postgres_schema`,
  :mod:`~jmap_twisted.store.postgres`, :mod:`~jmap_twisted.store.postgres_mail`,
  :mod:`~jmap_twisted.store.postgres_mail_query`,
  :mod:`~jmap_twisted.store.postgres_deadletters`: the same over a PostgreSQL
  database shared by several nodes.
- :mod:`~jmap_twisted.store.sql_directory`, :mod:`~jmap_twisted.store.sql_mail`,
  :mod:`~jmap_twisted.store.sql_mail_query`, :mod:`~jmap_twisted.store.sql_deadletters`:
  the SQL both backends share; :mod:`~jmap_twisted.store.threaded_db`: the
  life cycle of a database used from threads;
  :mod:`~jmap_twisted.store.fair_reads`: accounts' reads shared fairly
  between the reader threads, with a time budget and cancellation.
- :mod:`~jmap_twisted.store.ids`: identifiers of users, accounts, tokens and
  blobs.
"""
