"""
A browser's EventSource opened with a ticket, in Chromium: it survives the
browser's automatic reconnect and hears of a mail delivered in the gap.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted

from tests.browser.conftest import (
    StartServer,
    deliver,
    in_browser,
    wait_for,
)
from tests.browser.test_demo import _ticket

#: An access log line of an EventSource request, with its status.
STREAM = re.compile(r'"GET /jmap/eventsource/\S* HTTP/1\.1" (\d{3}) ')


def _open(driver: Any, page: str, url: str) -> str:
    driver.get(page)
    return str(driver.execute_async_script("arguments[1](openEventSource(arguments[0]))", url))


def _states(driver: Any, count: int) -> list[dict[str, Any]]:
    """
    Wait (blocking) until the page recorded ``count`` state events; their
    StateChanges.
    """
    wait_for(
        driver,
        "return recorded.filter((e) => e.type === 'state').length >= arguments[0]",
        count,
    )
    recorded = driver.execute_script("return recorded")
    return [json.loads(e["data"]) for e in recorded if e["type"] == "state"]


#: The first StateChange, after the first ``arguments[0]`` state events,
#: whose Email state of account ``arguments[1]`` is not ``arguments[2]``.
FIND_NEW_EMAIL_STATE = """
  const [count, account, old] = arguments;
  return recorded.filter((e) => e.type === 'state').slice(count)
    .map((e) => JSON.parse(e.data))
    .find((change) => {
      const email = (change.changed[account] || {}).Email;
      return email !== undefined && email !== old;
    });
"""


def _states_after(driver: Any, count: int, account: str, email_state: str) -> dict[str, Any]:
    """
    Wait (blocking) for a state event, after the first ``count``, that
    tells of a new Email state for ``account``; its StateChange.
    """
    return dict(wait_for(driver, FIND_NEW_EMAIL_STATE, count, account, email_state))


def _types(driver: Any) -> list[str]:
    return [str(e["type"]) for e in driver.execute_script("return recorded")]


@pytest_twisted.ensureDeferred
async def test_a_ticket_eventsource_survives_a_reconnect_and_reports_the_gap(
    start_demo_server: StartServer,
    foreign_origin: Any,
    browser: Any,
    access_log: list[str],
) -> None:
    """
    A page (on an allowed origin) opens an EventSource with a ticket.  The
    server ends the stream; a mail is delivered before the browser comes
    back; the browser reconnects by itself with the same URL (so the same
    ticket) and ``Last-Event-ID``, and the page receives a StateChange
    with the mail's new Email state, without any new ticket.
    """
    server = await start_demo_server("--allowed-origin", foreign_origin.origin)
    url = server.base + "/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket="
    ticket = await _ticket(server)
    url += ticket
    assert await in_browser(_open, browser, foreign_origin.url("probe.html"), url) == "open"
    await deliver(server, "Before the gap")
    before = await in_browser(_states, browser, 1)
    account = next(iter(before[-1]["changed"]))
    email_state = before[-1]["changed"][account].get("Email")

    jmap = next(iter(server.service))
    (stream,) = list(jmap.server.push_connections)
    stream.close(1001, "forced reconnect")
    await deliver(server, "In the gap")

    # Whatever else arrives, a StateChange after the reconnect tells of a
    # new Email state.
    after = await in_browser(_states_after, browser, len(before), account, email_state)
    assert after["changed"][account]["Email"] != email_state
    assert _types(browser)[:2] == ["open", "state"]
    assert "error" in _types(browser)  # the browser saw the stream end
    (again,) = list(jmap.server.push_connections)
    assert again is not stream  # the browser's own reconnect, on the same ticket
    assert [m.group(1) for m in map(STREAM.search, access_log) if m] == ["200"]  # the first
    assert all("ticket=REDACTED" in line for line in access_log if "ticket=" in line)
    assert ticket not in "".join(access_log)
