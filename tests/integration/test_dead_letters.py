"""
A failing group listener's events end in the database's dead letters,
and ``jmap-admin`` gets the running server to redeliver them.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS, MailboxChanged
from jmap_twisted.interfaces import IEvent, IEventListener
from tests.integration.conftest import RunningServer


@implementer(IEventListener)
class Flaky:
    execution_mode = SYNCHRONOUS

    def __init__(self) -> None:
        self.failing = True
        self.handled: list[IEvent] = []

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, MailboxChanged)

    def handle(self, event: IEvent) -> Deferred[None]:
        if self.failing:
            return fail(RuntimeError("indexer down (test)"))
        self.handled.append(event)
        return succeed(None)


def admin(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jmap_twisted.admin", "--data", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def wait(check: Any, seconds: float = 15.0) -> None:
    from twisted.internet import reactor, task

    for _ in range(int(seconds / 0.1)):
        if await check():
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("condition not reached in time")


@pytest_twisted.ensureDeferred
async def test_dead_letters_listed_and_redelivered_from_the_cli(server: RunningServer) -> None:
    """
    After its retries a failing group's event is a dead letter the CLI
    lists; once the listener works again, ``dead-letters redeliver`` has
    the server deliver it (within its polling interval) and the letter is
    gone.
    """
    from twisted.internet.threads import deferToThread

    jmap = next(iter(server.service))
    listener = Flaky()
    await jmap.server.mailbox_bus.register_group(listener, "indexer")
    user = await server.add_user("alice", "pw")
    accounts = await (await server.directory()).accounts_for_user(user.id)
    await jmap.server.mail.setup_account(accounts[0].id)

    async def listed() -> bool:
        result = await deferToThread(admin, server, "dead-letters", "list")
        return "indexer" in result.stdout

    await wait(listed)
    listener.failing = False
    marked = await deferToThread(admin, server, "dead-letters", "redeliver", "indexer")
    assert marked.returncode == 0, marked.stderr

    async def redelivered() -> bool:
        return bool(listener.handled)

    await wait(redelivered)
    assert listener.handled[0].account_id == accounts[0].id

    async def gone() -> bool:
        result = await deferToThread(admin, server, "dead-letters", "list", "indexer")
        return result.stdout.strip() == ""

    await wait(gone)
