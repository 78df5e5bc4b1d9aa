"""
A service that listens on an endpoint while it runs.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class ListeningService(Service):
    """
    Listens on an endpoint while running, and stops listening when stopped.

    A failure to listen is logged and stops the whole process: a server
    that cannot take connections should not pretend to run.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def startService(self) -> None:
        super().startService()
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallback(self._listened)
        self._listening.addErrback(self._failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def _failed(self, failure: Failure) -> None:
        log.failure("Cannot listen on {endpoint}", failure, endpoint=self.endpoint)
        raise SystemExit(1)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return port.stopListening()
