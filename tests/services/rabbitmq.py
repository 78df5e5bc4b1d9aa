"""
A throwaway RabbitMQ broker for tests and benchmarks.

:func:`start_broker` runs Debian's ``rabbitmq-server`` script directly
(no systemd) with its own node name, ports and data directory in a
temporary directory; :class:`Broker` can stop and start it again on the same
ports (to test what a broker restart does to connected nodes).

The session fixture ``rabbitmq`` (or :func:`shared_broker`) starts one broker
for the whole test run.
When the broker's programs are missing the fixture skips, except under CI
(``CI`` set), where it fails: the tests that need a broker must run there.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def free_port() -> int:
    """
    A TCP port on the loopback interface that nothing listens on now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class BrokerUnavailable(RuntimeError):
    """
    RabbitMQ is not installed, or did not start.
    """


class Broker:
    """
    One private RabbitMQ node.

    :ivar port: the AMQP port on 127.0.0.1.
    :ivar url: an ``amqp://`` URL for the default ``guest`` user, which
        RabbitMQ admits from loopback only.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"jmaptest-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        base = self.directory
        env = dict(os.environ)
        env.update(
            HOME=str(base),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_PID_FILE=str(base / "rabbit.pid"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_ENABLED_PLUGINS="",
            # A broker that fails to start leaves its crash dump here, not
            # in the working directory.
            ERL_CRASH_DUMP=str(base / "erl_crash.dump"),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        """
        Start the node and wait until it accepts AMQP connections.
        """
        if not os.path.exists(SERVER):
            raise BrokerUnavailable(
                f"{SERVER} not found: install RabbitMQ (apt-get install rabbitmq-server)"
            )
        (self.directory / "log").mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\nlisteners.tcp.default = "
            f"{self.port}\nvm_memory_high_watermark.relative = 0.2\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        self._output = open(self.directory / "server.out", "wb")
        self.process = subprocess.Popen(
            [SERVER],
            env=self.environment(),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(f"RabbitMQ exited: {self.output()[-2000:]}")
            if self._accepts() and self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerUnavailable(f"RabbitMQ did not start in {timeout} s: {self.output()[-2000:]}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _ready(self) -> bool:
        done = subprocess.run(
            [CTL, "-n", self.name, "await_online_nodes", "1"],
            env=self.environment(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def ctl(self, *args: str) -> str:
        """
        Run ``rabbitmqctl`` against this node; return its output.
        """
        done = subprocess.run(
            [CTL, "-n", self.name, "-q", *args],
            env=self.environment(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        return done.stdout.decode()

    def ctl_in_thread(self, *args: str) -> Deferred[str]:
        """
        :meth:`ctl` in a thread: ``rabbitmqctl`` starts an Erlang VM, which
        on a busy machine takes long enough that a reactor blocked on it
        misses the heartbeats of its broker connections (and the broker
        drops them, bindings and all).
        """
        from twisted.internet.threads import deferToThread

        return deferToThread(self.ctl, *args)

    def output(self) -> str:
        try:
            return (self.directory / "server.out").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """
        Stop the node (its data directory stays, so it can start again).
        """
        if self.process is None:
            return
        try:
            subprocess.run(
                [CTL, "-n", self.name, "stop"],
                env=self.environment(),
                capture_output=True,
                timeout=60,
                check=False,
            )
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self.process = None
            self._output.close()

    def _beam(self) -> int:
        assert self.process is not None, "the broker is not running"
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "beam.smp"],
            capture_output=True,
            text=True,
            check=False,
        )
        (pid,) = [int(p) for p in found.stdout.split()]
        return pid

    def pause(self) -> None:
        """
        Freeze the node (SIGSTOP): its sockets stay open but nothing answers,
        as with a hung broker.
        """
        os.kill(self._beam(), signal.SIGSTOP)

    def resume(self) -> None:
        """
        Let a paused node run again.
        """
        os.kill(self._beam(), signal.SIGCONT)

    def restart(self) -> None:
        """
        Stop and start again on the same ports; every connection drops and
        every non-durable queue and binding is gone.
        """
        self.stop()
        self.start()


def start_broker(directory: Path | None = None) -> Broker:
    """
    Start a broker in ``directory`` (a new temporary directory if ``None``).
    """
    broker = Broker(directory or Path(tempfile.mkdtemp(prefix="jmap-rabbit-")))
    broker.start()
    return broker


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"RabbitMQ is needed and unavailable: {reason}", pytrace=False)
    pytest.skip(f"RabbitMQ unavailable: {reason}")


_shared: Broker | None = None
_shared_error: str | None = None


def shared_broker() -> Broker:
    """
    The broker of this test process, started on first use and stopped when
    the process exits.  Skips the calling test when RabbitMQ is missing
    (fails it under CI).
    """
    global _shared, _shared_error
    if _shared is None and _shared_error is None:
        directory = Path(tempfile.mkdtemp(prefix="jmap-rabbit-"))
        broker = Broker(directory)
        try:
            broker.start()
        except BrokerUnavailable as error:
            shutil.rmtree(directory, ignore_errors=True)
            _shared_error = str(error)
        else:
            _shared = broker

            def stop() -> None:
                broker.stop()
                shutil.rmtree(directory, ignore_errors=True)

            atexit.register(stop)
    if _shared is None:
        _unavailable(_shared_error or "not started")
    assert _shared is not None
    return _shared


@pytest.fixture(scope="session")
def rabbitmq() -> Broker:
    """
    The test session's broker (see :func:`shared_broker`).
    """
    return shared_broker()


@pytest.fixture(scope="module")
def private_broker() -> Iterator[Broker]:
    """
    A broker of the test module's own, which its tests may stop, restart or
    freeze without disturbing other modules.
    """
    directory = Path(tempfile.mkdtemp(prefix="jmap-rabbit-"))
    broker = Broker(directory)
    try:
        broker.start()
    except BrokerUnavailable as error:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable(str(error))
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
