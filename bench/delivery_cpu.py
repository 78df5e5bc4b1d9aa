"""
Server CPU per delivery with one compressed push socket, against the floor
(``bench/floor.py``: bare Twisted LMTP and Autobahn, no storage, no JMAP)
in the same run.

    python bench/delivery_cpu.py --deliveries 200 --rounds 5

One WebSocket (permessage-deflate, push enabled for Email) is open on each
of ``twistd jmap`` (SQLite) and the floor.  Each round delivers
``--deliveries`` mails over one LMTP connection, one after the other, the
client waiting for the StateChange frame after each; the process's CPU
time (user + system, from ``/proc/PID/stat``) over the round, divided by
the deliveries, is the CPU per delivery.  Rounds alternate between server
and floor; figures are medians over rounds, the ratio the median of the
rounds' ratios.  End of DATA → frame latencies are pooled over rounds.

``--baseline-checkout TREE`` runs a third server from another source tree (for
instance ``git worktree add /tmp/base HEAD``) in the same alternation, for
a before/after comparison on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Target, cpu_seconds, message, react_and_report, running_server, summary
from floor import running_floor
from push import Factory, open_sockets
from twisted.internet import defer, threads


class LMTPClient:
    """
    One LMTP connection that delivers a message at a time and notes when
    the message's final octets leave.
    """

    def __init__(self, address: tuple[str, int], recipient: str) -> None:
        self.socket = socket.create_connection(address)
        self.file = self.socket.makefile("rb")
        self.recipient = recipient
        self._reply()
        self.socket.sendall(b"LHLO bench.client\r\n")
        self._reply()

    def _reply(self) -> int:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("LMTP connection closed")
            if line[3:4] != b"-":
                return int(line[:3])

    def deliver(self, body: bytes) -> float:
        """
        Deliver ``body``; return when its end of DATA was sent
        (``time.perf_counter``).
        """
        self.socket.sendall(
            b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<%s>\r\nDATA\r\n" % self.recipient.encode()
        )
        codes = [self._reply(), self._reply(), self._reply()]
        if codes != [250, 250, 354]:
            raise RuntimeError(f"LMTP refused the message: {codes}")
        payload = body.replace(b"\r\n.", b"\r\n..") + b".\r\n"
        started = time.perf_counter()
        self.socket.sendall(payload)
        if (code := self._reply()) != 250:
            raise RuntimeError(f"LMTP delivery failed: {code}")
        return started

    def close(self) -> None:
        self.socket.sendall(b"QUIT\r\n")
        self.file.close()
        self.socket.close()


async def one_round(
    client: LMTPClient, factory: Factory, pid: int, count: int, first: int
) -> tuple[float, list[float]]:
    """
    Deliver ``count`` mails, each after the previous one's frame; return
    the CPU ms per delivery and the end of DATA → frame latencies (ms).
    """
    latencies = []
    before = cpu_seconds(pid) * 1000
    for index in range(first, first + count):
        factory.arrivals.clear()
        factory.expected = 1
        done: defer.Deferred[None] = defer.Deferred()
        factory.done = done
        started = await threads.deferToThread(client.deliver, message(index))
        await done
        latencies.append((factory.arrivals[0] - started) * 1000)
    return (cpu_seconds(pid) * 1000 - before) / count, latencies


@contextmanager
def baseline_server(source: Path | None) -> Iterator[Target | None]:
    """
    A second local server running the ``jmap_twisted`` of another source
    tree (a checkout of the baseline), or nothing without one.
    """
    if source is None:
        yield None
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(source.resolve())
    try:
        server = running_server()
        target = server.__enter__()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    try:
        yield target
    finally:
        server.__exit__(None, None, None)


async def jmap_side(reactor: Any, server: Target) -> tuple[LMTPClient, Factory, int]:
    """
    One compressed socket with push on, and one LMTP connection, to a
    JMAP server.
    """
    assert server.pid is not None
    server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
    factory = Factory(server.ws_url, server.auth, True)
    await open_sockets(reactor, server.ws_address, factory, 1)
    client = LMTPClient((server.lmtp_host, server.lmtp_port), server.recipient)
    return client, factory, server.pid


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    count, warm = args.deliveries, max(5, args.deliveries // 10)
    with (
        running_server() as server,
        baseline_server(args.baseline_checkout) as baseline,
        running_floor() as floor,
    ):
        sides: dict[str, tuple[LMTPClient, Factory, int]] = {}
        sides["server"] = await jmap_side(reactor, server)
        if baseline is not None:
            sides["baseline"] = await jmap_side(reactor, baseline)
        bare = Factory(floor.ws_url("bench"), "", True)
        await open_sockets(reactor, floor.ws_address, bare, 1)
        sides["floor"] = (LMTPClient(floor.lmtp, "bench@bench.test"), bare, floor.pid)
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        latency: dict[str, list[float]] = {name: [] for name in sides}
        for client, factory, pid in sides.values():
            await one_round(client, factory, pid, warm, 0)
        for round_ in range(args.rounds):
            for name, (client, factory, pid) in sides.items():
                per, lat = await one_round(client, factory, pid, count, 1000 * (round_ + 1) * count)
                cpu[name].append(per)
                latency[name].extend(lat)
        for client, factory, _ in sides.values():
            client.close()
            for protocol in factory.opened:
                protocol.sendClose(1000)
    results: dict[str, Any] = {"deliveries": count, "rounds": args.rounds}
    for name in sides:
        results[f"{name}_cpu_ms"] = statistics.median(cpu[name])
        results[f"{name}_cpu_ms_rounds"] = cpu[name]
        results[f"{name}_end_of_data_to_frame_ms"] = summary(latency[name])
    # A short round of the floor can take less than a clock tick.
    ratios = [s / f for s, f in zip(cpu["server"], cpu["floor"], strict=True) if f > 0]
    results["ratio"] = statistics.median(ratios) if ratios else None
    if baseline is not None:
        results["baseline_source"] = str(args.baseline_checkout)
        results["server_to_baseline"] = statistics.median(
            s / max(b, 1e-9) for s, b in zip(cpu["server"], cpu["baseline"], strict=True)
        )
    return results


def report(results: dict[str, Any]) -> None:
    print(
        f"server CPU per delivery (1 socket, SQLite): {results['server_cpu_ms']:.2f} ms, "
        f"floor {results['floor_cpu_ms']:.2f} ms, ratio {results['ratio'] or 0:.1f}× "
        f"(median of {results['rounds']} rounds of {results['deliveries']})"
    )
    if "baseline_cpu_ms" in results:
        print(
            f"baseline ({results['baseline_source']}): {results['baseline_cpu_ms']:.2f} ms; "
            f"server/baseline {results['server_to_baseline']:.2f}"
        )
    for name in ("server", "baseline", "floor"):
        if f"{name}_end_of_data_to_frame_ms" not in results:
            continue
        lat = results[f"{name}_end_of_data_to_frame_ms"]
        print(
            f"{name:<7} end of DATA -> frame: p50 {lat['median']:.2f} ms, "
            f"p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=200, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternated server/floor rounds")
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="a source tree (e.g. a git worktree) whose jmap_twisted runs as a second server, "
        "alternated with this one",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
