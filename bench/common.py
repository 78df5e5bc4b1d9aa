"""
Shared helpers of the benchmarks: run ``twistd jmap`` in a temporary
directory, make users, talk JMAP.  Benchmarks report medians and p99 and
never assert timings.
"""

from __future__ import annotations

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


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
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "max": max(values),
        "n": len(values),
    }


class Server:
    """
    A ``twistd jmap`` process with one user.
    """

    def __init__(self, root: Path, user: str = "bench", password: str = "bench-pw") -> None:
        self.root = root
        self.http_port = free_port()
        self.lmtp_port = free_port()
        self.user = user
        self.password = password
        self.data = root / "data"
        subprocess.run(
            [tool("jmap-admin"), "--data", str(self.data), "user", "add", user, "--password-stdin"],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        self.process = subprocess.Popen(
            [
                tool("twistd"),
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
            ],
            cwd=root,
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
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.auth = "Basic " + b64encode(f"{user}:{password}".encode()).decode()
        session = self.get("/.well-known/jmap")
        self.account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": self.auth})
        with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())

    def api(self, calls: list[Any]) -> tuple[list[Any], int]:
        """
        Run method calls; return the responses and the response body size.
        """
        body = json.dumps({"using": USING, "methodCalls": calls}).encode()
        request = urllib.request.Request(
            self.base + "/jmap/api/",
            data=body,
            headers={"Authorization": self.auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback only
            raw = response.read()
        return json.loads(raw)["methodResponses"], len(raw) + len(body)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


@contextmanager
def running_server() -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="jmap-bench-"))
    server = Server(root)
    try:
        yield server
    finally:
        server.stop()
        if not os.environ.get("JMAP_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def message(index: int, size: int = 2000) -> bytes:
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * (size // 56 + 1))[:size]
    return (
        f"From: Sender {index} <sender{index}@example.com>\r\n"
        f"To: bench@bench.test\r\n"
        f"Subject: Benchmark message {index}\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench{index}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()
