"""
The deployment files under ``deploy/``: the systemd unit passes
``systemd-analyze verify``, and every command line they hold (the unit's,
the image's, the compose cluster's) is one ``twistd jmap`` accepts; the
nginx example proxies WebSockets, EventSource and uploads as the server
needs.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jmap_twisted.core.limits import CoreLimits
from jmap_twisted.tap import Options

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "jmap.service"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
COMPOSE = DEPLOY / "container" / "compose.yaml"
NGINX = DEPLOY / "nginx" / "jmap.conf"

#: Where the unit expects twistd; the tests put this Python's twistd there.
UNIT_TWISTD = "/opt/jmap/venv/bin/twistd"


def parse_jmap_options(arguments: list[str], tmp_path: Path) -> Options:
    """
    Parse ``twistd jmap`` options as the plugin does, with the files that
    options ending in ``-file`` name (secrets the deployment provides)
    replaced by a file holding a password.
    """
    secret = tmp_path / "secret"
    secret.write_text("password\n")
    arguments = list(arguments)
    for i, argument in enumerate(arguments[:-1]):
        if argument.startswith("--") and argument.endswith("-file"):
            arguments[i + 1] = str(secret)
    options = Options()
    options.parseOptions(arguments)
    return options


def option_values(arguments: list[str], name: str) -> list[str]:
    """
    The values given to ``--name`` in a command line.
    """
    return [arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a == f"--{name}"]


def listen_port(arguments: list[str]) -> int:
    """
    The port of the only ``--listen`` endpoint (``tcp:PORT[:…]``).
    """
    [listen] = option_values(arguments, "listen")
    match = re.match(r"tcp6?:(\d+)", listen)
    assert match, listen
    return int(match.group(1))


# systemd


def unit_exec_start() -> list[str]:
    """
    The unit's ExecStart command line, continuation lines joined.
    """
    text = UNIT.read_text().replace("\\\n", " ")
    [line] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def systemd_analyze() -> str:
    """
    The ``systemd-analyze`` program: a missing one skips, but fails on CI
    (``scripts/install-services`` installs it).
    """
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: run scripts/install-services")
        pytest.skip("systemd-analyze is not installed (scripts/install-services)")
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """
    ``systemd-analyze verify`` finds nothing to say about the unit (it
    prints unknown keys and bad values without failing, so any line about
    the unit fails the test), with ExecStart pointing at this
    environment's twistd.
    """
    twistd = Path(sys.executable).parent / "twistd"
    assert twistd.exists(), "twistd is not installed beside this Python"
    text = UNIT.read_text()
    assert UNIT_TWISTD in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(UNIT_TWISTD, str(twistd)))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    about_unit = [line for line in output.splitlines() if UNIT.name in line]
    assert result.returncode == 0, output
    assert about_unit == [], output


def test_unit_runs_twistd_jmap_unprivileged_and_confined(tmp_path: Path) -> None:
    """
    The unit runs ``twistd --nodaemon --pidfile= jmap`` with options the
    plugin accepts, as a dedicated user with only CAP_NET_BIND_SERVICE,
    on a read-only system where the data directory is writable, restarts
    it when it fails, and reads secrets from an environment file.
    """
    command = unit_exec_start()
    assert command[:4] == [UNIT_TWISTD, "--nodaemon", "--pidfile=", "jmap"]
    options = [a for a in command[4:] if a != "$JMAP_OPTIONS"]
    config = parse_jmap_options(options, tmp_path).config
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert settings["User"] not in ("", "root", "0")
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert settings["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert settings["ProtectSystem"] == "strict"
    assert str(config.data_dir) in settings["ReadWritePaths"].split()
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["Restart"] == "on-failure"
    assert settings["EnvironmentFile"].lstrip("-").startswith("/etc/")
    # TLS needs writable and executable memory (pyOpenSSL's callbacks).
    assert "MemoryDenyWriteExecute" not in settings


# The image


def containerfile_instruction(name: str) -> str:
    """
    The argument of the one instruction ``name`` of the Containerfile,
    continuation lines joined.
    """
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    [argument] = [
        line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]
    ]
    return argument.strip()


def test_image_runs_twistd_jmap_with_options_it_accepts(tmp_path: Path) -> None:
    """
    The image's entry point is ``twistd --nodaemon --pidfile= jmap``, its
    default arguments are options the plugin accepts, with the data in the
    declared volume and the HTTP port exposed and health-checked.
    """
    entrypoint = json.loads(containerfile_instruction("ENTRYPOINT"))
    assert entrypoint == ["twistd", "--nodaemon", "--pidfile=", "jmap"]
    cmd = json.loads(containerfile_instruction("CMD"))
    config = parse_jmap_options(cmd, tmp_path).config
    assert containerfile_instruction("VOLUME") == str(config.data_dir)
    port = listen_port(cmd)
    assert str(port) in containerfile_instruction("EXPOSE").split()
    assert f"127.0.0.1:{port}/healthz/ready" in containerfile_instruction("HEALTHCHECK")
    assert containerfile_instruction("USER").split(":")[0] not in ("root", "0")


# The compose cluster


def read_compose_minimal(text: str) -> dict[str, dict[str, Any]]:
    """
    The services of the compose file, each with its ``image`` and
    ``command`` (a block list), read line by line: the subset of YAML the
    file uses, checked for structure (two-space indentation, no tabs).
    """
    assert "\t" not in text
    services: dict[str, dict[str, Any]] = {}
    service: dict[str, Any] | None = None
    in_services = in_command = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, line
        content = line.strip()
        if indent == 0:
            assert re.fullmatch(r"[\w-]+:( .*)?", content), line
            in_services = content == "services:"
            service, in_command = None, False
        elif in_services and indent == 2:
            assert re.fullmatch(r"[\w-]+:", content), line
            service = services[content[:-1]] = {}
            in_command = False
        elif service is not None and indent == 4:
            key, _, value = content.partition(":")
            in_command = key == "command"
            if in_command:
                assert value.strip() == "", "commands are block lists"
                service["command"] = []
            elif key in ("image", "<<"):
                service[key] = value.strip()
        elif in_command and indent == 6:
            assert content.startswith("- "), line
            item = content[2:].strip()
            if item[:1] in ("'", '"'):
                assert item[-1] == item[0], line
                item = item[1:-1]
            assert service is not None
            service["command"].append(item)
    return services


def compose_services() -> dict[str, dict[str, Any]]:
    """
    The compose file's services: read by PyYAML when it is installed (and
    then compared with the minimal reading), else by the minimal reader.
    """
    text = COMPOSE.read_text()
    minimal = read_compose_minimal(text)
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        return minimal
    services: dict[str, dict[str, Any]] = yaml.safe_load(text)["services"]
    for name, service in minimal.items():
        assert services[name].get("command") == service.get("command")
    return services


def nodes() -> dict[str, list[str]]:
    """
    The compose services that run ``twistd jmap``, with their options.
    """
    return {
        name: [str(a) for a in service["command"]]
        for name, service in compose_services().items()
        if "--node-id" in service.get("command", ())
    }


def test_compose_nodes_form_one_cluster(tmp_path: Path) -> None:
    """
    The compose file runs at least two nodes with options the plugin
    accepts, each with its own --node-id, all with the same PostgreSQL
    store, broker, domains and public URL, and the per-address login
    limits off (they are behind the proxy).
    """
    cluster = nodes()
    assert len(cluster) >= 2, cluster
    configs = {name: parse_jmap_options(args, tmp_path).config for name, args in cluster.items()}
    assert len({c.node_id for c in configs.values()}) == len(configs)
    assert all(c.node_id for c in configs.values())
    for field in ("store", "bus", "domains", "public_url"):
        values = {repr(getattr(c, field)) for c in configs.values()}
        assert len(values) == 1, (field, values)
    some = next(iter(configs.values()))
    assert some.store is not None and str(some.store.url).startswith("postgresql://")
    assert some.bus is not None
    assert some.public_url is not None and some.public_url.startswith("https://")
    assert all(c.login.address_burst == 0 for c in configs.values())


def test_compose_proxy_forwards_to_every_node() -> None:
    """
    The nginx example's upstream is the compose cluster's nodes, at their
    --listen ports, and the proxy service mounts that file.
    """
    upstream = re.search(r"upstream jmap \{(.*?)\}", NGINX.read_text(), re.S)
    assert upstream
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(1), re.M))
    assert servers == {f"{name}:{listen_port(args)}" for name, args in nodes().items()}
    assert "../nginx/jmap.conf:/etc/nginx/conf.d/" in COMPOSE.read_text()


# nginx


def nginx_location(path: str) -> str:
    """
    The body of the nginx example's ``location PATH`` block.
    """
    match = re.search(r"location " + re.escape(path) + r" \{(.*?)\n    \}", NGINX.read_text(), re.S)
    assert match, path
    return match.group(1)


def seconds(block: str, directive: str) -> int:
    """
    A timeout directive's value in seconds (``90s``, ``5m``).
    """
    match = re.search(directive + r"\s+(\d+)([sm]);", block)
    assert match, directive
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_nginx_passes_websocket_upgrades() -> None:
    """
    ``/jmap/ws`` is proxied with HTTP/1.1 and the client's Upgrade and
    Connection headers (and, since a location that sets headers loses the
    server's, Host too), with timeouts past two ping intervals.
    """
    ws = nginx_location("/jmap/ws")
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    connection = re.search(r"proxy_set_header\s+Connection\s+\$(\w+);", ws)
    assert connection
    assert re.search(
        r"map \$http_upgrade \$" + connection.group(1) + r" \{\s*default upgrade;",
        NGINX.read_text(),
    )
    assert re.search(r"proxy_set_header\s+Host\s+\$host;", ws)
    assert "proxy_http_version 1.1;" in NGINX.read_text()
    ping_interval = Options()["ws-ping-interval"]
    assert seconds(ws, "proxy_read_timeout") >= 2 * ping_interval
    assert seconds(ws, "proxy_send_timeout") >= 2 * ping_interval


def test_nginx_streams_eventsource_and_uploads() -> None:
    """
    EventSource responses are not buffered and outlive the 300 s between
    the server's comments on a stream without pings; uploads up to the
    default maxSizeUpload are accepted and streamed to the node.
    """
    events = nginx_location("/jmap/eventsource/")
    assert "proxy_buffering off;" in events
    assert seconds(events, "proxy_read_timeout") > 300
    assert "proxy_request_buffering off;" in nginx_location("/jmap/upload/")
    size = re.search(r"client_max_body_size\s+(\d+)([km]?);", NGINX.read_text())
    assert size
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[size.group(2)]
    assert int(size.group(1)) * scale >= CoreLimits().max_size_upload
