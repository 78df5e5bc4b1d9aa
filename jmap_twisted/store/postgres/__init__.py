"""
The PostgreSQL backend, one database shared by several nodes (install the
``postgresql`` extra: ``pip install 'jmap-twisted[postgresql]'``):
:mod:`~jmap_twisted.store.postgres.database`, :mod:`~jmap_twisted.store.postgres.schema`,
:mod:`~jmap_twisted.store.postgres.directory`, :mod:`~jmap_twisted.store.postgres.mail`,
:mod:`~jmap_twisted.store.postgres.query` and
:mod:`~jmap_twisted.store.postgres.deadletters`.
"""
