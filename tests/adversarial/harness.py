"""
A real ``twistd jmap`` in its own process, attacked as a hostile client
would, and watched from outside: its memory and descriptors from ``/proc``,
and a second, well-behaved user's latency from a client of its own.

The bounds the adversarial tests assert are generous (seconds, hundreds of
MiB) against attacks that, undefended, freeze the server for minutes or
grow it by gigabytes, so a busy machine cannot make them flaky.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

from tests.integration.test_twistd import Twistd, admin, free_port

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]


def tree_environment() -> dict[str, str] | None:
    """
    The environment of a process that must run the attacked tree's code:
    with ``JMAP_ADVERSARIAL_TREE`` set (another checkout, an earlier commit,
    to measure what an attack did before its defence) its package comes
    first; otherwise ``None``, this process's own environment.
    """
    tree = os.environ.get("JMAP_ADVERSARIAL_TREE")
    return dict(os.environ, PYTHONPATH=tree) if tree else None


class Server:
    """
    ``twistd jmap`` on free loopback ports with ``extra`` options, and the
    users made with ``jmap-admin``.
    """

    def __init__(self, tmp: Path, extra: Sequence[str] = ()) -> None:
        env = tree_environment()
        self.port = free_port()
        self.lmtp_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.twistd = Twistd(
            tmp,
            f"tcp:{self.port}:interface=127.0.0.1",
            self.port,
            self.lmtp_port,
            extra=("--hostname", "jmap.test", *extra),
            env=env,
        )
        self.pid = self.twistd.process.pid
        self.passwords: dict[str, str] = {}

    def add_user(self, name: str, password: str | None = None) -> str:
        password = password or f"pw-{name}-0123"
        done = admin(
            self.twistd.data, "user", "add", name, "--password-stdin", stdin=password + "\n"
        )
        assert done.returncode == 0, done.stderr
        self.passwords[name] = password
        return password

    def auth(self, name: str) -> tuple[str, str]:
        return (name, self.passwords[name])

    def basic(self, name: str) -> str:
        """
        The ``Authorization`` value of a user's password.
        """
        return "Basic " + base64.b64encode(f"{name}:{self.passwords[name]}".encode()).decode()

    def websocket(self, name: str, timeout: float = 60) -> ClientConnection:
        """
        A user's JMAP WebSocket (subprotocol ``jmap``, permessage-deflate).
        """
        return connect(
            self.base.replace("http", "ws") + "/jmap/ws",
            subprotocols=["jmap"],  # type: ignore[list-item]
            additional_headers={"Authorization": self.basic(name)},
            open_timeout=timeout,
        )

    def rss(self) -> int:
        """
        The server's resident memory, in octets.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def peak_rss(self) -> int:
        """
        The most resident memory the server has had so far, in octets
        (``VmHWM``): catches a peak that is freed before it is sampled.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self) -> bool:
        return self.twistd.process.poll() is None

    def log(self) -> str:
        return self.twistd.log.read_text(errors="replace")

    def session(self, name: str, timeout: float = 60) -> dict[str, Any]:
        response = requests.get(self.base + "/jmap/session", auth=self.auth(name), timeout=timeout)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def api(
        self, name: str, *calls: list[Any], timeout: float = 60, using: list[str] = USING
    ) -> list[list[Any]]:
        response = requests.post(
            self.base + "/jmap/api/",
            json={"using": using, "methodCalls": list(calls)},
            auth=self.auth(name),
            timeout=timeout,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["methodResponses"])

    def account(self, name: str) -> str:
        return str(self.session(name)["primaryAccounts"][MAIL])

    def stop(self) -> bool:
        """
        Stop the server (killed if it does not stop within 30 s, as one
        frozen by an attack would not).
        """
        try:
            return self.twistd.stop()
        except subprocess.TimeoutExpired:
            self.twistd.process.kill()
            self.twistd.process.wait(timeout=30)
            return False


class SourceAddress(requests.adapters.HTTPAdapter):
    """
    Connects from another loopback address (any of 127.0.0.0/8), to be a
    client elsewhere than the attacker's 127.0.0.1.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def well_behaved(
    server: Server, name: str, timeout: float = 60, source: str | None = None
) -> float:
    """
    What a second user does: log in (a fresh connection, the password
    checked), read the session and run ``Core/echo``; the seconds it took.
    With ``source``, it connects from that loopback address.
    """
    started = time.monotonic()
    with requests.Session() as http:
        if source is not None:
            http.mount("http://", SourceAddress(source))
        http.auth = server.auth(name)
        session = http.get(server.base + "/jmap/session", timeout=timeout)
        assert session.status_code == 200, session.text
        echo = http.post(
            server.base + "/jmap/api/",
            json={"using": [CORE], "methodCalls": [["Core/echo", {"ok": 1}, "e"]]},
            timeout=timeout,
        )
        assert echo.status_code == 200, echo.text
        assert echo.json()["methodResponses"] == [["Core/echo", {"ok": 1}, "e"]]
    return time.monotonic() - started


class Attack:
    """
    Runs ``attack`` on ``threads`` threads until stopped; each call gets
    the thread's number.  Exceptions in the attack are kept, not raised
    (a defended server refuses and closes).
    """

    def __init__(self, attack: Callable[[int], None], threads: int = 1) -> None:
        self._attack = attack
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.rounds = 0
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, number: int) -> None:
        while not self.stopping.is_set():
            try:
                self._attack(number)
            except BaseException as e:
                self.errors.append(e)
                time.sleep(0.01)
            self.rounds += 1

    def __enter__(self) -> Attack:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)


@contextmanager
def running(tmp: Path, extra: Sequence[str] = ()) -> Iterator[Server]:
    server = Server(tmp, extra)
    try:
        yield server
    finally:
        server.stop()


def raw_connection(server: Server, data: bytes = b"") -> socket.socket:
    """
    A plain TCP connection to the HTTP port, having sent ``data``.
    """
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    if data:
        connection.sendall(data)
    return connection


MIB = 1024 * 1024
