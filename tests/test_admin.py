"""
Tests of the ``jmap-admin`` command, each run in a subprocess: it runs (and
stops) a reactor of its own, which must not be the test run's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock

import jmap_twisted
from jmap_twisted.auth.passwords import PasswordHasher, token_hash
from jmap_twisted.bus.events import StateChange
from jmap_twisted.store.sqlite.database import DATABASE_FILENAME, SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.deadletters import SQLiteDeadLetters
from jmap_twisted.store.sqlite.directory import SQLiteDirectory

PASSWORD = "Tr0ub4dor&3-unique-in-output"

# The subprocesses import this checkout even when it is not installed.
ENV = {**os.environ, "PYTHONPATH": str(Path(jmap_twisted.__file__).parents[1])}


def _script() -> str | None:
    """
    The installed jmap-admin script of the running environment.
    """
    beside = Path(sys.executable).with_name("jmap-admin")
    if beside.exists():
        return str(beside)
    return shutil.which("jmap-admin")


def admin(
    data: Path,
    *args: str,
    stdin: str = "",
    script: bool = False,
    new_session: bool = False,
    init: bool = True,
) -> subprocess.CompletedProcess[str]:
    """
    Run jmap-admin on a data directory: as the installed script if
    ``script``, else as ``python -m jmap_twisted.admin``.  ``new_session``
    detaches it from any terminal, so that getpass reads standard input.
    ``init`` (``--init``) lets it create the store of a new data directory.
    """
    if script:
        found = _script()
        if found is None:
            pytest.skip("the jmap-admin script is not installed")
        command = [found]
    else:
        command = [sys.executable, "-m", "jmap_twisted.admin"]
    return subprocess.run(
        [*command, "--data", str(data), *(["--init"] if init else []), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=new_session,
        env=ENV,
    )


def assert_failed(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout
        assert secret not in result.stderr


async def open_directory(data: Path) -> tuple[SQLiteDatabase, SQLiteDirectory]:
    from twisted.internet import reactor

    db = SQLiteDatabase(database_path(str(data)), reactor)
    await db.start()
    return db, SQLiteDirectory(db, Clock())


@pytest.fixture
def data(tmp_path) -> Path:
    return tmp_path / "data"


@pytest_twisted.ensureDeferred
async def test_user_add_password_stdin(data):
    """
    The installed jmap-admin creates a user whose password, read from
    standard input, verifies, and prints neither the password nor its hash.
    """
    result = admin(data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result
    assert "alice" in result.stdout
    assert (data / DATABASE_FILENAME).exists()

    db, directory = await open_directory(data)
    try:
        found = await directory.get_password_hash("alice")
    finally:
        await db.stop()
    assert found is not None
    user, stored = found
    assert stored is not None
    assert user.id in result.stdout
    hasher = PasswordHasher()
    assert hasher.verify(PASSWORD, stored)
    assert not hasher.verify(PASSWORD + "x", stored)
    assert_no_secret(result, PASSWORD, stored, stored.split("$")[5])


def test_installed_script(data):
    """
    The installed jmap-admin script runs the same command.
    """
    result = admin(
        data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n", script=True
    )
    assert result.returncode == 0, result
    assert_no_secret(result, PASSWORD)
    listed = admin(data, "user", "list", script=True)
    assert listed.returncode == 0
    assert listed.stdout.split("\t")[0] == "alice"


@pytest_twisted.ensureDeferred
async def test_token_issue(data):
    """
    token issue prints the new token, alone, on standard output; the
    directory finds it by its hash, with the given label; token list shows
    its id and label but neither the token nor its hash.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    result = admin(data, "token", "issue", "alice", "--name", "phone")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert result.stdout == token + "\n"
    assert token.startswith("jmt_")
    assert token not in result.stderr

    db, directory = await open_directory(data)
    try:
        found = await directory.find_token(token_hash(token))
    finally:
        await db.stop()
    assert found is not None
    user, info = found
    assert user.username == "alice"
    assert info.name == "phone"

    listed = admin(data, "token", "list", "alice")
    assert listed.returncode == 0
    assert listed.stdout.startswith(info.id + "\t")
    assert listed.stdout.rstrip("\n").endswith("\tphone")
    assert_no_secret(listed, token, token_hash(token))


@pytest_twisted.ensureDeferred
async def test_changes_seen_by_running_server(data):
    """
    With the database open, as a running server has it, tokens issued and
    revoked by jmap-admin are seen by the next lookup; revoking an unknown
    token fails with status 1.
    """
    db, directory = await open_directory(data)
    try:
        assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
        token = admin(data, "token", "issue", "alice").stdout.strip()
        found = await directory.find_token(token_hash(token))
        assert found is not None
        token_id = found[1].id

        revoked = admin(data, "token", "revoke", token_id)
        assert revoked.returncode == 0, revoked
        assert await directory.find_token(token_hash(token)) is None

        assert_failed(admin(data, "token", "revoke", token_id), f"no such token: {token_id}")
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_user_passwd(data):
    """
    user passwd replaces the password: the old one no longer verifies, the
    new one does; --no-password disables password login.
    """
    admin(data, "user", "add", "alice", "--password-stdin", stdin="old-password\n")
    result = admin(data, "user", "passwd", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result
    assert_no_secret(result, PASSWORD)

    db, directory = await open_directory(data)
    try:
        found = await directory.get_password_hash("alice")
        assert found is not None and found[1] is not None
        assert PasswordHasher().verify(PASSWORD, found[1])
        assert not PasswordHasher().verify("old-password", found[1])

        assert admin(data, "user", "passwd", "alice", "--no-password").returncode == 0
        found = await directory.get_password_hash("alice")
        assert found is not None and found[1] is None
    finally:
        await db.stop()


def test_password_prompt(data):
    """
    Without --password-stdin the password is asked twice; two different
    entries fail with status 1 and create nobody, two equal ones succeed.
    Neither is echoed.
    """
    mismatch = admin(data, "user", "add", "alice", stdin="first-pw\nsecond-pw\n", new_session=True)
    assert mismatch.returncode == 1
    assert "do not match" in mismatch.stderr
    assert_no_secret(mismatch, "first-pw", "second-pw")
    assert admin(data, "user", "list").stdout == ""

    matching = admin(
        data, "user", "add", "alice", stdin=f"{PASSWORD}\n{PASSWORD}\n", new_session=True
    )
    assert matching.returncode == 0, matching
    assert_no_secret(matching, PASSWORD)
    assert admin(data, "user", "list").stdout.startswith("alice\t")


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_empty_password_refused(data, stdin):
    """
    An empty password (or none at all) is refused with status 1, and the
    user is not created.
    """
    assert_failed(
        admin(data, "user", "add", "alice", "--password-stdin", stdin=stdin), "empty password"
    )
    assert admin(data, "user", "list").stdout == ""


def test_duplicate_user(data):
    """
    Adding a user who exists fails with status 1 and a one-line message.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, "user", "add", "alice", "--no-password"), "user already exists")


@pytest.mark.parametrize(
    "args",
    [
        ["user", "delete", "bob"],
        ["user", "passwd", "bob", "--password-stdin"],
        ["token", "issue", "bob"],
        ["token", "list", "bob"],
        ["delegate", "bob", "alice"],
        ["delegate", "alice", "bob"],
        ["delegations", "bob"],
    ],
)
def test_no_such_user(data, args):
    """
    Commands naming a user who does not exist fail with status 1 and a
    one-line message.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, *args, stdin="some-password\n"), "no such user: bob")


@pytest_twisted.ensureDeferred
async def test_user_list_and_delete(data):
    """
    user list prints each user's name and id, by name; user delete removes
    the user and their tokens.
    """
    for name in ["carol", "alice"]:
        assert admin(data, "user", "add", name, "--no-password").returncode == 0
    token = admin(data, "token", "issue", "alice").stdout.strip()
    listed = admin(data, "user", "list").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["alice", "carol"]

    deleted = admin(data, "user", "delete", "alice")
    assert deleted.returncode == 0, deleted
    assert [line.split("\t")[0] for line in admin(data, "user", "list").stdout.splitlines()] == [
        "carol"
    ]
    db, directory = await open_directory(data)
    try:
        assert await directory.find_token(token_hash(token)) is None
    finally:
        await db.stop()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["user"],
        ["user", "add"],
        ["user", "add", "alice", "--password-stdin", "--no-password"],
        ["user", "add", "al:ice", "--no-password"],
        ["user", "add", "al ice", "--no-password"],
        ["user", "add", "", "--no-password"],
        ["user", "add", "alice", "--password", "secret"],
        ["token", "revoke"],
        ["delegate", "alice"],
        ["undelegate", "alice"],
        ["delegations"],
        ["dead-letters"],
        ["dead-letters", "redeliver"],
        ["frobnicate"],
    ],
)
def test_usage_errors(data, args):
    """
    Usage errors exit with status 2, without touching the data directory.
    """
    result = admin(data, *args)
    assert result.returncode == 2, result
    assert "usage:" in result.stderr
    assert not data.exists()


def test_default_data_directory(tmp_path):
    """
    Without --data, the data directory is ./jmap-data, as for the server.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jmap_twisted.admin",
            "--init",
            "user",
            "add",
            "alice",
            "--no-password",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    assert result.returncode == 0, result
    assert (tmp_path / "jmap-data" / DATABASE_FILENAME).exists()


@pytest_twisted.ensureDeferred
async def test_delegate_undelegate_delegations(data):
    """
    delegate gives the delegate the owner's account, seen at once by a
    running server's directory; delegations lists the delegates by name,
    one per line; undelegate revokes at once, and fails with status 1 when
    there is no such delegation.
    """
    for name in ["alice", "carol", "bob"]:
        assert admin(data, "user", "add", name, "--no-password").returncode == 0
    db, directory = await open_directory(data)
    try:
        alice = await directory.get_user("alice")
        bob = await directory.get_user("bob")
        assert alice is not None and bob is not None
        version = await directory.access_version()

        for delegate in ["carol", "bob", "bob"]:
            result = admin(data, "delegate", "alice", delegate)
            assert result.returncode == 0, result
        assert [a.owner_id for a in await directory.accounts_for_user(bob.id)] == [
            bob.id,
            alice.id,
        ]
        assert await directory.access_version() > version
        listed = admin(data, "delegations", "alice")
        assert (listed.returncode, listed.stdout) == (0, "bob\ncarol\n")
        assert admin(data, "delegations", "bob").stdout == ""

        revoked = admin(data, "undelegate", "alice", "bob")
        assert revoked.returncode == 0, revoked
        assert [a.owner_id for a in await directory.accounts_for_user(bob.id)] == [bob.id]
        assert admin(data, "delegations", "alice").stdout == "carol\n"
        assert_failed(admin(data, "undelegate", "alice", "bob"), "no such delegation")
        assert_failed(admin(data, "undelegate", "alice", "nobody"), "no such delegation")
    finally:
        await db.stop()


def test_self_delegation_refused(data):
    """
    Delegating an account to its owner fails with status 1 and a one-line
    message, and delegates nothing.
    """
    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, "delegate", "alice", "alice"), "themselves")
    assert admin(data, "delegations", "alice").stdout == ""


@pytest_twisted.ensureDeferred
async def test_dead_letters_list_and_redeliver(data):
    """
    Dead letters stored by a server's SQLiteDeadLetters are listed by
    dead-letters list: groups with their counts, and a group's letters
    (insertion id, time stored, event type, account id) oldest first,
    without the events' content.  dead-letters redeliver marks one letter
    or a whole group for the running server, saying how many; naming a
    letter or group that has none fails with status 1.
    """
    from twisted.internet import reactor

    clock = Clock()
    clock.advance(1_700_000_000)
    db = SQLiteDatabase(database_path(str(data)), reactor)
    await db.start()
    try:
        dead = SQLiteDeadLetters(db, clock)
        first = await dead.store("changes", StateChange("a-alice", {"Email": "secret-state"}))
        clock.advance(60)
        second = await dead.store("changes", StateChange("a-bob", {"Email": "other-state"}))
        await dead.store("push", StateChange("a-alice", {"Mailbox": "m-state"}))

        groups = admin(data, "dead-letters", "list")
        assert (groups.returncode, groups.stdout) == (0, "changes\t2\npush\t1\n")
        letters = admin(data, "dead-letters", "list", "changes")
        assert letters.returncode == 0, letters
        assert letters.stdout == (
            f"{first}\t2023-11-14T22:13:20Z\tStateChange\ta-alice\n"
            f"{second}\t2023-11-14T22:14:20Z\tStateChange\ta-bob\n"
        )
        assert_no_secret(letters, "secret-state", "other-state", "Email")
        assert admin(data, "dead-letters", "list", "nothing").stdout == ""

        one = admin(data, "dead-letters", "redeliver", "changes", second)
        assert one.returncode == 0, one
        assert "marked 1 " in one.stdout
        assert await dead.requested() == [("changes", second)]
        everything = admin(data, "dead-letters", "redeliver", "changes")
        assert "marked 2 " in everything.stdout
        assert await dead.requested() == [("changes", first), ("changes", second)]
        assert await dead.ids("push") != []

        assert_failed(
            admin(data, "dead-letters", "redeliver", "changes", "nope"), "no such dead letter"
        )
        assert_failed(admin(data, "dead-letters", "redeliver", "nothing"), "no dead letters")
    finally:
        await db.stop()


@pytest_twisted.ensureDeferred
async def test_vapid_show_and_rotate(data):
    """
    ``vapid show`` says there is no key before the server made one;
    ``vapid rotate`` stores a new P-256 key (``show`` then prints the same
    public key) and destroys every push subscription, which were made for
    the old key; rotating again gives another key.
    """
    from jmap_twisted.push.webpush.crypto import VapidKey, decode_b64url
    from jmap_twisted.records import PushSubscriptionRecord
    from jmap_twisted.store.sqlite.directory import SQLitePushSubscriptions

    assert admin(data, "user", "add", "alice", "--no-password").returncode == 0
    assert_failed(admin(data, "vapid", "show"), "no VAPID key yet")
    db, directory = await open_directory(data)
    try:
        alice = await directory.get_user("alice")
        subscriptions = SQLitePushSubscriptions(db)
        await subscriptions.set_vapid_key(VapidKey.generate().pem(), only_if_unset=True)
        await subscriptions.add(
            PushSubscriptionRecord(
                "s1",
                alice.id,
                "phone",
                "https://push.example/x",
                None,
                None,
                "c",
                True,
                None,
                None,
                0.0,
            )
        )
    finally:
        await db.stop()
    before = admin(data, "vapid", "show")
    rotated = admin(data, "vapid", "rotate")
    assert rotated.returncode == 0, rotated
    new_key, report = rotated.stdout.strip().splitlines()
    assert report == "destroyed 1 push subscription(s) made for the old key"
    assert new_key != before.stdout.strip()
    assert len(decode_b64url(new_key)) == 65
    assert admin(data, "vapid", "show").stdout.strip() == new_key
    db, directory = await open_directory(data)
    try:
        assert await SQLitePushSubscriptions(db).for_user(alice.id) == []
    finally:
        await db.stop()
    again = admin(data, "vapid", "rotate").stdout.splitlines()[0]
    assert again != new_key
