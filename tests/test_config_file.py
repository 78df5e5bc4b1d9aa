"""
The configuration file of ``twistd jmap --config`` and ``jmap-admin
--config``, and ``--log-format``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.web.test.requesthelper import DummyRequest

import jmap_twisted
from jmap_twisted.http.site import redacting_log_formatter
from jmap_twisted.tap import Options

EXAMPLE = Path(jmap_twisted.__file__).parents[1] / "docs" / "examples" / "jmap.toml"
ENV = {**os.environ, "PYTHONPATH": str(Path(jmap_twisted.__file__).parents[1])}


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "jmap.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


FILE = """
listen = ["tcp:9000", "tcp:9001:interface=127.0.0.1"]
data = "/srv/jmap"
public-url = "https://mail.example.com"
allowed-origin = ["https://app.example.com"]
domain = ["example.com", "example.org"]
hostname = "mx.example.com"
max-connections = 500
change-retention-days = 7.5
no-lmtp = true
demo = true
ws-no-deflate = true
ws-context-takeover = false
ws-window-bits = 10
log-format = "text"
"""

FLAGS = [
    "--listen=tcp:9000",
    "--listen=tcp:9001:interface=127.0.0.1",
    "--data=/srv/jmap",
    "--public-url=https://mail.example.com",
    "--allowed-origin=https://app.example.com",
    "--domain=example.com",
    "--domain=example.org",
    "--hostname=mx.example.com",
    "--max-connections=500",
    "--change-retention-days=7.5",
    "--no-lmtp",
    "--demo",
    "--ws-no-deflate",
    "--ws-window-bits=10",
]


def test_file_and_flags_give_the_same_config(tmp_path: Path) -> None:
    """
    A configuration file gives the very config its equivalent command line
    gives: values, arrays of repeatable options, and flags.
    """
    from_file = parse("--config", write(tmp_path, FILE)).config
    from_flags = parse(*FLAGS).config
    assert from_file == from_flags
    assert from_file.listen == ("tcp:9000", "tcp:9001:interface=127.0.0.1")
    assert from_file.lmtp_listen is None
    assert from_file.demo is True
    assert from_file != parse().config


def test_flags_override_the_file(tmp_path: Path) -> None:
    """
    Options on the command line win, wherever they are written: a
    repeatable one replaces the file's array; the file's other keys stay.
    """
    path = write(tmp_path, FILE)
    config = parse("--listen", "tcp:7000", "--config", path, "--data", "/elsewhere").config
    assert config.listen == ("tcp:7000",)
    assert config.data_dir == Path("/elsewhere")
    assert config.domains == ("example.com", "example.org")
    assert config.connections.max_connections == 500


def test_unknown_key_is_named(tmp_path: Path) -> None:
    """
    A key that is no option is a usage error naming it and the file.
    """
    path = write(tmp_path, 'data = "/srv"\nlisten-on = ["tcp:80"]\n')
    with pytest.raises(usage.UsageError, match=re.escape(path)) as raised:
        parse("--config", path)
    assert "listen-on" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("max-connections = 0", "max-connections"),
        ("max-connections = true", "max-connections"),
        ('listen = ["bogus:1"]', "listen"),
        ("listen = [8080]", "listen"),
        ('demo = "yes"', "demo"),
        ('log-format = "xml"', "log-format"),
        ("ws-window-bits = 20", "ws-window-bits"),
        ("data = [1, 2]", "data"),
        ("[websocket]\nping = 3", "websocket"),
    ],
)
def test_bad_value_is_named(tmp_path: Path, text: str, key: str) -> None:
    """
    A value an option refuses, or of the wrong TOML type, is a usage
    error naming the key and the file.
    """
    path = write(tmp_path, text + "\n")
    with pytest.raises(usage.UsageError) as raised:
        parse("--config", path)
    assert key in str(raised.value)
    assert path in str(raised.value)


def test_unreadable_file(tmp_path: Path) -> None:
    """
    A missing file, or one that is not TOML, is a usage error naming it.
    """
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(usage.UsageError, match=re.escape(missing)):
        parse("--config", missing)
    broken = write(tmp_path, "listen = [\n")
    with pytest.raises(usage.UsageError, match="not valid TOML"):
        parse("--config", broken)


def test_example_file_is_complete_and_valid() -> None:
    """
    The documented example names every option of ``twistd jmap`` and
    parses into a valid config.
    """
    text = EXAMPLE.read_text(encoding="utf-8")
    named = set(re.findall(r"^#? ?([a-z][a-z0-9-]*) =", text, re.M))
    options = {name.rstrip("=") for name in Options().longOpt} - {"help", "version", "config"}
    assert options - named == set()
    assert named - options == set()
    config = parse("--config", str(EXAMPLE)).config
    assert config.listen


def admin(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jmap_twisted.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        check=False,
    )


def test_admin_reads_the_store_location(tmp_path: Path) -> None:
    """
    ``jmap-admin --config`` opens the data directory the file names, the
    one the server given the same file uses; ``--data`` overrides it.
    """
    data = tmp_path / "served"
    path = write(tmp_path, f'listen = ["tcp:8080"]\ndata = "{data}"\ndemo = true\n')
    assert parse("--config", path).config.data_dir == data

    added = admin(
        "--config",
        path,
        "--init",
        "user",
        "add",
        "alice",
        "--password-stdin",
        stdin="pw-1\n",
        cwd=tmp_path,
    )
    assert added.returncode == 0, added
    listed = admin("--config", path, "user", "list", cwd=tmp_path)
    assert "alice" in listed.stdout
    assert not (tmp_path / "jmap-data").exists()

    other = tmp_path / "other"
    elsewhere = admin("--config", path, "--data", str(other), "user", "list", cwd=tmp_path)
    assert elsewhere.returncode == 1
    assert str(other) in elsewhere.stderr
    assert "alice" not in elsewhere.stdout


def test_admin_bad_config(tmp_path: Path) -> None:
    """
    A store location of the wrong type is a usage error naming the file.
    """
    path = write(tmp_path, "data = 3\n")
    result = admin("--config", path, "user", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert path in result.stderr and "data" in result.stderr


def test_json_log_format(tmp_path: Path) -> None:
    """
    ``--log-format json`` makes twistd log one JSON object per line to its
    log file, with the event's fields, and the access log still redacted.
    """
    logfile = tmp_path / "twistd.log"
    options = ServerOptions()
    options.parseOptions(["--nodaemon", "--logfile", str(logfile), "jmap", "--log-format", "json"])
    observer = options["logger"]()
    request = DummyRequest([b""])
    request.uri = b"/jmap/ws?ticket=s3cret-ticket&x=1"
    request.clientproto = b"HTTP/1.1"
    request.code = 101
    request.sentLength = 0
    line = redacting_log_formatter("[07/Dec/2026:14:00:00 +0000]", request)
    observer({"log_format": "{log_io}", "log_io": line, "log_time": 1.0, "log_namespace": "web"})
    observer({"log_format": "WebSocket opened", "user_id": "u1", "log_time": 2.0})
    lines = logfile.read_text(encoding="utf-8").splitlines()
    events = [json.loads(text) for text in lines]
    assert len(events) == 2
    assert events[1]["user_id"] == "u1"
    assert "s3cret-ticket" not in lines[0]
    assert "ticket=REDACTED" in events[0]["log_io"]


def test_json_log_format_conflicts() -> None:
    """
    JSON lines and twistd's own ``--logger`` or ``--syslog`` exclude each
    other; text is twistd's own.
    """
    with pytest.raises(usage.UsageError, match="--logger"):
        ServerOptions().parseOptions(
            ["--logger", "twisted.logger.textFileLogObserver", "jmap", "--log-format=json"]
        )
    text = ServerOptions()
    text.parseOptions(["jmap"])
    assert text["logger"] is None
