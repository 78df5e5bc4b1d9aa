"""
The PostgreSQL driver and the AMQP client are optional extras: a default
server runs without them, and asking for their features without them is a
clear error naming the extra to install.

Each test runs a Python process in which ``psycopg``, ``psycopg_pool`` and
``txamqp`` cannot be imported, as after a plain ``pip install jmap-twisted``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jmap_twisted
from jmap_twisted.extras import MissingExtra, require

# The subprocesses import this checkout even when it is not installed.
ROOT = Path(jmap_twisted.__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

#: Run first in every process: the extras' top-level modules are not found.
WITHOUT_EXTRAS = """
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    missing = ("psycopg", "psycopg_pool", "txamqp")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

#: What must not be imported by a server that uses no extra.
EXTRA_MODULES = ("psycopg", "psycopg_pool", "txamqp")


def without_extras(
    code: str, *argv: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run ``code`` in a Python process without the extras' libraries.
    """
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + textwrap.dedent(code), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ENV,
        cwd=cwd,
    )


def test_require_names_the_extra() -> None:
    """
    A module an extra installs is returned when present; when it is absent
    the error says which feature needs which extra and the pip line.
    """
    assert require("postgresql", "json") is json
    with pytest.raises(MissingExtra) as raised:
        require("postgresql", "jmap_twisted_no_such_driver")
    assert str(raised.value) == (
        "PostgreSQL storage needs the 'postgresql' extra: pip install 'jmap-twisted[postgresql]'"
    )
    assert raised.value.extra == "postgresql"
    assert isinstance(raised.value, ImportError)
    with pytest.raises(MissingExtra, match=r"pip install 'jmap-twisted\[amqp\]'"):
        require("amqp", "jmap_twisted_no_such_client")


def test_server_imports_without_extras() -> None:
    """
    The package, the store chooser, ``twistd jmap``'s options and
    ``jmap-admin`` import without the extras, and import none of them.
    """
    result = without_extras(
        """
        import jmap_twisted, jmap_twisted.store.backends, jmap_twisted.tap, jmap_twisted.admin
        import jmap_twisted.store.sqlite.mail
        from twisted.plugins import jmap
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in NotInstalled.missing
            or name.startswith(("jmap_twisted.store.postgres", "jmap_twisted.bus.amqp"))
        )
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_stores_open_without_extras(tmp_path: Path) -> None:
    """
    The default SQLite stores open, store a user and find it again without
    the PostgreSQL extra.
    """
    result = without_extras(
        """
        from pathlib import Path
        from twisted.internet.task import react
        from jmap_twisted.store.backends import StoreSettings, open_stores

        async def main(reactor, data):
            stores = open_stores(StoreSettings.checked(Path(data), None, None), reactor)
            await stores.database.start()
            try:
                await stores.directory.create_user("alice", None)
                user = await stores.directory.get_user("alice")
                print(user.username)
            finally:
                await stores.database.stop()

        react(main, (sys.argv[1],))
        """,
        str(tmp_path / "data"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice"
    assert (tmp_path / "data").is_dir()


def test_postgresql_without_its_extra() -> None:
    """
    Asking the store chooser for PostgreSQL, by checked settings or
    directly, raises :class:`MissingExtra` naming the ``postgresql`` extra.
    """
    result = without_extras(
        """
        from pathlib import Path
        from twisted.internet.testing import MemoryReactorClock
        from jmap_twisted.extras import MissingExtra
        from jmap_twisted.store.backends import StoreSettings, open_stores

        try:
            StoreSettings.checked(Path("data"), "postgresql://db/mail", None)
        except MissingExtra as error:
            print(error)
        try:
            open_stores(StoreSettings(Path("data"), "postgresql://db/mail"), MemoryReactorClock())
        except MissingExtra as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    message = (
        "PostgreSQL storage needs the 'postgresql' extra: pip install 'jmap-twisted[postgresql]'"
    )
    assert result.stdout.splitlines() == [message, message]


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--store", "postgresql://jmap@db.example/mail"], "postgresql"),
        (["--bus", "amqp://jmap@mq.example/cluster"], "amqp"),
    ],
)
def test_tap_refuses_options_without_their_extra(args: list[str], extra: str) -> None:
    """
    ``twistd jmap`` options that need an extra not installed are usage
    errors naming the option and the extra.
    """
    result = without_extras(
        """
        from twisted.python import usage
        from jmap_twisted.tap import Options

        try:
            Options().parseOptions(sys.argv[1:])
        except usage.UsageError as error:
            print(error)
        """,
        *args,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{args[0]}: ")
    assert f"pip install 'jmap-twisted[{extra}]'" in result.stdout


def test_twistd_reports_a_missing_extra_without_a_traceback(tmp_path: Path) -> None:
    """
    ``twistd jmap --bus …`` without the AMQP extra stops before running,
    with the usage error on its output and no traceback.
    """
    result = without_extras(
        """
        from twisted.scripts.twistd import run
        sys.argv = ["twistd", "--nodaemon", "--pidfile=", "jmap", *sys.argv[1:]]
        run()
        """,
        "--no-lmtp",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--bus",
        "amqp://jmap@mq.example/cluster",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "--bus: The RabbitMQ (AMQP) event bus needs the 'amqp' extra:"
        " pip install 'jmap-twisted[amqp]'"
    ) in output
    assert "Traceback" not in output
    assert not (tmp_path / "jmap-data").exists()


def test_admin_refuses_postgresql_without_its_extra(tmp_path: Path) -> None:
    """
    ``jmap-admin --store postgresql://…`` without the extra exits with the
    usage status 2 and one line naming the extra, before asking for any
    password.
    """
    result = without_extras(
        """
        import runpy
        sys.argv[0] = "jmap-admin"
        runpy.run_module("jmap_twisted.admin", run_name="__main__")
        """,
        "--data",
        str(tmp_path / "data"),
        "--store",
        "postgresql://jmap@db.example/mail",
        "user",
        "add",
        "alice",
        "--password-stdin",
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "jmap-admin: --store: PostgreSQL storage needs the 'postgresql' extra:"
        " pip install 'jmap-twisted[postgresql]'"
    ]
    assert not (tmp_path / "data").exists()
