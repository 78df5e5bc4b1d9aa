"""
One user's expensive queries must not starve the others: ``mallory`` floods
``Email/query`` requests of header conditions over a large mailbox, over a
WebSocket and over HTTP, then goes away; ``alice`` keeps logging in and
querying within seconds, and the server is idle again soon after mallory's
connections close.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.adversarial.harness import MAIL, USING, Attack, Server, tree_environment, well_behaved

#: Messages in mallory's inbox, each with a large header section.
MESSAGES = 2000

_POPULATE = """
import sys
from twisted.internet import task
from twisted.internet.defer import Deferred
from jmap_twisted.store.sqlite.database import SQLiteDatabase, database_path
from jmap_twisted.store.sqlite.mail import SQLiteMailStore

data, account, mailbox, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
filler = "".join(f"X-Filler-{i}: {'lorem ipsum ' * 6}\\r\\n" for i in range(80))


def message(n):
    return (
        f"From: someone{n}@example.net\\r\\nTo: mallory@example.com\\r\\n"
        f"Subject: note {n}\\r\\nMessage-ID: <n{n}@example.net>\\r\\n{filler}"
        f"\\r\\nbody {n}\\r\\n"
    ).encode()


async def main(reactor):
    db = SQLiteDatabase(database_path(data), reactor)
    await db.start()
    store = SQLiteMailStore(db, reactor)

    def add(writer, first):
        for n in range(first, min(first + 500, count)):
            writer.add_email(message(n), [mailbox], [], 1_700_000_000 + n)

    try:
        for first in range(0, count, 500):
            await store.write(account, lambda w, f=first: add(w, f))
    finally:
        await db.stop()


task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def _populate(server: Server, name: str, count: int) -> tuple[str, str]:
    """
    Put ``count`` messages in ``name``'s inbox straight into the database
    (the server shares the file); the account and inbox ids.
    """
    account = server.account(name)
    ((_, got, _),) = server.api(name, ["Mailbox/get", {"accountId": account, "ids": None}, "m"])
    inbox = next(m["id"] for m in got["list"] if m["role"] == "inbox")
    done = subprocess.run(
        [sys.executable, "-c", _POPULATE, str(server.twistd.data), account, inbox, str(count)],
        env=tree_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return account, inbox


def _heavy_query(account: str, call_id: str = "q") -> list[object]:
    """
    An ``Email/query`` whose header conditions parse every message's header
    section, several times, and match nothing.
    """
    conditions = [{"header": [f"X-Absent-{i}", "needle"]} for i in range(4)]
    return [
        "Email/query",
        {"accountId": account, "filter": {"operator": "OR", "conditions": conditions}},
        call_id,
    ]


def _cpu_seconds(server: Server) -> float:
    """
    The CPU time the server process has used so far.
    """
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alice_queries(server: Server, account: str) -> float:
    """
    Alice's own ``Email/query``: the seconds it took.
    """
    started = time.monotonic()
    ((name, _, _),) = server.api(
        "alice",
        ["Email/query", {"accountId": account, "filter": {"text": "hello"}}, "a"],
        timeout=120,
    )
    assert name == "Email/query"
    return time.monotonic() - started


def test_query_flood_does_not_starve_other_users(server: Server) -> None:
    """
    While mallory floods heavy header queries (300 over one WebSocket, more
    over HTTP with clients that give up), alice logs in and queries her own
    mail within seconds; once mallory's connections are closed the queued
    work is dropped and the running work stopped, so the server's CPU goes
    idle within seconds, and a query that runs past its budget answers
    ``serverFail`` with a description, not a logged traceback.
    """
    account, _ = _populate(server, "mallory", MESSAGES)
    alice_account = server.account("alice")

    def flood_ws(_: int) -> None:
        with server.websocket("mallory") as ws:
            for n in range(300):
                ws.send(
                    json.dumps(
                        {
                            "@type": "Request",
                            "id": str(n),
                            "using": USING,
                            "methodCalls": [_heavy_query(account, str(n))],
                        }
                    )
                )
            time.sleep(3)  # then close with all of it still queued

    def flood_http(_: int) -> None:
        try:
            requests.post(
                server.base + "/jmap/api/",
                json={"using": USING, "methodCalls": [_heavy_query(account)]},
                auth=server.auth("mallory"),
                timeout=2,  # gives up: its connection closes
            )
        except requests.RequestException:
            pass

    with Attack(flood_ws, threads=1) as ws_attack, Attack(flood_http, threads=4):
        time.sleep(2)
        logins = [well_behaved(server, "alice", timeout=120) for _ in range(3)]
        queries = [_alice_queries(server, alice_account) for _ in range(3)]
    assert ws_attack.rounds >= 1
    assert max(logins) < 10, logins
    assert max(queries) < 10, queries

    # Mallory is gone: nothing of hers may keep running.
    time.sleep(3)
    before = _cpu_seconds(server)
    time.sleep(5)
    busy = (_cpu_seconds(server) - before) / 5
    assert busy < 0.3, f"the server is still {busy:.0%} busy after the attack"
    assert well_behaved(server, "alice") < 5
    assert "CancelledError" not in server.log()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("server", [("--query-timeout", "1")], indirect=True)
def test_query_past_its_budget_answers_server_fail(server: Server) -> None:
    """
    A query that runs past the time budget is stopped and answered with a
    ``serverFail`` that says why; nothing is logged as a failure.
    """
    account, _ = _populate(server, "mallory", MESSAGES)
    heavy = _heavy_query(account)
    heavy[1]["filter"]["conditions"] *= 8  # type: ignore[index]
    ((name, answer, _),) = server.api("mallory", heavy, timeout=300)
    assert name == "error"
    assert answer["type"] == "serverFail"
    assert "longer than the server allows" in answer["description"]
    assert "Traceback" not in server.log()
    assert well_behaved(server, "alice") < 10


def test_filter_too_large_is_refused(server: Server) -> None:
    """
    A filter of 50×50 conditions in one operator (an SQL expression deeper
    than SQLite accepts) is refused with ``unsupportedFilter`` before it
    reaches the database; the server logs no failure.
    """
    account = server.account("mallory")
    huge = {"operator": "OR", "conditions": [{"subject": f"s{i}"} for i in range(50 * 50)]}
    ((name, answer, _),) = server.api(
        "mallory", ["Email/query", {"accountId": account, "filter": huge}, "q"]
    )
    assert name == "error"
    assert answer["type"] == "unsupportedFilter"
    assert "Traceback" not in server.log()
    assert MAIL in server.session("alice")["capabilities"]
