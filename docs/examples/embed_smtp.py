"""
A plain ``twisted.mail`` ESMTP server delivering into a JMAP server: each
accepted message is stored durably before its ``250``, and clients with
push hear of it at once.

Run it (SMTP on 127.0.0.1:2525, JMAP on http://127.0.0.1:8080/)::

    python docs/examples/embed_smtp.py /tmp/jmap-example
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress
from twisted.internet.task import react
from twisted.mail import smtp

from jmap_twisted import (
    JMAPServer,
    JMAPService,
    ServerConfig,
    Stores,
    StoreSettings,
    message_delivery,
    open_stores,
)


class DeliveringFactory(smtp.SMTPFactory):
    """
    Twisted's own ESMTP protocol, with the JMAP server's delivery.
    """

    protocol = smtp.ESMTP

    def __init__(self, delivery: smtp.IMessageDelivery) -> None:
        super().__init__()
        self.delivery = delivery

    def buildProtocol(self, addr: IAddress) -> smtp.ESMTP:
        protocol = super().buildProtocol(addr)
        protocol.delivery = self.delivery
        return protocol


async def build(
    reactor: object, data_dir: Path, config: ServerConfig
) -> tuple[DeliveringFactory, JMAPService, Stores]:
    """
    The SMTP factory, the JMAP server's life cycle (started) and the stores
    (to stop after the service).
    """
    stores = open_stores(StoreSettings(data_dir), reactor)  # type: ignore[arg-type]
    await stores.database.start()
    server = JMAPServer.from_stores(config, stores, reactor)  # type: ignore[arg-type]
    service = JMAPService(server)
    service.startService()
    factory = DeliveringFactory(message_delivery(server))
    factory.domain = config.hostname.encode("idna")
    return factory, service, stores


async def main(reactor: object, data_dir: str) -> None:
    config = ServerConfig(hostname="mail.example.org", domains=("example.org",))
    factory, service, _stores = await build(reactor, Path(data_dir), config)
    await serverFromString(reactor, "tcp:2525:interface=127.0.0.1").listen(factory)
    await serverFromString(reactor, "tcp:8080:interface=127.0.0.1").listen(service.site)
    await Deferred()  # serve until interrupted


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
