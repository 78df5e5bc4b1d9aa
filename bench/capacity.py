"""
A capacity model of one ``twistd jmap`` node, calibrated and then checked
against measured runs at two sizes, all in one run.

    python bench/capacity.py                       # calibrate, then 2,000 and 8,000 sockets
    python bench/capacity.py --calibrate 20/4 --sizes 10/2@2,30/6@4 --interval 2

**Calibration** (a fresh server): the process's CPU (user + system of
``/proc/PID/stat``) and RSS (``VmRSS`` of ``/proc/PID/status``) give

* the base: RSS and CPU of the process with one socket open and idle;
* per idle socket: ``--calibrate SOCKETS/USERS`` compressed, push-enabled
  sockets (the users' sockets spread evenly), each after one push; RSS
  growth per socket, and CPU per socket-second over ``--window`` seconds
  (one ping interval by default, so that each socket is pinged once);
* per delivery: ``--deliveries`` mails over LMTP to a user with one
  socket, each after the previous one's frame;
* per frame: the same to a user with ``--fanout`` sockets; the CPU per
  delivery above the one-socket figure, divided by the extra frames.

**The model**: a node's CPU in % of a core is ``base + sockets × idle +
deliveries/s × (delivery + frames per delivery × frame)`` (the delivery
cost without its frame), its RSS ``base + sockets × per socket``.

**Checks** (``--sizes SOCKETS/USERS@RATE,…``, a fresh server each): the
sockets are opened and each user is pushed once; then for ``--window``
seconds mail arrives at ``RATE`` deliveries/s, paced from a thread over
one LMTP connection and spread over the users in turn, while the sockets
answer pings and count frames.  The model's prediction at the achieved
rate is set beside the measured CPU and RSS.  The default sizes keep the
ratio of 50 deliveries/s per 10,000 sockets; users hold several sockets
each so that creating their accounts (one scrypt hash each) stays short.

The sockets are lean epoll clients in this process (``bench/leanws.py``);
the process's descriptor limit is raised to its hard limit (the server
inherits it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LocalServer, Target, basic, cpu_seconds, message, rss_kib, tool
from leanws import LeanClient


def user_name(index: int) -> str:
    return f"cap{index:04d}"


def parse_size(text: str) -> tuple[int, int, float]:
    """
    ``SOCKETS/USERS@RATE`` (``@RATE`` optional) as numbers.
    """
    shape, _, rate = text.partition("@")
    sockets, _, users = shape.partition("/")
    return int(sockets), int(users or 1), float(rate or 0)


class Node:
    """
    One server under measurement, its sockets in one lean client, and one
    LMTP connection.
    """

    def __init__(self, target: Target) -> None:
        assert target.pid is not None
        self.target = target
        self.pid = target.pid
        self.client = LeanClient()
        self.lmtp = smtplib.LMTP(target.lmtp_host, target.lmtp_port)
        self.lmtp.ehlo_or_helo_if_needed()
        self.sent = 0
        parts = urlsplit(target.ws_url)
        self.path = parts.path or "/"

    def open(self, auth: str, count: int) -> None:
        host, port = self.target.ws_address
        for _ in range(count):
            self.client.open(host, port, self.path, [("Authorization", auth)])
            # Answer the pings of the sockets already open: opening
            # thousands takes longer than the ping timeout.
            self.client.pump(0)

    def open_users(self, users: int, sockets: int) -> None:
        """
        Open ``sockets`` sockets spread evenly over the first ``users`` users.
        """
        for index in range(users):
            share = sockets // users + (1 if index < sockets % users else 0)
            name = user_name(index)
            self.open(basic(name, f"{name}-pw"), share)
        self.drain(0.5)

    def drain(self, seconds: float) -> None:
        """
        Read the sockets for ``seconds`` (pings keep arriving, so waiting
        for quiet might never end).
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.client.pump(min(left, 0.1))

    def deliver(self, recipient: str) -> None:
        self.lmtp.sendmail("sender@example.com", [recipient], message(self.sent))
        self.sent += 1

    def wait(self, total: int, timeout: float = 60.0) -> None:
        """
        Read until the sockets hold ``total`` data frames in all.
        """
        deadline = time.monotonic() + timeout
        while self.client.received < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.client.received} of {total} frames arrived")
            self.client.pump(0.2)

    def cpu_per_delivery(self, recipient: str, frames: int, count: int) -> float:
        """
        Deliver ``count`` mails to ``recipient``, each after the previous
        one's ``frames`` frames; return the server's CPU seconds per delivery.
        """
        self.drain(0.3)
        before = cpu_seconds(self.pid)
        for _ in range(count):
            expected = self.client.received + frames
            self.deliver(recipient)
            self.wait(expected)
        return (cpu_seconds(self.pid) - before) / count

    def prime(self, users: int, frames: int) -> None:
        """
        Push once to each of the first ``users`` users (``frames`` frames in all).
        """
        expected = self.client.received + frames
        for index in range(users):
            self.deliver(f"{user_name(index)}@bench.test")
        self.wait(expected)
        self.drain(0.5)

    def idle(self, seconds: float) -> float:
        """
        The server's CPU in % of a core while the sockets idle (answering
        pings) for ``seconds``.
        """
        before, started = cpu_seconds(self.pid), time.monotonic()
        while (left := started + seconds - time.monotonic()) > 0:
            self.client.pump(min(left, 0.2))
        return 100 * (cpu_seconds(self.pid) - before) / (time.monotonic() - started)

    def paced(self, users: int, rate: float, seconds: float) -> dict[str, float]:
        """
        Deliver at ``rate`` mails/s for ``seconds``, spread over the users
        in turn, from a thread, while reading the sockets; return the
        achieved rate, the server's CPU in % of a core and the frames/s.
        """
        done = threading.Event()
        delivered = [0]
        lag = [0.0]

        def pace() -> None:
            start = time.monotonic()
            index = 0
            while not done.is_set():
                due = start + index / rate
                wait = due - time.monotonic()
                if wait > 0:
                    if done.wait(wait):
                        break
                else:
                    lag[0] = max(lag[0], -wait)
                self.deliver(f"{user_name(index % users)}@bench.test")
                delivered[0] += 1
                index += 1

        frames = self.client.received
        before, started = cpu_seconds(self.pid), time.monotonic()
        thread = threading.Thread(target=pace, daemon=True) if rate > 0 else None
        if thread:
            thread.start()
        while (left := started + seconds - time.monotonic()) > 0:
            self.client.pump(min(left, 0.2))
        done.set()
        cpu = cpu_seconds(self.pid) - before
        wall = time.monotonic() - started
        if thread:
            thread.join()
        self.drain(0.3)
        return {
            "seconds": wall,
            "deliveries_per_second": delivered[0] / wall,
            "cpu_percent": 100 * cpu / wall,
            "frames_per_second": (self.client.received - frames) / wall,
            "max_pacing_lag_s": lag[0],
        }

    def close(self) -> None:
        self.lmtp.quit()
        self.client.close()


@contextmanager
def node(template: Path, interval: int) -> Iterator[Node]:
    """
    A fresh server on a copy of the template data directory (its users
    already created), with pings every ``interval`` seconds.
    """
    root = Path(tempfile.mkdtemp(prefix="jmap-capacity-"))
    shutil.copytree(template, root / "data")
    server = LocalServer(root, ["--ws-ping-interval", str(interval)])
    one = Node(server.target())
    try:
        yield one
    finally:
        one.close()
        server.stop()
        if not os.environ.get("JMAP_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def make_users(count: int) -> Path:
    """
    A data directory with ``count`` users, created in one ``jmap-admin``
    run from a CSV file.
    """
    root = Path(tempfile.mkdtemp(prefix="jmap-capacity-users-"))
    rows = root / "users.csv"
    rows.write_text(
        "".join(f"{user_name(i)},{user_name(i)}-pw\n" for i in range(count)), encoding="utf-8"
    )
    subprocess.run(
        [tool("jmap-admin"), "--data", str(root / "data"), "--init", "user", "import", str(rows)],
        check=True,
        capture_output=True,
        cwd=root,
    )
    return root


def warm(one: Node, seconds: float) -> dict[str, float]:
    """
    One socket of ``bench`` and a few deliveries to it, then the base RSS
    and idle CPU.
    """
    one.open(one.target.auth, 1)
    one.drain(0.5)
    one.cpu_per_delivery(one.target.recipient, 1, 5)
    one.drain(0.5)
    return {"rss_kib": rss_kib(one.pid), "cpu_percent": one.idle(seconds)}


def calibrate(
    template: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    sockets, users, _ = parse_size(args.calibrate)
    with node(template, args.interval) as one:
        base = warm(one, args.base_window)
        log(f"base: {base['rss_kib'] / 1024:.1f} MiB, {base['cpu_percent']:.2f}% of a core")
        before = rss_kib(one.pid)
        one.open_users(users, sockets)
        one.prime(users, sockets)
        per_socket_kib = (rss_kib(one.pid) - before) / sockets
        idle = one.idle(args.window)
        idle_us = 1e6 * (idle - base["cpu_percent"]) / 100 / sockets
        log(
            f"{sockets} idle sockets: {per_socket_kib:.1f} KiB/socket,"
            f" {idle:.2f}% of a core = {idle_us:.1f} µs per socket-second"
        )
        single = one.cpu_per_delivery(one.target.recipient, 1, args.deliveries)
        assert one.target.other is not None
        other, password, address = one.target.other
        one.open(basic(other, password), args.fanout)
        one.drain(0.5)
        fanned = one.cpu_per_delivery(address, args.fanout, args.deliveries)
        frame_ms = 1000 * max(fanned - single, 0.0) / (args.fanout - 1)
        delivery_ms = 1000 * single - frame_ms
        log(
            f"per delivery {1000 * single:.2f} ms with 1 frame, {1000 * fanned:.2f} ms with"
            f" {args.fanout}: {delivery_ms:.2f} ms + {frame_ms:.3f} ms per frame"
        )
    return {
        "sockets": sockets,
        "users": users,
        "ping_interval": args.interval,
        "base_rss_kib": base["rss_kib"],
        "base_cpu_percent": base["cpu_percent"],
        "kib_per_socket": per_socket_kib,
        "idle_cpu_percent": idle,
        "idle_us_per_socket_second": idle_us,
        "cpu_ms_per_delivery_one_frame": 1000 * single,
        "cpu_ms_per_delivery_fanout": 1000 * fanned,
        "fanout": args.fanout,
        "delivery_ms": delivery_ms,
        "frame_ms": frame_ms,
    }


def predict(model: dict[str, Any], sockets: int, rate: float, frames: float) -> dict[str, float]:
    """
    The model's CPU (% of a core) and RSS (KiB) of a node.
    """
    cpu = (
        model["base_cpu_percent"]
        + sockets * model["idle_us_per_socket_second"] / 1e4
        + rate * (model["delivery_ms"] + frames * model["frame_ms"]) / 10
    )
    return {
        "cpu_percent": cpu,
        "rss_kib": model["base_rss_kib"] + sockets * model["kib_per_socket"],
    }


def check(
    template: Path, model: dict[str, Any], size: str, args: argparse.Namespace
) -> dict[str, Any]:
    sockets, users, rate = parse_size(size)
    with node(template, args.interval) as one:
        base = warm(one, args.base_window)
        one.open_users(users, sockets)
        one.prime(users, sockets)
        measured = one.paced(users, rate, args.window)
        measured["rss_kib"] = rss_kib(one.pid)
        measured["sockets_open"] = len(one.client.sockets)
    frames = sockets / users
    predicted = predict(model, sockets, measured["deliveries_per_second"], frames)
    return {
        "sockets": sockets,
        "users": users,
        "offered_rate": rate,
        "frames_per_delivery": frames,
        "base": base,
        "measured": measured,
        "predicted": predicted,
        "cpu_error_percent": error(predicted["cpu_percent"], measured["cpu_percent"]),
        "rss_error_percent": error(predicted["rss_kib"], measured["rss_kib"]),
    }


def error(predicted: float, measured: float) -> float | None:
    """
    The prediction's error in % of the measured figure (``None`` if
    nothing was measured, as below a clock tick).
    """
    return 100 * (predicted - measured) / measured if measured else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [s for s in args.sizes.split(",") if s]
    most = max(parse_size(s)[1] for s in [args.calibrate, *sizes])
    started = time.monotonic()
    users = make_users(most)
    print(f"{most} users created in {time.monotonic() - started:.0f} s", flush=True)
    try:
        model = calibrate(users / "data", args, lambda line: print(line, flush=True))
        checks = {}
        for size in sizes:
            checks[size] = check(users / "data", model, size, args)
            report_check(checks[size])
    finally:
        shutil.rmtree(users, ignore_errors=True)
    return {"model": model, "checks": checks, "window_s": args.window}


def signed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}%"


def report_check(value: dict[str, Any]) -> None:
    m, p = value["measured"], value["predicted"]
    print(
        f"{value['sockets']} sockets / {value['users']} users at"
        f" {m['deliveries_per_second']:.1f} deliveries/s ({m['frames_per_second']:.0f} frames/s):"
        f" CPU predicted {p['cpu_percent']:.2f}% measured {m['cpu_percent']:.2f}%"
        f" ({signed(value['cpu_error_percent'], 0)}), RSS predicted {p['rss_kib'] / 1024:.1f} MiB"
        f" measured {m['rss_kib'] / 1024:.1f} MiB ({signed(value['rss_error_percent'], 1)})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calibrate", default="1000/100", help="SOCKETS/USERS of the idle calibration"
    )
    parser.add_argument(
        "--sizes",
        default="2000/200@10,8000/800@40",
        help="SOCKETS/USERS@DELIVERIES_PER_SECOND of the checks, comma-separated",
    )
    parser.add_argument("--interval", type=int, default=30, help="server ping interval (s)")
    parser.add_argument(
        "--window", type=float, help="seconds of each CPU sample (default: one ping interval)"
    )
    parser.add_argument(
        "--base-window", type=float, default=5, help="seconds of the base CPU sample"
    )
    parser.add_argument("--deliveries", type=int, default=100, help="deliveries per cost figure")
    parser.add_argument("--fanout", type=int, default=100, help="sockets of the per-frame figure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.window = args.window or args.interval
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ.setdefault("JMAP_BENCH", "1")
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
