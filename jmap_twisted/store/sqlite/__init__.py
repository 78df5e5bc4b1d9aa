"""
The embedded SQLite backend: :mod:`~jmap_twisted.store.sqlite.database` (the
file, its threads, migrations), :mod:`~jmap_twisted.store.sqlite.schema`,
:mod:`~jmap_twisted.store.sqlite.directory`, :mod:`~jmap_twisted.store.sqlite.mail`,
its ``Email/query`` dialect (:mod:`~jmap_twisted.store.sqlite.query`) and its
dead letters (:mod:`~jmap_twisted.store.sqlite.deadletters`).
"""
