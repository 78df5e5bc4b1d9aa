# -*- test-case-name: tests.test_listening -*-
"""
A service that listens on an endpoint while it runs.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class CannotListen(SystemExit):
    """
    A port could not be bound: the process ends with this message and a
    non-zero status rather than run without it.
    """


class ListeningService(Service):
    """
    Listens on an endpoint while running, and stops listening when stopped.

    Under ``twistd`` the port is bound in :meth:`privilegedStartService`,
    before privileges are dropped (so ``--uid``/``--gid`` and ports below
    1024 work, as with ``StreamServerEndpointService``), and accepts
    connections only from :meth:`startService` on, once the stores are
    open.  A port that cannot be bound stops the process with a clear
    message and a non-zero exit status.  Started without the privileged
    step (embedded, or in tests), it binds in :meth:`startService` and a
    failure is logged as critical.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list[IListeningPort | Failure] = []
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addBoth(outcome.append)
        if not outcome:
            # An endpoint that binds later: handled as in startService.
            self._listening.addCallback(self._listened)
            self._listening.addErrback(self._failed)
            return
        result = outcome[0]
        if isinstance(result, Failure):
            self._listening = None
            raise CannotListen(f"Cannot listen on {_describe(self.endpoint)}: {result.value}")
        self.port = result
        _pause(result)  # until startService: the stores may not be open yet

    def startService(self) -> None:
        super().startService()
        if self.port is not None:
            _resume(self.port)
            return
        if self._listening is not None:
            return  # bound later by the endpoint
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallback(self._listened)
        self._listening.addErrback(self._failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def _failed(self, failure: Failure) -> None:
        log.critical(
            "Cannot listen on {endpoint}: {reason}",
            endpoint=_describe(self.endpoint),
            reason=failure.value,
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return port.stopListening()


def _describe(endpoint: IStreamServerEndpoint) -> str:
    port = getattr(endpoint, "_port", None)
    interface = getattr(endpoint, "_interface", "")
    if port is not None:
        return f"port {port}" + (f" of {interface}" if interface else "")
    return str(endpoint)


def _pause(port: Any) -> None:
    stop = getattr(port, "stopReading", None)
    if stop is not None:
        stop()


def _resume(port: Any) -> None:
    start = getattr(port, "startReading", None)
    if start is not None:
        start()
