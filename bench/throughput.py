"""
Core/echo throughput over HTTP (one keep-alive connection) and over one
WebSocket (sequential and pipelined), in the same run, against a floor: a
bare Autobahn echo server in a process of its own.

    python bench/throughput.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import USING, free_port, running_server  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

ECHO = json.dumps({"using": USING, "methodCalls": [["Core/echo", {"hello": "world"}, "0"]]})

FLOOR = textwrap.dedent(
    """
    import sys
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1")
    reactor.run()
    """
)


def http_rate(port: int, auth: str, count: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    started = time.perf_counter()
    for _ in range(count):
        connection.request("POST", "/jmap/api/", ECHO, headers)
        connection.getresponse().read()
    return count / (time.perf_counter() - started)


def ws_rate(
    url: str, headers: dict[str, str], count: int, pipelined: bool, jmap: bool = True
) -> float:
    body = json.dumps({"@type": "Request", "id": "x", **json.loads(ECHO)}) if jmap else ECHO
    with connect(
        url, subprotocols=["jmap"] if jmap else None, additional_headers=headers, compression=None
    ) as ws:
        started = time.perf_counter()
        if pipelined:
            for _ in range(count):
                ws.send(body)
            for _ in range(count):
                ws.recv(timeout=30)
        else:
            for _ in range(count):
                ws.send(body)
                ws.recv(timeout=30)
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    n = args.requests
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR, str(floor_port)])
    try:
        time.sleep(1.0)
        with running_server() as server:
            headers = {"Authorization": server.auth}
            url = f"ws://127.0.0.1:{server.http_port}/jmap/ws"
            http_rate(server.http_port, server.auth, 50)  # warm up (and the password cache)
            rates = {
                "http_keepalive_sequential": http_rate(server.http_port, server.auth, n),
                "ws_sequential": ws_rate(url, headers, n, False),
                "ws_pipelined": ws_rate(url, headers, n, True),
                "floor_autobahn_echo_sequential": ws_rate(
                    f"ws://127.0.0.1:{floor_port}", {}, n, False, jmap=False
                ),
                "floor_autobahn_echo_pipelined": ws_rate(
                    f"ws://127.0.0.1:{floor_port}", {}, n, True, jmap=False
                ),
            }
    finally:
        floor.terminate()
        floor.wait()
    for key, value in rates.items():
        print(f"{key:<34} {value:9.0f} requests/s")
    print(
        f"ws/http (sequential): {rates['ws_sequential'] / rates['http_keepalive_sequential']:.2f}x; "
        f"ws/floor (pipelined): {100 * rates['ws_pipelined'] / rates['floor_autobahn_echo_pipelined']:.0f}%"
    )


if __name__ == "__main__":
    main()
