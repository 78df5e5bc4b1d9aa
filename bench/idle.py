"""
What idle WebSockets cost ``twistd jmap``: thousands of open, compressed,
push-enabled sockets between pushes, with the server's pings on.

    python bench/idle.py --sockets 19000 --interval 30
    python bench/idle.py --sockets 19000 --baseline-checkout /tmp/base   # and another checkout

Opens ``--sockets`` sockets of one account with Autobahn's client (which
answers pings) and permessage-deflate, enables push on each, pushes one
mail to all of them, then measures:

* the server's CPU (utime + stime of ``/proc/PID/stat``) while the sockets
  idle for ``--rounds`` ping intervals, in % of a core, and the pings the
  clients answered meanwhile;
* the server's RSS per socket (after minus before the sockets, divided by
  their number), once they are open and once each received the push;
* push to one socket of another account among them: end of LMTP DATA →
  the StateChange frame, over ``--deliveries`` mails.

With ``--baseline-checkout``, the same measurements follow for another checkout's
code (a ``git worktree`` of an older commit), in the same run.  The
process's descriptor limit is raised to its hard limit (twistd inherits
it): 19,000 sockets need about 20,000.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Target, basic, cpu_times, react_and_report, rss_kib, running_server
from push import Factory, Pusher, latencies, lmtp_deliver
from twisted.internet import defer, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

#: Sockets opening at once.
WINDOW = 100


class Answering(Pusher):
    """
    A push-enabled socket that counts the pings it answers.
    """

    def onPing(self, payload: bytes) -> None:
        self.factory.pings += 1
        super().onPing(payload)


class Sockets(Factory):
    protocol = Answering

    def __init__(self, url: str, auth: str) -> None:
        super().__init__(url, auth, True)
        self.pings = 0


async def open_many(reactor: Any, address: tuple[str, int], factory: Sockets, count: int) -> None:
    """
    Open ``count`` sockets, at most :data:`WINDOW` handshakes at a time.
    """
    pending: set[defer.Deferred[None]] = set()
    for _ in range(count):
        if len(pending) >= WINDOW:
            await defer.DeferredList(list(pending), fireOnOneCallback=True, fireOnOneErrback=True)
        waiting: defer.Deferred[None] = defer.Deferred()
        factory.waiting.append(waiting)
        pending.add(waiting)
        waiting.addBoth(lambda result, d=waiting: (pending.discard(d), result)[1])
        await TCP4ClientEndpoint(reactor, *address).connect(factory)
    await defer.gatherResults(list(pending), consumeErrors=True)


async def measure(reactor: Any, server: Target, args: argparse.Namespace) -> dict[str, Any]:
    assert server.pid is not None and server.other is not None
    other_user, other_password, other_address = server.other
    other_auth = basic(other_user, other_password)
    server.api([["Mailbox/get", {"accountId": server.account, "ids": []}, "0"]])
    other_account = server.get(server.session_url, other_auth)["primaryAccounts"][
        "urn:ietf:params:jmap:mail"
    ]
    server.api([["Mailbox/get", {"accountId": other_account, "ids": []}, "0"]], other_auth)
    target = Factory(server.ws_url, server.auth, True)
    waiting: defer.Deferred[None] = defer.Deferred()
    target.waiting.append(waiting)
    await TCP4ClientEndpoint(reactor, *server.ws_address).connect(target)
    await waiting
    await task.deferLater(reactor, 1.0, lambda: None)
    before = rss_kib(server.pid)
    idle = Sockets(server.ws_url, other_auth)
    started = time.perf_counter()
    await open_many(reactor, server.ws_address, idle, args.sockets)
    opening = time.perf_counter() - started
    await task.deferLater(reactor, 1.0, lambda: None)  # push-enable settles
    opened = rss_kib(server.pid)
    idle.expected = args.sockets
    pushed_all: defer.Deferred[None] = defer.Deferred()
    idle.done = pushed_all
    await threads.deferToThread(lmtp_deliver, server, other_address, 0)
    await pushed_all
    await task.deferLater(reactor, 1.0, lambda: None)
    pushed = rss_kib(server.pid)
    idle.expected = 10**9
    window = args.rounds * (args.interval or 30)  # pings off: as long as with
    pings, cpu, wall = idle.pings, cpu_times(server.pid), time.perf_counter()
    await task.deferLater(reactor, window, lambda: None)
    (user, system), wall = cpu_times(server.pid), time.perf_counter() - wall
    user, system = user - cpu[0], system - cpu[1]
    pings = idle.pings - pings
    one_of_n = await latencies(reactor, server, target, server.recipient, args.deliveries)
    for protocol in idle.opened:
        protocol.sendClose(1000)
    await task.deferLater(reactor, 2.0, lambda: None)
    return {
        "sockets": args.sockets,
        "opened_per_second": args.sockets / opening,
        "kib_per_socket_idle": (opened - before) / args.sockets,
        "kib_per_socket_after_push": (pushed - before) / args.sockets,
        "idle_seconds": wall,
        "cpu_percent_of_core": 100 * (user + system) / wall,
        "cpu_user_percent": 100 * user / wall,
        "cpu_system_percent": 100 * system / wall,
        "pings_answered_per_second": pings / wall,
        "push_to_one": one_of_n,
    }


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--ws-ping-interval", str(args.interval)]
    results: dict[str, Any] = {"sockets": args.sockets, "ping_interval": args.interval}
    runs = [("current", None)]
    if args.baseline_checkout:
        runs.append(("baseline", args.baseline_checkout))
    for name, checkout in runs:
        with running_server(extra, checkout=checkout) as server:
            results[name] = await measure(reactor, server, args)
    return results


def report(results: dict[str, Any]) -> None:
    print(f"{results['sockets']} idle compressed sockets, pings every {results['ping_interval']} s")
    for name in ("current", "baseline"):
        value = results.get(name)
        if value is None:
            continue
        lat = value["push_to_one"]["end_of_data_to_frame_ms"]
        print(
            f"{name:<9} CPU {value['cpu_percent_of_core']:5.2f}% of a core"
            f" (user {value['cpu_user_percent']:.2f}%, system {value['cpu_system_percent']:.2f}%)"
            f" ({value['pings_answered_per_second']:.0f} pings/s answered),"
            f" {value['kib_per_socket_idle']:.1f} KiB/socket idle,"
            f" {value['kib_per_socket_after_push']:.1f} KiB/socket after a push,"
            f" push to 1 of N p50 {lat['median']:.2f} ms p99 {lat['p99']:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30, help="the server's ping interval (s)")
    parser.add_argument("--rounds", type=int, default=2, help="ping intervals of CPU sampling")
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--baseline-checkout", type=Path, help="another checkout to measure too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.setdefault("JMAP_BENCH", "1")
    react_and_report(run, args, report)


if __name__ == "__main__":
    main()
