"""
A full disk: the SQLite store still destroys mail (in the room its reserve
file leaves) and refuses other writes with ``DiskFull``; over JMAP, the
refusal is ``serverUnavailable``.

The disk is a small tmpfs mounted in a private mount namespace
(``unshare``), so the test needs no privileges beyond user namespaces and
is skipped where those are not allowed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from jmap_twisted.store.changelog import ChangeRecorder

_SCRIPT = r"""
import os
import sys

from twisted.internet import task
from twisted.internet.defer import Deferred

from jmap_twisted.store.sqlite.database import DiskFull, SQLiteDatabase
from jmap_twisted.store.sqlite.mail import SQLiteMailStore

path = sys.argv[1]


def message(n):
    body = os.urandom(24_000).hex()
    return (
        f"From: a@example.net\r\nTo: b@example.com\r\nSubject: m{n}\r\n"
        f"Message-ID: <m{n}@example.net>\r\n\r\n{body}\r\n"
    ).encode()


async def main(reactor):
    db = SQLiteDatabase(path, reactor, reserve=512 * 1024)
    await db.start()
    assert os.path.getsize(db.reserve_path) == 512 * 1024
    store = SQLiteMailStore(db, reactor)
    await store.setup_account("a")
    inbox = (await store.read("a", lambda r: [m.id for m in r.mailboxes() if m.role == "inbox"]))[0]
    ids = []
    try:
        for n in range(10_000):
            record = await store.write("a", lambda w, n=n: w.add_email(message(n), [inbox], [], n))
            ids.append(record.id)
        raise AssertionError("the disk never filled up")
    except DiskFull:
        pass
    assert len(ids) > 5, ids
    # Adding is refused, and does not use the reserve.
    try:
        await store.write("a", lambda w: w.add_email(message(-1), [inbox], [], 0))
        raise AssertionError("an add succeeded on a full disk")
    except DiskFull:
        pass
    assert os.path.exists(db.reserve_path)
    # An add and a removal sharing a transaction (queued behind another
    # write): the add is refused alone, the removal goes through.
    ahead = db.run(lambda connection: None)
    adding = store.write("a", lambda w: w.add_email(message(-2), [inbox], [], 0))
    removing = store.write("a", lambda w, e=ids[0]: w.destroy_email(e))
    await ahead
    try:
        await adding
        raise AssertionError("an add succeeded on a full disk")
    except DiskFull:
        pass
    await removing
    assert not os.path.exists(db.reserve_path)
    # Destroying works, several times.
    for email_id in ids[1:5]:
        await store.write("a", lambda w, e=email_id: w.destroy_email(e))
    left = await store.read("a", lambda r: r.query_emails(None, [], False))
    assert left[1] == len(ids) - 5, left
    await db.stop()
    print("destroyed 5 of", len(ids))


task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def _unshare() -> str | None:
    found = shutil.which("unshare")
    if found is None:
        return None
    probe = subprocess.run([found, "-rm", "true"], capture_output=True, timeout=30, check=False)
    return found if probe.returncode == 0 else None


def test_destroying_mail_works_on_a_full_disk(tmp_path: Path) -> None:
    """
    On a disk filled by delivered mail, adding mail fails with DiskFull
    and keeps the reserve; destroying mail releases the reserve and
    commits, and further destroys commit too.
    """
    unshare = _unshare()
    if unshare is None:
        pytest.skip("no unprivileged mount namespaces here")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_SCRIPT)
    done = subprocess.run(
        [
            unshare,
            "-rm",
            "sh",
            "-c",
            'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" "$3" "$1/db.sqlite3"',
            "sh",
            str(disk),
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "destroyed 5 of" in done.stdout


def test_only_removals_may_use_the_reserve() -> None:
    """
    A write that destroyed emails (updating their threads and mailbox
    counts) only removes; one that created or changed anything else does
    not.
    """
    removal = ChangeRecorder()
    removal.destroyed("Email", "e1")
    removal.updated("Thread", "t1")
    removal.updated("Mailbox", "m1", counts_only=True)
    assert removal.only_removes()
    for change in (
        lambda r: r.created("Email", "e2"),
        lambda r: r.updated("Email", "e3"),
        lambda r: r.updated("Mailbox", "m2"),
    ):
        grows = ChangeRecorder()
        grows.destroyed("Email", "e1")
        change(grows)
        assert not grows.only_removes()
    assert not ChangeRecorder().only_removes()


@pytest_twisted.ensureDeferred
async def test_disk_full_is_server_unavailable() -> None:
    """
    A method whose write found the disk full answers ``serverUnavailable``
    with a description; the next call still runs.
    """
    from jmap_twisted.auth.realm import Principal
    from jmap_twisted.core.engine import Engine
    from jmap_twisted.core.limits import CoreLimits
    from jmap_twisted.core.registry import Capability, Registry
    from jmap_twisted.core.request import parse_request
    from jmap_twisted.records import Account, User
    from jmap_twisted.store.sqlite.database import DiskFull

    async def full(context: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        raise DiskFull("the disk is full")

    async def echo(context: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        return arguments

    core = "urn:ietf:params:jmap:core"
    registry = Registry()
    registry.add_capability(Capability(core))
    registry.add_method("Test/full", core, full)
    registry.add_method("Test/echo", core, echo)
    request = parse_request(
        {"using": [core], "methodCalls": [["Test/full", {}, "0"], ["Test/echo", {}, "1"]]},
        registry.capabilities,
        16,
    )
    principal = Principal(User("u1", "u"), (Account("a1", "u", "u1"),))
    response = await Engine(registry, CoreLimits()).execute(principal, request)
    error, echoed = response["methodResponses"]
    assert error[1]["type"] == "serverUnavailable"
    assert "disk is full" in error[1]["description"]
    assert echoed[0] == "Test/echo"
