"""
Shared helpers of the benchmarks.

A benchmark measures a *target*: a JMAP server reached by its session URL,
credentials and LMTP address.  By default each benchmark starts its own
``twistd jmap`` in a temporary directory; ``--session-url`` and friends
point it at any other JMAP server instead (which needs a second user for
the benchmarks that open sockets of another account).  Benchmarks report
medians, p99 and maxima and never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
MAIL = "urn:ietf:params:jmap:mail"
WEBSOCKET = "urn:ietf:params:jmap:websocket"


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    """
    Median, p99 and max of samples, keeping the samples (for plots).
    """
    return {
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "max": max(values),
        "n": len(values),
        "samples": [round(v, 4) for v in values],
    }


def cpu_times(pid: int) -> tuple[float, float]:
    """
    The user and the system CPU time process ``pid`` has used so far
    (all its threads), in seconds, from ``/proc/PID/stat``.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15.
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """
    User plus system CPU time of process ``pid`` so far, in seconds.
    """
    return sum(cpu_times(pid))


def rss_kib(pid: int) -> int:
    """
    The resident memory of process ``pid`` (``VmRSS``), in KiB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stop_process(process: subprocess.Popen[Any]) -> None:
    """
    Stop a server process with SIGTERM, killing it if it has not exited
    within 30 s: a server that hangs must not hang the run.
    """
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


class Target:
    """
    A JMAP server under measurement, and its user.

    :ivar pid: the server's process id when it runs here (for memory
        figures), else ``None``.
    :ivar other: username, password and address of a second user, for
        sockets of another account.
    """

    def __init__(
        self,
        session_url: str,
        user: str,
        password: str,
        lmtp: tuple[str, int],
        recipient: str,
        other: tuple[str, str, str] | None = None,
        pid: int | None = None,
    ) -> None:
        self.session_url = session_url
        self.user = user
        self.password = password
        self.auth = basic(user, password)
        self.lmtp_host, self.lmtp_port = lmtp
        self.recipient = recipient
        self.other = other
        self.pid = pid
        session = self.get(session_url)
        self.session = session
        self.api_url = session["apiUrl"]
        self.account = session["primaryAccounts"][MAIL]
        ws = session["capabilities"].get(WEBSOCKET, {})
        self.ws_url = ws.get("url")

    @property
    def ws_address(self) -> tuple[str, int]:
        parts = urlsplit(self.ws_url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "wss" else 80)

    def get(self, url: str, auth: str | None = None) -> Any:
        request = urllib.request.Request(url, headers={"Authorization": auth or self.auth})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def api(self, calls: list[Any], auth: str | None = None) -> tuple[list[Any], int]:
        """
        Run method calls; return the responses and the bytes moved.
        """
        body = json.dumps({"using": USING, "methodCalls": calls}).encode()
        request = urllib.request.Request(
            self.api_url,
            data=body,
            headers={"Authorization": auth or self.auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            raw = response.read()
        return json.loads(raw)["methodResponses"], len(raw) + len(body)


#: Options lifting the bounds on connections per user and per address,
#: which one benchmark client on one loopback address would hit.
BENCH_LIMITS = (
    "--max-connections",
    "100000",
    "--max-anonymous-per-address",
    "100000",
    "--max-push-connections-per-user",
    "100000",
    "--login-failures-per-address",
    "0",
)


def checkout_commands(checkout: Path | None) -> tuple[list[str], list[str], dict[str, str]]:
    """
    How to run ``jmap-admin`` and ``twistd`` of a source tree, and their
    environment: this tree's installed commands (``checkout`` ``None``), or
    another checkout's code (a baseline of a same-run comparison), with its
    own ``.venv`` if it has one, else this Python with the checkout first on
    its path.
    """
    if checkout is None:
        return [tool("jmap-admin")], [tool("twistd")], dict(os.environ)
    checkout = checkout.resolve()
    own = checkout / ".venv" / "bin" / "python"
    python = str(own) if own.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(checkout))
    admin = [python, "-c", "from jmap_twisted.admin import main; main()"]
    twistd = [python, "-c", "from twisted.scripts.twistd import run; run()"]
    return admin, twistd, env


class LocalServer:
    """
    ``twistd jmap`` in a temporary directory, with users ``bench`` and
    ``other`` (and any of ``more_users``, password ``<name>-pw``).

    :param checkout: another source tree whose code to run (see
        :func:`checkout_commands`); ``None`` for this one.
    """

    def __init__(
        self,
        root: Path,
        extra: list[str] | None = None,
        more_users: tuple[str, ...] = (),
        checkout: Path | None = None,
    ) -> None:
        self.root = root
        admin, twistd, env = checkout_commands(checkout)
        self.http_port = free_port()
        self.lmtp_port = free_port()
        self.data = root / "data"
        for user in ("bench", "other", *more_users):
            subprocess.run(
                [
                    *admin,
                    "--data",
                    str(self.data),
                    "--init",
                    "user",
                    "add",
                    user,
                    "--password-stdin",
                ],
                input=f"{user}-pw\n",
                text=True,
                check=True,
                capture_output=True,
                env=env,
                cwd=root,  # ``python -c`` puts the working directory first
            )
        self.process = subprocess.Popen(
            [
                *twistd,
                "-n",
                "--pidfile=",
                "--logfile",
                str(root / "twistd.log"),
                "jmap",
                "--listen",
                f"tcp:{self.http_port}:interface=127.0.0.1",
                "--lmtp",
                f"tcp:{self.lmtp_port}:interface=127.0.0.1",
                "--data",
                str(self.data),
                "--domain",
                "bench.test",
                # One load generator on one address opens thousands of
                # sockets for one user: lift the per-user and per-address
                # bounds a production server keeps.
                *BENCH_LIMITS,
                *(extra or []),
            ],
            cwd=root,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.lmtp_port), 0.5).close()
                socket.create_connection(("127.0.0.1", self.http_port), 0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("twistd did not start")

    def target(self) -> Target:
        return Target(
            f"http://127.0.0.1:{self.http_port}/.well-known/jmap",
            "bench",
            "bench-pw",
            ("127.0.0.1", self.lmtp_port),
            "bench@bench.test",
            ("other", "other-pw", "other@bench.test"),
            self.process.pid,
        )

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def running_server(
    extra: list[str] | None = None, checkout: Path | None = None
) -> Iterator[Target]:
    """
    A fresh local server (``extra`` options for ``twistd jmap``; the code
    of ``checkout``, if given: see :class:`LocalServer`), stopped and
    removed afterwards.
    """
    root = Path(tempfile.mkdtemp(prefix="jmap-bench-"))
    server = LocalServer(root, extra, checkout=checkout)
    try:
        yield server.target()
    finally:
        server.stop()
        if not os.environ.get("JMAP_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """
    Options that point a benchmark at an existing server.
    """
    group = parser.add_argument_group("target (default: a local twistd jmap started for the run)")
    group.add_argument("--session-url", help="e.g. http://mail.example.com/.well-known/jmap")
    group.add_argument("--username")
    group.add_argument(
        "--password-env", default="JMAP_BENCH_PASSWORD", help="variable holding the password"
    )
    group.add_argument("--lmtp", help="host:port of the server's LMTP listener")
    group.add_argument("--recipient", help="the user's address for delivery")
    group.add_argument("--other-username")
    group.add_argument("--other-password-env", default="JMAP_BENCH_OTHER_PASSWORD")
    group.add_argument("--other-recipient")


@contextmanager
def open_target(args: argparse.Namespace, extra: list[str] | None = None) -> Iterator[Target]:
    """
    The server the options name, or a fresh local one (started with the
    ``extra`` options of ``twistd jmap``).
    """
    if not args.session_url:
        with running_server(extra) as target:
            yield target
        return
    host, _, port = (args.lmtp or "127.0.0.1:24").rpartition(":")
    other = None
    if args.other_username:
        other = (args.other_username, os.environ[args.other_password_env], args.other_recipient)
    yield Target(
        args.session_url,
        args.username,
        os.environ[args.password_env],
        (host, int(port)),
        args.recipient,
        other,
    )


def message(index: int, size: int = 2000) -> bytes:
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * (size // 56 + 1))[:size]
    return (
        f"From: Sender {index} <sender{index}@example.com>\r\n"
        f"To: bench@bench.test\r\n"
        f"Subject: Benchmark message {index}\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench{index}.{time.monotonic_ns()}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def react_and_report(
    run: Callable[[Any, argparse.Namespace], Awaitable[dict[str, Any]]],
    args: argparse.Namespace,
    report: Callable[[dict[str, Any]], None],
) -> None:
    """
    Run a benchmark's ``run(reactor, args)`` under the reactor, print its
    table with ``report`` and write its JSON to ``args.json`` if given.
    """
    from twisted.internet import defer, task

    async def body(reactor: Any) -> None:
        results = await run(reactor, args)
        report(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
