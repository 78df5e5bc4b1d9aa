"""
The transport-independent JMAP engine (RFC 8620).

- :mod:`~jmap_twisted.core.jsonio`: strict I-JSON parsing and compact output.
- :mod:`~jmap_twisted.core.request`: validation of a Request object.
- :mod:`~jmap_twisted.core.pointer`: JSON Pointer with the JMAP ``*`` extension,
  and result-reference resolution (§3.7).
- :mod:`~jmap_twisted.core.registry`: capabilities and the methods they enable.
- :mod:`~jmap_twisted.core.engine`: runs a Request's method calls.
- :mod:`~jmap_twisted.core.session`: the Session object (§2).
- :mod:`~jmap_twisted.core.limits`: the core capability's limits and the
  per-user concurrency limiter shared by every transport.
"""
