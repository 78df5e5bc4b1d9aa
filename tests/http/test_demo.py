"""
``/demo/`` (``--demo``): the live-inbox page's files, in memory through
StubTreq.  The page itself runs in Chromium in ``tests/browser``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from jmap_twisted.config import ServerConfig
from jmap_twisted.http.demo import FILES
from jmap_twisted.store.memory.directory import MemoryBlobStore, MemoryDirectory
from jmap_twisted.store.memory.mail import MemoryMailStore
from tests.support import ImmediateReactor, jmap_service

BASE = "http://jmap.example:8080"

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self' ws://jmap.example:8080; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def site(**config: object) -> Any:
    reactor = ImmediateReactor()
    service = jmap_service(
        ServerConfig(password_cost=2**4, **config),  # type: ignore[arg-type]
        MemoryDirectory(reactor),
        MemoryBlobStore(reactor),
        MemoryMailStore(reactor),
        reactor,
    )
    return StubTreq(service.site.resource)


@pytest_twisted.ensureDeferred
async def test_without_the_option_there_is_no_page() -> None:
    """
    By default ``/demo`` and ``/demo/`` do not exist.
    """
    treq = site()
    for path in ("/demo", "/demo/", "/demo/demo.js"):
        assert (await treq.get(BASE + path)).code == 404


@pytest_twisted.ensureDeferred
async def test_the_page_and_its_files_with_exact_types_and_policy() -> None:
    """
    ``/demo/`` is the page, ``demo.js`` and ``demo.css`` its script and
    styles, each the package's file with its exact type, no sniffing, and
    a policy letting the page load only its own files and connect only to
    this server and its WebSocket.
    """
    treq = site(demo=True)
    package = files("jmap_twisted.demo")
    for path, name, media_type in [
        ("/demo/", "index.html", "text/html; charset=utf-8"),
        ("/demo/demo.js", "demo.js", "text/javascript; charset=utf-8"),
        ("/demo/demo.css", "demo.css", "text/css; charset=utf-8"),
    ]:
        response = await treq.get(BASE + path)
        assert response.code == 200, path
        assert response.headers.getRawHeaders("content-type") == [media_type]
        assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]
        assert response.headers.getRawHeaders("content-security-policy") == [POLICY]
        assert await response.content() == package.joinpath(name).read_bytes()
    assert {name for name, _ in FILES.values()} == {"index.html", "demo.js", "demo.css"}


@pytest_twisted.ensureDeferred
async def test_a_public_https_url_makes_the_socket_origin_wss() -> None:
    """
    Behind ``--public-url https://…`` the page may connect to ``wss:`` on
    that host, not ``ws:``.
    """
    treq = site(demo=True, public_url="https://mail.example.com")
    response = await treq.get(BASE + "/demo/")
    (policy,) = response.headers.getRawHeaders("content-security-policy")
    assert "connect-src 'self' wss://mail.example.com;" in policy


@pytest_twisted.ensureDeferred
async def test_demo_redirects_to_the_directory() -> None:
    """
    ``/demo`` redirects to ``/demo/``, whose relative URLs the page uses.
    """
    response = await site(demo=True).get(BASE + "/demo", allow_redirects=False)
    assert response.code == 302
    assert response.headers.getRawHeaders("location") == ["demo/"]


@pytest_twisted.ensureDeferred
async def test_head_and_other_methods() -> None:
    """
    HEAD gives the headers without the body; other methods get 405.
    """
    treq = site(demo=True)
    head = await treq.head(BASE + "/demo/demo.js")
    assert head.code == 200
    assert head.headers.getRawHeaders("content-type") == ["text/javascript; charset=utf-8"]
    assert await head.content() == b""
    post = await treq.post(BASE + "/demo/", data=b"x")
    assert post.code == 405
    assert post.headers.getRawHeaders("allow") == ["GET, HEAD"]


@pytest.mark.parametrize(
    "path",
    [
        "/demo/__init__.py",
        "/demo/index.htm",
        "/demo/../setup.cfg",
        "/demo/../jmap/session",
        "/demo/..%2F..%2Fsetup.cfg",
        "/demo/%2e%2e/web.py",
        "/demo/..%2f__init__.py",
        "/demo/sub/demo.js",
        "/demo//demo.js",
        "/demo/demo.js/",
        "/demo/DEMO.JS",
        "/demo/demo.js%00.py",
    ],
)
@pytest_twisted.ensureDeferred
async def test_nothing_else_is_served(path: str) -> None:
    """
    No listing and no other file: any other path below ``/demo/``,
    traversals and encoded separators included, is 404 and shows no file.
    """
    response = await site(demo=True).get(BASE + path)
    assert response.code == 404
    assert response.headers.getRawHeaders("content-type") == ["application/problem+json"]
    body = await response.content()
    assert b"import" not in body and b"[metadata]" not in body
