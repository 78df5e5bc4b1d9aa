"""
``twistd jmap`` options.
"""

from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from jmap_twisted.config import DEFAULT_LISTEN
from jmap_twisted.tap import Options


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    """
    With no options: loopback port 8080, ./jmap-data, URLs from requests.
    """
    config = parse().config
    assert config.listen == (DEFAULT_LISTEN,)
    assert config.listen == ("tcp:8080:interface=127.0.0.1",)
    assert config.data_dir == Path("jmap-data")
    assert config.public_url is None


def test_options_reach_the_config() -> None:
    """
    Every option lands in the frozen config; --listen repeats.
    """
    config = parse(
        "--listen",
        "tcp:9000",
        "--listen",
        r"tcp6:9001:interface=\:\:1",
        "--data",
        "/srv/jmap",
        "--public-url",
        "https://mail.example.com/",
        "--max-size-upload",
        "1000",
        "--max-calls-in-request",
        "4",
    ).config
    assert config.listen == ("tcp:9000", r"tcp6:9001:interface=\:\:1")
    assert config.data_dir == Path("/srv/jmap")
    assert config.public_url == "https://mail.example.com"
    assert config.limits.max_size_upload == 1000
    assert config.limits.max_calls_in_request == 4


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "bogus:1234"],
        ["--listen", "tcp:notaport"],
        ["--public-url", "ftp://x"],
        ["--public-url", "https://x/path"],
        ["--public-url", "nohost"],
        ["--max-size-upload", "0"],
        ["--max-size-request", "ten"],
        ["--no-such-option"],
        ["extra-argument"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    """
    Unknown, malformed or contradictory options raise UsageError (which
    twistd prints with the usage), never another exception.
    """
    with pytest.raises(usage.UsageError):
        parse(*args)


def test_mail_defaults() -> None:
    """
    By default LMTP listens on loopback port 2424, there is no SMTP
    listener and no smarthost, and the mail domain is the hostname.
    """
    config = parse("--hostname", "mx.example.org").config
    assert config.lmtp_listen == "tcp:2424:interface=127.0.0.1"
    assert config.smtp_listen is None
    assert config.smarthost is None
    assert config.domains == ("mx.example.org",)


def test_mail_options(tmp_path: Path) -> None:
    """
    Mail options land in the config; relay credentials come from a file.
    """
    secret = tmp_path / "relay"
    secret.write_text("relayuser:pa:ss\n")
    config = parse(
        "--no-lmtp",
        "--smtp",
        "tcp:2525",
        "--domain",
        "Example.com",
        "--domain",
        "example.org",
        "--smarthost",
        "tcp:host=relay.example.com:port=587",
        "--smarthost-credentials",
        str(secret),
        "--max-message-size",
        "1000",
    ).config
    assert config.lmtp_listen is None
    assert config.smtp_listen == "tcp:2525"
    assert config.domains == ("example.com", "example.org")
    assert config.smarthost_credentials == ("relayuser", "pa:ss")
    assert config.max_message_size == 1000


@pytest.mark.parametrize(
    "args",
    [
        ["--lmtp", "bogus:1"],
        ["--smtp", "tcp:x"],
        ["--smarthost", "bogus:x"],
        ["--smarthost-credentials", "/nonexistent"],
        ["--smarthost", "tcp:host=a:port=1", "--smarthost-credentials", "/nonexistent"],
    ],
)
def test_bad_mail_options(args: list[str]) -> None:
    """
    Malformed mail endpoints or unreadable credentials are usage errors.
    """
    with pytest.raises(usage.UsageError):
        parse(*args)


def test_websocket_options() -> None:
    """
    WebSocket settings land in the config; bad ones are usage errors.
    """
    config = parse(
        "--ws-ping-interval",
        "15",
        "--ws-window-bits",
        "9",
        "--ws-require-subprotocol",
    ).config
    assert config.websocket.ping_interval == 15
    assert config.websocket.window_bits == 9
    assert config.websocket.no_context_takeover
    assert parse("--ws-context-takeover").config.websocket.no_context_takeover is False
    assert config.websocket.require_subprotocol
    assert parse("--ws-no-deflate").config.websocket.deflate is False
    assert parse("--bind-tickets").config.websocket.bind_tickets is True
    for bad in (
        ["--ws-window-bits", "16"],
        ["--ws-ping-timeout", "0"],
        ["--ws-ping-interval", "x"],
    ):
        with pytest.raises(usage.UsageError):
            parse(*bad)


def test_demo_option() -> None:
    """
    The live-inbox demo page is off unless ``--demo`` asks for it.
    """
    assert parse().config.demo is False
    assert parse("--demo").config.demo is True


def test_change_retention() -> None:
    """
    The change-log retention defaults to 30 days, is configurable, and
    must be positive.
    """
    assert parse().config.change_retention_days == 30
    assert parse("--change-retention-days", "7").config.change_retention_days == 7
    with pytest.raises(usage.UsageError):
        parse("--change-retention-days", "0")


def test_cluster_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    --store and --bus name a shared database and broker; their passwords
    come from files (or the environment), never from the command line,
    and are never shown.
    """
    db_secret = tmp_path / "db"
    db_secret.write_text("db-pw\nignored\n")
    bus_secret = tmp_path / "bus"
    bus_secret.write_text("bus-pw\n")
    config = parse(
        "--store",
        "postgresql://jmap@db.example:5433/mail",
        "--store-password-file",
        str(db_secret),
        "--store-pool-size",
        "4",
        "--bus",
        "amqp://jmap@mq.example/cluster",
        "--bus-password-file",
        str(bus_secret),
        "--bus-prefix",
        "prod",
        "--node-id",
        "node-1",
    ).config
    assert config.store is not None and config.bus is not None
    assert (config.store.url, config.store.password, config.store.pool_size) == (
        "postgresql://jmap@db.example:5433/mail",
        "db-pw",
        4,
    )
    assert (config.bus.endpoint, config.bus.username, config.bus.vhost) == (
        "tcp:mq.example:5672",
        "jmap",
        "cluster",
    )
    assert (config.bus.password, config.bus.prefix, config.node_id) == ("bus-pw", "prod", "node-1")
    assert "db-pw" not in repr(config) and "bus-pw" not in repr(config)
    monkeypatch.setenv("JMAP_AMQP_PASSWORD", "env-pw")
    from_env = parse("--bus", "amqps://mq.example").config
    assert from_env.bus is not None and from_env.bus.password == "env-pw"
    assert from_env.bus.endpoint == "tls:mq.example:5671"
    assert parse().config.store is None and parse().config.bus is None


@pytest.mark.parametrize(
    "args",
    [
        ["--store", "postgresql://jmap:secret@db/mail"],
        ["--store", "postgresql://db/mail?password=secret"],
        ["--store", "mysql://db/mail"],
        ["--store-password-file", "/nonexistent"],
        ["--store", "postgresql://db/mail", "--store-password-file", "/nonexistent"],
        ["--bus", "amqp://jmap:secret@mq/"],
        ["--bus", "redis://mq/"],
        ["--bus-password-file", "/nonexistent"],
        ["--store-pool-size", "0"],
    ],
)
def test_bad_cluster_options(args: list[str]) -> None:
    """
    Passwords on the command line, unknown schemes and unreadable password
    files are usage errors that do not echo the password.
    """
    with pytest.raises(usage.UsageError) as raised:
        parse(*args)
    assert "secret" not in str(raised.value)


def test_signals_stop_the_server_without_logging_in_the_handler() -> None:
    """
    SIGTERM and SIGINT, handled by Twisted's own handlers, are taken over
    by handlers that only hand the stop to the reactor: nothing is logged
    inside the signal handler (where re-entering the log observer can
    deadlock the server); the reactor's loop logs the signal and stops.
    A handler that is not Twisted's is left alone.
    """
    import signal

    from twisted.logger import globalLogPublisher

    from jmap_twisted.tap import stop_on_signals

    class Reactor:
        running = True

        def __init__(self) -> None:
            self.calls: list[tuple[Any, tuple[Any, ...]]] = []
            self.stopped = 0

        def sigTerm(self, *args: object) -> None:
            raise AssertionError("Twisted's handler is replaced")

        def sigInt(self, *args: object) -> None:
            raise AssertionError("Twisted's handler is replaced")

        def callFromThread(self, f: Any, *args: Any) -> None:
            self.calls.append((f, args))

        def stop(self) -> None:
            self.stopped += 1

    def elsewhere(signum: int, frame: object) -> None:
        pass

    reactor = Reactor()
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        signal.signal(signal.SIGTERM, reactor.sigTerm)
        signal.signal(signal.SIGINT, elsewhere)
        stop_on_signals(reactor)
        assert signal.getsignal(signal.SIGINT) is elsewhere
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and handler != reactor.sigTerm
        handler(signal.SIGTERM, None)
        assert logged == [] and reactor.stopped == 0
        ((call, args),) = reactor.calls
        call(*args)
        assert reactor.stopped == 1
        assert [e.get("signal") for e in logged] == ["SIGTERM"]
    finally:
        globalLogPublisher.removeObserver(logged.append)
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])
