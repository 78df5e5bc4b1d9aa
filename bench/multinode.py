"""
Several nodes: cross-node push, the AMQP bus between two processes, and
LMTP delivery into PostgreSQL.

    python bench/multinode.py --deliveries 200 --events 20000

Starts a throwaway RabbitMQ broker and PostgreSQL cluster (with its default
durability) and two ``twistd jmap`` nodes, A and B, sharing them; or, with
``--session-url`` (node B) and ``--lmtp`` (node A), measures a cluster
already running.  Measures, in one run:

* **cross-node push**: end of LMTP DATA on node A → StateChange frame on a
  WebSocket of node B, next to the same-node baseline (LMTP and socket on
  B) so the broker's share is a ratio;
* **bus throughput and latency**: one process dispatches StateChange
  events on its ``AMQPEventBus`` as fast as it can, keyed over 100
  accounts; a second process, with a listener per account, counts them
  and measures each event's dispatch → handle latency (both clocks are
  this machine's);  the in-memory bus in one process is the baseline;
* **PostgreSQL delivery**: LMTP mails/s into node A on one connection and
  on four.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import (
    BENCH_LIMITS,
    Target,
    add_target_arguments,
    free_port,
    message,
    react_and_report,
    stop_process,
    summary,
    tool,
)
from push import Factory, delivery_rate, latencies, open_sockets
from twisted.internet import defer, task, threads

ACCOUNTS = 100

#: The connections (to as many accounts) of the LMTP rates into PostgreSQL.
LMTP_CONNECTIONS = (4, 8)


class LocalCluster:
    """
    A broker, a PostgreSQL cluster and two ``twistd jmap`` nodes.
    """

    def __init__(self, root: Path) -> None:
        from tests.services.postgres import TEST_ROLE, start_cluster
        from tests.services.rabbitmq import Broker

        self.root = root
        self.broker = Broker(root / "rabbit")
        self.broker.start()
        self.postgres = start_cluster(durable=True)
        name = self.postgres.create_database().split("dbname=")[1].split()[0]
        self.store = f"postgresql://{TEST_ROLE}@127.0.0.1:{self.postgres.port}/{name}"
        self.secret = root / "db-password"
        self.secret.write_text(self.postgres.password + "\n")
        self.prefix = "bench"
        for user in ("bench", "other", *(f"user{n}" for n in range(max(LMTP_CONNECTIONS)))):
            subprocess.run(
                [
                    tool("jmap-admin"),
                    *self.store_options(),
                    "user",
                    "add",
                    user,
                    "--password-stdin",
                ],
                input=f"{user}-pw\n",
                text=True,
                check=True,
                capture_output=True,
            )
        self.nodes = {name: self.start_node(name) for name in ("a", "b")}

    def store_options(self) -> list[str]:
        return ["--store", self.store, "--store-password-file", str(self.secret)]

    def start_node(self, name: str) -> tuple[subprocess.Popen[bytes], int, int]:
        http, lmtp = free_port(), free_port()
        directory = self.root / name
        directory.mkdir()
        process = subprocess.Popen(
            [
                tool("twistd"),
                "-n",
                "--pidfile=",
                "--logfile",
                str(directory / "twistd.log"),
                "jmap",
                "--listen",
                f"tcp:{http}:interface=127.0.0.1",
                "--lmtp",
                f"tcp:{lmtp}:interface=127.0.0.1",
                "--domain",
                "bench.test",
                "--data",
                str(directory / "data"),
                *self.store_options(),
                "--bus",
                self.broker.url,
                "--bus-prefix",
                self.prefix,
                "--node-id",
                name,
                *BENCH_LIMITS,
            ],
            cwd=directory,
            env={**os.environ, "JMAP_AMQP_PASSWORD": "guest"},
        )
        log = directory / "twistd.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and "Connected to the message broker" in log.read_text():
                return process, http, lmtp
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"node {name} did not start: {log.read_text()[-2000:]}")

    def target(self, session_node: str, lmtp_node: str) -> Target:
        _, http, _ = self.nodes[session_node]
        _, _, lmtp = self.nodes[lmtp_node]
        return Target(
            f"http://127.0.0.1:{http}/.well-known/jmap",
            "bench",
            "bench-pw",
            ("127.0.0.1", lmtp),
            "bench@bench.test",
            ("other", "other-pw", "other@bench.test"),
            self.nodes[session_node][0].pid,
        )

    def stop(self) -> None:
        for process, _, _ in self.nodes.values():
            stop_process(process)
        self.postgres.stop()
        self.broker.stop()


@contextmanager
def local_cluster() -> Any:
    root = Path(tempfile.mkdtemp(prefix="jmap-bench-cluster-"))
    cluster = LocalCluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        if not os.environ.get("JMAP_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


async def push_latency(reactor: Any, target: Target, deliveries: int) -> dict[str, Any]:
    factory = Factory(target.ws_url, target.auth, deflate=True)
    await open_sockets(reactor, target.ws_address, factory, 1)
    try:
        return await latencies(reactor, target, factory, target.recipient, deliveries)
    finally:
        for protocol in factory.opened:
            protocol.dropConnection()


def lmtp_rates(
    target: Target, messages: int, connections: Sequence[int]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """
    LMTP mails/s into one account on one connection, then on each of
    ``connections`` connections to as many accounts (one account's writes
    are serialised by design; accounts proceed in parallel), with the time
    from the end of DATA to ``250`` of each run.
    """
    rates = {"one_account_one_connection": delivery_rate(target, messages)}
    taken_ms: dict[str, dict[str, float]] = {}
    for count in connections:
        each = messages // count
        taken: list[float] = []

        def send(n: int, each: int = each, taken: list[float] = taken) -> None:
            with smtplib.LMTP(target.lmtp_host, target.lmtp_port) as client:
                for index in range(each):
                    began = time.perf_counter()
                    client.sendmail("bench@example.com", [f"user{n}@bench.test"], message(index))
                    taken.append((time.perf_counter() - began) * 1000)

        started = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(send, range(count)))
        label = f"{count}_accounts_{count}_connections"
        rates[label] = each * count / (time.perf_counter() - started)
        taken_ms[label] = summary(taken)
    return rates, taken_ms


# -- the bus between two processes ------------------------------------------------


def _bus(reactor: Any, url: str, prefix: str) -> Any:
    from jmap_twisted.bus.amqp import AMQPEventBus
    from jmap_twisted.bus.amqp_node import AMQPConnector, AMQPSettings
    from jmap_twisted.bus.deadletters import MemoryDeadLetters

    connector = AMQPConnector(reactor, AMQPSettings.from_url(url, "guest", prefix=prefix))
    return AMQPEventBus(connector, "jmap", reactor, MemoryDeadLetters())


class Counter:
    """
    A key listener recording each event's dispatch → handle latency (the
    dispatch time travels in the event's Email state, in nanoseconds).
    """

    execution_mode = "synchronous"

    def __init__(self, expected: int, done: defer.Deferred[None]) -> None:
        self.expected = expected
        self.done = done
        self.latencies_ms: list[float] = []
        self.first = self.last = 0.0

    def is_handling(self, event: Any) -> bool:
        return True

    def handle(self, event: Any) -> defer.Deferred[None]:
        now = time.time_ns()
        if not self.latencies_ms:
            self.first = now / 1e9
        self.last = now / 1e9
        self.latencies_ms.append((now - int(event.states["Email"])) / 1e6)
        if len(self.latencies_ms) == self.expected and not self.done.called:
            self.done.callback(None)
        return defer.succeed(None)


async def receiver(reactor: Any, url: str, prefix: str, count: int) -> None:
    """
    The second process: listen under every account, report when ``count``
    events arrived.
    """
    from zope.interface import directlyProvides

    from jmap_twisted.bus.events import AccountKey
    from jmap_twisted.interfaces import IEventListener

    bus = _bus(reactor, url, prefix)
    await bus.start()
    done: defer.Deferred[None] = defer.Deferred()
    counter = Counter(count, done)
    directlyProvides(counter, IEventListener)
    await bus.register(counter, [AccountKey(f"acct{i}") for i in range(ACCOUNTS)])
    print("ready", flush=True)
    await done
    print(
        json.dumps(
            {"first": counter.first, "last": counter.last, "latencies_ms": counter.latencies_ms}
        ),
        flush=True,
    )
    await bus.stop()


async def dispatch_all(bus: Any, count: int, rate: float | None) -> float:
    """
    Dispatch ``count`` StateChanges over the accounts (at ``rate`` per
    second, or as fast as possible); return the start time.
    """
    from twisted.internet import reactor

    from jmap_twisted.bus.events import AccountKey, StateChange

    keys = [AccountKey(f"acct{i}") for i in range(ACCOUNTS)]
    started = time.time()
    for n in range(count):
        if rate is not None:
            due = started + n / rate
            if due > time.time():
                await task.deferLater(reactor, due - time.time(), lambda: None)
        elif n % 500 == 0:
            await task.deferLater(reactor, 0, lambda: None)  # let the socket drain
        event = StateChange(f"acct{n % ACCOUNTS}", {"Email": str(time.time_ns())})
        bus.dispatch(event, [keys[n % ACCOUNTS]])
    return started


async def bus_between_processes(
    reactor: Any, url: str, count: int, rate: float | None
) -> dict[str, Any]:
    prefix = f"bb{int(time.time() * 1000) % 10**8}"
    child = subprocess.Popen(
        [sys.executable, __file__, "--receiver", url, prefix, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = await threads.deferToThread(child.stdout.readline)
    if line.strip() != "ready":
        raise SystemExit(f"the receiving process did not start: {line!r}")
    bus = _bus(reactor, url, prefix)
    await bus.start()
    started = await dispatch_all(bus, count, rate)
    outcome = json.loads(await threads.deferToThread(child.stdout.readline))
    await threads.deferToThread(child.wait)
    await bus.stop()
    return {
        "events": count,
        "offered_rate": rate,
        "events_per_second": count / (outcome["last"] - started),
        "latency_ms": summary(outcome["latencies_ms"]),
    }


async def memory_bus_baseline(count: int) -> dict[str, Any]:
    from twisted.internet import reactor
    from zope.interface import directlyProvides

    from jmap_twisted.bus.deadletters import MemoryDeadLetters
    from jmap_twisted.bus.events import AccountKey
    from jmap_twisted.bus.memory import InMemoryEventBus
    from jmap_twisted.interfaces import IEventListener

    bus = InMemoryEventBus(reactor, MemoryDeadLetters())
    done: defer.Deferred[None] = defer.Deferred()
    counter = Counter(count, done)
    directlyProvides(counter, IEventListener)
    await bus.register(counter, [AccountKey(f"acct{i}") for i in range(ACCOUNTS)])
    started = await dispatch_all(bus, count, None)
    await done
    return {
        "events": count,
        "events_per_second": count / (counter.last - started),
        "latency_ms": summary(counter.latencies_ms),
    }


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if args.session_url:
        cluster = None
        host, _, port = args.lmtp.rpartition(":")
        other = Target(
            args.session_url,
            args.username,
            os.environ[args.password_env],
            (host, int(port)),
            args.recipient,
        )
        cross = same = other
        broker_url = args.broker
    else:
        cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="jmap-bench-cluster-")))
        cross, same = cluster.target("b", "a"), cluster.target("b", "b")
        broker_url = cluster.broker.url
    try:
        results["cross_node_push"] = await push_latency(reactor, cross, args.deliveries)
        if same is not cross:
            results["same_node_push"] = await push_latency(reactor, same, args.deliveries)
        rates, lmtp_latencies = await threads.deferToThread(
            lmtp_rates, cross, args.messages, LMTP_CONNECTIONS
        )
        results["postgres_lmtp_mails_per_second"] = rates
        results["postgres_lmtp_latency_ms"] = lmtp_latencies
        if broker_url:
            results["bus_flat_out"] = await bus_between_processes(
                reactor, broker_url, args.events, None
            )
            results["bus_paced"] = await bus_between_processes(
                reactor, broker_url, min(args.events, 5000), args.rate
            )
            results["memory_bus_flat_out"] = await memory_bus_baseline(args.events)
    finally:
        if cluster is not None:
            await threads.deferToThread(cluster.stop)
            shutil.rmtree(cluster.root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> None:
    for key in ("cross_node_push", "same_node_push"):
        if key in results:
            lat = results[key]["reply_250_to_frame_ms"]
            print(f"{key:<24} 250 -> frame p50 {lat['median']:.2f} ms  p99 {lat['p99']:.2f} ms")
    for key, value in results.get("postgres_lmtp_mails_per_second", {}).items():
        lat = results.get("postgres_lmtp_latency_ms", {}).get(key)
        after = f", 250 p50 {lat['median']:.2f} ms p99 {lat['p99']:.2f} ms" if lat else ""
        print(f"LMTP into PostgreSQL, {key:<16} {value:8.0f} mails/s{after}")
    for key in ("bus_flat_out", "bus_paced", "memory_bus_flat_out"):
        if key in results:
            value = results[key]
            lat = value["latency_ms"]
            print(
                f"{key:<24} {value['events_per_second']:8.0f} events/s, "
                f"latency p50 {lat['median']:.2f} ms p99 {lat['p99']:.2f} ms"
            )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--receiver":
        url, prefix, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        task.react(lambda reactor: defer.ensureDeferred(receiver(reactor, url, prefix, count)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--messages", type=int, default=1000, help="for the LMTP rate")
    parser.add_argument("--events", type=int, default=20000, help="for the bus throughput")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the paced run")
    parser.add_argument("--broker", help="amqp:// URL of the cluster's broker (with --session-url)")
    parser.add_argument("--json", type=Path)
    add_target_arguments(parser)
    args = parser.parse_args()
    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
