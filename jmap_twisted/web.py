# -*- test-case-name: tests.test_web -*-
"""
The whole JMAP resource tree in one call, mountable under any path of any
``twisted.web`` site (:func:`resource`), and this project's own site around
it (:func:`jmap_site`).

Below the tree's root (RFC 8620 §2 session, §3.1 API, §6.1 upload, §6.2
download, §7.3 EventSource; RFC 8887 WebSocket; the ticket endpoint):
``session``, ``api``, ``upload/{accountId}/``,
``download/{accountId}/{blobId}/{name}``, ``eventsource``, ``ws``,
``ticket``.  The session's URLs follow where the tree is mounted.  Every
limit is enforced by the resources themselves, and the request's URI and
``Referer`` are stripped of secrets on the way in, so whatever site serves
them logs no ticket or token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from jmap_twisted.health import HealthResource
from jmap_twisted.http.auth import login
from jmap_twisted.http.demo import DemoResource
from jmap_twisted.http.eventsource import EventSourceResource
from jmap_twisted.http.resources import (
    APIResource,
    DownloadResource,
    SessionResource,
    TicketResource,
    UploadResource,
)
from jmap_twisted.http.site import JMAPSite, redact_uri
from jmap_twisted.ws.protocol import JMAPWebSocketFactory
from jmap_twisted.ws.resource import WebSocketUpgradeResource

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer

#: Where this project's own site mounts the tree.
MOUNT = b"/jmap"


def redact_request(request: IRequest) -> None:
    """
    Strip the secrets (tickets, tokens) from a request's URI and
    ``Referer``, so that the access log of any site carries none.  The
    resources read their arguments from ``request.args``, parsed before.
    """
    seen: Any = request
    if getattr(seen, "jmap_redacted", False):
        return
    seen.jmap_redacted = True
    seen.uri = redact_uri(seen.uri)
    referer = request.getHeader(b"referer")
    if referer is not None:
        request.requestHeaders.setRawHeaders(b"referer", [redact_uri(referer)])


class _Folder(Resource):
    """
    A resource that only holds children: anything else is a plain 404.
    """

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return notFound()


class JMAPRoot(Resource):
    """
    The root of the JMAP tree (see the module's docstring).  Mount it
    anywhere: ``root.putChild(b"jmap", resource(server))``.

    :ivar websockets: the factory of the tree's WebSocket connections.
    """

    def __init__(self, server: JMAPServer) -> None:
        super().__init__()
        self.jmap = server
        self.websockets = JMAPWebSocketFactory(server, server.config.websocket, server.reactor)
        self.session = SessionResource(server)
        self.putChild(b"session", self.session)
        self.putChild(b"api", APIResource(server))
        self.putChild(b"upload", UploadResource(server))
        self.putChild(b"download", DownloadResource(server))
        self.putChild(b"ticket", TicketResource(server))
        self.putChild(b"eventsource", EventSourceResource(server))
        self.putChild(b"ws", WebSocketUpgradeResource(server, self.websockets))

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        redact_request(request)
        # The tree's own path: what was traversed before this resource.
        seen: Any = request
        seen.jmap_mount = b"/" + b"/".join(request.prepath[:-1])
        if seen.jmap_mount == b"/":
            seen.jmap_mount = b""
        return super().getChildWithDefault(path, request)

    def well_known(self, mount: bytes) -> IResource:
        """
        The resource for ``/.well-known/jmap`` (RFC 8620 §2.2): the session,
        with URLs below ``mount``, the path where this tree is mounted
        (``b"/jmap"``).
        """
        return _Redacting(SessionResource(self.jmap, mount.rstrip(b"/")))


class _Redacting(Resource):
    """
    A leaf resource outside the tree that strips secrets on the way in too.
    """

    isLeaf = True

    def __init__(self, inner: Resource) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: Request) -> Any:
        redact_request(request)
        return self._inner.render(request)


def resource(server: JMAPServer) -> JMAPRoot:
    """
    The complete JMAP resource tree of a server, to mount under any path of
    any ``twisted.web`` site.  Push needs the server's life cycle
    (:class:`~jmap_twisted.service.JMAPService`) to run; without it the
    session says ``supportsPush: false`` and push endpoints answer 503.
    """
    return JMAPRoot(server)


def jmap_site(server: JMAPServer, **kwargs: Any) -> JMAPSite:
    """
    This project's own site: the tree at ``/jmap``, the session at
    ``/.well-known/jmap``, the health probes at ``/healthz/live`` and
    ``/healthz/ready`` (:mod:`jmap_twisted.health`), the live-inbox page at ``/demo/`` when the
    configuration asks for it, request bodies bounded and logged in before
    they are read, an access log without secrets.  ``kwargs`` go to
    :class:`~twisted.web.server.Site`.
    """
    root = _Folder()
    tree = resource(server)
    root.putChild(MOUNT[1:], tree)
    well_known = _Folder()
    well_known.putChild(b"jmap", tree.well_known(MOUNT))
    root.putChild(b".well-known", well_known)
    root.putChild(b"healthz", HealthResource(server))
    if server.config.demo:
        root.putChild(b"demo", DemoResource(server))
    limits = server.config.limits
    upload = MOUNT + b"/upload/"

    def body_limit(path: bytes) -> tuple[int, str]:
        if path.startswith(upload):
            return limits.max_size_upload, "maxSizeUpload"
        return limits.max_size_request, "maxSizeRequest"

    def admit_body(request: Request, path: bytes) -> Deferred[None]:
        return Deferred.fromCoroutine(_admit_body(server, request, path.startswith(upload)))

    kwargs.setdefault("timeout", server.config.connections.idle_timeout)
    site = JMAPSite(root, body_limit, admit_body=admit_body, **kwargs)
    site.jmap = tree  # type: ignore[attr-defined]
    return site


async def _admit_body(server: JMAPServer, request: Request, upload: bool) -> None:
    """
    Log a request with a body in on its headers, before the body is read;
    an upload also takes one of the user's upload slots, held until the
    request ends.
    """
    principal = await login(server.portal, request)
    if upload:
        release = server.upload_limiter.try_acquire(principal.user.id)
        request.notifyFinish().addBoth(lambda _: release())
        request.upload_slot = release  # type: ignore[attr-defined]
    request.admitted_principal = principal  # type: ignore[attr-defined]
