"""
JMAP mounted under ``/mail/jmap`` of an existing ``twisted.web`` site, beside
the site's own pages, with the session at ``/.well-known/jmap``.

Run it (it serves http://127.0.0.1:8080/ until interrupted)::

    python docs/examples/embed_web.py /tmp/jmap-example
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Site

from jmap_twisted import (
    JMAPServer,
    JMAPService,
    ServerConfig,
    Stores,
    StoreSettings,
    open_stores,
    resource,
)


class Intranet(Resource):
    """
    The site's own front page.
    """

    isLeaf = True

    def render_GET(self, request: object) -> bytes:
        return b"<h1>The intranet</h1>"


async def build(
    reactor: object, data_dir: Path, config: ServerConfig
) -> tuple[Site, JMAPService, Stores]:
    """
    The site, the JMAP server's life cycle (started: push runs) and the
    stores (to stop after the service: ``await stores.database.stop()``).
    """
    stores = open_stores(StoreSettings(data_dir), reactor)  # type: ignore[arg-type]
    await stores.database.start()
    server = JMAPServer.from_stores(config, stores, reactor)  # type: ignore[arg-type]

    root = Resource()
    root.putChild(b"", Intranet())
    mail = Resource()
    root.putChild(b"mail", mail)
    jmap = resource(server)  # the whole JMAP tree: session, api, upload, ws, ...
    mail.putChild(b"jmap", jmap)
    well_known = Resource()
    well_known.putChild(b"jmap", jmap.well_known(b"/mail/jmap"))
    root.putChild(b".well-known", well_known)

    service = JMAPService(server)  # buses, push, pollers, pruning
    service.startService()
    return Site(root), service, stores


async def main(reactor: object, data_dir: str) -> None:
    site, _service, _stores = await build(reactor, Path(data_dir), ServerConfig())
    await serverFromString(reactor, "tcp:8080:interface=127.0.0.1").listen(site)
    await Deferred()  # serve until interrupted


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
