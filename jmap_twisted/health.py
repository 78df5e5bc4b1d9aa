# -*- test-case-name: tests.test_health -*-
"""
Health endpoints for load balancers and orchestrators, unauthenticated
and cheap: ``/healthz/live`` answers 200 while the process serves HTTP;
``/healthz/ready`` answers 200 when the server can do its work (its life
cycle started, so its listeners are bound; the store answers a trivial
query within :data:`STORE_TIMEOUT`; the broker connected, when there is
one), and 503 with a small JSON body naming what is not ready otherwise.

The store is asked at most once per :data:`STORE_CACHE` seconds however
many probes come: probes in between share the last answer (or the query in
flight).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer

log = Logger()

#: Seconds the store may take to answer the readiness query.
STORE_TIMEOUT = 2.0
#: Seconds one answer of the store stands for.
STORE_CACHE = 1.0


class StoreProbe:
    """
    Whether the store answers, asked at most once per ``cache`` seconds.

    :param server: whose directory is asked (its access version: one
        trivial query).
    """

    def __init__(
        self, server: JMAPServer, timeout: float = STORE_TIMEOUT, cache: float = STORE_CACHE
    ) -> None:
        self._server = server
        self._timeout = timeout
        self._cache = cache
        self._answer = False
        self._asked_at: float | None = None
        self._asking: Deferred[bool] | None = None

    def ready(self) -> Deferred[bool]:
        """
        Whether the store answered the latest query in time.
        """
        clock = self._server.reactor
        if self._asking is not None:
            return _share(self._asking)
        if self._asked_at is not None and clock.seconds() - self._asked_at < self._cache:
            return succeed(self._answer)
        self._asked_at = clock.seconds()
        asking = Deferred.fromCoroutine(self._ask())
        self._asking = asking
        return _share(asking)

    async def _ask(self) -> bool:
        clock = self._server.reactor
        query: Deferred[int] = self._server.directory.access_version()
        query.addTimeout(self._timeout, clock)
        try:
            await query
        except Exception as e:
            log.warn("The store is not ready: {error!r}", error=e)
            answer = False
        else:
            answer = True
        self._answer = answer
        self._asked_at = clock.seconds()
        self._asking = None
        return answer


def _share(asking: Deferred[bool]) -> Deferred[bool]:
    """
    A Deferred of the same answer, leaving ``asking`` untouched.
    """
    shared: Deferred[bool] = Deferred()

    def tell(answer: bool) -> bool:
        shared.callback(answer)
        return answer

    asking.addCallback(tell)
    return shared


class HealthResource(Resource):
    """
    ``/healthz/``: ``live`` and ``ready`` (see the module's docstring).
    """

    def __init__(self, server: JMAPServer) -> None:
        super().__init__()
        self.putChild(b"live", _Live())
        self.putChild(b"ready", _Ready(server))

    def getChild(self, path: bytes, request: Any) -> IResource:
        return notFound()


def _answer(request: Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, separators=(",", ":")).encode()


class _Live(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return _answer(request, 200, {"status": "live"})

    render_HEAD = render_GET


class _Ready(Resource):
    isLeaf = True

    def __init__(self, server: JMAPServer) -> None:
        super().__init__()
        self._server = server
        self._store = StoreProbe(server)

    def render_GET(self, request: Request) -> int:
        checking = Deferred.fromCoroutine(self._not_ready())

        def done(missing: list[str]) -> None:
            if request.finished or request.channel is None:
                return  # the prober went away
            if missing:
                body = _answer(request, 503, {"status": "not ready", "notReady": missing})
            else:
                body = _answer(request, 200, {"status": "ready"})
            request.write(body)
            request.finish()

        def failed(failure: Any) -> list[str]:
            log.failure("Readiness check failed", failure)
            return ["check"]

        checking.addErrback(failed)
        checking.addCallback(done)
        checking.addErrback(lambda f: log.failure("Could not answer a readiness probe", f))
        return NOT_DONE_YET

    render_HEAD = render_GET

    async def _not_ready(self) -> list[str]:
        """
        The names of what is not ready: ``service`` (the life cycle has not
        started or is stopping), ``store``, ``broker``.
        """
        server = self._server
        missing = []
        if not server.running:
            missing.append("service")
        if not await self._store.ready():
            missing.append("store")
        connector = server.connector
        if connector is not None and not getattr(connector, "connected", False):
            missing.append("broker")
        return missing
