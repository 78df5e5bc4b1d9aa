"""
The HTTP API's resources: session (RFC 8620 §2), API endpoint (§3.1),
upload (§6.1) and download (§6.2).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from jmap_twisted.auth.throttle import LoginRefused
from jmap_twisted.core import jsonio
from jmap_twisted.core.request import is_id
from jmap_twisted.core.session import session_object
from jmap_twisted.errors import LimitExceeded, NotJSON, RequestLevelError
from jmap_twisted.http.auth import (
    CredentialProbe,
    credential_origin,
    credentials_from_request,
    login,
    login_with_probe,
    stamped_origin,
    write_refused,
    write_unauthorized,
)
from jmap_twisted.http.problem import write_json, write_problem, write_status
from jmap_twisted.interfaces import IPrincipal
from jmap_twisted.methods.access import find_account, may_upload, uploads_account
from jmap_twisted.methods.standard import utc_date
from jmap_twisted.origins import origin_of

if TYPE_CHECKING:
    from jmap_twisted.push.tickets import Hold
    from jmap_twisted.server import JMAPServer

log = Logger()

_HOST = re.compile(rb"[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*\Z")

#: CORS response headers for an allowed origin (the origin itself and the
#: resource's methods are added per request).
CORS_HEADERS = {
    b"Access-Control-Allow-Headers": b"Authorization, Content-Type, Accept, Last-Event-ID",
    b"Access-Control-Max-Age": b"86400",
}


def origin_allowed(server: JMAPServer, request: IRequest) -> bool:
    """
    Whether a browser page of the request's ``Origin`` may use the server
    with the user's credentials: the server's own origin (its public URL,
    or the request's scheme and ``Host``) or one of ``--allowed-origin``.
    A request without ``Origin`` (a native client) is allowed.
    """
    header = request.getHeader(b"origin")
    if header is None:
        return True
    try:
        origin = origin_of(header.decode("ascii"))
        own = origin_of(base_url(server, request))
    except (UnicodeDecodeError, ValueError):
        return False
    return origin == own or origin in server.config.allowed_origins


def base_url(server: JMAPServer, request: IRequest) -> str:
    """
    The scheme and authority clients should use: the configured public URL,
    or else the request's own scheme and ``Host``.

    :raises ValueError: the ``Host`` header is malformed.
    """
    if server.config.public_url:
        return server.config.public_url.rstrip("/")
    host = request.getHeader(b"host")
    if host is None:
        address = request.getHost()
        host = f"{address.host}:{address.port}".encode()
    if not _HOST.match(host):
        raise ValueError("malformed Host header")
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host.decode('ascii')}"


class JMAPResource(Resource):
    """
    Base of the JMAP resources: CORS, allowed methods, authentication, and
    one place mapping failures to responses.  Subclasses implement
    :meth:`handle` as a coroutine.
    """

    isLeaf = True
    allowed_methods: tuple[bytes, ...] = (b"GET",)

    #: The body limit this resource enforces (``maxSizeRequest`` or
    #: ``maxSizeUpload``), whatever site it runs in.
    body_limit_name = "maxSizeRequest"

    def __init__(self, server: JMAPServer) -> None:
        super().__init__()
        self.jmap = server

    def render(self, request: Request) -> Any:
        origin = request.getHeader(b"origin")
        request.setHeader(b"Vary", b"Origin")
        if origin is not None and origin_allowed(self.jmap, request):
            # The origin itself, never "*": requests carry credentials.
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(
                b"Access-Control-Allow-Methods", b", ".join((*self.allowed_methods, b"OPTIONS"))
            )
            for name, value in CORS_HEADERS.items():
                request.setHeader(name, value)
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Allow", b", ".join((*self.allowed_methods, b"OPTIONS")))
            return b""
        if request.method not in self.allowed_methods:
            request.setHeader(b"Allow", b", ".join((*self.allowed_methods, b"OPTIONS")))
            write_status(request, 405, "Method not allowed.")
            return NOT_DONE_YET
        serving = Deferred.fromCoroutine(self._serve(request))
        request.notifyFinish().addErrback(lambda _: serving.cancel())
        return NOT_DONE_YET

    def _body_too_large(self, request: Request) -> LimitExceeded | None:
        # A site of the embedder's reads the whole body before the
        # resource runs; the limit still holds (this project's own site
        # refuses it before reading, see jmap_twisted.http.site).
        content = request.content
        if content is None:
            return None
        limits = self.jmap.config.limits
        limit = (
            limits.max_size_upload
            if self.body_limit_name == "maxSizeUpload"
            else limits.max_size_request
        )
        position = content.tell()
        size = content.seek(0, 2)
        content.seek(position)
        if size <= limit:
            return None
        return LimitExceeded(
            self.body_limit_name, f"The body exceeds {self.body_limit_name} ({limit} octets)."
        )

    async def _serve(self, request: Request) -> None:
        try:
            too_large = self._body_too_large(request)
            if too_large is not None:
                status = 413 if self.body_limit_name == "maxSizeUpload" else too_large.status
                write_problem(request, too_large, status=status)
                return
            await self.handle(request)
        except CancelledError:
            return  # the client went away
        except UnauthorizedLogin:
            write_unauthorized(request)
        except LoginRefused as refused:
            write_refused(request, refused)
        except RequestLevelError as error:
            write_problem(request, error)
        except Exception:
            log.failure("Unexpected failure serving {path}", path=request.path)
            if not request.finished and not request._disconnected:
                write_status(request, 500, "The server failed; it has logged why.")

    async def handle(self, request: IRequest) -> None:
        """
        Serve an allowed request.
        """
        raise NotImplementedError

    async def push_login(
        self, request: IRequest, stream: bool = False
    ) -> tuple[IPrincipal, CredentialProbe, int | None, Hold | None] | None:
        """
        Authenticate a request that opens a push connection (WebSocket or
        EventSource): the principal, the probe that re-checks its
        credentials, the access version seen before logging in, and for a
        stream opened with a ticket, its hold on the ticket (released by
        the stream when it ends).  ``None`` when the request was answered
        instead: the user already holds as many push connections as
        allowed (429, before any handshake), or the client went away.

        :param stream: the connection is an EventSource stream.
        """
        if not origin_allowed(self.jmap, request):
            # Cross-site WebSocket hijacking: a page of another origin must
            # not open a push connection with the browser's credentials.
            write_status(request, 403, "This origin may not open push connections here.")
            return None
        seen = self.jmap.access.version_seen
        tickets = self.jmap.tickets
        principal, probe, hold = await login_with_probe(
            self.jmap.portal,
            self.jmap.directory,
            request,
            tickets if stream else None,
            clock=self.jmap.reactor,
        )
        admitted = self._admit_push(request, principal)
        if not admitted and hold is not None:
            tickets.release_later(hold)
        return (principal, probe, seen, hold) if admitted else None

    def _admit_push(self, request: IRequest, principal: IPrincipal) -> bool:
        """
        Whether a logged-in push connection may open now; when not, the
        request is answered (or gone).
        """
        if request.finished or request._disconnected:  # type: ignore[attr-defined]
            return False
        if not self.jmap.pushes():
            write_status(
                request,
                503,
                "Push is off: this server's life cycle has not been started.",
            )
            return False
        connections = self.jmap.push_connections
        if connections.full(principal.user.id):
            write_status(
                request,
                429,
                f"At most {connections.per_user} push connections may be open at once "
                "for one user; close one first.",
            )
            return False
        return True


class SessionResource(JMAPResource):
    """
    ``GET …/session`` and ``GET /.well-known/jmap``: the Session object,
    with URLs below where the JMAP tree is mounted.

    :param mount: the path of the JMAP tree, for a session resource
        reached from outside it (``/.well-known/jmap``).
    """

    def __init__(self, server: JMAPServer, mount: bytes = b"") -> None:
        super().__init__(server)
        self.mount = mount

    async def handle(self, request: IRequest) -> None:
        principal = await login(self.jmap.portal, request)
        try:
            base = base_url(self.jmap, request)
        except ValueError as e:
            write_status(request, 400, str(e))
            return
        mount = getattr(request, "jmap_mount", None) or self.mount
        write_json(
            request,
            session_object(
                principal,
                self.jmap.registry,
                base + mount.decode("ascii"),
                push=self.jmap.pushes(),
            ),
        )


class APIResource(JMAPResource):
    """
    ``POST`` API requests (RFC 8620 §3.1).
    """

    allowed_methods = (b"POST",)

    async def handle(self, request: IRequest) -> None:
        principal = await login(self.jmap.portal, request)
        # Only JSON: a cross-site form or a no-CORS fetch can send a body
        # without a type or of a "simple" type with a browser's cached
        # credentials, but not application/json.
        content_type = request.getHeader(b"content-type") or b""
        media = content_type.split(b";")[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1")[:60] or "missing"
            raise NotJSON(f"The request's Content-Type must be application/json, not {shown!r}.")
        body = request.content.read()
        response = await self.jmap.runner.run(principal, jsonio.loads(body))
        write_json(request, response)


class UploadResource(JMAPResource):
    """
    ``POST /jmap/upload/{accountId}/``: store a blob (RFC 8620 §6.1).  A
    sharee uploads for a shared account if they may add emails to one of
    its mailboxes (else ``403``); the blob is kept in their personal
    account, where the methods find it for them.
    """

    allowed_methods = (b"POST",)
    body_limit_name = "maxSizeUpload"

    async def handle(self, request: IRequest) -> None:
        principal = await login(self.jmap.portal, request)
        account_id = request.postpath[0].decode("utf-8", "replace") if request.postpath else ""
        account = find_account(principal, account_id)
        if account is None:
            write_status(request, 404, "No such account.")
            return
        target = uploads_account(account, principal)
        if target is None or not may_upload(account):
            write_status(
                request, 403, "Uploading needs the right mayAddItems on a mailbox of the account."
            )
            return
        # Taken on the headers, before the body was read (see admit_body).
        release = getattr(request, "upload_slot", None)
        if release is None:
            try:
                release = self.jmap.upload_limiter.try_acquire(principal.user.id)
            except LimitExceeded as error:
                write_problem(request, error, status=429)
                return
        try:
            media_type = _media_type(request.getHeader(b"content-type"))
            data = request.content.read()
            blob = await self.jmap.blobs.put(target, data, media_type)
        finally:
            release()
        write_json(
            request,
            {
                "accountId": account.id,
                "blobId": blob.blob_id,
                "type": blob.type,
                "size": blob.size,
            },
            status=201,
        )


class DownloadResource(JMAPResource):
    """
    ``GET /jmap/download/{accountId}/{blobId}/{name}?type={type}`` (RFC 8620
    §6.2).  Another account's blob is indistinguishable from a missing one,
    and so is, in a sharee's view of an account, one of an email they may
    not read.
    """

    allowed_methods = (b"GET", b"HEAD")

    async def handle(self, request: IRequest) -> None:
        principal = await login(self.jmap.portal, request)
        if len(request.postpath) != 3:
            write_status(request, 404, "Use /jmap/download/{accountId}/{blobId}/{name}.")
            return
        account_id, blob_id, raw_name = request.postpath
        try:
            name = raw_name.decode("utf-8")
            account = account_id.decode("ascii")
            blob_key = blob_id.decode("ascii")
        except UnicodeDecodeError:
            write_status(request, 404, "No such blob.")
            return
        found = None
        if is_id(blob_key):
            found = await self.jmap.blob_resolver.download(principal, account, blob_key)
        if found is None:
            write_status(request, 404, "No such blob.")
            return
        data, _ = found
        requested = request.args.get(b"type", [b""])[0].decode("utf-8", "replace")
        media_type = requested if _MEDIA_TYPE.match(requested) else "application/octet-stream"
        request.setHeader(b"Content-Type", media_type.encode("ascii"))
        request.setHeader(b"Content-Disposition", content_disposition(name).encode("ascii"))
        request.setHeader(b"Content-Length", b"%d" % len(data))
        request.setHeader(b"Cache-Control", b"private, immutable, max-age=31536000")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Content-Security-Policy", b"sandbox")
        if request.method != b"HEAD":
            request.write(data)
        request.finish()


def _media_type(header: bytes | None) -> str:
    if not header:
        return "application/octet-stream"
    text = header.decode("latin-1").strip()
    media = text.split(";")[0].strip()
    if not _MEDIA_TYPE.match(media) or "\r" in text or "\n" in text:
        return "application/octet-stream"
    return text


def content_disposition(name: str) -> str:
    """
    A ``Content-Disposition`` value (RFC 6266) naming a download: an ASCII
    fallback plus the exact UTF-8 name (RFC 8187).
    """
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class TicketResource(JMAPResource):
    """
    ``POST /jmap/ticket``: a ticket for ``?ticket=`` on the WebSocket URL
    (once) or the EventSource URL (that stream and its reconnects);
    ``DELETE /jmap/ticket/{value}`` revokes one.
    """

    allowed_methods = (b"POST", b"DELETE")

    async def handle(self, request: IRequest) -> None:
        # What the asking credentials rest on goes with the ticket, so the
        # connection it opens closes when they are revoked (or expire: an
        # OpenID Connect token's checker says what it rests on).
        origin = await credential_origin(self.jmap.directory, credentials_from_request(request))
        principal = await login(self.jmap.portal, request)
        origin = stamped_origin(request) or origin
        tickets = self.jmap.tickets
        if request.method == b"DELETE":
            value = request.postpath[0].decode("utf-8", "replace") if request.postpath else ""
            if not await tickets.revoke(value, principal.user.id):
                write_status(request, 404, "No such ticket.")
                return
            request.setResponseCode(204)
            request.finish()
            return
        address = request.getClientAddress()
        value, expires = await tickets.issue(
            principal.user.id, getattr(address, "host", None), origin
        )
        write_json(
            request,
            {
                "value": value,
                "validUntil": utc_date(expires),
                "username": principal.user.username,
                "clientAddress": getattr(address, "host", None),
                "generatedOn": utc_date(self.jmap.reactor.seconds()),
            },
            status=201,
        )
