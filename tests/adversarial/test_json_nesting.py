"""
A request built to make the JSON depth check quadratic (many
unterminated or escaped quotes) must cost time linear in its size, over
HTTP and WebSocket, and must not delay another user.
"""

from __future__ import annotations

import json

import requests

from tests.adversarial.harness import CORE, Attack, Server, well_behaved


def _quadratic_bait(size: int) -> bytes:
    # Enough brackets to need the depth scan, then one string that never
    # ends, full of escaped quotes: a scan that tries each quote as the
    # start of a string reads to the end from every one of them.
    head = b"[" * 70 + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


def test_hostile_nesting_scan_does_not_freeze_the_server(server: Server) -> None:
    """
    128 KB requests of unterminated strings and escaped quotes, sent over
    HTTP and WebSocket in a loop, are refused as ``notJSON`` while alice's
    logins keep being served within seconds.
    """
    bait = _quadratic_bait(128_000)
    refused: list[int] = []

    def attack_http(_: int) -> None:
        response = requests.post(
            server.base + "/jmap/api/",
            data=bait,
            headers={"Content-Type": "application/json"},
            auth=server.auth("mallory"),
            timeout=120,
        )
        if response.status_code == 429:
            return  # throttled while its first logins were being checked
        assert response.status_code == 400
        assert response.json()["type"] == "urn:ietf:params:jmap:error:notJSON"
        refused.append(1)

    def attack_ws(_: int) -> None:
        with server.websocket("mallory") as ws:
            for _ in range(3):
                ws.send(bait.decode())
                answer = json.loads(ws.recv(timeout=120))
                assert answer["type"] == "urn:ietf:params:jmap:error:notJSON"

    with Attack(attack_http, threads=2) as http_attack, Attack(attack_ws) as ws_attack:
        latencies = [well_behaved(server, "alice", timeout=60) for _ in range(5)]
    print(f"\nJSON bait: alice's latencies {[round(x, 2) for x in latencies]} s")
    assert max(latencies) < 10, latencies
    assert refused and ws_attack.rounds >= 1
    assert not [e for e in http_attack.errors + ws_attack.errors if isinstance(e, AssertionError)]
    # The socket still answers a real request after the bait.
    echo = server.api("mallory", ["Core/echo", {}, "e"], using=[CORE])
    assert echo == [["Core/echo", {}, "e"]]
