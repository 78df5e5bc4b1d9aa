"""
Fixtures for tests that drive a real browser: headless Chromium through
ChromeDriver and selenium, against the real server on loopback sockets.

``browser``
    a fresh headless Chromium with a profile of its own in ``tmp_path``;
    selenium calls block, so tests make them through :func:`in_browser`
    (a thread) and the reactor keeps serving meanwhile.
``start_demo_server``
    starts ``twistd jmap --demo`` (and any other options) in this process
    with the user ``alice`` (password ``pw``, address
    ``alice@example.com``); ``demo_server`` is one started with no other
    option.
``foreign_origin``
    a second loopback site, of another origin than the server's, serving
    pages (the probe page :data:`PROBE_PAGE` at ``/probe.html``).
``access_log``
    the access log lines the server writes during the test.

Without Chromium, ChromeDriver or selenium these tests skip, except under
CI (environment variable ``CI`` set), where they fail: a CI run must not
pass by skipping them.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from zope.interface import provider

from tests.integration.conftest import RunningServer, start_server
from tests.mailfactory import message

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Chromium's switches: headless, no sandbox (containers), and nothing
#: that talks to the network on its own.
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: Seconds a test waits for the page: generous, for a busy machine.  No
#: test asserts how long anything took.
WAIT = 60.0

USER, PASSWORD, ADDRESS = "alice", "pw", "alice@example.com"

#: A page for another origin: functions a test calls through
#: ``execute_async_script`` (each resolves, never rejects).
#:
#: - ``openSocket(url)``: ``"open <extensions>"`` once a WebSocket with
#:   subprotocol ``jmap`` opens (then closed), or ``"closed <code>"``;
#: - ``fetchTicket(url, init)``: the ticket endpoint's answer as JSON, or
#:   ``"failed: <error>"`` when the page may not read it;
#: - ``openEventSource(url)``: opens an EventSource and records what it
#:   sees in ``window.recorded`` (``open``, ``error``, and each ``state``,
#:   ``ping`` or unnamed message event with its data); resolves on the
#:   first ``open`` or ``error``.
PROBE_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>probe</title>
<script>
window.openSocket = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url, 'jmap');
  ws.onopen = () => { resolve('open ' + ws.extensions); ws.close(1000); };
  ws.onclose = (event) => resolve('closed ' + event.code);
});
window.fetchTicket = (url, init) => fetch(url, { method: 'POST', ...init })
  .then((response) => response.json())
  .catch((error) => 'failed: ' + error);
window.recorded = [];
window.openEventSource = (url) => new Promise((resolve) => {
  const source = window.eventSource = new EventSource(url);
  const record = (event) => recorded.push({ type: event.type, data: event.data ?? null });
  source.onopen = (event) => { record(event); resolve('open'); };
  source.onerror = (event) => { record(event); resolve('error'); };
  for (const type of ['state', 'ping', 'message']) source.addEventListener(type, record);
});
</script>
"""

T = TypeVar("T")


def in_browser(function: Callable[..., T], *args: Any) -> Deferred[T]:
    """
    Run blocking browser work in a thread, so the reactor keeps serving
    the page.
    """
    return deferToThread(function, *args)


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """
    A headless Chromium driven by selenium, with a fresh profile, that
    keeps its console log.
    """
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need Chromium and ChromeDriver: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, *args: Any) -> Any:
    """
    Wait (blocking) until a script returns something true, and return it.
    On timeout, fail with the demo page's state and what it reported.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
            lambda d: d.execute_script(script, *args)
        )
    except TimeoutException:
        seen = driver.execute_script(
            "return [window.jmapDemo, document.getElementById('problem')?.textContent]"
        )
        raise AssertionError(f"waited {WAIT} s for {script!r}; the page shows {seen}") from None


def sign_in(driver: Any, base: str, password: str | None = PASSWORD, token: str = "") -> None:
    """
    Open the demo page and sign in (username and password, or a bearer
    token), then wait (blocking) until its socket is open.
    """
    from selenium.webdriver.common.by import By

    driver.get(base + "/demo/")
    if token:
        driver.find_element(By.NAME, "token").send_keys(token)
    else:
        driver.find_element(By.NAME, "username").send_keys(USER)
        driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(driver, "return window.jmapDemo.state === 'open'")


def _lmtp_send(port: int, subject: str, recipient: str) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail(
            "sender@elsewhere.test", [recipient], message(subject=subject, to=recipient)
        )


def deliver(server: RunningServer, subject: str, recipient: str = ADDRESS) -> Deferred[None]:
    """
    Deliver a message through the server's real delivery path (its LMTP
    listener); fires once the server accepted it.
    """
    assert server.lmtp_port is not None
    return in_browser(_lmtp_send, server.lmtp_port, subject, recipient)


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest_twisted.async_yield_fixture
async def start_demo_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """
    Start servers with ``--demo`` and the given options, each with the
    user alice; all are stopped after the test.
    """
    started: list[RunningServer] = []

    async def start(*options: str) -> RunningServer:
        running = await start_server(
            tmp_path / f"data{len(started)}",
            "tcp:0:interface=127.0.0.1",
            "http",
            "--demo",
            *options,
        )
        started.append(running)
        await running.add_user(USER, PASSWORD)
        return running

    yield start
    for running in started:
        await running.stop()


@pytest_twisted.async_yield_fixture
async def demo_server(start_demo_server: StartServer) -> AsyncIterator[RunningServer]:
    yield await start_demo_server()


class _Page(Resource):
    isLeaf = True

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html.encode()

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self.html


class _Pages(Resource):
    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return notFound()


class ForeignOrigin:
    """
    A site on another loopback port: another origin than the server's,
    ``http://127.0.0.1:<port>``.  It is the same *site* as the server
    (RFC 6265bis: the host, not the port), so the browser sends it the
    server's cached credentials: the case an origin check exists for.
    (From ``localhost``, another site, Chromium sends none.)
    """

    def __init__(self) -> None:
        self.root = _Pages()
        self.port: Any = None
        self.add("probe.html", PROBE_PAGE)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def add(self, name: str, html: str) -> None:
        """
        Serve a page at ``/name``.
        """
        self.root.putChild(name.encode(), _Page(html))

    def url(self, name: str) -> str:
        """
        The URL of a page served at ``/name``.
        """
        return f"{self.origin}/{name}"


@pytest_twisted.async_yield_fixture
async def foreign_origin() -> AsyncIterator[ForeignOrigin]:
    from twisted.internet import reactor

    site = ForeignOrigin()
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    site.port = await endpoint.listen(Site(site.root))
    yield site
    await site.port.stopListening()


@pytest.fixture
def access_log() -> Iterator[list[str]]:
    """
    The lines of the access log written while the test runs.
    """
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        text = formatEvent(event)
        if '" - - [' in text:
            lines.append(text)

    globalLogPublisher.addObserver(observe)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observe)


@pytest.fixture(autouse=True)
def _browser_marker(request: pytest.FixtureRequest) -> None:
    request.node.add_marker(pytest.mark.integration)
    request.node.add_marker(pytest.mark.browser)
