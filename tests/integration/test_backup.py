"""
``jmap-admin backup`` of a running ``twistd jmap`` while mail arrives, and
``jmap-admin restore`` into a new data directory: a second server started
there serves, over JMAP, the mail and blobs the backup captured.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.test_twistd import Twistd, admin, free_port
from tests.mailfactory import message

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
MAIL = "urn:ietf:params:jmap:mail"
USERS = {"alice": "pw-alice-1", "bob": "pw-bob-22"}
EMAIL_PROPERTIES = [
    "blobId",
    "threadId",
    "keywords",
    "mailboxIds",
    "subject",
    "receivedAt",
    "size",
]
# Mailbox properties that later deliveries do not change (the counts are
# checked against the emails instead).
MAILBOX_PROPERTIES = ["name", "role", "parentId", "sortOrder", "isSubscribed", "myRights"]
COUNTS = ["totalEmails", "unreadEmails"]


class Account:
    """
    One user's JMAP session on one server.
    """

    def __init__(self, base: str, username: str) -> None:
        self.auth = (username, USERS[username])
        answer = requests.get(base + "/.well-known/jmap", auth=self.auth, timeout=10)
        assert answer.status_code == 200, answer.text
        self.session = answer.json()
        self.id: str = self.session["primaryAccounts"][MAIL]

    def call(self, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """
        Run ``calls`` in one request; their answers, each checked to be
        the method's own (no error).
        """
        answer = requests.post(
            self.session["apiUrl"],
            json={
                "using": USING,
                "methodCalls": [
                    [name, {"accountId": self.id, **arguments}, str(i)]
                    for i, (name, arguments) in enumerate(calls)
                ],
            },
            auth=self.auth,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        responses = answer.json()["methodResponses"]
        assert [r[0] for r in responses] == [name for name, _ in calls], responses
        return [r[1] for r in responses]

    def view(self) -> dict[str, Any]:
        """
        The account's mailboxes and every email (with the given
        properties), by id, and the states they were read at.
        """
        mailboxes, query, emails = self.call(
            ("Mailbox/get", {"ids": None, "properties": MAILBOX_PROPERTIES + COUNTS}),
            (
                "Email/query",
                {
                    "sort": [{"property": "receivedAt", "isAscending": True}],
                    "calculateTotal": True,
                },
            ),
            (
                "Email/get",
                {
                    "#ids": {"resultOf": "1", "name": "Email/query", "path": "/ids"},
                    "properties": EMAIL_PROPERTIES,
                },
            ),
        )
        assert emails["notFound"] == []
        assert [e["id"] for e in emails["list"]] == query["ids"]
        assert query["total"] == len(query["ids"])
        return {
            "mailboxes": {m.pop("id"): m for m in mailboxes["list"]},
            "emails": {e.pop("id"): e for e in emails["list"]},
            "mailbox_state": mailboxes["state"],
            "email_state": emails["state"],
        }

    def upload(self, octets: bytes) -> str:
        url = self.session["uploadUrl"].replace("{accountId}", self.id)
        answer = requests.post(
            url,
            data=octets,
            headers={"Content-Type": "application/octet-stream"},
            auth=self.auth,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        blob_id: str = answer.json()["blobId"]
        return blob_id

    def download(self, blob_id: str) -> bytes:
        url = (
            self.session["downloadUrl"]
            .replace("{accountId}", self.id)
            .replace("{blobId}", blob_id)
            .replace("{name}", "blob")
            .replace("{type}", "application/octet-stream")
        )
        answer = requests.get(url, auth=self.auth, timeout=10)
        assert answer.status_code == 200, (blob_id, answer.status_code)
        return answer.content


def deliver(port: int, username: str, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", port, timeout=30) as client:
        refused = client.sendmail(
            "sender@elsewhere.test",
            [f"{username}@example.com"],
            message(subject=subject, to=f"{username}@example.com", body=subject * 40),
        )
    assert refused == {}


class Deliveries:
    """
    A thread delivering ``later N`` to alice and bob in turn, one message
    per LMTP transaction, until stopped: so the deliveries any snapshot of
    the store holds are the first few of the sequence.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.started = 0
        self.completed = 0
        self.lock = threading.Lock()
        self.some_done = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def recipient(n: int) -> str:
        return ("alice", "bob")[n % 2]

    def _run(self) -> None:
        try:
            n = 0
            while not self.stopping.is_set():
                with self.lock:
                    self.started = n + 1
                deliver(self.port, self.recipient(n), f"later {n}")
                with self.lock:
                    self.completed = n + 1
                if n >= 3:
                    self.some_done.set()
                n += 1
        except BaseException as error:  # reported by stop()
            self.error = error
            self.some_done.set()

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.started, self.completed

    def stop(self) -> int:
        self.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        return self.completed


def _without_counts(mailboxes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        mailbox_id: {k: v for k, v in mailbox.items() if k not in COUNTS}
        for mailbox_id, mailbox in mailboxes.items()
    }


@pytest.fixture
def original(tmp_path: Path) -> Iterator[tuple[Twistd, int, str]]:
    home = tmp_path / "original"
    home.mkdir()
    port, lmtp = free_port(), free_port()
    server = Twistd(home, f"tcp:{port}:interface=127.0.0.1", port, lmtp_port=lmtp)
    yield server, lmtp, f"http://127.0.0.1:{port}"
    server.stop()


def test_backup_of_a_running_server_restores_over_jmap(
    tmp_path: Path, original: tuple[Twistd, int, str]
) -> None:
    """
    A backup taken by ``jmap-admin backup`` while a server receives mail,
    restored by ``jmap-admin restore`` and served by a second server,
    shows each user, over JMAP, everything stored before the backup began
    (mailboxes, emails with their properties and octets, an uploaded
    blob), plus the first few of the deliveries made meanwhile, and
    none made after it ended; its states are the server's own, so
    Email/changes from a state read before the backup reports exactly
    those deliveries as created.
    """
    server, lmtp, base = original
    for username, password in USERS.items():
        added = admin(server.data, "user", "add", username, "--password-stdin", stdin=password)
        assert added.returncode == 0, added.stderr
    accounts = {username: Account(base, username) for username in USERS}
    for i in range(3):
        for username in USERS:
            deliver(lmtp, username, f"early {username} {i}")
    blob = b"\x00uploaded octets\xff" * 300
    blob_id = accounts["alice"].upload(blob)
    before = {username: account.view() for username, account in accounts.items()}
    assert all(len(view["emails"]) == 3 for view in before.values())

    deliveries = Deliveries(lmtp)
    assert deliveries.some_done.wait(timeout=30)
    _, completed_before = deliveries.counts()
    backed_up = admin(server.data, "backup", str(tmp_path / "backup"))
    started_by_end, _ = deliveries.counts()
    # Some deliveries after the backup ended, which it cannot hold.
    while deliveries.counts()[1] < started_by_end + 2:
        assert deliveries.thread.is_alive(), deliveries.error
        time.sleep(0.05)
    delivered = deliveries.stop()
    assert backed_up.returncode == 0, backed_up.stderr
    after = {username: account.view() for username, account in accounts.items()}

    home = tmp_path / "restored"
    home.mkdir()
    restored_data = home / "data"
    back = admin(restored_data, "restore", str(tmp_path / "backup"))
    assert back.returncode == 0, back.stderr
    port = free_port()
    second = Twistd(home, f"tcp:{port}:interface=127.0.0.1", port)
    assert second.data == restored_data
    try:
        restored_accounts = {
            username: Account(f"http://127.0.0.1:{port}", username) for username in USERS
        }
        captured: set[int] = set()
        for username, account in restored_accounts.items():
            assert account.id == accounts[username].id
            then, now, restored = before[username], after[username], account.view()
            emails = restored["emails"]
            # Everything stored before the backup began, unchanged.
            assert {i: emails.get(i) for i in then["emails"]} == then["emails"]
            # The rest are deliveries made meanwhile, as the original has them.
            assert {i: now["emails"].get(i) for i in emails} == emails
            later = [e["subject"] for i, e in emails.items() if i not in then["emails"]]
            assert all(subject.startswith("later ") for subject in later), later
            numbers = {int(subject.removeprefix("later ")) for subject in later}
            assert len(numbers) == len(later)
            assert {Deliveries.recipient(n) for n in numbers} <= {username}
            captured |= numbers
            # The same mailboxes, counting the restored emails.
            assert _without_counts(restored["mailboxes"]) == _without_counts(then["mailboxes"])
            for mailbox_id, mailbox in restored["mailboxes"].items():
                inside = [e for e in emails.values() if mailbox_id in e["mailboxIds"]]
                assert mailbox["totalEmails"] == len(inside)
                assert mailbox["unreadEmails"] == sum("$seen" not in e["keywords"] for e in inside)
            # Each email's octets as the original serves them.
            original_account = accounts[username]
            for email in emails.values():
                assert account.download(email["blobId"]) == original_account.download(
                    email["blobId"]
                )
            # States: the server's own numbers, between before and after.
            for kind in ("email_state", "mailbox_state"):
                assert int(then[kind]) <= int(restored[kind]) <= int(now[kind])
            (changes,) = account.call(("Email/changes", {"sinceState": then["email_state"]}))
            assert changes["oldState"] == then["email_state"]
            assert changes["newState"] == restored["email_state"]
            assert changes["hasMoreChanges"] is False
            assert sorted(changes["created"]) == sorted(set(emails) - set(then["emails"]))
            assert changes["updated"] == [] and changes["destroyed"] == []
        # The captured deliveries are the first ones of the sequence: all
        # that had ended before the backup began, none begun after it ended.
        assert captured == set(range(len(captured)))
        assert completed_before <= len(captured) <= started_by_end < delivered
        assert restored_accounts["alice"].download(blob_id) == blob
    finally:
        assert second.stop()
