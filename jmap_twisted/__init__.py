"""
jmap-twisted: a JMAP mail server on Twisted with push over compressed WebSockets.

Packages:

- :mod:`jmap_twisted.core`: the transport-independent JMAP engine (request
  parsing, result references, method dispatch, session objects, limits).
- :mod:`jmap_twisted.methods`: one module per JMAP data type.
- :mod:`jmap_twisted.store`: storage backends (in-memory, SQLite).
- :mod:`jmap_twisted.auth`: twisted.cred checkers, realm and password hashing.
- :mod:`jmap_twisted.http`: twisted.web resources for the HTTP API.

Top-level modules: :mod:`~jmap_twisted.interfaces` (every public zope
interface), :mod:`~jmap_twisted.records` (the immutable values those
interfaces exchange), :mod:`~jmap_twisted.errors` (the JMAP error taxonomy),
:mod:`~jmap_twisted.config` (the frozen configuration),
:mod:`~jmap_twisted.service` (the service object wiring it all),
:mod:`~jmap_twisted.tap` (``twistd jmap``) and :mod:`~jmap_twisted.admin`
(the ``jmap-admin`` command).
"""

__version__ = "0.1.0"
