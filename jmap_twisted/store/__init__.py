"""
Storage: one folder per backend, each implementing the storage interfaces
of :mod:`jmap_twisted.interfaces`, and the model pieces they share beside
them.

- :mod:`jmap_twisted.store.memory`: the reference implementations in memory
  (directory, blobs, mail), for tests and embedders.
- :mod:`jmap_twisted.store.sqlite`: the embedded default, one SQLite file in
  a data directory.
- :mod:`jmap_twisted.store.postgres`: one PostgreSQL database shared by
  several nodes (needs the ``postgresql`` extra).
- :mod:`jmap_twisted.store.sql`: the SQL both databases share, the life cycle
  of a database used from threads and the fair sharing of its readers.
- Shared model: :mod:`~jmap_twisted.store.backends` (choosing and opening a
  backend), :mod:`~jmap_twisted.store.changelog` (the change log and
  ``Foo/changes``), :mod:`~jmap_twisted.store.mailmodel` (role mailboxes,
  threading, counts), :mod:`~jmap_twisted.store.quota` (quota usage and
  limits), :mod:`~jmap_twisted.store.mailquery` (the reference
  ``Email/query`` semantics), :mod:`~jmap_twisted.store.summary` (what is
  derived from a message when stored), :mod:`~jmap_twisted.store.ids`
  (identifiers).
"""
