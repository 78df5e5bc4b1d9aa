"""
From store commits to StateChange events.

:class:`StorePublisher` puts every committed store operation on the
mailbox bus; :class:`MailboxChangeListener`, a group listener there,
dispatches one :class:`~jmap_twisted.bus.events.StateChange` per operation
with the account's new states on the JMAP bus, keyed by account (for its
owner and delegates).  Sharees of the mailboxes a commit touched
are pushed their own view by :class:`~jmap_twisted.bus.shares.ShareAudience`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS, AccountKey, MailboxChanged, StateChange
from jmap_twisted.interfaces import IEvent, IEventBus, IEventListener, IMailStore
from jmap_twisted.records import StoreCommit

log = Logger()

#: Types whose states are pushed (RFC 8620 §7.1 names data types).
PUSHED_TYPES = (
    "Mailbox",
    "Email",
    "Thread",
    "Identity",
    "EmailSubmission",
    "VacationResponse",
    "Quota",
    "ShareNotification",
)


class StorePublisher:
    """
    Dispatches each store commit on the mailbox bus, once it is durable,
    stamped with the time it was published (for the push latency metric).

    :param now: the time since the epoch; the wall clock by default (the
        stamp travels to other nodes).
    """

    def __init__(
        self, store: IMailStore, bus: IEventBus, now: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._bus = bus
        self._now = now
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self._store.subscribe(self.publish)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def publish(self, commit: StoreCommit) -> Deferred[None]:
        """
        Dispatch one commit; failures are logged (the change itself is
        already durable, and ``*/changes`` will still report it).
        """
        event = MailboxChanged.from_commit(commit, self._now())
        dispatched = self._bus.dispatch(event, [AccountKey(commit.account_id)])
        dispatched.addErrback(
            lambda f: log.failure("Could not publish commit {modseq}", f, modseq=commit.modseq)
        )
        return dispatched


def state_change_states(event: MailboxChanged) -> dict[str, str]:
    """
    The states a StateChange carries for a commit: the pushed types it
    changed, plus ``EmailDelivery`` (with the Email state) for a delivery.
    """
    states = {t: event.states[t] for t in PUSHED_TYPES if t in event.states}
    if event.delivery and "Email" in states:
        states["EmailDelivery"] = states["Email"]
    return states


@implementer(IEventListener)
class MailboxChangeListener:
    """
    The mailbox bus's group listener producing StateChange events for
    the whole account (its owner and delegates).

    :param jmap_bus: where StateChange events go.
    """

    GROUP = "MailboxChangeListener"
    execution_mode = SYNCHRONOUS

    def __init__(self, jmap_bus: IEventBus) -> None:
        self._jmap_bus = jmap_bus

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, MailboxChanged)

    def handle(self, event: IEvent) -> Deferred[None]:
        assert isinstance(event, MailboxChanged)
        return Deferred.fromCoroutine(self._handle(event))

    async def _handle(self, event: MailboxChanged) -> None:
        states = state_change_states(event)
        if states:
            await self._jmap_bus.dispatch(
                StateChange(event.account_id, states, committed_at=event.committed_at),
                [AccountKey(event.account_id)],
            )


def register_change_listener(mailbox_bus: IEventBus, jmap_bus: IEventBus) -> Deferred[object]:
    """
    Register the MailboxChangeListener group on the mailbox bus.
    """
    listener = MailboxChangeListener(jmap_bus)
    return mailbox_bus.register_group(listener, MailboxChangeListener.GROUP)  # type: ignore[return-value]


__all__ = ["Collection", "MailboxChangeListener", "StorePublisher", "succeed"]
