"""
Push (RFC 8620 §7, RFC 8887): what every push transport shares.

- :mod:`~jmap_twisted.push.subscription`: one connection's subscription to
  StateChanges: registered under the account keys (a sharee's under the
  keys of their views), started with the replay
  of a ``pushState``, following access changes, cancelled.
- :mod:`~jmap_twisted.push.listener`: the per-connection key listener on the
  JMAP bus that filters, coalesces and sends StateChange objects.
- :mod:`~jmap_twisted.push.pushstate`: the ``pushState`` string.
- :mod:`~jmap_twisted.push.connections`: the registry of open push
  connections, counted per user.
- :mod:`~jmap_twisted.push.access`: telling those connections when access
  or credentials change, and the catch-up after a broker outage.
- :mod:`~jmap_twisted.push.tickets`: short-lived single-use tickets for
  browsers, which cannot set an ``Authorization`` header on a WebSocket.
"""
