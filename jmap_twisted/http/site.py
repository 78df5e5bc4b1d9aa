"""
The HTTP site: request bodies bounded as they arrive, and an access log
without secrets.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from jmap_twisted.auth.throttle import LoginRefused
from jmap_twisted.core import jsonio
from jmap_twisted.errors import LimitExceeded, RequestLevelError
from jmap_twisted.http.auth import CHALLENGES

log = Logger()

#: Query parameters whose values never reach a log.
SECRET_PARAMETERS = frozenset({b"access_token", b"ticket", b"token", b"code", b"id_token"})
#: Path segments after which the rest of the path is a secret (the ticket
#: revocation endpoint takes the ticket in its path).
SECRET_PATH_AFTER = frozenset({b"ticket"})
#: Octets of a URI, ``Referer`` or ``User-Agent`` kept in a log line.
MAX_LOGGED = 256

#: Given a request path, the largest body accepted for it and the limit's
#: name in the session.
BodyLimit = Callable[[bytes], tuple[int, str]]


def _redact_pair(pair: bytes) -> bytes:
    key, equals, _ = pair.partition(b"=")
    if unquote_to_bytes(key.replace(b"+", b" ")).lower() in SECRET_PARAMETERS:
        return key + equals + b"REDACTED"
    return pair


def _redact_path(path: bytes) -> bytes:
    segments = path.split(b"/")
    for index, segment in enumerate(segments[:-1]):
        if unquote_to_bytes(segment).lower() in SECRET_PATH_AFTER:
            return b"/".join([*segments[: index + 1], b"REDACTED"])
    return path


def redact_uri(uri: bytes) -> bytes:
    """
    The URI (or the URL of a ``Referer``) with its secrets replaced: the
    values of :data:`SECRET_PARAMETERS`, whatever octets the query holds,
    what follows a segment of :data:`SECRET_PATH_AFTER`, and any fragment.
    """
    uri = uri.partition(b"#")[0]
    path, sep, query = uri.partition(b"?")
    path = _redact_path(path)
    if not sep:
        return path
    return path + b"?" + b"&".join(_redact_pair(pair) for pair in query.split(b"&"))


def _loggable(value: bytes | None) -> str:
    if not value:
        return "-"
    # repr escapes control octets, backslashes and non-ASCII octets.
    text = repr(value[:MAX_LOGGED])[2:-1].replace("\\'", "'").replace('"', '\\"')
    return text + ("..." if len(value) > MAX_LOGGED else "")


def redacting_log_formatter(timestamp: str, request: IRequest) -> str:
    """
    Twisted's combined log format, with secrets redacted (query values,
    ticket paths, the ``Referer``'s too), every field escaped and cut to
    :data:`MAX_LOGGED` octets.  It never raises: a request that cannot be
    described is logged as such rather than break its connection.
    """
    try:
        seen: Any = request
        address = request.getClientAddress()
        host = getattr(address, "host", None) or "-"
        referrer = request.getHeader(b"referer")
        return '"{}" - - {} "{} {} {}" {} {} "{}" "{}"'.format(
            _loggable(host.encode("ascii", "replace")),
            timestamp,
            _loggable(request.method),
            _loggable(redact_uri(request.uri)),
            _loggable(seen.clientproto),
            int(seen.code),
            int(seen.sentLength or 0) or "-",
            _loggable(redact_uri(referrer) if referrer else None),
            _loggable(request.getHeader(b"user-agent")),
        )
    except Exception:
        log.failure("Could not describe a request for the access log")
        return f'"-" - - {timestamp} "-" - - "-" "-"'


class BoundedRequest(Request):
    """
    A request whose body may not exceed the limit its site sets for its path,
    and whose body is read only from a client that logged in.

    A body declared larger than the limit is refused as soon as the headers
    are in; one that grows past it while streaming is refused when it
    crosses it.  Either way the server answers with a ``limit`` problem and
    closes the connection without reading the rest.

    When the site has an ``admit_body`` check, a request with a body is
    authenticated on its headers, with the connection paused, before any
    more of the body is read (an anonymous client cannot make the server
    spool uploads); the check may also take slots (concurrent uploads) and
    leaves the principal on the request as ``admitted_principal``.
    """

    admitted_principal: object = None
    _admitting: Deferred[None] | None = None
    _received: tuple[bytes, bytes, bytes] | None = None

    def gotLength(self, length: int | None) -> None:
        site = cast(Any, self.channel).site
        # The channel parses the request line before the headers; the
        # request object itself learns its path only once the body is in.
        path = getattr(self.channel, "_path", b"/")
        self._body_limit, self._limit_name = site.body_limit(path)
        self._body_received = 0
        self._refused = False
        super().gotLength(length)
        if length is not None and length > self._body_limit:
            self._refuse_limit()
            return
        admit = getattr(site, "admit_body", None)
        if admit is not None and length != 0:
            self._admit(admit, path)

    def _admit(self, admit: Callable[[Request, bytes], Deferred[None]], path: bytes) -> None:
        transport: Any = self.channel.transport
        transport.pauseProducing()
        admitting = admit(self, path)
        self._admitting = admitting
        admitting.addCallbacks(self._admitted, self._not_admitted)
        self.notifyFinish().addErrback(lambda _: admitting.cancel())

    def _admitted(self, _: object) -> None:
        self._admitting = None
        if self._refused or self._disconnected:
            return
        transport: Any = self.channel.transport
        if transport is not None:
            transport.resumeProducing()
        if self._received is not None:
            received, self._received = self._received, None
            super().requestReceived(*received)

    def _not_admitted(self, failure: Failure) -> None:
        self._admitting = None
        if self._disconnected or failure.check(CancelledError):
            return
        status, headers, problem = refusal(failure)
        self._refuse(status, headers, problem)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "_refused", False):
            return  # already answered with the limit problem; connection closing
        if self._admitting is not None:
            self._received = (command, path, version)  # once admitted
            return
        super().requestReceived(command, path, version)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body_received += len(data)
        if self._body_received > self._body_limit:
            self._refuse_limit()
            return
        super().handleContentChunk(data)

    def _refuse_limit(self) -> None:
        error = LimitExceeded(
            self._limit_name,
            f"The body exceeds {self._limit_name} ({self._body_limit} octets).",
        )
        status = 413 if self._limit_name == "maxSizeUpload" else error.status
        self._refuse(status, [], dict(error.to_problem(), status=status))

    def _refuse(self, status: int, headers: list[bytes], problem: dict[str, Any]) -> None:
        self._refused = True
        # Drop what was received; a fresh empty body keeps later calls (the
        # channel may still deliver the end of the request) harmless.
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()
        body = jsonio.dumps(problem)
        transport: Any = self.channel.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, RESPONSES.get(status, b"Refused"))
            + b"".join(header + b"\r\n" for header in headers)
            + b"Content-Type: application/problem+json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )
        transport.resumeProducing()
        transport.loseConnection()


def refusal(failure: Failure) -> tuple[int, list[bytes], dict[str, Any]]:
    """
    The status, extra header lines and problem document refusing a request
    before its body is read, for why it was refused.
    """
    if failure.check(UnauthorizedLogin):
        challenges = [b"WWW-Authenticate: " + challenge for challenge in CHALLENGES]
        detail = "Authentication is required: use Basic or Bearer credentials."
        return 401, challenges, {"type": "about:blank", "status": 401, "detail": detail}
    refused = failure.check(LoginRefused)
    if refused is not None:
        error = cast(LoginRefused, failure.value)
        detail = (
            "Too many login attempts: retry later."
            if error.status == 429
            else "The server is busy checking credentials: retry later."
        )
        problem = {"type": "about:blank", "status": error.status, "detail": detail}
        return error.status, [b"Retry-After: %d" % error.retry_after], problem
    if failure.check(LimitExceeded):
        limit = cast(LimitExceeded, failure.value)
        status = 429 if limit.to_problem().get("limit") == "maxConcurrentUpload" else limit.status
        return status, [], dict(limit.to_problem(), status=status)
    if failure.check(RequestLevelError):
        request_error = cast(RequestLevelError, failure.value)
        return request_error.status, [], request_error.to_problem()
    log.failure("Could not admit a request", failure)
    return 500, [], {"type": "about:blank", "status": 500, "detail": "The server failed."}


class JMAPSite(Site):
    """
    The site serving the JMAP resources.

    :param body_limit: the body limit for a request path.
    """

    requestFactory = BoundedRequest

    def __init__(
        self,
        resource: IResource,
        body_limit: BodyLimit,
        admit_body: Callable[[Request, bytes], Deferred[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("logFormatter", redacting_log_formatter)
        super().__init__(resource, **kwargs)
        self.body_limit = body_limit
        self.admit_body = admit_body
