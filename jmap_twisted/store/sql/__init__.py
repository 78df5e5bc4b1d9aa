"""
What the SQLite and PostgreSQL backends share: the directory and blob
transactions (:mod:`~jmap_twisted.store.sql.directory`), push subscriptions
and the VAPID key (:mod:`~jmap_twisted.store.sql.push`), the mail store's
reader and writer (:mod:`~jmap_twisted.store.sql.mail`), ``Email/query``
compiled to SQL (:mod:`~jmap_twisted.store.sql.query`), dead letters
(:mod:`~jmap_twisted.store.sql.deadletters`), the life cycle of a database
used from threads (:mod:`~jmap_twisted.store.sql.threaded`) and accounts'
reads shared fairly between reader threads
(:mod:`~jmap_twisted.store.sql.fair_reads`).
"""
