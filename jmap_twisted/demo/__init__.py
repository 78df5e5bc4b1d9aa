"""
The live-inbox demo page (``twistd jmap --demo``), shipped as package data
and served at ``/demo/`` by :mod:`jmap_twisted.http.demo`:

- ``index.html``: the page (a sign-in form, the connection's state, the
  inbox);
- ``demo.js``: the example browser client (session, ticket, RFC 8887
  WebSocket, push and resync), plain JavaScript without a build step;
- ``demo.css``: its styles.
"""
