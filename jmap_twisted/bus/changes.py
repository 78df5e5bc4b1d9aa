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
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.bus.events import SYNCHRONOUS, AccountKey, MailboxChanged, StateChange
from jmap_twisted.interfaces import IEvent, IEventBus, IEventListener, IMailStore
from jmap_twisted.records import StoreCommit
from jmap_twisted.store.changelog import later_state

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


#: An account's fan-out may take at most this share of the time between
#: one StateChange dispatch of it and the next (see
#: :class:`MailboxChangeListener`).
FANOUT_SHARE = 0.5
#: Dispatches that take less than this (seconds) are never paced: an
#: account with a few sockets is always pushed at once.
PACED_ABOVE = 0.002
#: The longest an account's changes wait for its next StateChange.
MAX_PACE = 0.25
#: Paced accounts remembered before those whose pace is over are dropped.
MAX_PACED_ACCOUNTS = 10_000


@implementer(IEventListener)
class MailboxChangeListener:
    """
    The mailbox bus's group listener producing StateChange events for
    the whole account (its owner and delegates).

    An account whose StateChange took long to dispatch (thousands of
    sockets, each written on this reactor) is paced: until as long again
    has passed (:data:`FANOUT_SHARE`), its further changes merge, each
    type keeping its latest state, and go out as one StateChange then.
    A lone change, and every change of an account with few sockets, is
    dispatched at once; one account receiving mail faster than its
    sockets can be written to takes at most about half of the reactor's
    time, and its clients see every state (later ones sooner merged).

    :param jmap_bus: where StateChange events go.
    :param clock: times the dispatches and schedules the paced ones;
        ``None``: no pacing.
    """

    GROUP = "MailboxChangeListener"
    execution_mode = SYNCHRONOUS

    def __init__(
        self,
        jmap_bus: IEventBus,
        clock: IReactorTime | None = None,
    ) -> None:
        self._jmap_bus = jmap_bus
        self._clock = clock
        #: Per paced account: when its next dispatch may go, on the clock.
        self._next: dict[str, float] = {}
        #: Per paced account: the merged states waiting, the earliest
        #: commit time among them, and the call that dispatches them.
        self._held: dict[str, tuple[dict[str, str], float | None, IDelayedCall]] = {}

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, MailboxChanged)

    def handle(self, event: IEvent) -> Deferred[None]:
        assert isinstance(event, MailboxChanged)
        # Runs for every commit: no coroutine around the one dispatch.
        states = state_change_states(event)
        if not states:
            return succeed(None)
        account = event.account_id
        clock = self._clock
        if clock is not None and account in self._next:
            now = clock.seconds()
            if account in self._held or now < self._next[account]:
                self._hold(account, states, event.committed_at, now)
                return succeed(None)
            del self._next[account]
        return self._dispatch(account, states, event.committed_at)

    def _dispatch(
        self, account: str, states: dict[str, str], committed_at: float | None
    ) -> Deferred[None]:
        clock = self._clock
        started = 0.0 if clock is None else clock.seconds()
        dispatched = self._jmap_bus.dispatch(
            StateChange(account, states, committed_at=committed_at), [AccountKey(account)]
        )
        if clock is not None:
            ended = clock.seconds()
            took = ended - started
            if took > PACED_ABOVE:
                if len(self._next) >= MAX_PACED_ACCOUNTS:
                    self._next = {a: t for a, t in self._next.items() if t > ended}
                self._next[account] = ended + min(MAX_PACE, took / FANOUT_SHARE - took)
        return dispatched

    def _hold(
        self, account: str, states: dict[str, str], committed_at: float | None, now: float
    ) -> None:
        held = self._held.get(account)
        if held is None:
            assert self._clock is not None
            call = self._clock.callLater(
                max(0.0, self._next[account] - now), self._release, account
            )
            self._held[account] = (dict(states), committed_at, call)
            return
        merged, earliest, call = held
        for type_name, state in states.items():
            merged[type_name] = later_state(merged.get(type_name, state), state)
        if earliest is None or (committed_at is not None and committed_at < earliest):
            earliest = committed_at
        self._held[account] = (merged, earliest, call)

    def _release(self, account: str) -> None:
        merged, earliest, _ = self._held.pop(account)
        self._next.pop(account, None)
        dispatched = self._dispatch(account, merged, earliest)
        dispatched.addErrback(
            lambda f: log.failure("Could not dispatch the changes of {account}", f, account=account)
        )


def register_change_listener(
    mailbox_bus: IEventBus, jmap_bus: IEventBus, clock: IReactorTime | None = None
) -> Deferred[object]:
    """
    Register the MailboxChangeListener group on the mailbox bus (paced
    on ``clock``, if given).
    """
    listener = MailboxChangeListener(jmap_bus, clock)
    return mailbox_bus.register_group(listener, MailboxChangeListener.GROUP)  # type: ignore[return-value]


__all__ = ["Collection", "MailboxChangeListener", "StorePublisher", "succeed"]
