"""
Core/echo throughput over HTTP (one keep-alive connection) and over one
WebSocket (sequential and pipelined), in the same run, against a floor: a
bare Autobahn echo server in a process of its own.  WebSocket and floor
alternate for ``--rounds`` rounds; rates are medians, and the ratio is the
median of the rounds' ratios.

The mailbox view (what a client sends to show a mailbox: Mailbox/get,
Email/query, Email/get of 30) is measured over HTTP and over a WebSocket,
with the server's CPU time per view.  With ``--baseline-checkout DIR`` the
same view also runs, round by round alternated with this tree's, against a
server started from another checkout (``git worktree add DIR <commit>``;
its own ``.venv`` if it has one, else this Python with DIR first on the
path), and the ratios of rates and of CPU per view are the medians of the
rounds' ratios.

    python bench/throughput.py --requests 2000
    python bench/throughput.py --baseline-checkout /tmp/before
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import smtplib
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    USING,
    Target,
    add_target_arguments,
    cpu_seconds,
    free_port,
    message,
    open_target,
    running_server,
)
from websockets.sync.client import connect

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


def realistic(account: str) -> str:
    """
    What a mail client sends to show a mailbox: its mailboxes, the newest
    emails of the inbox, and their list properties.
    """
    return json.dumps(
        {
            "using": USING,
            "methodCalls": [
                ["Mailbox/get", {"accountId": account}, "m"],
                [
                    "Email/query",
                    {
                        "accountId": account,
                        "sort": [{"property": "receivedAt", "isAscending": False}],
                        "limit": 30,
                    },
                    "q",
                ],
                [
                    "Email/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                        "properties": [
                            "threadId",
                            "mailboxIds",
                            "keywords",
                            "receivedAt",
                            "subject",
                            "from",
                            "preview",
                        ],
                    },
                    "g",
                ],
            ],
        }
    )


def http_rate(api_url: str, auth: str, count: int, body: str = ECHO) -> float:
    parts = urlsplit(api_url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port)
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    started = time.perf_counter()
    for _ in range(count):
        connection.request("POST", parts.path or "/", body, headers)
        connection.getresponse().read()
    return count / (time.perf_counter() - started)


def ws_rate(
    url: str,
    headers: dict[str, str],
    count: int,
    pipelined: bool,
    jmap: bool = True,
    request: str = ECHO,
) -> float:
    body = json.dumps({"@type": "Request", "id": "x", **json.loads(request)}) if jmap else ECHO
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


def pin(server: int | None, *others: int) -> None:
    """
    Put the server and the floor (and a baseline server) on the same core
    and this client on another (when the server runs here and there are
    two cores or more), so that all are measured under the same
    conditions; unpinned, the floor's rate here varied between runs by a
    third, with the scheduler's placement.
    """
    cores = sorted(os.sched_getaffinity(0))
    if server is None or len(cores) < 2:
        return
    for pid in (server, *others):
        for task in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(task), {cores[1]})
    os.sched_setaffinity(0, {cores[0]})


def process_cpu(pid: int | None) -> float | None:
    """
    The CPU time a local process has used (user and system, all threads).
    """
    if pid is None:
        return None
    return cpu_seconds(pid)


def fill(server: Target) -> None:
    """
    Deliver the 30 messages the mailbox view shows.
    """
    with smtplib.LMTP(server.lmtp_host, server.lmtp_port) as client:
        for index in range(30):
            client.sendmail("s@example.com", [server.recipient], message(index))


def view_round(server: Target, count: int) -> tuple[float, float | None]:
    """
    Mailbox views over one WebSocket, one after the other: views per
    second and the server's CPU milliseconds per view (``None`` for a
    remote server).
    """
    before = process_cpu(server.pid)
    rate = ws_rate(
        server.ws_url,
        {"Authorization": server.auth},
        count,
        False,
        request=realistic(server.account),
    )
    after = process_cpu(server.pid)
    cpu = None if before is None or after is None else 1000 * (after - before) / count
    return rate, cpu


def views(server: Target, baseline: Target | None, count: int, rounds: int) -> dict[str, float]:
    """
    The mailbox view over a WebSocket, alternated round by round with the
    baseline server's: medians of rates, CPU per view, and of the rounds'
    ratios.
    """
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        rate, cpu = view_round(server, count)
        samples.setdefault("ws_mailbox_view", []).append(rate)
        if cpu is not None:
            samples.setdefault("ws_mailbox_view_cpu_ms", []).append(cpu)
        if baseline is None:
            continue
        base_rate, base_cpu = view_round(baseline, count)
        samples.setdefault("baseline_ws_mailbox_view", []).append(base_rate)
        samples.setdefault("mailbox_view_ratio", []).append(rate / base_rate)
        if cpu is not None and base_cpu is not None:
            samples.setdefault("baseline_ws_mailbox_view_cpu_ms", []).append(base_cpu)
            samples.setdefault("mailbox_view_cpu_ratio", []).append(base_cpu / cpu)
    return {key: statistics.median(values) for key, values in samples.items()}


def run(args: argparse.Namespace) -> dict[str, float]:
    n = args.requests
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR, str(floor_port)])
    try:
        time.sleep(1.0)
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(open_target(args))
            baseline = None
            if args.baseline_checkout:
                baseline = stack.enter_context(running_server(checkout=args.baseline_checkout))
            pin(server.pid, floor.pid, *([baseline.pid] if baseline and baseline.pid else []))
            headers = {"Authorization": server.auth}
            few = max(20, n // 10)
            for target in (server, baseline):
                if target is not None:
                    # Warm up (and the password cache), then the mail shown.
                    http_rate(target.api_url, target.auth, 50)
                    fill(target)
                    view_round(target, max(10, few // 4))
            mail = realistic(server.account)
            rates: dict[str, float] = {
                "http_mailbox_view": http_rate(server.api_url, server.auth, few, mail),
                **views(server, baseline, few, args.rounds),
                "http_keepalive_sequential": http_rate(server.api_url, server.auth, n),
            }
            # The floor's own rate varies between runs on a busy machine:
            # alternate server and floor round by round and keep medians,
            # and the median of the per-round ratios.
            floor_url = f"ws://127.0.0.1:{floor_port}"
            rounds: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for pipelined, mode in ((False, "sequential"), (True, "pipelined")):
                    ws = ws_rate(server.ws_url, headers, n, pipelined)
                    bare = ws_rate(floor_url, {}, n, pipelined, jmap=False)
                    rounds.setdefault(f"ws_{mode}", []).append(ws)
                    rounds.setdefault(f"floor_autobahn_echo_{mode}", []).append(bare)
                    rounds.setdefault(f"ws_floor_ratio_{mode}", []).append(ws / bare)
            for key, values in rounds.items():
                rates[key] = statistics.median(values)
            return rates
    finally:
        floor.terminate()
        floor.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating WS/floor rounds")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="another source tree whose server runs the mailbox view in the same run",
    )
    add_target_arguments(parser)
    args = parser.parse_args()
    rates = run(args)
    for key, value in rates.items():
        if key.endswith("_cpu_ms"):
            print(f"{key:<34} {value:9.2f} ms of server CPU per view")
        elif "ratio" in key:
            print(f"{key:<34} {value:9.2f}x")
        else:
            print(f"{key:<34} {value:9.0f} requests/s")
    print(
        f"mailbox view (Mailbox/get + Email/query + Email/get): ws/http "
        f"{rates['ws_mailbox_view'] / rates['http_mailbox_view']:.2f}x"
    )
    if "mailbox_view_ratio" in rates:
        print(
            f"mailbox view vs baseline {args.baseline_checkout} (median of {args.rounds} "
            f"alternating rounds): {rates['mailbox_view_ratio']:.2f}x the views/s"
            + (
                f", {rates['mailbox_view_cpu_ratio']:.2f}x less server CPU per view"
                if "mailbox_view_cpu_ratio" in rates
                else ""
            )
        )
    print(
        f"ws/http (sequential): {rates['ws_sequential'] / rates['http_keepalive_sequential']:.2f}x; "
        f"ws/floor (median of {args.rounds} alternating rounds): "
        f"sequential {100 * rates['ws_floor_ratio_sequential']:.0f}%, "
        f"pipelined {100 * rates['ws_floor_ratio_pipelined']:.0f}%"
    )
    if args.json:
        args.json.write_text(json.dumps(rates, indent=2))


if __name__ == "__main__":
    main()
