"""
The live-inbox demo page (``--demo``) in headless Chromium: it signs in,
lists the inbox over an RFC 8887 WebSocket and shows new mail as the
server pushes it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted
import treq

from jmap_twisted.auth.passwords import new_token, token_hash
from tests.browser.conftest import (
    PASSWORD,
    USER,
    StartServer,
    deliver,
    in_browser,
    sign_in,
    wait_for,
)
from tests.integration.conftest import RunningServer

#: An access log line of a WebSocket upgrade, and its status.
UPGRADE = re.compile(r'"GET /jmap/ws[^"]*" ([0-9]{3}) ')

SUBJECTS = "return [...document.querySelectorAll('#inbox .subject')].map((s) => s.textContent)"


def _listed(driver: Any, base: str) -> list[str]:
    sign_in(driver, base)
    wait_for(driver, "return window.jmapDemo.emails === 1")
    return list(driver.execute_script(SUBJECTS))


def _marked(driver: Any) -> None:
    driver.execute_script("window.notReloaded = 'still the same page'")


def _shown_after_push(driver: Any, subject: str) -> dict[str, Any]:
    wait_for(driver, "return arguments[0] in window.jmapDemo.rendered", subject)
    return dict(
        driver.execute_script(
            """return {
                marker: window.notReloaded,
                subjects: [...document.querySelectorAll('#inbox .subject')].map((s) => s.textContent),
                emails: window.jmapDemo.emails,
                state: window.jmapDemo.state,
                storage: localStorage.length + sessionStorage.length,
                cookies: document.cookie,
                fields: [...document.querySelectorAll('input')].map((i) => i.value).join(''),
            }"""
        )
    )


def _socket_on_browser_credentials(driver: Any, ws_url: str) -> str:
    # A socket without a ticket carries only what the browser itself holds
    # for the server (it would open on cached credentials, see the origin
    # tests below): nothing, since the page kept them to itself.
    return str(
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const ws = new WebSocket(arguments[0], 'jmap');"
            "ws.onopen = () => { done('open'); ws.close(); };"
            "ws.onclose = (event) => done('closed ' + event.code);",
            ws_url,
        )
    )


@pytest_twisted.ensureDeferred
async def test_new_mail_appears_without_a_reload(demo_server: RunningServer, browser: Any) -> None:
    """
    The page signs in with a username and password, lists the inbox, and a
    mail delivered afterwards appears at the top of the list on the same
    page (a marker set on ``window`` before the delivery is still there).
    The credentials stay in the page's memory: not in its fields, storage
    or cookies, nor in the browser's HTTP authentication cache.
    """
    await deliver(demo_server, "Before signing in")
    assert await in_browser(_listed, browser, demo_server.base) == ["Before signing in"]
    await in_browser(_marked, browser)
    await deliver(demo_server, "Pushed while open")
    shown = await in_browser(_shown_after_push, browser, "Pushed while open")
    assert shown == {
        "marker": "still the same page",
        "subjects": ["Pushed while open", "Before signing in"],
        "emails": 2,
        "state": "open",
        "storage": 0,
        "cookies": "",
        "fields": "",
    }
    ws_url = demo_server.base.replace("http", "ws", 1) + "/jmap/ws"
    assert await in_browser(_socket_on_browser_credentials, browser, ws_url) == "closed 1006"


def _extensions(driver: Any, base: str, token: str) -> tuple[Any, str]:
    sign_in(driver, base, token=token)
    from selenium.webdriver.common.by import By

    return (
        driver.execute_script("return window.jmapDemo.extensions"),
        driver.find_element(By.ID, "extensions").text,
    )


@pytest_twisted.ensureDeferred
async def test_the_page_socket_negotiates_permessage_deflate(
    demo_server: RunningServer, browser: Any
) -> None:
    """
    Signed in with a pasted bearer token, the page's WebSocket negotiated
    permessage-deflate (RFC 7692), and the page shows it.
    """
    directory = await demo_server.directory()
    user = await directory.get_user(USER)
    assert user is not None
    token = new_token()
    await directory.add_token(user.id, token_hash(token), "browser test")
    extensions, shown = await in_browser(_extensions, browser, demo_server.base, token)
    assert extensions.split(";")[0] == "permessage-deflate"
    assert shown == extensions


def _failed_sign_in(driver: Any, base: str) -> tuple[Any, str]:
    from selenium.webdriver.common.by import By

    driver.get(base + "/demo/")
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys("wrong")
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(driver, "return window.jmapDemo.state === 'wrong credentials'")
    return driver.execute_script("return window.jmapDemo"), driver.find_element(
        By.ID, "sign-in"
    ).get_attribute("hidden")


@pytest_twisted.ensureDeferred
async def test_wrong_credentials_leave_the_page_signed_out(
    demo_server: RunningServer, browser: Any
) -> None:
    """
    A wrong password is said so; the page opens no socket and keeps its
    sign-in form.
    """
    demo, hidden = await in_browser(_failed_sign_in, browser, demo_server.base)
    assert demo["state"] == "wrong credentials"
    assert demo["extensions"] is None
    assert hidden is None


# -- origins -------------------------------------------------------------------


def _cache_credentials(driver: Any, base: str) -> str:
    """
    Sign in the way a user answering the browser's own password prompt
    would, so the browser keeps the credentials for the server; the
    session read afterwards without them shows they were kept.
    """
    from selenium.webdriver.common.by import By

    host = base.removeprefix("http://")
    driver.get(f"http://{USER}:{PASSWORD}@{host}/jmap/session")
    driver.get(f"{base}/jmap/session")
    return str(json.loads(driver.find_element(By.TAG_NAME, "body").text)["username"])


def _attempts(driver: Any, page: str, ws_url: str, ticket_url: str, ticket: str) -> dict[str, Any]:
    """
    What a page of another origin gets: a socket on the cached
    credentials, a ticket on them, a socket with a ticket it was given.
    """
    driver.get(page)
    run = "window[arguments[0]](...arguments[1]).then(arguments[arguments.length - 1])"
    return {
        "cached": driver.execute_async_script(run, "openSocket", [ws_url]),
        "ticket": driver.execute_async_script(
            run, "fetchTicket", [ticket_url, {"credentials": "include"}]
        ),
        "with ticket": driver.execute_async_script(
            run, "openSocket", [f"{ws_url}?ticket={ticket}"]
        ),
    }


async def _ticket(server: RunningServer) -> str:
    response = await treq.post(server.base + "/jmap/ticket", auth=(USER, PASSWORD))
    assert response.code == 201
    return str(json.loads(await response.content())["value"])


def _upgrades(access_log: list[str]) -> list[str]:
    """
    The statuses the server answered WebSocket upgrades with.
    """
    return [m.group(1) for m in map(UPGRADE.search, access_log) if m is not None]


@pytest_twisted.ensureDeferred
async def test_another_origin_cannot_open_a_socket_on_cached_credentials(
    start_demo_server: StartServer,
    foreign_origin: Any,
    browser: Any,
    access_log: list[str],
) -> None:
    """
    While the browser holds the user's Basic credentials for the server, a
    page of another origin (the same host, another port) opens no
    WebSocket: not on those credentials, not even with a valid ticket; the
    server refuses both upgrades with 403.  Nor can it read a ticket asked
    for on the cached credentials.
    """
    server = await start_demo_server()
    assert await in_browser(_cache_credentials, browser, server.base) == USER
    ws_url = server.base.replace("http", "ws", 1) + "/jmap/ws"
    seen = await in_browser(
        _attempts,
        browser,
        foreign_origin.url("probe.html"),
        ws_url,
        server.base + "/jmap/ticket",
        await _ticket(server),
    )
    assert seen["cached"] == "closed 1006"
    assert seen["with ticket"] == "closed 1006"
    assert str(seen["ticket"]).startswith("failed: TypeError")
    assert _upgrades(access_log) == ["403", "403"]


@pytest_twisted.ensureDeferred
async def test_an_allowed_origin_opens_a_socket_with_a_ticket(
    start_demo_server: StartServer,
    foreign_origin: Any,
    browser: Any,
    access_log: list[str],
) -> None:
    """
    The control of the test above: with that origin in
    ``--allowed-origin``, the same page opens a socket with a ticket (and
    on the cached credentials too, which the browser does send).
    """
    server = await start_demo_server("--allowed-origin", foreign_origin.origin)
    assert await in_browser(_cache_credentials, browser, server.base) == USER
    ws_url = server.base.replace("http", "ws", 1) + "/jmap/ws"
    seen = await in_browser(
        _attempts,
        browser,
        foreign_origin.url("probe.html"),
        ws_url,
        server.base + "/jmap/ticket",
        await _ticket(server),
    )
    assert seen["with ticket"].startswith("open permessage-deflate")
    assert seen["cached"].startswith("open permessage-deflate")
    assert "403" not in _upgrades(access_log)


@pytest_twisted.ensureDeferred
async def test_the_page_reconnects_and_catches_up_after_a_dropped_socket(
    demo_server: RunningServer, browser: Any
) -> None:
    """
    The server drops the page's socket; a mail is delivered while the page
    is away; the page reconnects by itself (a fresh ticket, its last
    pushState) and shows the mail, on the same page, over a new socket.
    """
    await deliver(demo_server, "Before the drop")
    assert await in_browser(_listed, browser, demo_server.base) == ["Before the drop"]
    await in_browser(_marked, browser)
    jmap = next(iter(demo_server.service))
    (socket,) = list(jmap.server.push_connections)
    socket.close(1001, "going away for a moment")
    await deliver(demo_server, "While away")
    shown = await in_browser(_shown_after_push, browser, "While away")
    assert shown["marker"] == "still the same page"
    assert shown["subjects"] == ["While away", "Before the drop"]
    assert shown["state"] == "open"
    (again,) = list(jmap.server.push_connections)
    assert again is not socket
