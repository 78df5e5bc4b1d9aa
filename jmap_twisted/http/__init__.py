"""
twisted.web front end of the HTTP API (RFC 8620).

- :mod:`~jmap_twisted.http.site`: the :class:`~twisted.web.server.Site` with
  bounded request bodies and an access log that never shows secrets.
- :mod:`~jmap_twisted.http.problem`: JSON and problem-details responses.
- :mod:`~jmap_twisted.http.auth`: credentials from a request, and 401s.
- :mod:`~jmap_twisted.http.resources`: the session, API, upload and
  download resources.
- :mod:`~jmap_twisted.http.demo`: the live-inbox demo page's static files
  (``--demo``).

Resources only translate between HTTP and calls into
:mod:`jmap_twisted.core`; no JMAP semantics live here.
"""
