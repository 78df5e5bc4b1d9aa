"""
The HTTP site: request bodies bounded as they arrive, and an access log
without secrets.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from jmap_twisted.core import jsonio
from jmap_twisted.errors import LimitExceeded

#: Query parameters whose values never reach a log.
SECRET_PARAMETERS = frozenset({b"access_token", b"ticket"})

#: Given a request path, the largest body accepted for it and the limit's
#: name in the session.
BodyLimit = Callable[[bytes], tuple[int, str]]


def redact_uri(uri: bytes) -> bytes:
    """
    The URI with the values of :data:`SECRET_PARAMETERS` replaced.
    """
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(key in SECRET_PARAMETERS for key, _ in pairs):
        return uri
    cleaned = [(k, b"REDACTED" if k in SECRET_PARAMETERS else v) for k, v in pairs]
    return path + b"?" + urlencode(cleaned).encode("ascii")


class _RedactedRequest:
    """
    A view of a request for the access log, with its URI redacted.
    """

    def __init__(self, request: IRequest) -> None:
        self._request = request
        self.uri = redact_uri(request.uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def redacting_log_formatter(timestamp: str, request: IRequest) -> str:
    """
    Twisted's combined log format, with secret query parameters redacted.
    """
    return combinedLogFormatter(timestamp, _RedactedRequest(request))


class BoundedRequest(Request):
    """
    A request whose body may not exceed the limit its site sets for its path.

    A body declared larger than the limit is refused as soon as the headers
    are in; one that grows past it while streaming is refused when it
    crosses it.  Either way the server answers with a ``limit`` problem and
    closes the connection without reading the rest.
    """

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
            self._refuse()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "_refused", False):
            return  # already answered with the limit problem; connection closing
        super().requestReceived(command, path, version)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body_received += len(data)
        if self._body_received > self._body_limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        # Drop what was received; a fresh empty body keeps later calls (the
        # channel may still deliver the end of the request) harmless.
        if self.content is not None:
            self.content.close()
        self.content = io.BytesIO()
        error = LimitExceeded(
            self._limit_name,
            f"The body exceeds {self._limit_name} ({self._body_limit} octets).",
        )
        status = 413 if self._limit_name == "maxSizeUpload" else error.status
        problem = dict(error.to_problem(), status=status)
        body = jsonio.dumps(problem)
        transport = self.channel.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 %d Request Too Large\r\n"
            b"Content-Type: application/problem+json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body)) + body
        )
        transport.loseConnection()


class JMAPSite(Site):
    """
    The site serving the JMAP resources.

    :param body_limit: the body limit for a request path.
    """

    requestFactory = BoundedRequest

    def __init__(self, resource: IResource, body_limit: BodyLimit, **kwargs: Any) -> None:
        kwargs.setdefault("logFormatter", redacting_log_formatter)
        super().__init__(resource, **kwargs)
        self.body_limit = body_limit
