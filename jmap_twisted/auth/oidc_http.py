# -*- test-case-name: tests.auth.test_oidc_http -*-
"""
The server's HTTP requests to OpenID Connect providers: discovery
documents (OpenID Connect Discovery 1.0 §4), key sets (RFC 7517 §5) and
token introspection (RFC 7662 §2), each bounded in time and in the size
of the answer read.

Providers are reached over ``https`` only, verified against the system's
certificate authorities and those of an optional PEM file; plain ``http``
is allowed for loopback hosts alone (a provider on the same machine, and
tests).  Redirects are not followed.  Tokens and secrets never reach the
log: a failure is named by the URL's host and its kind.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from jmap_twisted.outbound import BytesBody, tls_policy

if TYPE_CHECKING:
    from jmap_twisted.interfaces import IJMAPReactor

#: Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost"})


class ProviderUnavailable(Exception):
    """
    A provider's answer could not be had or read: no connection, a
    timeout, a status other than 200, too large, or not a JSON object.
    The message names the host, never a token.
    """


def loopback_host(host: str) -> bool:
    """
    Whether a host name or address literal names this machine:
    ``localhost``, ``127.0.0.0/8`` or ``::1``.
    """
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_provider_url(url: str) -> str:
    """
    Refuse a provider URL (an issuer, a key set, an introspection
    endpoint) the server may not fetch: anything but ``https``, except
    ``http`` on a loopback host; one without a host; one with user info
    or a fragment.

    :return: the URL, unchanged.
    :raises ValueError: saying why it is refused.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a malformed port)
    except ValueError:
        raise ValueError(f"{url!r} is not a valid URL") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"{url!r} may carry neither user info nor a fragment")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and loopback_host(parts.hostname):
        return url
    raise ValueError(f"{url!r} must be https (plain http only on a loopback host)")


def url_host(url: str) -> str:
    """
    The host of a URL, for the log.
    """
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


class JSONFetcher(Protocol):
    """
    What the verifier needs of HTTP: a JSON object from a URL, and the
    JSON object answering a form.  :class:`AgentFetcher` does it over the
    network; tests give an in-memory one.
    """

    def get_json(self, url: str) -> Deferred[Any]:
        """
        ``GET`` the JSON object at ``url``; fails with
        :class:`ProviderUnavailable`.
        """

    def post_form(self, url: str, form: Mapping[str, str], authorization: str) -> Deferred[Any]:
        """
        ``POST`` a form with an ``Authorization`` header and read the JSON
        object answering it; fails with :class:`ProviderUnavailable`.
        """


class _Collect(StreamProtocol):
    """
    Reads a response body of at most ``limit`` octets; a longer one ends
    the connection and fails.
    """

    def __init__(self, limit: int, host: str) -> None:
        self._limit = limit
        self._host = host
        self._parts: list[bytes] = []
        self._seen = 0
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._seen += len(data)
        if self._seen > self._limit:
            if self.transport is not None:
                self.transport.loseConnection()
            self.done.errback(
                ProviderUnavailable(f"the answer of {self._host} exceeds {self._limit} octets")
            )
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(ProviderUnavailable(f"the answer of {self._host} was cut short"))


class AgentFetcher:
    """
    Fetches from providers with a Twisted :class:`~twisted.web.client.Agent`
    (connections kept open between requests).

    :param reactor: connects, resolves and times out.
    :param ca_file: a PEM file of certificate authorities trusted besides
        the system's, or ``None``.
    :param timeout: seconds one request may take, connecting and reading
        the body included.
    :param max_response: octets of an answer read at most.
    :raises OSError: ``ca_file`` cannot be read.
    :raises ValueError: ``ca_file`` holds no PEM certificate.
    """

    def __init__(
        self,
        reactor: IJMAPReactor,
        ca_file: str | None = None,
        timeout: float = 10.0,
        max_response: int = 512 * 1024,
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._max_response = max_response
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 2
        self._pool.cachedConnectionTimeout = 120
        self._agent = Agent(
            reactor, contextFactory=tls_policy(ca_file), connectTimeout=timeout, pool=self._pool
        )

    def get_json(self, url: str) -> Deferred[Any]:
        return self._request(b"GET", url, Headers({b"Accept": [b"application/json"]}), None)

    def post_form(self, url: str, form: Mapping[str, str], authorization: str) -> Deferred[Any]:
        headers = Headers(
            {
                b"Accept": [b"application/json"],
                b"Content-Type": [b"application/x-www-form-urlencoded"],
                b"Authorization": [authorization.encode("ascii")],
            }
        )
        return self._request(b"POST", url, headers, urlencode(dict(form)).encode("ascii"))

    def _request(
        self, method: bytes, url: str, headers: Headers, body: bytes | None
    ) -> Deferred[Any]:
        try:
            check_provider_url(url)
            target = url.encode("ascii")
        except (ValueError, UnicodeEncodeError) as e:
            return fail(ProviderUnavailable(str(e)))
        host = url_host(url)
        fetching = Deferred.fromCoroutine(self._fetch(method, target, headers, body, host))
        fetching.addTimeout(self._timeout, self._reactor)

        def unavailable(failure: Failure) -> Failure:
            if failure.check(ProviderUnavailable):
                return failure
            kind = failure.type.__name__ if failure.type is not None else "?"
            return Failure(ProviderUnavailable(f"{host} did not answer: {kind}"))

        return fetching.addErrback(unavailable)

    async def _fetch(
        self, method: bytes, url: bytes, headers: Headers, body: bytes | None, host: str
    ) -> Any:
        response: IResponse = await self._agent.request(
            method, url, headers, BytesBody(body) if body is not None else None
        )
        reader = _Collect(self._max_response, host)
        response.deliverBody(reader)
        data = await reader.done
        if response.code != 200:
            raise ProviderUnavailable(f"{host} answered with status {response.code}")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ProviderUnavailable(f"{host} answered with something other than JSON") from None
        if not isinstance(value, dict):
            raise ProviderUnavailable(f"{host} answered with JSON other than an object")
        return value

    def close(self) -> Deferred[None]:
        """
        Close the connections kept open to providers.
        """
        return self._pool.closeCachedConnections()
