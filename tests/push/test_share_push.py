"""
Push follows what a sharee sees (RFC 8620 §7.1, RFC 9670): a connection
listens under its view's key for each account with mailboxes shared with
its user, is pushed that view's states only, drops states of an older
generation, and follows grants, revocations and subscription changes as
they happen.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jmap_twisted.auth.realm import accounts_of
from jmap_twisted.bus.events import StateChange, ViewerKey
from jmap_twisted.interfaces import IPushConnection
from jmap_twisted.push import pushstate
from jmap_twisted.push.access import AccessWatch, catch_up
from jmap_twisted.push.connections import PushConnections
from jmap_twisted.push.subscription import PushSubscription
from jmap_twisted.records import Account
from tests.bus.test_shares_audience import Shared, done
from tests.push.test_subscription import HeldReads


@implementer(IPushConnection)
class Socket:
    """
    A user's push connection that, like a WebSocket, re-reads the accounts
    its user may access when told that access changed and follows them.
    """

    def __init__(self, world: Shared, user: str) -> None:
        self.world = world
        self.user_id = world.users[user].id
        self.sent: list[dict[str, Any]] = []
        self.subscription: PushSubscription | None = PushSubscription(
            world.jmap_bus, world.mail, self.sent.append, None, self.user_id
        )
        self.closed_with: list[int] = []

    async def accounts(self) -> list[Account]:
        return await accounts_of(self.world.directory, self.user_id)

    async def start(self, push_state: str | None = None) -> None:
        assert self.subscription is not None
        for account in await self.accounts():
            done(self.world.mail.setup_account(account.id))
        assert await self.subscription.start(await self.accounts(), push_state)

    async def access_changed(self) -> None:
        assert self.subscription is not None
        await self.subscription.follow(await self.accounts())

    def close(self, code: int, reason: str) -> None:
        self.closed_with.append(code)

    def changed(self) -> list[dict[str, dict[str, str]]]:
        return [message["changed"] for message in self.sent]


class World(Shared):
    """
    Alice's account shared as each test says, bob's socket, and the access
    watch over it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.connections = PushConnections(per_user=5)
        self.bob = Socket(self, "bob")
        self.connections.add(self.bob)
        self.watch = AccessWatch(self.directory, self.connections)
        done(Deferred.fromCoroutine(self.watch.check()))  # the first look

    async def access_poll(self) -> None:
        await self.watch.check()

    def bob_view(self) -> Account:
        view = self.view("bob")
        assert view is not None and view.shared is not None
        return view


def test_the_socket_double_is_a_push_connection() -> None:
    """
    The connection double provides the interface the access watch uses.
    """
    verifyObject(IPushConnection, World().bob)


@pytest_twisted.ensureDeferred
async def test_a_sharee_listens_under_their_view_and_hears_only_what_they_see() -> None:
    """
    Bob, shared alice's inbox, listens under his own account's key and his
    view of alice's; a delivery into the inbox is pushed to him with his
    view's states (``EmailDelivery`` among them), which his pushState then
    holds; a delivery into alice's drafts pushes him nothing.
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    await w.bob.start()
    bob_account = (await w.bob.accounts())[0].id
    assert w.jmap_bus.key_names() == {
        f"account:{bob_account}",
        f"view:{w.account.id}:{w.users['bob'].id}",
    }
    w.deliver(w.inbox)
    (changed,) = w.bob.changed()
    states = w.view_states("bob")
    assert changed == {w.account.id: {**states, "EmailDelivery": states["Email"]}}
    known = pushstate.decode(w.bob.sent[-1]["pushState"]) or {}
    assert known[w.account.id]["Email"] == states["Email"]
    assert "Identity" not in known[w.account.id]  # a view has mail types only
    w.deliver(w.drafts)
    assert len(w.bob.sent) == 1


@pytest_twisted.ensureDeferred
async def test_states_of_another_viewer_or_an_older_generation_are_dropped() -> None:
    """
    Under bob's view key, a StateChange of his view's current generation
    (or a later one) is sent; one of an older generation (late, after his
    rights changed), of another user's view, or of the whole account is
    not, also when it arrives while the subscription starts (registered,
    its current states being read).
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    view = w.bob_view()
    assert view.shared is not None
    generation = view.shared.generation
    key = ViewerKey(w.account.id, w.users["bob"].id)
    bob, carol = w.users["bob"].id, w.users["carol"].id

    def change(state: str, viewer: str | None, generation: int) -> StateChange:
        return StateChange(w.account.id, {"Email": state}, viewer=viewer, generation=generation)

    unwanted = (
        change(f"s{generation - 1}.900", bob, generation - 1),
        change(f"s{generation}.901", carol, generation),
        change("902", None, 0),
    )
    sent: list[dict[str, Any]] = []
    reads = HeldReads(w.mail)
    subscription = PushSubscription(w.jmap_bus, reads, sent.append, None, bob)  # type: ignore[arg-type]
    starting = Deferred.fromCoroutine(subscription.start([view], None))
    for event in unwanted:
        await w.jmap_bus.dispatch(event, [key])
    reads.answer()
    assert await starting is True
    for event in unwanted:
        await w.jmap_bus.dispatch(event, [key])
    assert sent == []
    current = change(f"s{generation}.903", bob, generation)
    later = change(f"s{generation + 1}.1", bob, generation + 1)
    await w.jmap_bus.dispatch(current, [key])
    await w.jmap_bus.dispatch(later, [key])
    assert [m["changed"][w.account.id]["Email"] for m in sent] == [
        f"s{generation}.903",
        f"s{generation + 1}.1",
    ]


@pytest_twisted.ensureDeferred
async def test_a_share_revoked_while_the_socket_is_open_pushes_nothing_after() -> None:
    """
    Once alice stops sharing her inbox with bob, a delivery there pushes
    nothing to his open socket, even before the access watch looked (the
    shares are read for every commit); once it has, his view's key is no
    longer registered and alice's account is gone from his pushState.
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    await w.bob.start()
    w.deliver(w.inbox)
    assert len(w.bob.sent) == 1
    w.share(w.inbox, "bob", "")
    w.deliver(w.inbox)
    assert len(w.bob.sent) == 1
    await w.access_poll()
    view_key = f"view:{w.account.id}:{w.users['bob'].id}"
    assert view_key not in w.jmap_bus.key_names()
    w.deliver(w.inbox)
    await w.jmap_bus.dispatch(
        StateChange(w.account.id, {"Email": "s99.1"}, viewer=w.users["bob"].id, generation=99),
        [ViewerKey(w.account.id, w.users["bob"].id)],
    )
    assert len(w.bob.sent) == 1
    assert w.bob.subscription is not None
    assert w.account.id not in w.bob.subscription.accounts


@pytest_twisted.ensureDeferred
async def test_a_partial_revocation_pushes_the_new_states_at_once() -> None:
    """
    When alice revokes bob's share of her archive but keeps the inbox
    shared, his open socket is pushed his view's new states (the new
    generation's) as soon as the access watch looks, without waiting for
    mail; afterwards mail filed in the archive pushes him nothing, mail
    delivered to the inbox is pushed with the new generation's states,
    and a state of the old generation arriving late is dropped.
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    w.share(w.archive, "bob", "lr")
    await w.bob.start()
    old = w.bob_view().shared.generation  # type: ignore[union-attr]
    w.share(w.archive, "bob", "")
    await w.access_poll()
    (pushed,) = w.bob.changed()
    new = w.bob_view().shared.generation  # type: ignore[union-attr]
    assert new > old
    states = w.view_states("bob")
    assert {t: pushed[w.account.id][t] for t in states} == states
    assert all(s.startswith(f"s{new}.") for s in pushed[w.account.id].values())

    w.file(w.archive)
    assert len(w.bob.sent) == 1
    w.deliver(w.inbox)
    assert w.bob.changed()[-1][w.account.id]["Email"] == w.view_states("bob")["Email"]
    await w.jmap_bus.dispatch(
        StateChange(
            w.account.id, {"Email": f"s{old}.999"}, viewer=w.users["bob"].id, generation=old
        ),
        [ViewerKey(w.account.id, w.users["bob"].id)],
    )
    assert len(w.bob.sent) == 2


@pytest_twisted.ensureDeferred
async def test_a_new_share_starts_pushing_at_once() -> None:
    """
    A mailbox shared with bob while his socket is open adds alice's
    account to what he is pushed once the access watch looks: its current
    states at once, then its changes.
    """
    w = World()
    await w.bob.start()
    w.deliver(w.inbox)
    assert w.bob.sent == []
    w.share(w.inbox, "bob", "lr")
    await w.access_poll()
    (added,) = w.bob.changed()
    assert {t: added[w.account.id][t] for t in ("Mailbox", "Email", "Thread")} == w.view_states(
        "bob"
    )
    w.deliver(w.inbox)
    assert len(w.bob.sent) == 2


@pytest_twisted.ensureDeferred
async def test_a_subscription_change_pushes_the_new_mailbox_state() -> None:
    """
    Bob unsubscribing from alice's shared inbox moves his view's Mailbox
    state (its subscriptions counter), which his socket is pushed once
    the access watch looks.
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    await w.bob.start()
    before = w.view_states("bob")["Mailbox"]
    assert done(w.directory.set_subscribed(w.account.id, w.inbox, w.users["bob"].id, False))
    await w.access_poll()
    after = w.view_states("bob")["Mailbox"]
    assert after != before
    assert w.bob.changed()[-1][w.account.id]["Mailbox"] == after


@pytest_twisted.ensureDeferred
async def test_catch_up_reads_each_view_as_its_sharee_sees_it() -> None:
    """
    After missed events, catching up sends the owner's socket the whole
    account's states and bob's socket his view's states, read for each.
    """
    w = World()
    w.share(w.inbox, "bob", "lr")
    await w.bob.start()
    alice = Socket(w, "alice")
    await alice.start()
    w.connections.add(alice)
    w.publisher.stop()  # the broker is unreachable: commits are missed
    w.deliver(w.inbox)
    assert w.bob.sent == [] and alice.sent == []
    assert await catch_up(w.connections, w.mail) == 2
    (to_bob,) = w.bob.changed()
    (to_alice,) = alice.changed()
    assert to_bob[w.account.id]["Email"] == w.view_states("bob")["Email"]
    assert to_alice[w.account.id]["Email"] == w.read(lambda r: r.state("Email"))
