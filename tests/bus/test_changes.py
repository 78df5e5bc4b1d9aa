"""
From store commits to StateChange events keyed by account.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from jmap_twisted.bus.changes import MailboxChangeListener, StorePublisher
from jmap_twisted.bus.deadletters import MemoryDeadLetters
from jmap_twisted.bus.events import AccountKey, MailboxChanged, StateChange, from_json, to_json
from jmap_twisted.bus.memory import InMemoryEventBus
from tests.bus.recorders import Recorder
from tests.mailfactory import message
from tests.methods.harness import ACCOUNT, MailHarness


async def wired() -> tuple[MailHarness, Recorder, InMemoryEventBus]:
    h = MailHarness()
    mailbox_bus = InMemoryEventBus(h.clock, MemoryDeadLetters())
    jmap_bus = InMemoryEventBus(h.clock, MemoryDeadLetters())
    await mailbox_bus.register_group(MailboxChangeListener(jmap_bus), MailboxChangeListener.GROUP)
    StorePublisher(h.store, mailbox_bus).start()
    await h.roles()
    listener = Recorder()
    await jmap_bus.register(listener, [AccountKey(ACCOUNT)])
    return h, listener, jmap_bus


@pytest_twisted.ensureDeferred
async def test_delivery_yields_one_state_change_with_email_delivery() -> None:
    """
    A delivery to an account yields one StateChange under that account's
    key, with Email, Mailbox, Thread and EmailDelivery (= Email) states
    equal to the store's new states; another account's listener gets
    nothing.
    """
    h, alice, jmap_bus = await wired()
    other = Recorder()
    await jmap_bus.register(other, [AccountKey("a2")])
    await h.deliver(message())
    (event,) = alice.received
    assert isinstance(event, StateChange)
    assert event.account_id == ACCOUNT
    email_state = (await h.ok("Email/get", {"ids": []}))["state"]
    mailbox_state = (await h.ok("Mailbox/get", {"ids": []}))["state"]
    assert dict(event.states) == {
        "Email": email_state,
        "EmailDelivery": email_state,
        "Mailbox": mailbox_state,
        "Thread": event.states["Thread"],
    }
    assert other.received == []


@pytest_twisted.ensureDeferred
async def test_no_email_delivery_for_drafts_flags_imports_and_deletes() -> None:
    """
    Creating a draft, importing, changing flags and destroying produce
    StateChanges without EmailDelivery.
    """
    h, alice, _ = await wired()
    drafts = (await h.roles())["drafts"]
    created = await h.ok(
        "Email/set", {"create": {"d": {"mailboxIds": {drafts: True}, "subject": "draft"}}}
    )
    email_id = created["created"]["d"]["id"]
    await h.ok("Email/set", {"update": {email_id: {"keywords/$seen": True}}})
    blob = await h.blobs.put(ACCOUNT, message(), "message/rfc822")
    await h.ok(
        "Email/import", {"emails": {"i": {"blobId": blob.blob_id, "mailboxIds": {drafts: True}}}}
    )
    await h.ok("Email/set", {"destroy": [email_id]})
    assert len(alice.received) == 4
    assert all("EmailDelivery" not in e.states for e in alice.received)  # type: ignore[attr-defined]
    assert all("Email" in e.states for e in alice.received)  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_bulk_update_is_one_state_change() -> None:
    """
    Flagging 50 emails in one Email/set yields one StateChange.
    """
    h, alice, _ = await wired()
    ids = [(await h.deliver(message(subject=f"m{i}"))).id for i in range(50)]
    alice.received.clear()
    await h.ok("Email/set", {"update": {i: {"keywords/$flagged": True} for i in ids}})
    assert len(alice.received) == 1
    assert set(alice.received[0].states) == {"Email"}  # type: ignore[attr-defined]


def test_events_serialise() -> None:
    """
    Both event types survive their JSON form unchanged.
    """
    from jmap_twisted.records import MailboxEvent

    changed = MailboxChanged(
        "a", 3, (MailboxEvent("added", frozenset({"m1"}), ("e1",)),), {"Email": "5"}, True
    )
    state = StateChange("a", {"Email": "5", "EmailDelivery": "5"})
    for event in (changed, state):
        assert from_json(to_json(event)) == event


def test_malformed_events_are_refused() -> None:
    """
    Serialised data that is not an event raises UnknownEvent.
    """
    import pytest

    from jmap_twisted.bus.events import UnknownEvent

    for data in (b"nope", b"{}", b'{"type": "Other"}', b'{"type": "StateChange"}'):
        with pytest.raises(UnknownEvent):
            from_json(data)


__all__ = ["Any"]
