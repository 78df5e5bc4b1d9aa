"""
JMAP over WebSocket (RFC 8887) with permessage-deflate (RFC 7692).

- :mod:`~jmap_twisted.ws.session`: what one connection does with each
  message (requests, push enable/disable), independent of Autobahn.
- :mod:`~jmap_twisted.ws.protocol`: the thin Autobahn protocol and factory,
  with compression and liveness settings.
- :mod:`~jmap_twisted.ws.liveness`: one timer per factory that pings the
  open sockets and closes those whose peer is gone.
- :mod:`~jmap_twisted.ws.resource`: the twisted.web resource that
  authenticates the upgrade, then hands the connection to Autobahn.
"""
