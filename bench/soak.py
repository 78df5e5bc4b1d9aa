"""
A soak run: many push connections, steady mail, one broker restart.

    python bench/soak.py --minutes 60

Starts a throwaway RabbitMQ broker and one ``twistd jmap`` on it (``--bus``),
opens ``--sockets`` push connections spread over ``--accounts`` accounts,
every other one a WebSocket (permessage-deflate, ``WebSocketPushEnable``) and
the rest EventSource streams, and delivers ``--rate`` mails a second over
LMTP, round robin over the accounts, for ``--minutes``.  Halfway through,
the broker is stopped and started again.  Every ``--interval`` seconds it
samples the server's RSS and open descriptors, the open push connections,
the push latency of the interval (LMTP submission → the StateChange or
``state`` event on each connection of that account: p50, p99, max) and the
age of the oldest push some connection is still owed.  A
connection the server drops is opened again a second later and counted.

Writes the samples as JSON (``--json``) and plots them (``--plot``, default
``docs/img/soak.png``).  ``--no-bus`` runs without a broker (and without the
restart), for a quick check of the runner itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import LocalServer, basic, message, percentile, rss_kib
from push import Factory, Pusher
from twisted.internet import defer, protocol, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

WEBSOCKET = "websocket"
EVENTSOURCE = "eventsource"


class Deliveries:
    """
    The submission times of each account's mails, in order, and the
    latencies of the current interval.
    """

    def __init__(self, accounts: int) -> None:
        self.submitted: list[list[float]] = [[] for _ in range(accounts)]
        self.latencies_ms: list[float] = []
        self.frames = 0

    def arrived(self, account: int, seen: int, at: float) -> int:
        """
        A push frame for ``account`` arrived at ``at`` on a connection that
        had seen the account's first ``seen`` deliveries: record the latency
        of each delivery submitted before it, return the new ``seen``.
        """
        self.frames += 1
        times = self.submitted[account]
        while seen < len(times) and times[seen] < at:
            self.latencies_ms.append((at - times[seen]) * 1000)
            seen += 1
        return seen


class Connections:
    """
    The push connections: opened, reopened when lost, counted.
    """

    def __init__(self, reactor: Any, deliveries: Deliveries, stopping: list[bool]) -> None:
        self.reactor = reactor
        self.deliveries = deliveries
        self.stopping = stopping
        self.open: set[Any] = set()
        self.reconnects = 0
        self.failures = 0

    def oldest_waiting_ms(self, now: float) -> float:
        """
        How long the oldest delivery that some open connection has not
        been told about has been waiting.
        """
        oldest = 0.0
        for connection in self.open:
            times = self.deliveries.submitted[connection.account]
            if connection.seen < len(times):
                oldest = max(oldest, now - times[connection.seen])
        return oldest * 1000

    def lost(self, connection: Any, reopen: Any) -> None:
        self.open.discard(connection)
        if not self.stopping[0]:
            self.reconnects += 1
            self.reactor.callLater(1.0, reopen)


class SoakPusher(Pusher):
    """
    A WebSocket push connection of one account.
    """

    @property
    def account(self) -> int:
        return int(self.factory.account)

    def onOpen(self) -> None:
        self.seen = len(self.factory.deliveries.submitted[self.account])
        super().onOpen()
        self.factory.connections.open.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        now = time.perf_counter()
        if json.loads(payload).get("@type") == "StateChange":
            self.seen = self.factory.deliveries.arrived(self.account, self.seen, now)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.lost(self, self.factory.reopen)


class SoakFactory(Factory):
    protocol = SoakPusher

    def __init__(
        self,
        url: str,
        auth: str,
        address: tuple[str, int],
        account: int,
        deliveries: Deliveries,
        connections: Connections,
    ) -> None:
        super().__init__(url, auth, deflate=True)
        self.address = address
        self.account = account
        self.deliveries = deliveries
        self.connections = connections

    def reopen(self) -> None:
        connect(self.connections, TCP4ClientEndpoint(self.connections.reactor, *self.address), self)


class EventSourceStream(protocol.Protocol):
    """
    An EventSource (RFC 8620 §7.3) stream over HTTP/1.0, so the body is the
    bare ``text/event-stream`` (no chunked coding) until the server closes.
    """

    def __init__(
        self,
        request: bytes,
        address: tuple[str, int],
        account: int,
        deliveries: Deliveries,
        connections: Connections,
    ) -> None:
        self.request = request
        self.address = address
        self.account = account
        self.deliveries = deliveries
        self.connections = connections
        self.buffer = b""

    def connectionMade(self) -> None:
        self.seen = len(self.deliveries.submitted[self.account])
        self.transport.write(self.request)
        self.connections.open.add(self)

    def dataReceived(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        *events, self.buffer = self.buffer.split(b"\n\n")
        for event in events:
            if b"event: state" in event:
                self.seen = self.deliveries.arrived(self.account, self.seen, now)

    def connectionLost(self, reason: Any = None) -> None:
        self.connections.lost(self, self.reopen)

    def reopen(self) -> None:
        factory = protocol.Factory.forProtocol(
            lambda: EventSourceStream(
                self.request, self.address, self.account, self.deliveries, self.connections
            )
        )
        endpoint = TCP4ClientEndpoint(self.connections.reactor, *self.address)
        connect(self.connections, endpoint, factory)


def connect(connections: Connections, endpoint: Any, factory: Any) -> defer.Deferred[Any]:
    def failed(reason: Any) -> None:
        connections.failures += 1
        if not connections.stopping[0]:
            connections.reactor.callLater(1.0, connect, connections, endpoint, factory)

    d: defer.Deferred[Any] = endpoint.connect(factory)
    d.addErrback(failed)
    return d


def eventsource_request(session: dict[str, Any], auth: str, address: tuple[str, int]) -> bytes:
    url = session["eventSourceUrl"].format(types="Email", closeafter="no", ping=30)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    return (
        f"GET {path} HTTP/1.0\r\nHost: {address[0]}:{address[1]}\r\n"
        f"Authorization: {auth}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def server_figures(pid: int) -> tuple[float, int]:
    """
    The server's RSS in MiB and its open descriptors.
    """
    return rss_kib(pid) / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def deliver(
    reactor: Any,
    lmtp: tuple[str, int],
    recipients: list[str],
    deliveries: Deliveries,
    rate: float,
    until: float,
    sent: list[int],
) -> None:
    """
    Deliver ``rate`` mails a second round robin until ``until``, on one
    LMTP connection (opened again if it fails).  Runs in a thread.
    """
    client: smtplib.LMTP | None = None
    started = time.perf_counter()
    index = 0
    while True:
        due = started + index / rate
        if due >= until:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        account = index % len(recipients)
        submitted = time.perf_counter()
        reactor.callFromThread(deliveries.submitted[account].append, submitted)
        try:
            if client is None:
                client = smtplib.LMTP(*lmtp)
            client.sendmail("soak@example.com", [recipients[account]], message(index, 1000))
            sent[0] += 1
        except (OSError, smtplib.SMTPException):
            sent[1] += 1
            client = None
        index += 1
    if client is not None:
        client.quit()


async def soak(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from tests.services.rabbitmq import Broker

    root = Path(tempfile.mkdtemp(prefix="jmap-soak-"))
    broker = None
    server = None
    extra: list[str] = []
    users = tuple(f"soak{n}" for n in range(args.accounts))
    try:
        if not args.no_bus:
            broker = Broker(root / "rabbit")
            await threads.deferToThread(broker.start)
            os.environ["JMAP_AMQP_PASSWORD"] = "guest"
            extra = ["--bus", broker.url, "--bus-prefix", "soak"]
        server = await threads.deferToThread(LocalServer, root, extra, users)
        return await _run(reactor, args, server, broker, users)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"{' '.join(error.cmd)} failed: {error.stderr}") from None
    finally:
        if server is not None:
            await threads.deferToThread(server.stop)
        if broker is not None:
            await threads.deferToThread(broker.stop)
        if not os.environ.get("JMAP_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


async def _run(
    reactor: Any, args: argparse.Namespace, server: LocalServer, broker: Any, users: tuple[str, ...]
) -> dict[str, Any]:
    if broker is not None:
        log = server.root / "twistd.log"
        for _ in range(600):
            if "Connected to the message broker" in log.read_text():
                break
            await task.deferLater(reactor, 0.1, lambda: None)
    pid = server.process.pid
    target = server.target()
    address = target.ws_address
    deliveries = Deliveries(len(users))
    stopping = [False]
    connections = Connections(reactor, deliveries, stopping)
    for account, user in enumerate(users):
        auth = basic(user, f"{user}-pw")
        session = target.get(target.session_url, auth)
        account_id = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        target.api([["Mailbox/get", {"accountId": account_id, "ids": []}, "0"]], auth)
        count = args.sockets // len(users) + (account < args.sockets % len(users))
        ws = SoakFactory(target.ws_url, auth, address, account, deliveries, connections)
        request = eventsource_request(session, auth, address)
        for n in range(count):
            endpoint = TCP4ClientEndpoint(reactor, *address)
            if n % 2 == 0:
                await connect(connections, endpoint, ws)
            else:
                stream = EventSourceStream(request, address, account, deliveries, connections)
                await connect(
                    connections, endpoint, protocol.Factory.forProtocol(lambda s=stream: s)
                )
            if n % 50 == 49:
                await task.deferLater(reactor, 0.05, lambda: None)
    await task.deferLater(reactor, 2.0, lambda: None)

    duration = args.minutes * 60
    started = time.perf_counter()
    until = started + duration
    samples: list[dict[str, Any]] = []
    sent = [0, 0]
    recipients = [f"{user}@bench.test" for user in users]
    sender = threads.deferToThread(
        deliver,
        reactor,
        (target.lmtp_host, target.lmtp_port),
        recipients,
        deliveries,
        args.rate,
        until,
        sent,
    )
    restart: dict[str, float] = {}

    def restart_broker() -> None:
        restart["stop"] = time.perf_counter() - started
        broker.stop()
        restart["stopped"] = time.perf_counter() - started
        broker.start()
        restart["started"] = time.perf_counter() - started

    restarting = None
    rss, fds = server_figures(pid)
    baseline = {"rss_mib": rss, "descriptors": fds, "connections": len(connections.open)}
    while time.perf_counter() < until:
        await task.deferLater(reactor, args.interval, lambda: None)
        elapsed = time.perf_counter() - started
        if broker is not None and restarting is None and elapsed >= duration / 2:
            restarting = threads.deferToThread(restart_broker)
        latencies = deliveries.latencies_ms
        deliveries.latencies_ms = []
        rss, fds = server_figures(pid)
        waiting = connections.oldest_waiting_ms(time.perf_counter())
        sample = {
            "t": round(elapsed, 1),
            "rss_mib": round(rss, 1),
            "descriptors": fds,
            "connections": len(connections.open),
            "reconnects": connections.reconnects,
            "mails": sent[0],
            "mail_failures": sent[1],
            "frames": deliveries.frames,
            "oldest_waiting_ms": round(waiting, 1),
            "latency_ms": (
                {
                    "p50": round(statistics.median(latencies), 2),
                    "p99": round(percentile(latencies, 99), 2),
                    "max": round(max(latencies), 2),
                    "n": len(latencies),
                }
                if latencies
                else None
            ),
        }
        samples.append(sample)
        if args.verbose:
            print(json.dumps(sample), flush=True)
    await sender
    if restarting is not None:
        await restarting
    stopping[0] = True
    for connection in list(connections.open):
        connection.transport.abortConnection()
    return {
        "minutes": args.minutes,
        "sockets": args.sockets,
        "accounts": len(users),
        "rate": args.rate,
        "bus": broker is not None,
        "baseline": baseline,
        "broker_restart": restart,
        "samples": samples,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    """
    Three panels over time: RSS, descriptors and open connections, push
    latency (p50, p99, max of the pushes received in each interval, and the
    age of the oldest push still owed at each sample); the broker restart
    shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, (rss, fds, latency) = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    rss.plot(minutes, [s["rss_mib"] for s in samples], label="server RSS")
    rss.set_ylabel("MiB")
    rss.set_ylim(bottom=0)
    fds.plot(minutes, [s["descriptors"] for s in samples], label="server descriptors")
    fds.plot(minutes, [s["connections"] for s in samples], label="open push connections")
    fds.set_ylim(bottom=0)
    timed = [(m, s["latency_ms"]) for m, s in zip(minutes, samples, strict=True) if s["latency_ms"]]
    latency.plot([m for m, _ in timed], [v["p50"] for _, v in timed], ".-", label="p50")
    latency.plot([m for m, _ in timed], [v["p99"] for _, v in timed], ".-", label="p99")
    latency.plot([m for m, _ in timed], [v["max"] for _, v in timed], ".-", label="max", alpha=0.5)
    latency.plot(
        minutes,
        [max(s["oldest_waiting_ms"], 1.0) for s in samples],
        ":",
        color="black",
        label="oldest push still owed",
    )
    latency.set_yscale("log")
    latency.set_ylabel("push latency, ms")
    latency.set_xlabel("minutes")
    restart = results.get("broker_restart") or {}
    for ax in (rss, fds, latency):
        if "stop" in restart:
            ax.axvspan(
                restart["stop"] / 60,
                restart.get("started", restart["stop"]) / 60,
                color="grey",
                alpha=0.25,
                label="broker restart" if ax is rss else None,
            )
        ax.grid(True, alpha=0.3)
    rss.legend(loc="lower right", fontsize="small")
    fds.legend(loc="lower right", fontsize="small")
    latency.legend(loc="upper right", fontsize="x-small", ncol=2, framealpha=0.9)
    rss.set_title(
        f"Soak: {results['sockets']} push connections (WebSocket and EventSource), "
        f"{results['rate']:g} mails/s",
        fontsize="medium",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarise(results: dict[str, Any]) -> None:
    samples = results["samples"]
    if not samples:
        print("no samples")
        return
    first, last = samples[0], samples[-1]
    peak = max(s["rss_mib"] for s in samples)
    worst = max((s["latency_ms"]["max"] for s in samples if s["latency_ms"]), default=0.0)
    p99s = [s["latency_ms"]["p99"] for s in samples if s["latency_ms"]]
    print(
        f"{results['minutes']:g} min, {last['mails']} mails ({last['mail_failures']} failed), "
        f"{last['frames']} push frames, {last['reconnects']} reconnects\n"
        f"RSS {results['baseline']['rss_mib']:.0f} -> {first['rss_mib']:.0f} .. {last['rss_mib']:.0f}"
        f" MiB (peak {peak:.0f}); descriptors {first['descriptors']} .. {last['descriptors']};"
        f" connections {last['connections']}\n"
        f"push latency p99 per interval: median {statistics.median(p99s) if p99s else 0:.1f} ms,"
        f" worst {max(p99s, default=0):.1f} ms; max {worst:.1f} ms;"
        f" broker restart {results['broker_restart']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument(
        "--accounts", type=int, default=25, help="the server allows 50 push connections a user"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="mails per second")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--no-bus", action="store_true", help="no broker, no restart")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "soak.json")
    parser.add_argument("--plot", type=Path, default=HERE.parent / "docs" / "img" / "soak.png")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every sample")
    parser.add_argument(
        "--replot", action="store_true", help="only plot the samples already in --json"
    )
    args = parser.parse_args()
    if args.replot:
        results = json.loads(args.json.read_text())
        plot(results, args.plot)
        summarise(results)
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    os.environ.setdefault("JMAP_BENCH", "1")

    async def body(reactor: Any) -> None:
        results = await soak(reactor, args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        plot(results, args.plot)
        summarise(results)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))


if __name__ == "__main__":
    main()
