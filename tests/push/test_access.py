"""
Following access changes for the open push connections (the access watch)
and catching them up after missed events.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import capturedLogs
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.auth.passwords import new_token, token_hash
from jmap_twisted.interfaces import IPushConnection, IRecipientCache
from jmap_twisted.mail.delivery import LocalDelivery
from jmap_twisted.push.access import AccessWatch, catch_up
from jmap_twisted.push.connections import PushConnections
from jmap_twisted.push.subscription import PushSubscription
from jmap_twisted.testing import MemoryDirectory, MemoryMailStore
from tests.push.test_subscription import USER, Push, whole
from tests.support import ImmediateReactor


@implementer(IPushConnection)
class Connection:
    """
    A push connection recording what it is told.

    :param fails: ``access_changed`` raises (the re-check failed).
    :param close_fails: ``close`` raises too.
    """

    def __init__(
        self, user_id: str, fails: bool = False, close_fails: bool = False, subscription: Any = None
    ) -> None:
        self.user_id = user_id
        self.subscription = subscription
        self.told = 0
        self.closed_with: list[int] = []
        self._fails = fails
        self._close_fails = close_fails

    async def access_changed(self) -> None:
        self.told += 1
        if self._fails:
            raise RuntimeError("cannot re-check (test)")

    def close(self, code: int, reason: str) -> None:
        if self._close_fails:
            raise RuntimeError("cannot close (test)")
        self.closed_with.append(code)


class Directory(MemoryDirectory):
    """
    The in-memory directory, made to fail or to forget who changed on
    request.
    """

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.version_fails = False
        self.changes_fail = False
        self.changes_unknown = False

    def access_version(self) -> Deferred[int]:
        if self.version_fails:
            return fail(RuntimeError("directory unreachable (test)"))
        return super().access_version()

    def access_changes_since(self, version: int) -> Deferred[list[str] | None]:
        if self.changes_fail:
            return fail(RuntimeError("directory unreachable (test)"))
        if self.changes_unknown:
            return succeed(None)
        return super().access_changes_since(version)


class World:
    """
    A directory with alice and bob, one open connection each, and the
    watch over them.
    """

    def __init__(self, caches: tuple[IRecipientCache, ...] = ()) -> None:
        self.clock = ImmediateReactor()
        self.directory = Directory(self.clock)
        self.alice = self.directory.create_user("alice", None).result
        self.bob = self.directory.create_user("bob", None).result
        self.connections = PushConnections(per_user=5)
        self.alice_socket = Connection(self.alice.id)
        self.bob_socket = Connection(self.bob.id)
        self.connections.add(self.alice_socket)
        self.connections.add(self.bob_socket)
        self.watch = AccessWatch(self.directory, self.connections, caches)

    async def check(self) -> None:
        await self.watch.check()

    def told(self) -> tuple[int, int]:
        return self.alice_socket.told, self.bob_socket.told


def test_the_connection_double_is_a_push_connection() -> None:
    """
    The double used here provides the interface the watch relies on.
    """
    verifyObject(IPushConnection, Connection("u"))


@pytest_twisted.ensureDeferred
async def test_the_first_look_only_records_the_version() -> None:
    """
    The first check records the access version and tells no connection
    (whatever changed before it); a check that finds the same version
    tells none either.
    """
    w = World()
    w.directory.delegate("alice", "bob")
    assert w.watch.version_seen is None
    await w.check()
    assert w.watch.version_seen == w.directory.access_version().result
    assert w.told() == (0, 0)
    await w.check()
    assert w.told() == (0, 0)


@pytest_twisted.ensureDeferred
async def test_only_the_connections_of_users_whose_access_changed_are_told() -> None:
    """
    When the access version moves, exactly the connections of the users
    concerned are told, once per move: a delegation to bob tells bob's;
    revoking a token of alice tells alice's.
    """
    w = World()
    token = w.directory.add_token(w.alice.id, token_hash(new_token()), "t").result
    await w.check()
    w.directory.delegate("alice", "bob")
    await w.check()
    assert w.told() == (0, 1)
    w.directory.revoke_token(token.id)
    await w.check()
    assert w.told() == (1, 1)
    assert w.watch.version_seen == w.directory.access_version().result
    await w.check()
    assert w.told() == (1, 1)
    w.directory.revoke_delegation("alice", "bob")
    await w.check()
    assert w.told() == (1, 2)


@pytest_twisted.ensureDeferred
async def test_when_who_changed_is_unknown_every_connection_is_told() -> None:
    """
    A directory that cannot say whose access changed (``None``), or fails
    to, gets every connection re-checked: failing open would leave revoked
    credentials connected.
    """
    w = World()
    await w.check()
    w.directory.changes_unknown = True
    w.directory.delegate("alice", "bob")
    await w.check()
    assert w.told() == (1, 1)
    w.directory.changes_unknown = False
    w.directory.changes_fail = True
    w.directory.revoke_delegation("alice", "bob")
    with capturedLogs() as events:
        await w.check()
    assert w.told() == (2, 2)
    assert any("log_failure" in event for event in events)
    assert w.watch.version_seen == w.directory.access_version().result


@pytest_twisted.ensureDeferred
async def test_recipient_caches_forget_when_access_moves() -> None:
    """
    Remembered recipient resolutions are forgotten when the access version
    moves (not on the first look): mail for a deleted user is no longer
    resolved to their account.
    """
    clock = ImmediateReactor()
    directory = MemoryDirectory(clock)
    carol = directory.create_user("carol", None).result
    account = directory.accounts_for_user(carol.id).result[0].id
    delivery = LocalDelivery(directory, MemoryMailStore(clock), ["example.com"], clock)
    verifyObject(IRecipientCache, delivery)
    watch = AccessWatch(directory, PushConnections(5), (delivery,))
    await watch.check()
    assert await delivery.resolve("carol@example.com") == account
    directory.delete_user("carol")
    assert await delivery.resolve("carol@example.com") == account  # remembered
    await watch.check()
    assert await delivery.resolve("carol@example.com") is None


@pytest_twisted.ensureDeferred
async def test_a_connection_that_cannot_be_rechecked_is_closed_and_others_still_told() -> None:
    """
    A connection whose re-check raises is closed with 1011 (fail closed:
    its client logs in again) and the failure is logged; the connections
    after it are still told.  One that cannot even be closed is dropped
    from the registry.  The check itself never raises.
    """
    w = World()
    broken = Connection(w.bob.id, fails=True)
    stuck = Connection(w.bob.id, fails=True, close_fails=True)
    w.connections.discard(w.bob_socket)
    for connection in (broken, stuck, w.bob_socket):
        w.connections.add(connection)
    await w.check()
    w.directory.delegate("alice", "bob")
    with capturedLogs() as events:
        await w.check()
    assert broken.closed_with == [1011]
    assert stuck.told == 1 and stuck not in w.connections
    assert w.bob_socket.told == 1 and w.bob_socket.closed_with == []
    assert w.alice_socket.told == 0
    assert sum("log_failure" in event for event in events) == 3


@pytest_twisted.ensureDeferred
async def test_a_directory_that_fails_is_survived() -> None:
    """
    When the access version cannot be read, the check logs the failure,
    tells no one and keeps the version it had, so the change is seen at the
    next check once the directory answers again.
    """
    w = World()
    await w.check()
    seen = w.watch.version_seen
    w.directory.delegate("alice", "bob")
    w.directory.version_fails = True
    with capturedLogs() as events:
        await w.check()
    assert any("log_failure" in event for event in events)
    assert w.told() == (0, 0) and w.watch.version_seen == seen
    w.directory.version_fails = False
    await w.check()
    assert w.told() == (0, 1)


@pytest_twisted.ensureDeferred
async def test_catch_up_tells_each_active_subscription_what_moved() -> None:
    """
    Catching up reads the states of the subscribed accounts and sends one
    StateChange to each connection whose accounts moved meanwhile; quiet
    accounts, connections without a subscription and cancelled
    subscriptions get nothing.  It returns how many were sent one.
    """
    p = Push()
    sent: dict[str, list[dict[str, Any]]] = {"one": [], "two": [], "gone": []}
    subscriptions = {}
    connections = PushConnections(per_user=5)
    for name, accounts in (("one", ["A1"]), ("two", ["A2"]), ("gone", ["A1"])):
        subscription = PushSubscription(p.jmap_bus, p.mail, sent[name].append, None, USER)
        await subscription.start(whole(*accounts), None)
        subscriptions[name] = subscription
        connections.add(Connection("u-" + name, subscription=subscription))
    connections.add(Connection("u-none"))
    await subscriptions["gone"].cancel()
    p.publisher.stop()  # the broker is unreachable: commits are missed
    p.deliver("A1")
    assert sent == {"one": [], "two": [], "gone": []}
    assert await catch_up(connections, p.mail) == 1
    (change,) = sent["one"]
    assert set(change["changed"]) == {"A1"}
    assert change["changed"]["A1"]["Email"] == p.read("A1", lambda r: r.state("Email"))
    assert sent["two"] == [] and sent["gone"] == []
    assert await catch_up(connections, p.mail) == 0
