"""
Which browser origins may use the server with a user's credentials: the
server's own and those of ``--allowed-origin``; CORS answers name the
origin (never ``*``) and each resource's own methods, and push connections
from other origins are refused before any upgrade.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.config import ServerConfig
from jmap_twisted.tap import Options
from tests.http.test_resources import BASE, Harness
from tests.ws.memory import Connection

ELSEWHERE = "https://elsewhere.example"
APP = "https://app.example"
BASIC = {"Authorization": "Basic " + b64encode(b"alice:secret").decode()}


def harness(*allowed: str) -> Harness:
    h = Harness()
    h.service.server.config = ServerConfig(password_cost=2**4, allowed_origins=allowed)
    h.service.startService()
    return h


@pytest_twisted.ensureDeferred
async def test_cors_names_allowed_origins_only() -> None:
    """
    The server's own origin and an allowed one get their origin back with
    ``Vary: Origin``; another origin and a request without ``Origin`` get
    no ``Access-Control-Allow-Origin`` (never ``*``).
    """
    h = harness(APP)
    for origin, expected in ((BASE, [BASE]), (APP, [APP]), (ELSEWHERE, None), (None, None)):
        headers = {"Origin": origin} if origin else {}
        response = await h.treq.request("OPTIONS", BASE + "/jmap/api/", headers=headers)
        assert response.code == 204
        assert response.headers.getRawHeaders("access-control-allow-origin") == expected, origin
        assert response.headers.getRawHeaders("vary") == ["Origin"]


@pytest_twisted.ensureDeferred
async def test_preflights_allow_each_resources_own_methods() -> None:
    """
    The ticket endpoint's preflight allows DELETE (revocation); the API's
    allows POST and not DELETE.
    """
    h = harness()
    ticket = await h.treq.request("OPTIONS", BASE + "/jmap/ticket/x", headers={"Origin": BASE})
    methods = ticket.headers.getRawHeaders("access-control-allow-methods")[0]
    assert "DELETE" in methods and "POST" in methods
    api = await h.treq.request("OPTIONS", BASE + "/jmap/api/", headers={"Origin": BASE})
    methods = api.headers.getRawHeaders("access-control-allow-methods")[0]
    assert "POST" in methods and "DELETE" not in methods


@pytest_twisted.ensureDeferred
async def test_eventsource_from_another_origin_is_refused() -> None:
    """
    An EventSource opened by a page of another origin, with the browser's
    credentials, is refused with 403; from the server's own origin, an
    allowed one, or a native client (no Origin), it opens.
    """
    h = harness(APP)
    url = BASE + "/jmap/eventsource/?types=*&closeafter=state&ping=0"
    refused = await h.treq.get(url, headers={**h.basic(), "Origin": ELSEWHERE})
    assert refused.code == 403
    for origin in (BASE, APP, None):
        headers = {**h.basic(), **({"Origin": origin} if origin else {})}
        opened = await h.treq.get(url, headers=headers, unbuffered=True)
        assert opened.code == 200, origin


@pytest.mark.parametrize(
    ("origin", "allowed", "opens"),
    [
        ("https://elsewhere.example", (), False),
        ("http://jmap.example", (), True),
        ("https://app.example", ("https://app.example",), True),
        (None, (), True),
    ],
)
def test_websocket_upgrade_checks_the_origin(
    origin: str | None, allowed: tuple[str, ...], opens: bool
) -> None:
    """
    Cross-site WebSocket hijacking: a page of another origin cannot open
    the WebSocket with the browser's credentials (403 before the
    handshake); the server's own origin, an allowed one and native clients
    (no Origin) can.
    """
    c = Connection()
    c.service.server.config = ServerConfig(password_cost=2**4, allowed_origins=allowed)
    headers: dict[str, Any] = {"Authorization": "Basic " + b64encode(b"alice:pw").decode()}
    if origin is not None:
        headers["Origin"] = origin
    client = c.connect(headers=headers)
    assert client.opened is opens
    if not opens:
        assert client.handshake.startswith(b"HTTP/1.1 403")


def test_allowed_origin_option_is_checked_and_normalised() -> None:
    """
    ``--allowed-origin`` takes scheme://host[:port] (normalised: lower
    case, default port dropped) and refuses anything else.
    """
    options = Options()
    options.parseOptions(["--allowed-origin", "HTTPS://App.Example:443"])
    assert options.config.allowed_origins == ("https://app.example",)
    from twisted.python import usage

    for bad in ("app.example", "https://app.example/path", "ftp://x", "https://u@x"):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--allowed-origin", bad])
