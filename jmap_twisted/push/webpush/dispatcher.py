# -*- test-case-name: tests.push.test_webpush_delivery -*-
"""
From StateChange events to push messages (RFC 8620 §7.2): the group
listener on the JMAP bus that finds, for each change, the push
subscriptions of the users who can see the changed account, and POSTs
each of them a StateChange object through a
:class:`~jmap_twisted.push.webpush.sender.WebPushSender`.

Each subscription has at most one POST in flight.  While one is, or while
the subscription waits (a push service's ``Retry-After``, or a backoff
after failures), new changes merge into one pending StateChange per
subscription, latest state winning per account and type, so a slow or
failing push service costs at most one entry per account and type.  A
StateChange is a hint: what cannot be delivered after a few attempts is
dropped, and the client catches up with ``*/changes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    DeferredSemaphore,
    gatherResults,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jmap_twisted.auth.realm import accounts_of
from jmap_twisted.bus.events import ASYNCHRONOUS, StateChange
from jmap_twisted.interfaces import IDirectory, IEvent, IEventListener, IPushSubscriptions
from jmap_twisted.push import pushstate
from jmap_twisted.push.webpush.sender import (
    RETRY_AFTER,
    Outcome,
    WebPushSender,
    push_host,
    topic_for,
)
from jmap_twisted.records import Account, PushSubscriptionRecord
from jmap_twisted.store.changelog import decode_view_state

if TYPE_CHECKING:
    from jmap_twisted.metrics import PushMetrics

log = Logger()


def _live(record: PushSubscriptionRecord, now: float) -> bool:
    return record.verified and (record.expires is None or record.expires > now)


def _merge(into: pushstate.States, changes: Mapping[str, Mapping[str, str]]) -> None:
    """
    Add ``changes`` to ``into``, the later state winning per account and
    type; a whole account's state and a sharee's view's cannot be
    compared: the one arriving wins (the user's access changed).
    """
    for account, states in changes.items():
        known = into.setdefault(account, {})
        for type_name, state in states.items():
            old = known.get(type_name)
            if old is None or _is_view(old) != _is_view(state):
                known[type_name] = state
            else:
                known[type_name] = pushstate.later(old, state)


def _committed(queue: _Queue, changes: pushstate.States, committed_at: float) -> None:
    """
    Note that ``changes`` were committed at ``committed_at``, keeping the
    oldest commit of each account's pending changes.
    """
    for account in changes:
        known = queue.committed.get(account)
        queue.committed[account] = committed_at if known is None else min(known, committed_at)


def _is_view(state: str) -> bool:
    return decode_view_state(state) is not None


#: Who hears of an account's StateChanges: the account's id and ``None``
#: for those seeing it whole (its owner, delegates), or the sharee's id for
#: their view of it.
Audience = tuple[str, str | None]


def _heard_as(account: Account, user_id: str) -> tuple[Audience, int]:
    """
    Under which audience a user hears of an account, and from which
    generation of their view (``0`` when seen whole).
    """
    if account.shared is None:
        return (account.id, None), 0
    return (account.id, user_id), account.shared.generation


def _message(changed: pushstate.States) -> dict[str, Any]:
    return {"@type": "StateChange", "changed": changed}


@define
class _Queue:
    """
    What one subscription has pending, and whether it may send now.
    """

    record: PushSubscriptionRecord
    pending: pushstate.States = field(factory=dict)
    #: A POST is waiting for a slot or in flight.
    busy: bool = False
    #: That POST, to cancel.
    request: Deferred[None] | None = None
    #: Waiting (Retry-After or backoff) until this call.
    waking: IDelayedCall | None = None
    #: Failed attempts in a row.
    failures: int = 0
    #: Per account with pending changes, when the oldest of them was
    #: committed (seconds since the epoch), if known.
    committed: dict[str, float] = field(factory=dict)
    #: When the oldest change of the POST in flight was committed.
    sending_committed: float | None = None


@implementer(IEventListener)
class WebPushDispatcher:
    """
    The JMAP bus's group listener that pushes StateChanges to push
    subscriptions (register it as :attr:`GROUP`).

    :meth:`handle` only finds the subscriptions concerned and queues the
    POSTs, so it returns without waiting for any push service; it fails
    only when the subscriptions or the directory cannot be read (the bus
    retries the event then), never for one subscription's push service.

    :param subscriptions: the push subscriptions.
    :param directory: which accounts each user can see (their own, those
        delegated to them, and their views of those with mailboxes shared
        with them).
    :param sender: POSTs one message.
    :param clock: schedules retries; the time for expiry.
    :param reload_interval: seconds between looks at the subscriptions'
        version (another node may have changed them).
    :param ttl: seconds a push service keeps a StateChange for an
        unreachable device.
    :param concurrency: POSTs in flight at once, over all subscriptions.
    :param metrics: where StateChanges a push service accepted are counted,
        with the latency from the oldest commit they carry.
    """

    GROUP = "webpush"
    execution_mode = ASYNCHRONOUS

    #: Attempts at one StateChange before it is dropped.
    MAX_ATTEMPTS = 5
    #: Seconds before the first retry; doubled for each next one.
    FIRST_BACKOFF = 1.0
    #: The longest wait between retries.
    MAX_BACKOFF = 60.0
    #: The longest wait a push service's ``Retry-After`` obtains.
    MAX_RETRY_AFTER = 3600.0

    def __init__(
        self,
        subscriptions: IPushSubscriptions,
        directory: IDirectory,
        sender: WebPushSender,
        clock: IReactorTime,
        reload_interval: float = 2.0,
        ttl: int = 3600,
        concurrency: int = 32,
        metrics: PushMetrics | None = None,
    ) -> None:
        self._subscriptions = subscriptions
        self._metrics = metrics
        self._directory = directory
        self._sender = sender
        self._clock = clock
        self._reload_interval = reload_interval
        self._ttl = ttl
        self._slots = DeferredSemaphore(concurrency)
        self._loading = DeferredLock()
        # The active subscriptions, by user, as of version _version, whose
        # version was last read at _checked.
        self._by_user: dict[str, list[PushSubscriptionRecord]] | None = None
        self._version: int | None = None
        self._checked: float | None = None
        self._stale = True
        # Who sees what: how each user with subscriptions hears of each
        # account they see (with the generation of their view), and the
        # users of each audience.  _generation moves whenever they are
        # dropped, so a lookup running meanwhile does not keep them.
        self._accounts: dict[str, frozenset[tuple[Audience, int]]] = {}
        self._audience: dict[Audience, list[tuple[str, int]]] | None = None
        self._generation = 0
        self._queues: dict[str, _Queue] = {}
        #: Per subscription, the latest state heard of per account and type
        #: (what each message reports, see _send_pending).
        self._known: dict[str, pushstate.States] = {}
        self._stopped = False

    # -- the bus's side

    def is_handling(self, event: IEvent) -> bool:
        return isinstance(event, StateChange)

    def handle(self, event: IEvent) -> Deferred[None]:
        """
        Queue a StateChange for every subscription that wants it.
        """
        assert isinstance(event, StateChange)
        return Deferred.fromCoroutine(self._handle(event))

    async def _handle(self, event: StateChange) -> None:
        audience = await self._current_audience()
        users = audience.get((event.account_id, event.viewer), ())
        if not users or self._by_user is None:
            return
        now = self._clock.seconds()
        for user_id, generation in users:
            if event.generation < generation:
                continue  # an older view's, arriving after the rights changed
            for record in self._by_user.get(user_id, ()):
                if not _live(record, now):
                    continue
                states = {
                    t: s
                    for t, s in event.states.items()
                    if record.types is None or t in record.types
                }
                if states:
                    self._enqueue(record, {event.account_id: states}, event.committed_at)

    # -- what the server's life cycle calls

    def changed(self) -> None:
        """
        The subscriptions were changed here: read them again before the
        next event.
        """
        self._stale = True

    def access_changed(self) -> None:
        """
        Who may see which account changed (the directory's access version
        moved): forget every user's accounts.
        """
        self._accounts = {}
        self._audience = None
        self._generation += 1

    async def expire(self) -> None:
        """
        Delete the subscriptions that have expired (run periodically).
        """
        removed = await self._subscriptions.remove_expired(self._clock.seconds())
        if removed:
            log.info("Removed {count} expired push subscriptions", count=removed)
            self.changed()

    def stop(self) -> None:
        """
        Stop pushing: cancel the POSTs in flight and forget what is
        pending.
        """
        self._stopped = True
        for queue in list(self._queues.values()):
            self._drop(queue)

    # -- who gets what

    def _fresh(self) -> bool:
        return (
            not self._stale
            and self._checked is not None
            and self._clock.seconds() - self._checked < self._reload_interval
        )

    async def _current_audience(self) -> dict[Audience, list[tuple[str, int]]]:
        """
        The users hearing of each account, whole or through their view
        (with its generation), among those with subscriptions, after
        reading the subscriptions again when they may have changed.
        """
        if self._fresh() and self._audience is not None:
            return self._audience
        async with self._loading:
            if not self._fresh():
                await self._reload()
            audience = self._audience
            for _ in range(3):
                if self._audience is not None:
                    return self._audience
                generation = self._generation
                audience = await self._find_audience()
                if generation == self._generation:
                    self._audience = audience
            # Access keeps changing while it is looked up: answer from the
            # latest look without keeping it.
            assert audience is not None
            return audience

    async def _reload(self) -> None:
        self._stale = False
        try:
            now = self._clock.seconds()
            version = await self._subscriptions.version()
            if version != self._version or self._by_user is None:
                records = await self._subscriptions.active(now)
                self._use(records, version)
            self._checked = now
        except BaseException:
            self._stale = True
            raise

    def _use(self, records: list[PushSubscriptionRecord], version: int) -> None:
        by_user: dict[str, list[PushSubscriptionRecord]] = {}
        by_id: dict[str, PushSubscriptionRecord] = {}
        for record in records:
            by_user.setdefault(record.user_id, []).append(record)
            by_id[record.id] = record
        self._by_user = by_user
        self._version = version
        for gone in set(self._known) - set(by_id):
            del self._known[gone]
        self.access_changed()
        for subscription_id, queue in list(self._queues.items()):
            current = by_id.get(subscription_id)
            if current is None:
                self._drop(queue)  # deleted, expired, or no longer verified
            else:
                queue.record = current

    async def _find_audience(self) -> dict[Audience, list[tuple[str, int]]]:
        users = list(self._by_user or ())
        known = {u: self._accounts[u] for u in users if u in self._accounts}
        missing = [u for u in users if u not in known]
        if missing:
            generation = self._generation
            found = await gatherResults(
                [Deferred.fromCoroutine(accounts_of(self._directory, u)) for u in missing],
                consumeErrors=True,
            )
            for user_id, accounts in zip(missing, found, strict=True):
                known[user_id] = frozenset(_heard_as(a, user_id) for a in accounts)
            if generation == self._generation:
                self._accounts.update(known)
        audience: dict[Audience, list[tuple[str, int]]] = {}
        for user_id in users:
            for heard_as, view_generation in known[user_id]:
                audience.setdefault(heard_as, []).append((user_id, view_generation))
        return audience

    # -- one subscription's queue

    def _enqueue(
        self,
        record: PushSubscriptionRecord,
        changes: pushstate.States,
        committed_at: float | None = None,
    ) -> None:
        queue = self._queues.get(record.id)
        if queue is None:
            queue = self._queues[record.id] = _Queue(record)
        if committed_at is not None:
            _committed(queue, changes, committed_at)
        _merge(queue.pending, changes)
        _merge(self._known.setdefault(record.id, {}), changes)
        self._pump(queue)

    def _pump(self, queue: _Queue) -> None:
        """
        Start a POST of what is pending, unless one is in flight or the
        subscription waits.
        """
        if self._stopped or queue.busy or queue.waking is not None:
            return
        if not queue.pending or not _live(queue.record, self._clock.seconds()):
            self._queues.pop(queue.record.id, None)
            return
        queue.busy = True
        request = Deferred.fromCoroutine(self._deliver(queue))
        if not request.called:  # else it is over, and may have started the next
            queue.request = request
        request.addErrback(self._deliver_failed, queue.record.id)

    def _deliver_failed(self, failure: Failure, subscription_id: str) -> None:
        if not failure.check(CancelledError):
            log.failure(
                "Push to subscription {subscription_id} failed",
                failure,
                subscription_id=subscription_id,
            )

    async def _deliver(self, queue: _Queue) -> None:
        try:
            sent = await self._send_pending(queue)
        finally:
            queue.busy = False
            queue.request = None
        if sent is not None:
            self._settle(queue, *sent)

    async def _send_pending(self, queue: _Queue) -> tuple[pushstate.States, Outcome] | None:
        await self._slots.acquire()
        try:
            if self._stopped or self._queues.get(queue.record.id) is not queue:
                return None
            batch = self._take(queue)
            if not batch:
                return None
            ((account, changed),) = batch.items()
            urgency = "high" if "EmailDelivery" in changed else "normal"
            # Every state heard of for the account, not only what changed:
            # a push service replaces an undelivered message of the same
            # topic with this one, which must then tell all it told.
            known = self._known.get(queue.record.id, {}).get(account, {})
            outcome = await self._sender.send(
                queue.record,
                _message({account: {**known, **changed}}),
                urgency=urgency,
                topic=topic_for(queue.record.id, account),
                ttl=self._ttl,
            )
            return batch, outcome
        finally:
            self._slots.release()

    def _take(self, queue: _Queue) -> pushstate.States:
        """
        Take one account's pending changes: each message reports on one
        account, under that account's topic.
        """
        account = next(iter(queue.pending))
        queue.sending_committed = queue.committed.pop(account, None)
        return {account: queue.pending.pop(account)}

    def _settle(self, queue: _Queue, batch: pushstate.States, outcome: Outcome) -> None:
        """
        Act on a push service's answer.
        """
        if self._stopped or self._queues.get(queue.record.id) is not queue:
            return  # dropped meanwhile
        record = queue.record
        committed, queue.sending_committed = queue.sending_committed, None
        if outcome.ok and self._metrics is not None:
            self._metrics.sent(committed)
        if outcome.gone:
            self._gone(queue)
            return
        if outcome.kind == RETRY_AFTER:
            assert outcome.retry_after is not None
            self._put_back(queue, batch, committed)
            self._wait(queue, min(outcome.retry_after, self.MAX_RETRY_AFTER))
            return
        if outcome.failed:
            queue.failures += 1
            if queue.failures < self.MAX_ATTEMPTS:
                self._put_back(queue, batch, committed)
                delay = self.FIRST_BACKOFF * 2 ** (queue.failures - 1)
                self._wait(queue, min(delay, self.MAX_BACKOFF))
                return
            log.warn(
                "Dropped a StateChange for push subscription {subscription_id} at {host} "
                "after {attempts} attempts",
                subscription_id=record.id,
                host=push_host(record.url),
                attempts=queue.failures,
            )
        elif outcome.too_large:
            log.warn(
                "Dropped a StateChange too large for push subscription {subscription_id} at {host}",
                subscription_id=record.id,
                host=push_host(record.url),
            )
        queue.failures = 0
        self._pump(queue)

    def _put_back(self, queue: _Queue, batch: pushstate.States, committed: float | None) -> None:
        """
        Return an unsent batch before what arrived since, with when its
        oldest change was committed.
        """
        if committed is not None:
            _committed(queue, batch, committed)
        pending, queue.pending = queue.pending, {}
        _merge(queue.pending, batch)
        _merge(queue.pending, pending)

    def _wait(self, queue: _Queue, delay: float) -> None:
        def wake() -> None:
            queue.waking = None
            self._pump(queue)

        queue.waking = self._clock.callLater(delay, wake)

    def _drop(self, queue: _Queue) -> None:
        if self._queues.get(queue.record.id) is queue:
            del self._queues[queue.record.id]
        if queue.waking is not None and queue.waking.active():
            queue.waking.cancel()
        queue.waking = None
        if queue.request is not None:
            queue.request.cancel()

    def _gone(self, queue: _Queue) -> None:
        """
        The push service no longer knows the subscription: delete it.
        """
        record = queue.record
        self._drop(queue)
        if self._by_user is not None:
            others = [r for r in self._by_user.get(record.user_id, ()) if r.id != record.id]
            self._by_user[record.user_id] = others
        log.info(
            "Push subscription {subscription_id} is gone from {host}; deleted",
            subscription_id=record.id,
            host=push_host(record.url),
        )
        removed = self._subscriptions.remove(record.id, record.user_id)
        removed.addCallback(lambda _: self.changed())
        removed.addErrback(
            lambda f: log.failure(
                "Could not delete push subscription {subscription_id}",
                f,
                subscription_id=record.id,
            )
        )
