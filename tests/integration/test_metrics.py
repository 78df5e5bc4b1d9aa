"""
Metrics and health of the real server started by the ``twistd jmap``
plugin with ``--metrics``, over loopback sockets: an LMTP delivery pushed
to a WebSocket client moves the push latency histogram, the API and
delivery counters; the probes answer on the main site.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet.threads import deferToThread
from websockets.sync.client import connect

from tests.integration.conftest import RunningServer, start_server
from tests.integration.test_websocket import USING, account_of, basic, deliver, receive


@pytest_twisted.async_yield_fixture
async def measured(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, int]]:
    running = await start_server(
        tmp_path / "data",
        "tcp:0:interface=127.0.0.1",
        "http",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    )
    jmap: Any = next(iter(running.service))
    ports = {
        type(child.factory).__name__: child.port.getHost().port
        for child in jmap
        if getattr(child, "port", None) is not None
    }
    yield running, ports["Site"]
    await running.stop()


async def scrape(port: int) -> dict[str, float]:
    """
    The samples of ``/metrics``, by name and labels as written.
    """
    response = await treq.get(f"http://127.0.0.1:{port}/metrics")
    assert response.code == 200
    text = (await response.text()).splitlines()
    samples = {}
    for line in text:
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    return samples


def pushed(url: str, lmtp_port: int, account: str) -> dict[str, Any]:
    """
    Enable push on a WebSocket, ask one API call, deliver by LMTP, and
    wait for the StateChange.
    """
    with connect(url, subprotocols=["jmap"], additional_headers=basic("alice", "pw")) as ws:
        ws.send(
            json.dumps(
                {
                    "@type": "Request",
                    "id": "r0",
                    "using": USING,
                    "methodCalls": [["Email/get", {"accountId": account, "ids": []}, "0"]],
                }
            )
        )
        receive(ws, "Response")
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
        deliver(lmtp_port, "Measured")
        return receive(ws, "StateChange")


@pytest_twisted.ensureDeferred
async def test_a_pushed_delivery_moves_the_metrics(measured: tuple[RunningServer, int]) -> None:
    """
    One LMTP delivery pushed to a WebSocket client counts a delivery, an
    ``Email/get`` call, one StateChange sent and one push latency
    observation on the websocket transport, while the socket is counted
    open.
    """
    server, metrics_port = measured
    await server.add_user("alice", "pw")
    account = await account_of(server)
    before = await scrape(metrics_port)
    latency = 'jmap_push_latency_seconds_count{transport="websocket"}'
    assert before[latency] == 0
    url = server.base.replace("http", "ws") + "/jmap/ws"
    change = await deferToThread(pushed, url, server.lmtp_port, account)
    assert account in change["changed"]
    after = await scrape(metrics_port)
    assert after[latency] >= 1
    assert after['jmap_push_state_changes_sent_total{transport="websocket"}'] >= 1
    assert after['jmap_deliveries_total{outcome="delivered"}'] == 1
    assert after['jmap_api_calls_total{method="Email/get"}'] == 1
    assert not any(account in name for name in after)  # no ids in labels


@pytest_twisted.ensureDeferred
async def test_probes_answer_on_the_main_site(measured: tuple[RunningServer, int]) -> None:
    """
    A started server is live and ready, and says so to anyone.
    """
    server, _ = measured
    live = await treq.get(server.base + "/healthz/live")
    assert live.code == 200
    ready = await treq.get(server.base + "/healthz/ready")
    assert (ready.code, json.loads(await ready.content())) == (200, {"status": "ready"})
