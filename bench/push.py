"""
Push latency, fan-out and memory per socket, against ``twistd jmap``.

    python bench/push.py --idle 1000 --fanout 100 --deliveries 50

Measures, with Autobahn's client and permessage-deflate:

* end of LMTP DATA → StateChange frame at the client, one socket;
* the same with ``--idle`` other sockets open (another account, push on);
* one delivery to an account with ``--fanout`` sockets: until the last
  frame;
* server RSS per idle socket, before and after each received one push.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from common import (
    Target,
    add_target_arguments,
    basic,
    message,
    open_target,
    react_and_report,
    rss_kib,
    running_server,
    summary,
)
from twisted.internet import defer, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint


class Pusher(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.sendMessage(
            json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}).encode()
        )
        self.factory.opened.append(self)
        self.factory.ready(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        now = time.perf_counter()
        value = json.loads(payload)
        if value.get("@type") == "StateChange":
            self.factory.received(self, now)


class Factory(WebSocketClientFactory):
    protocol = Pusher

    def __init__(self, url: str, auth: str, deflate: bool) -> None:
        super().__init__(url, protocols=["jmap"], headers={"Authorization": auth})
        if deflate:
            self.setProtocolOptions(
                perMessageCompressionOffers=[PerMessageDeflateOffer()],
                perMessageCompressionAccept=lambda r: (
                    PerMessageDeflateResponseAccept(r)
                    if isinstance(r, PerMessageDeflateResponse)
                    else None
                ),
            )
        self.opened: list[Pusher] = []
        self.waiting: list[defer.Deferred[None]] = []
        self.arrivals: list[float] = []
        self.expected = 0
        self.done: defer.Deferred[None] | None = None

    def ready(self, protocol: Pusher) -> None:
        if self.waiting:
            self.waiting.pop(0).callback(None)

    def received(self, protocol: Pusher, at: float) -> None:
        self.arrivals.append(at)
        if self.done is not None and len(self.arrivals) >= self.expected:
            done, self.done = self.done, None
            done.callback(None)


async def open_sockets(
    reactor: Any, address: tuple[str, int], factory: Factory, count: int
) -> None:
    for _ in range(count):
        waiting: defer.Deferred[None] = defer.Deferred()
        factory.waiting.append(waiting)
        await TCP4ClientEndpoint(reactor, *address).connect(factory)
        await waiting
    await task.deferLater(reactor, 0.5, lambda: None)  # let push-enable settle


def lmtp_deliver(target: Target, recipient: str, index: int) -> tuple[float, float]:
    with smtplib.LMTP(target.lmtp_host, target.lmtp_port) as client:
        client.ehlo_or_helo_if_needed()
        client.mail("bench@example.com")
        client.rcpt(recipient)
        data = message(index)
        started = time.perf_counter()
        client.data(data)
        return started, time.perf_counter()


async def latencies(
    reactor: Any, server: Any, factory: Factory, recipient: str, count: int
) -> dict[str, Any]:
    after_data, after_250 = [], []
    for index in range(count):
        factory.arrivals.clear()
        factory.expected = len(factory.opened)
        done: defer.Deferred[None] = defer.Deferred()
        factory.done = done
        started, replied = await threads.deferToThread(lmtp_deliver, server, recipient, index)
        await done
        last = max(factory.arrivals)
        after_data.append((last - started) * 1000)
        after_250.append((last - replied) * 1000)
    return {
        "end_of_data_to_frame_ms": summary(after_data),
        "reply_250_to_frame_ms": summary(after_250),
    }


def delivery_rate(target: Target, count: int) -> float:
    """
    LMTP deliveries per second on one connection, back to back.
    """
    with smtplib.LMTP(target.lmtp_host, target.lmtp_port) as client:
        started = time.perf_counter()
        for index in range(count):
            client.sendmail("bench@example.com", [target.recipient], message(index))
        return count / (time.perf_counter() - started)


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    idle_counts = [int(n) for n in str(args.idle).split(",")]
    fanout_counts = [int(n) for n in str(args.fanout).split(",")]
    with open_target(args) as server:
        if server.other is None:
            raise SystemExit("this benchmark needs a second user (--other-username)")
        other_user, other_password, _ = server.other
        other_auth = basic(other_user, other_password)
        # Set both accounts up (mailboxes may be created on first use).
        server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
        other_session = server.get(server.session_url, other_auth)
        other_account = other_session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        server.api([["Mailbox/get", {"accountId": other_account, "ids": []}, "0"]], other_auth)
        deliveries = max(20, args.deliveries * 4)
        results["delivery_rate_0_listeners"] = await threads.deferToThread(
            delivery_rate, server, deliveries
        )
        target = Factory(server.ws_url, server.auth, True)
        await open_sockets(reactor, server.ws_address, target, 1)
        results["one_socket"] = await latencies(
            reactor, server, target, server.recipient, args.deliveries
        )
        opened = 0
        idle = Factory(server.ws_url, other_auth, True)
        for count in sorted(idle_counts):
            await open_sockets(reactor, server.ws_address, idle, count - opened)
            opened = count
            results[f"one_among_{count}"] = await latencies(
                reactor, server, target, server.recipient, args.deliveries
            )
        for protocol in idle.opened:
            protocol.sendClose(1000)
        await task.deferLater(reactor, 1.0, lambda: None)
        fan = Factory(server.ws_url, server.auth, True)
        opened = 0
        for count in sorted(fanout_counts):
            await open_sockets(reactor, server.ws_address, fan, count - opened)
            opened = count
            results[f"fanout_{count}"] = await latencies(
                reactor, server, fan, server.recipient, max(5, args.deliveries // 5)
            )
        fan.expected = 10**9  # deliveries below are not waited for
        results[f"delivery_rate_{opened + 1}_listeners"] = await threads.deferToThread(
            delivery_rate, server, deliveries
        )
    if not args.session_url:
        settings = {
            "plain": (False, []),
            "deflate": (True, []),
            "deflate_context_takeover": (True, ["--ws-context-takeover"]),
        }
        for name, (deflate, extra) in settings.items():
            # A fresh server each time, so freed memory is not reused.
            with running_server(extra) as server:
                results["memory_" + name] = await memory(reactor, server, max(idle_counts), deflate)
    return results


async def memory(reactor: Any, server: Target, count: int, deflate: bool) -> dict[str, Any]:
    assert server.pid is not None
    server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
    sockets = Factory(server.ws_url, server.auth, deflate)
    before = rss_kib(server.pid)
    await open_sockets(reactor, server.ws_address, sockets, count)
    opened = rss_kib(server.pid)
    sockets.expected = count
    pushed_all: defer.Deferred[None] = defer.Deferred()
    sockets.done = pushed_all
    await threads.deferToThread(lmtp_deliver, server, server.recipient, 0)
    await pushed_all
    await task.deferLater(reactor, 0.5, lambda: None)
    pushed = rss_kib(server.pid)
    for protocol in sockets.opened:
        protocol.sendClose(1000)
    await task.deferLater(reactor, 0.5, lambda: None)
    return {
        "sockets": count,
        "kib_per_socket_idle": (opened - before) / count,
        "kib_per_socket_after_push": (pushed - before) / count,
    }


def report(results: dict[str, Any]) -> None:
    print(
        f"{'measurement':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   (end of DATA -> last frame)"
    )
    for key, value in results.items():
        if isinstance(value, dict) and "end_of_data_to_frame_ms" in value:
            lat = value["end_of_data_to_frame_ms"]
            print(f"{key:<28} {lat['median']:8.2f} {lat['p99']:8.2f} {lat['max']:8.2f}")
    for key, value in results.items():
        if key.startswith("delivery_rate_"):
            print(f"{key:<28} {value:8.0f} mails/s (LMTP, one connection)")
        elif key.startswith("memory_"):
            print(
                f"{key:<28} {value['kib_per_socket_idle']:8.1f} KiB/socket idle, "
                f"{value['kib_per_socket_after_push']:8.1f} KiB/socket after a push ({value['sockets']} sockets)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", default="1000", help="idle socket counts, e.g. 1000,10000")
    parser.add_argument("--fanout", default="100", help="fan-out socket counts, e.g. 100,1000")
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    os.environ.setdefault("JMAP_BENCH", "1")
    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
