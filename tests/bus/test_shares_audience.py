"""
Push for sharees (:mod:`jmap_twisted.bus.shares`): each commit reaches,
under their view's key, the sharees who see a mailbox it touched, with
their own states, and no one else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from jmap_twisted import rights
from jmap_twisted.bus.changes import StorePublisher, register_change_listener
from jmap_twisted.bus.events import (
    AccountKey,
    MailboxChanged,
    StateChange,
    ViewerKey,
    from_json,
    parse_key,
    to_json,
)
from jmap_twisted.bus.shares import ShareAudience, register_share_audience
from jmap_twisted.interfaces import IEvent, IMailReader, IMailWriter
from jmap_twisted.records import Account, MailView, User
from jmap_twisted.store.changelog import MAIL_TYPES
from jmap_twisted.testing import (
    InMemoryEventBus,
    MemoryDeadLetters,
    MemoryDirectory,
    MemoryMailStore,
    RecordingListener,
    message,
)
from tests.support import ImmediateReactor

T = TypeVar("T")


def done(fired: Deferred[T]) -> T:
    """
    The result of a Deferred that has fired (the in-memory doubles answer
    at once); its failure raised.
    """
    outcome: list[Any] = []
    fired.addBoth(outcome.append)
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return result


class Shared:
    """
    Alice's account, with users bob, carol and dave, in an in-memory
    directory and mail store whose commits reach the JMAP bus through the
    change listener and the share audience, as in a server.
    """

    def __init__(self) -> None:
        self.clock = ImmediateReactor()
        self.directory = MemoryDirectory(self.clock)
        self.mail = MemoryMailStore(self.clock)
        self.mailbox_bus = InMemoryEventBus(self.clock, MemoryDeadLetters())
        self.jmap_bus = InMemoryEventBus(self.clock, MemoryDeadLetters())
        done(register_change_listener(self.mailbox_bus, self.jmap_bus))
        done(register_share_audience(self.mailbox_bus, self.jmap_bus, self.directory))
        self.publisher = StorePublisher(self.mail, self.mailbox_bus)
        self.publisher.start()
        self.users: dict[str, User] = {
            name: done(self.directory.create_user(name, None))
            for name in ("alice", "bob", "carol", "dave")
        }
        self.account = done(self.directory.accounts_for_user(self.users["alice"].id))[0]
        done(self.mail.setup_account(self.account.id))
        roles = self.read(lambda r: {m.role: m.id for m in r.mailboxes()})
        self.inbox, self.archive, self.drafts = roles["inbox"], roles["archive"], roles["drafts"]

    def share(self, mailbox_id: str, user: str, letters: str) -> None:
        done(
            self.directory.set_rights(
                self.account.id, mailbox_id, self.users[user].id, letters, None
            )
        )

    def listen(self, user: str | None) -> RecordingListener:
        """
        Record the StateChanges of alice's account under the whole account's
        key (``None``) or a user's view's key.
        """
        recorder = RecordingListener()
        key = (
            AccountKey(self.account.id)
            if user is None
            else ViewerKey(self.account.id, self.users[user].id)
        )
        done(self.jmap_bus.register(recorder, [key]))
        return recorder

    def view(self, user: str) -> Account | None:
        """
        Alice's account as the user sees it through shares, if they do.
        """
        found = done(self.directory.shared_views_for_user(self.users[user].id))
        return next(
            (Account(a.id, a.name, a.owner_id, v) for a, v in found if a.id == self.account.id),
            None,
        )

    def mail_view(self, user: str) -> MailView:
        account = self.view(user)
        assert account is not None and account.shared is not None
        return rights.mail_view(account.shared)

    def view_states(self, user: str) -> dict[str, str]:
        view = self.mail_view(user)
        return self.read(lambda r: {t: r.view_state(t, view) for t in MAIL_TYPES})

    def read(self, fn: Callable[[IMailReader], T]) -> T:
        return done(self.mail.read(self.account.id, fn))

    def write(self, fn: Callable[[IMailWriter], T], delivery: bool = False) -> T:
        return done(self.mail.write(self.account.id, fn, delivery=delivery))

    def deliver(self, mailbox_id: str, subject: str = "hi") -> str:
        """
        Deliver a message into a mailbox (as LMTP does); its email id.
        """
        record = self.write(
            lambda w: w.add_email(message(subject=subject), [mailbox_id], [], 0.0), delivery=True
        )
        return str(record.id)

    def file(self, mailbox_id: str, subject: str = "filed") -> str:
        """
        Put a message into a mailbox without delivering it (as an import).
        """
        record = self.write(lambda w: w.add_email(message(subject=subject), [mailbox_id], [], 0.0))
        return str(record.id)


def changes(recorder: RecordingListener) -> list[StateChange]:
    received: list[IEvent] = recorder.received
    assert all(isinstance(e, StateChange) for e in received)
    return received  # type: ignore[return-value]


def test_the_share_audience_handles_only_commits_that_touched_mailboxes() -> None:
    """
    The listener takes the mailbox bus's commits that touched a mailbox;
    StateChanges and commits touching none (documents) are not its
    business.
    """
    w = Shared()
    listener = ShareAudience(w.jmap_bus, w.directory)
    assert not listener.is_handling(StateChange(w.account.id, {"Email": "1"}))
    seen: list[Any] = []
    unsubscribe = w.mail.subscribe(seen.append)
    w.write(lambda wr: wr.put_document("Identity", "i1", {"name": "x"}))
    w.deliver(w.inbox)
    unsubscribe()
    document, delivery = (MailboxChanged.from_commit(c) for c in seen)
    assert not listener.is_handling(document)
    assert listener.is_handling(delivery)


def test_a_commit_reaches_only_the_sharees_of_the_mailboxes_it_touched() -> None:
    """
    A delivery into the inbox, shared with bob, reaches bob's view key
    once, with his view's Mailbox, Email and Thread states as the store
    then reports them, ``EmailDelivery`` equal to that Email state, and
    his view's generation; carol, who was shared the archive only, hears
    nothing.  Mail filed into the archive then reaches carol only, without
    ``EmailDelivery``.  The owner's key gets the whole account's states
    each time, as without shares.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lrs")
    w.share(w.archive, "carol", "lr")
    owner, bob, carol = w.listen(None), w.listen("bob"), w.listen("carol")

    w.deliver(w.inbox)
    (event,) = changes(bob)
    view = w.view("bob")
    assert view is not None and view.shared is not None
    assert (event.account_id, event.viewer) == (w.account.id, w.users["bob"].id)
    assert event.generation == view.shared.generation
    states = w.view_states("bob")
    assert dict(event.states) == {**states, "EmailDelivery": states["Email"]}
    assert all(s.startswith(f"s{view.shared.generation}.") for s in event.states.values())
    assert changes(carol) == []
    (whole,) = changes(owner)
    assert whole.viewer is None and whole.generation == 0
    assert whole.states["Email"] == w.read(lambda r: r.state("Email"))

    w.file(w.archive)
    (filed,) = changes(carol)
    assert dict(filed.states) == w.view_states("carol")
    assert "EmailDelivery" not in filed.states
    assert len(changes(bob)) == 1
    assert len(changes(owner)) == 2


def test_nothing_is_pushed_to_sharees_for_a_mailbox_not_shared_with_them() -> None:
    """
    Mail delivered into a mailbox shared with no one, or shared without
    the lookup right (``l``), pushes nothing to any view: the sharees'
    states do not move either.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lr")
    w.share(w.archive, "bob", "rsw")  # no l: not seen
    bob = w.listen("bob")
    before = w.view_states("bob")
    w.deliver(w.drafts)
    w.deliver(w.archive)
    assert changes(bob) == []
    assert w.view_states("bob") == before


def test_email_delivery_only_for_mail_the_sharee_may_read() -> None:
    """
    A sharee who may look the inbox up but not read it (``l`` without
    ``r``) is pushed its new Mailbox state (its counts changed) on a
    delivery there, but neither Email, Thread nor ``EmailDelivery``.
    """
    w = Shared()
    w.share(w.inbox, "bob", "l")
    bob = w.listen("bob")
    w.deliver(w.inbox)
    (event,) = changes(bob)
    assert set(event.states) == {"Mailbox"}
    assert event.states["Mailbox"] == w.view_states("bob")["Mailbox"]


def test_a_change_of_sharing_reaches_only_sharees_administering_the_mailbox() -> None:
    """
    Recording that a mailbox's sharing changed moves the Mailbox state of
    sharees holding ``a`` on it, and pushes to them only.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lr")
    w.share(w.inbox, "carol", "lra")
    bob, carol = w.listen("bob"), w.listen("carol")
    w.write(lambda wr: wr.note_acl_change(w.inbox))
    assert changes(bob) == []
    (event,) = changes(carol)
    assert dict(event.states) == {"Mailbox": w.view_states("carol")["Mailbox"]}


def test_delegates_are_not_pushed_twice() -> None:
    """
    A delegate (who sees the whole account) also shared the inbox is
    pushed through the account's key only: nothing under their view's
    key, one StateChange per commit under the account's.
    """
    w = Shared()
    done(w.directory.delegate("alice", "dave"))
    w.share(w.inbox, "dave", "lr")
    whole, view = w.listen(None), w.listen("dave")
    w.deliver(w.inbox)
    assert changes(view) == []
    assert len(changes(whole)) == 1


def test_a_revoked_share_is_pushed_nothing_more() -> None:
    """
    The shares are read afresh for every commit: once bob's share of the
    inbox is revoked, a delivery there pushes nothing to his view; a
    share given again pushes the new generation's states.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lr")
    bob = w.listen("bob")
    w.deliver(w.inbox)
    (first,) = changes(bob)
    w.share(w.inbox, "bob", "")
    w.deliver(w.inbox)
    assert len(changes(bob)) == 1
    w.share(w.inbox, "bob", "lr")
    w.deliver(w.inbox)
    (_, again) = changes(bob)
    assert again.generation > first.generation
    assert again.states["Email"] == w.view_states("bob")["Email"]


def test_each_sharee_gets_their_own_states() -> None:
    """
    Two sharees of the inbox with different views (bob reads the inbox
    only, carol the archive too) each get one StateChange, under their own
    key, with the states of their own view.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lr")
    w.share(w.inbox, "carol", "lr")
    w.share(w.archive, "carol", "lr")
    w.file(w.archive)  # moves carol's states, not bob's
    bob, carol = w.listen("bob"), w.listen("carol")
    w.deliver(w.inbox)
    ((to_bob,), (to_carol,)) = changes(bob), changes(carol)
    assert to_bob.viewer == w.users["bob"].id and to_carol.viewer == w.users["carol"].id
    assert to_bob.states["Email"] == w.view_states("bob")["Email"]
    assert to_carol.states["Email"] == w.view_states("carol")["Email"]
    assert to_bob.states["Mailbox"] != to_carol.states["Mailbox"]


def test_viewer_keys_and_state_changes_survive_their_string_and_json_forms() -> None:
    """
    A view's key parses back from its string form; a StateChange for a
    view keeps its viewer and generation through JSON, and one serialised
    without them (by an older node) is the whole account's.
    """
    key = ViewerKey("Aalice", "Ubob")
    assert key.as_string() == "view:Aalice:Ubob"
    assert parse_key(key.as_string()) == key
    for bad in ("view:", "view:Aalice", "view::Ubob", "view:Aalice:"):
        with pytest.raises(ValueError):
            parse_key(bad)
    event = StateChange("Aalice", {"Email": "s3.9"}, viewer="Ubob", generation=3)
    assert from_json(to_json(event)) == event
    old = from_json(b'{"type":"StateChange","id":"e1","accountId":"A","states":{"Email":"4"}}')
    assert isinstance(old, StateChange)
    assert (old.viewer, old.generation) == (None, 0)


@pytest_twisted.ensureDeferred
async def test_a_failing_directory_fails_the_handler_for_a_retry() -> None:
    """
    When the shares cannot be read, handling fails (so the bus retries the
    commit and dead-letters it in the end) and nothing is pushed.
    """
    w = Shared()
    w.share(w.inbox, "bob", "lr")
    bob = w.listen("bob")

    class Unreachable:
        def shares_of_mailboxes(self, *_: Any) -> Deferred[Any]:
            raise RuntimeError("directory unreachable (test)")

    listener = ShareAudience(w.jmap_bus, Unreachable())  # type: ignore[arg-type]
    seen: list[Any] = []
    w.mail.subscribe(seen.append)
    w.deliver(w.inbox)
    bob.received.clear()
    with pytest.raises(RuntimeError):
        await listener.handle(MailboxChanged.from_commit(seen[-1]))
    assert changes(bob) == []
