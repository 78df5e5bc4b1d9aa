"""
Requests to OpenID providers: only https (plain http on loopback), and
answers bounded in size and time, read as JSON objects, from a real
server on a loopback socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from jmap_twisted.auth.oidc_http import (
    AgentFetcher,
    ProviderUnavailable,
    check_provider_url,
    loopback_host,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://id.example.com",
        "https://id.example.com/realms/mail",
        "http://127.0.0.1:8080",
        "http://127.8.9.10/x",
        "http://localhost:9000",
        "http://[::1]:9000/",
    ],
)
def test_allowed_provider_urls(url: str) -> None:
    assert check_provider_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://id.example.com",
        "http://10.0.0.1",
        "http://localhost.example.com",
        "ftp://id.example.com",
        "https://",
        "https://user:pw@id.example.com",
        "https://id.example.com/#fragment",
        "id.example.com",
        "https://id.example.com:99999",
    ],
)
def test_refused_provider_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_provider_url(url)


def test_loopback_hosts() -> None:
    assert loopback_host("LOCALHOST") and loopback_host("[::1]") and loopback_host("127.0.0.2")
    assert not loopback_host("192.168.1.1") and not loopback_host("example.com")


class Provider(Resource):
    """
    Answers each path as told; records what was posted.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[tuple[bytes, bytes | None, bytes | None]] = []

    def render_GET(self, request: Any) -> Any:
        path = request.path
        if path == b"/ok":
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"issuer": "x"}).encode()
        if path == b"/list":
            return b"[1, 2]"
        if path == b"/text":
            return b"<html>hello</html>"
        if path == b"/missing":
            request.setResponseCode(404)
            return b"{}"
        if path == b"/huge":
            return b'{"a": "' + b"x" * 100_000 + b'"}'
        if path == b"/redirect":
            request.setResponseCode(302)
            request.setHeader(b"Location", b"/ok")
            return b"{}"
        if path == b"/never":
            return NOT_DONE_YET
        request.setResponseCode(500)
        return b""

    def render_POST(self, request: Any) -> bytes:
        self.posted.append(
            (
                request.content.read(),
                request.getHeader(b"authorization"),
                request.getHeader(b"content-type"),
            )
        )
        return json.dumps({"active": True}).encode()


class Served:
    def __init__(self, provider: Provider, port: Any, fetcher: AgentFetcher) -> None:
        self.provider = provider
        self.port = port
        self.fetcher = fetcher
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    async def failure(self, path: str) -> str:
        try:
            await self.fetcher.get_json(self.base + path)
        except ProviderUnavailable as e:
            return str(e)
        raise AssertionError("the fetch did not fail")


@pytest_twisted.async_yield_fixture
async def served() -> AsyncIterator[Served]:
    from twisted.internet import reactor

    provider = Provider()
    port = reactor.listenTCP(0, Site(provider), interface="127.0.0.1")  # type: ignore[attr-defined]
    fetcher = AgentFetcher(reactor, timeout=1.0, max_response=10_000)  # type: ignore[arg-type]
    yield Served(provider, port, fetcher)
    await fetcher.close()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_json_object_fetched(served: Served) -> None:
    assert await served.fetcher.get_json(served.base + "/ok") == {"issuer": "x"}


@pytest_twisted.ensureDeferred
async def test_bad_answers_fail_with_provider_unavailable(served: Served) -> None:
    """
    A status other than 200 (redirects are not followed), a body that is
    not a JSON object, one past the size cap, and no answer in time all
    fail the same way, naming the host only.
    """
    assert "status 404" in await served.failure("/missing")
    assert "status 302" in await served.failure("/redirect")
    assert "other than an object" in await served.failure("/list")
    assert "other than JSON" in await served.failure("/text")
    assert "exceeds 10000 octets" in await served.failure("/huge")
    assert "did not answer" in await served.failure("/never")
    assert "127.0.0.1" in await served.failure("/never")


@pytest_twisted.ensureDeferred
async def test_plain_http_elsewhere_is_never_connected_to(served: Served) -> None:
    failed: list[Any] = []
    attempt: Deferred[Any] = served.fetcher.get_json("http://id.example.com/keys")
    attempt.addErrback(failed.append)
    assert failed and failed[0].check(ProviderUnavailable)


@pytest_twisted.ensureDeferred
async def test_form_posted_with_authorization(served: Served) -> None:
    answer = await served.fetcher.post_form(
        served.base + "/introspect",
        {"token": "t o+k", "token_type_hint": "access_token"},
        "Basic x",
    )
    assert answer == {"active": True}
    ((body, authorization, content_type),) = served.provider.posted
    assert body == b"token=t+o%2Bk&token_type_hint=access_token"
    assert authorization == b"Basic x"
    assert content_type == b"application/x-www-form-urlencoded"
