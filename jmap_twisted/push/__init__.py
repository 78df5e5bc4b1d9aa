"""
Push (RFC 8620 §7, RFC 8887): what every push transport shares.

- :mod:`~jmap_twisted.push.pushstate`: the ``pushState`` string.
- :mod:`~jmap_twisted.push.listener`: the per-connection key listener on the
  JMAP bus that filters, coalesces and sends StateChange objects.
- :mod:`~jmap_twisted.push.tickets`: short-lived single-use tickets for
  browsers, which cannot set an ``Authorization`` header on a WebSocket.
"""
