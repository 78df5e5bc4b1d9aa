"""
The installed commands as a new user runs them: ``twistd jmap`` in its own
process, users made with ``jmap-admin``, and real clients (requests, the
``jmapc`` library) over TLS.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import requests
from jmapc import Client
from jmapc.methods import CoreEcho, CoreEchoResponse

from tests.integration.tls import make_certificate

CORE = "urn:ietf:params:jmap:core"


def command(name: str) -> str:
    """
    The path of a console script installed beside this Python.
    """
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"twistd exited early: {process.stdout.read()!r}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("twistd did not start listening")


def admin(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command("jmap-admin"), "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Twistd:
    """
    ``twistd jmap`` in ``tmp`` (its data and log there), for the domain
    example.com; ``extra`` options are appended, ``env`` replaces the
    environment when given.
    """

    def __init__(
        self,
        tmp: Path,
        listen: str,
        port: int,
        lmtp_port: int | None = None,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = tmp / "data"
        self.log = tmp / "twistd.log"
        self.process = subprocess.Popen(
            [
                command("twistd"),
                "-n",
                "--pidfile=",
                "--logfile",
                str(self.log),
                "jmap",
                "--listen",
                listen,
                "--data",
                str(self.data),
                "--lmtp",
                f"tcp:{lmtp_port or free_port()}:interface=127.0.0.1",
                "--domain",
                "example.com",
                *extra,
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(port, self.process)

    def stop(self) -> bool:
        """
        Send SIGTERM; return whether twistd shut down cleanly (it re-raises
        the signal once its services have stopped).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        return code in (0, -signal.SIGTERM) and "Server Shut Down." in self.log.read_text()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[tuple[Twistd, str]]:
    port = free_port()
    server = Twistd(tmp_path, f"tcp:{port}:interface=127.0.0.1", port)
    yield server, f"http://127.0.0.1:{port}"
    server.stop()


def test_first_five_minutes(plain: tuple[Twistd, str]) -> None:
    """
    The README's walk-through: a user and a token made with jmap-admin
    against a running server can fetch the session and run Core/echo; the
    password and token never reach the server's log.
    """
    server, base = plain
    created = admin(server.data, "user", "add", "alice", "--password-stdin", stdin="s3cret-pw\n")
    assert created.returncode == 0, created.stderr
    session = requests.get(base + "/.well-known/jmap", auth=("alice", "s3cret-pw"), timeout=10)
    assert session.status_code == 200
    body = session.json()
    assert body["username"] == "alice"
    echo = requests.post(
        body["apiUrl"],
        json={"using": [CORE], "methodCalls": [["Core/echo", {"hello": True}, "b3ff"]]},
        auth=("alice", "s3cret-pw"),
        timeout=10,
    )
    assert echo.json()["methodResponses"] == [["Core/echo", {"hello": True}, "b3ff"]]

    issued = admin(server.data, "token", "issue", "alice", "--name", "laptop")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    headers = {"Authorization": "Bearer " + token}
    assert requests.get(base + "/.well-known/jmap", headers=headers, timeout=10).ok
    listed = admin(server.data, "token", "list", "alice")
    token_id = listed.stdout.split()[0]
    assert admin(server.data, "token", "revoke", token_id).returncode == 0
    assert requests.get(base + "/.well-known/jmap", headers=headers, timeout=10).status_code == 401
    assert requests.get(base + f"/x?access_token={token}", timeout=10).status_code == 404

    changed = admin(server.data, "user", "passwd", "alice", "--password-stdin", stdin="other-pw\n")
    assert changed.returncode == 0
    assert (
        requests.get(base + "/jmap/session", auth=("alice", "s3cret-pw"), timeout=10).status_code
        == 401
    )
    assert requests.get(base + "/jmap/session", auth=("alice", "other-pw"), timeout=10).ok

    assert server.stop()
    log = server.log.read_text()
    assert "GET /.well-known/jmap" in log
    for secret in ("s3cret-pw", "other-pw", token):
        assert secret not in log


def test_jmapc_over_tls(tmp_path: Path) -> None:
    """
    The jmapc client, which speaks only HTTPS and reads every session
    field, connects through an ssl: endpoint, reads the session and runs
    Core/echo.
    """
    key, cert = make_certificate(tmp_path)
    port = free_port()
    server = Twistd(
        tmp_path, f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}", port
    )
    try:
        assert (
            admin(
                server.data, "user", "add", "ann", "--password-stdin", stdin="pw-ann\n"
            ).returncode
            == 0
        )
        os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
        try:
            client = Client.create_with_password(f"127.0.0.1:{port}", "ann", "pw-ann")
            session = client.jmap_session
            assert session.username == "ann"
            assert session.api_url == f"https://127.0.0.1:{port}/jmap/api/"
            assert session.capabilities.core.max_calls_in_request == 16
            assert client.account_id
            result = client.request(CoreEcho(data={"ping": "pong"}))
            assert isinstance(result, CoreEchoResponse)
            assert result.data == {"ping": "pong"}
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]
    finally:
        assert server.stop()


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    """
    A bad option makes twistd print a usage error and exit non-zero, with
    no traceback.
    """
    output = _failing_twistd(tmp_path, "-n", "jmap", "--listen", "bogus:1")
    assert "--listen" in output


def _failing_twistd(cwd: Path, *args: str) -> str:
    """
    Run twistd with ``args``, which must make it exit non-zero without a
    traceback; what it printed.
    """
    result = subprocess.run(
        [command("twistd"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize("which", ["listen", "lmtp"])
def test_a_taken_port_stops_the_server(tmp_path: Path, which: str) -> None:
    """
    When a port cannot be bound, twistd exits non-zero at once with a
    message naming the port, rather than run without it.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"listen": free_port(), "lmtp": free_port()}
        ports[which] = busy
        output = _failing_twistd(
            tmp_path,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "jmap",
            "--data",
            str(tmp_path / "data"),
            "--listen",
            f"tcp:{ports['listen']}:interface=127.0.0.1",
            "--lmtp",
            f"tcp:{ports['lmtp']}:interface=127.0.0.1",
        )
    assert f"Cannot listen on port {busy}" in output


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 needs root")
def test_privileged_ports_with_dropped_privileges(tmp_path: Path) -> None:
    """
    As root, ``twistd --uid nobody jmap --listen tcp:81 --lmtp tcp:24``
    binds both ports before dropping privileges, then serves as nobody.
    """
    import pwd

    nobody = pwd.getpwnam("nobody")
    http, lmtp = _free_privileged_port(81), _free_privileged_port(24)
    # A directory nobody can reach (pytest's own are root's alone).
    home = Path(tempfile.mkdtemp(prefix="jmap-nobody-"))
    os.chmod(home, 0o755)
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    data = home / "data"
    log = home / "twistd.log"
    process = subprocess.Popen(
        [
            command("twistd"),
            "-n",
            "--pidfile=",
            "--logfile",
            str(log),
            "--uid",
            str(nobody.pw_uid),
            "--gid",
            str(nobody.pw_gid),
            "jmap",
            "--data",
            str(data),
            "--listen",
            f"tcp:{http}:interface=127.0.0.1",
            "--lmtp",
            f"tcp:{lmtp}:interface=127.0.0.1",
        ],
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(http, process)
        wait_for_port(lmtp, process)
        answer = requests.get(f"http://127.0.0.1:{http}/.well-known/jmap", timeout=10)
        assert answer.status_code == 401
        status = Path(f"/proc/{process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _free_privileged_port(preferred: int) -> int:
    for port in (preferred, *range(preferred + 900, preferred + 950)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


def test_jmapc_event_source_over_tls(tmp_path: Path) -> None:
    """
    jmapc follows the session's eventSourceUrl template (with its
    ``str.format`` variables) and receives the StateChange of a delivery
    as a parsed event.
    """
    import smtplib
    import threading

    from jmapc.client import EventSourceConfig

    from tests.mailfactory import message

    key, cert = make_certificate(tmp_path)
    port, lmtp = free_port(), free_port()
    server = Twistd(
        tmp_path,
        f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        port,
        lmtp_port=lmtp,
    )
    try:
        assert (
            admin(
                server.data, "user", "add", "eve", "--password-stdin", stdin="pw-eve\n"
            ).returncode
            == 0
        )
        os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
        try:
            client = Client.create_with_password(
                f"127.0.0.1:{port}",
                "eve",
                "pw-eve",
                event_source_config=EventSourceConfig(
                    types="Email,Mailbox", closeafter="state", ping=0
                ),
            )
            account = client.account_id
            client.request(CoreEcho(data={}))
            requests.post(
                client.jmap_session.api_url,
                json={
                    "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                    "methodCalls": [["Mailbox/get", {"accountId": account, "ids": []}, "0"]],
                },
                auth=("eve", "pw-eve"),
                timeout=10,
            )

            def deliver_soon() -> None:
                time.sleep(0.5)
                with smtplib.LMTP("127.0.0.1", lmtp) as lmtp_client:
                    lmtp_client.sendmail(
                        "x@elsewhere.test", ["eve@example.com"], message(to="eve@example.com")
                    )

            threading.Thread(target=deliver_soon, daemon=True).start()
            event = next(iter(client.events))
            changed = event.data.changed[account]
            assert changed.email
            assert changed.mailbox
            assert event.id
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]
    finally:
        assert server.stop()
