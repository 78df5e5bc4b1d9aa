"""
A throwaway PostgreSQL cluster for tests and benchmarks.

:func:`start_cluster` runs ``initdb`` into a temporary directory and starts
the server on a free loopback TCP port (as the ``postgres`` OS user when
running as root: the server refuses to run as root), with a role that logs
in by password; :meth:`PostgresCluster.stop` stops it and removes the
directory.  :meth:`PostgresCluster.create_database` gives a caller an empty
database of its own.

As pytest fixtures (a plugin of ``tests/conftest.py``):

``postgres_cluster``
    one cluster for the whole session, stopped at its end;
``postgres_dsn``
    the DSN of the cluster's default database for the test role;
``fresh_postgres_dsn``
    the DSN of an empty database created for the calling test and dropped
    after it.

When the PostgreSQL binaries are missing the fixtures skip, except under
CI (environment variable ``CI`` set), where they fail: a CI run must not
pass by skipping the PostgreSQL tests.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

#: Where Debian installs the PostgreSQL 15 server binaries.
POSTGRES_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)

#: The role the tests log in as, owner of every test database.
TEST_ROLE = "jmap"

#: How to install the binaries, said when they are missing.
INSTALL_HINT = "install the PostgreSQL server: apt-get install postgresql"


class PostgresUnavailable(Exception):
    """
    The PostgreSQL server binaries (``initdb``, ``pg_ctl``) are not installed.
    """


def find_binaries() -> Path:
    """
    The directory holding ``initdb`` and ``pg_ctl``.

    :raises PostgresUnavailable: they are not installed.
    """
    for directory in POSTGRES_BIN_DIRS:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(f"PostgreSQL binaries not found; {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user() -> list[str]:
    """
    The command prefix that runs a PostgreSQL binary as a non-root user.
    """
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@attrs.frozen
class PostgresCluster:
    """
    A running throwaway cluster.

    :ivar directory: holds the data directory, the socket and the log.
    :ivar port: the loopback TCP port it listens on.
    :ivar password: the password of :data:`TEST_ROLE`.
    """

    directory: Path
    port: int
    password: str
    binaries: Path

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def dsn(self, dbname: str = TEST_ROLE) -> str:
        """
        A libpq DSN for a database of the cluster, as the test role.
        """
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname}"
            f" user={TEST_ROLE} password={self.password}"
        )

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """
        Run SQL as the superuser over the cluster's Unix socket.
        """
        result = subprocess.run(
            [
                *_as_server_user(),
                str(self.binaries / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.directory),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str | None = None) -> str:
        """
        Create an empty database owned by the test role; return its DSN.
        """
        name = name or "t_" + secrets.token_hex(6)
        # FILE_COPY: much faster than WAL_LOG for small databases (fsync is off).
        self._as_test_role(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """
        Drop a database made by :meth:`create_database`, disconnecting
        whoever still uses it.
        """
        import psycopg

        name = dict(part.split("=", 1) for part in dsn.split())["dbname"]
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        try:
            self._as_test_role(drop)
        except psycopg.errors.InsufficientPrivilege:
            # A session the test role may not end still uses it (a
            # superuser's, or one just starting): the superuser may.
            self.psql(drop)

    def _as_test_role(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(sql.encode())

    def stop(self) -> None:
        """
        Stop the server (fast shutdown) and remove its directory.
        """
        subprocess.run(
            [
                *_as_server_user(),
                str(self.binaries / "pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(base: str | None = None, durable: bool = False) -> PostgresCluster:
    """
    Create and start a throwaway cluster with a role :data:`TEST_ROLE` that
    may create databases and a database of the same name.

    :param base: where to make the temporary directory.
    :param durable: keep PostgreSQL's default durability (``fsync``,
        ``synchronous_commit``), as a benchmark must; by default they are
        off, since test data need not survive a crash.
    :raises PostgresUnavailable: the binaries are not installed.
    """
    binaries = find_binaries()
    directory = Path(tempfile.mkdtemp(prefix="jmap-pg-", dir=base))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    password = secrets.token_hex(12)
    cluster = PostgresCluster(directory, _free_port(), password, binaries)
    server = _as_server_user()
    try:
        subprocess.run(
            [
                *server,
                str(binaries / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            capture_output=True,
            check=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port}"
            f" -c unix_socket_directories={directory} -c max_connections=200"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [
                *server,
                str(binaries / "pg_ctl"),
                "start",
                "-w",
                "-D",
                str(cluster.data_dir),
                "-l",
                str(directory / "server.log"),
                "-o",
                options,
            ],
            capture_output=True,
            check=True,
        )
        cluster.psql(f"CREATE ROLE {TEST_ROLE} LOGIN CREATEDB PASSWORD '{password}'")
        cluster.psql(f"CREATE DATABASE {TEST_ROLE} OWNER {TEST_ROLE}")
    except BaseException as e:
        log = directory / "server.log"
        detail = log.read_text() if log.exists() else ""
        if isinstance(e, subprocess.CalledProcessError):
            detail = (e.stderr or b"").decode(errors="replace") + detail
        cluster.stop()
        raise RuntimeError(f"could not start PostgreSQL: {detail.strip()}") from e
    return cluster


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is not skipped)")
    pytest.skip(reason)


_shared: list[PostgresCluster] = []


def shared_cluster() -> PostgresCluster:
    """
    The cluster of this test process, started at first use and stopped at
    the end of the session (or at exit); skips the calling test (fails it
    under CI) when PostgreSQL is not installed.

    Test factories that get no fixtures (the contract suites' backend
    registries) use it through :func:`fresh_database`.
    """
    if not _shared:
        try:
            cluster = start_cluster()
        except PostgresUnavailable as e:
            _unavailable(str(e))
            raise  # not reached: _unavailable raises
        atexit.register(cluster.stop)
        _shared.append(cluster)
    return _shared[0]


def fresh_database() -> str:
    """
    The DSN of a new empty database of :func:`shared_cluster`; drop it with
    ``shared_cluster().drop_database(dsn)``.
    """
    return shared_cluster().create_database()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """
    One throwaway cluster for the test session.
    """
    cluster = shared_cluster()
    try:
        yield cluster
    finally:
        _shared.clear()
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: PostgresCluster) -> str:
    """
    The DSN of the session cluster's default database (shared by every
    test that uses it; see :func:`fresh_postgres_dsn`).
    """
    return postgres_cluster.dsn()


@pytest.fixture
def fresh_postgres_dsn(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """
    The DSN of an empty database for this test alone, dropped after it.
    """
    dsn = postgres_cluster.create_database()
    try:
        yield dsn
    finally:
        postgres_cluster.drop_database(dsn)
