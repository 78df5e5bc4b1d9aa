"""
The in-memory event bus: one node, delivery by dictionary lookup.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jmap_twisted.bus.events import ASYNCHRONOUS, GroupAlreadyRegistered
from jmap_twisted.bus.retry import RetryPolicy
from jmap_twisted.interfaces import (
    IBusObserver,
    IEvent,
    IEventBus,
    IEventDeadLetters,
    IEventListener,
    IRegistration,
    IRegistrationKey,
)

log = Logger()


@implementer(IRegistration)
class Registration:
    """
    A registration whose cancellation runs a function once.
    """

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    def cancel(self) -> Deferred[None]:
        if self._cancel is not None:
            cancel, self._cancel = self._cancel, None
            cancel()
        return succeed(None)


class GroupDelivery:
    """
    Delivers events to group listeners with retries and dead letters; shared
    by every bus implementation.

    :param clock: schedules retries.
    :param random: returns uniform numbers in [0, 1) for jitter.
    :param execution_timeout: seconds one ``handle`` may take, or ``None``.
    """

    def __init__(
        self,
        clock: IReactorTime,
        dead_letters: IEventDeadLetters,
        retry: RetryPolicy,
        execution_timeout: float | None,
        random: Callable[[], float],
    ) -> None:
        self.clock = clock
        self.dead_letters = dead_letters
        self.retry = retry
        self.execution_timeout = execution_timeout
        self.random = random
        self._pending: dict[IDelayedCall, tuple[str, IEvent]] = {}
        #: Told of every listener call, retry and dead letter, if set.
        self.observer: IBusObserver | None = None

    def run(self, listener: IEventListener, event: IEvent, kind: str = "group") -> Deferred[None]:
        """
        One call of ``listener.handle``, bounded by the execution timeout;
        its time (on the clock) is reported to the observer under ``kind``
        (``key`` or ``group``).
        """
        return self.watch(maybeDeferred(listener.handle, event), kind)

    def watch(self, handled: Deferred[None], kind: str) -> Deferred[None]:
        """
        Bound a listener call that has begun by the execution timeout and
        report its time to the observer under ``kind``.
        """
        observer = self.observer
        started = self.clock.seconds()
        if self.execution_timeout is not None:
            handled.addTimeout(self.execution_timeout, self.clock)
        if observer is not None:

            def observed(result: object) -> object:
                observer.handled(kind, self.clock.seconds() - started)
                return result

            handled.addBoth(observed)
        return handled

    def deliver(
        self,
        group: str,
        listener: IEventListener,
        event: IEvent,
        settled: Callable[[], object] | None = None,
    ) -> Deferred[None]:
        """
        Deliver with retries; the result fires (successfully) after the
        first attempt, whatever its outcome.

        :param settled: called once the event is done with: handled, or
            kept as a dead letter (a broker acknowledges it then).
        """
        first: Deferred[None] = Deferred()
        self._attempt(group, listener, event, 0, first, settled)
        return first

    def _attempt(
        self,
        group: str,
        listener: IEventListener,
        event: IEvent,
        retry: int,
        first: Deferred[None] | None,
        settled: Callable[[], object] | None,
    ) -> None:
        def succeeded(_: object) -> None:
            if first is not None:
                first.callback(None)
            if settled is not None:
                settled()

        def failed(failure: Failure) -> None:
            log.failure(
                "Group {group} failed on event {event_id} (attempt {attempt})",
                failure,
                group=group,
                event_id=event.event_id,
                attempt=retry + 1,
            )
            if first is not None:
                first.callback(None)
            if retry < self.retry.max_retries:
                delay = self.retry.delay(retry + 1, self.random())
                call = self.clock.callLater(
                    delay, self._retry, group, listener, event, retry + 1, settled
                )
                self._pending[call] = (group, event)
                if self.observer is not None:
                    self.observer.retry_scheduled()
            else:
                stored = self.dead_letter(group, event)
                if settled is not None:
                    stored.addBoth(lambda _: settled())

        self.run(listener, event).addCallbacks(succeeded, failed)

    def _retry(
        self,
        group: str,
        listener: IEventListener,
        event: IEvent,
        retry: int,
        settled: Callable[[], object] | None,
    ) -> None:
        self._pending = {c: v for c, v in self._pending.items() if c.active()}
        self._attempt(group, listener, event, retry, None, settled)

    def dead_letter(self, group: str, event: IEvent) -> Deferred[None]:
        """
        Keep an event that exhausted its retries (or could not be passed
        on); the result fires once it is stored, or storing failed (which
        is logged).
        """
        log.warn(
            "Event {event_id} dead-lettered for group {group}", event_id=event.event_id, group=group
        )
        if self.observer is not None:
            self.observer.dead_lettered()
        stored = self.dead_letters.store(group, event)
        stored.addErrback(
            lambda f: log.failure("Could not store a dead letter for {group}", f, group=group)
        )
        done: Deferred[None] = stored.addCallback(lambda _: None)
        return done

    def abandon(self) -> None:
        """
        Drop scheduled retries without dead-lettering them (a broker
        delivers their unacknowledged messages again).
        """
        for call in self._pending:
            if call.active():
                call.cancel()
        self._pending.clear()

    def stop(self) -> None:
        """
        Abandon scheduled retries to the dead letters.
        """
        for call, (group, event) in list(self._pending.items()):
            if call.active():
                call.cancel()
                self.dead_letter(group, event)
        self._pending.clear()


@implementer(IEventBus)
class InMemoryEventBus:
    """
    Delivers within one process.  Key listeners are found by a dictionary
    lookup per key, so idle registrations cost nothing per event.
    """

    def __init__(
        self,
        clock: IReactorTime,
        dead_letters: IEventDeadLetters,
        retry: RetryPolicy | None = None,
        execution_timeout: float | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.groups = GroupDelivery(
            clock, dead_letters, retry or RetryPolicy(), execution_timeout, random
        )
        self._group_listeners: dict[str, IEventListener] = {}
        #: key string → listener id → [listener, registrations]
        self._keys: dict[str, dict[int, list[Any]]] = {}

    @property
    def observer(self) -> IBusObserver | None:
        """
        Told what the bus does (dispatches, listener calls, retries, dead
        letters), or ``None``.
        """
        return self.groups.observer

    @observer.setter
    def observer(self, observer: IBusObserver | None) -> None:
        self.groups.observer = observer

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self.groups.stop()
        return succeed(None)

    def register(
        self, listener: IEventListener, keys: Collection[IRegistrationKey]
    ) -> Deferred[IRegistration]:
        names = {key.as_string() for key in keys}
        for name in names:
            entry = self._keys.setdefault(name, {}).setdefault(id(listener), [listener, 0])
            entry[1] += 1

        def cancel() -> None:
            for name in names:
                listeners = self._keys.get(name, {})
                entry = listeners.get(id(listener))
                if entry is None:
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    del listeners[id(listener)]
                    if not listeners:
                        del self._keys[name]

        registration: IRegistration = Registration(cancel)
        return succeed(registration)

    def register_group(self, listener: IEventListener, group: str) -> Deferred[IRegistration]:
        if group in self._group_listeners:
            return fail(GroupAlreadyRegistered(group))
        self._group_listeners[group] = listener

        def cancel() -> None:
            if self._group_listeners.get(group) is listener:
                del self._group_listeners[group]

        registration: IRegistration = Registration(cancel)
        return succeed(registration)

    def key_names(self) -> set[str]:
        """
        The names of every key with a listener.
        """
        return set(self._keys)

    def local_listeners(self) -> list[IEventListener]:
        """
        Every key listener, once.
        """
        found: dict[int, IEventListener] = {}
        for listeners in self._keys.values():
            for listener_id, (listener, _) in listeners.items():
                found[listener_id] = listener
        return list(found.values())

    def key_listeners(self, keys: Collection[IRegistrationKey]) -> list[IEventListener]:
        """
        Each listener registered under any of ``keys``, once.
        """
        return self.listeners_named([key.as_string() for key in keys])

    def listeners_named(self, names: Collection[str]) -> list[IEventListener]:
        """
        Each listener registered under any of the keys named ``names``, once.
        """
        if len(names) == 1:
            for name in names:
                return [listener for listener, _ in self._keys.get(name, {}).values()]
        found: dict[int, IEventListener] = {}
        for name in names:
            for listener_id, (listener, _) in self._keys.get(name, {}).items():
                found[listener_id] = listener
        return list(found.values())

    def dispatch(self, event: IEvent, keys: Collection[IRegistrationKey]) -> Deferred[None]:
        if self.groups.observer is not None:
            self.groups.observer.dispatched()
        waits: list[Deferred[None]] = []
        for group, listener in list(self._group_listeners.items()):
            if listener.is_handling(event):
                first = self.groups.deliver(group, listener, event)
                if listener.execution_mode != ASYNCHRONOUS:
                    waits.append(first)
        waits.extend(deliver_to_keys(self.groups, self.key_listeners(keys), event))
        return _all(waits)

    def redeliver(self, group: str, event: IEvent) -> Deferred[None]:
        listener = self._group_listeners.get(group)
        if listener is None:
            return fail(KeyError(f"no listener for group {group}"))
        return self.groups.deliver(group, listener, event)


def deliver_to_keys(
    groups: GroupDelivery, listeners: Collection[IEventListener], event: IEvent
) -> list[Deferred[None]]:
    """
    Deliver an event once to each key listener; failures are logged and
    not retried.  Returns what the dispatch should wait for.

    A listener whose ``handle`` has finished when it returns (a push
    connection's, thousands of them for one event) costs one call: what
    finished at once is timed together, as one observation, and only
    the calls still running are bounded by the execution timeout and
    waited for.
    """
    waits = []
    observer = groups.observer
    started = groups.clock.seconds() if observer is not None else 0.0
    at_once = 0
    for listener in listeners:
        if not listener.is_handling(event):
            continue
        try:
            handled = listener.handle(event)
        except Exception:
            log.failure(
                "A key listener failed on event {event_id}", Failure(), event_id=event.event_id
            )
            at_once += 1
            continue
        if handled.called and not isinstance(handled.result, Failure):
            at_once += 1
            continue
        handled = groups.watch(handled, "key")
        handled.addErrback(
            lambda f: log.failure(
                "A key listener failed on event {event_id}", f, event_id=event.event_id
            )
        )
        if listener.execution_mode != ASYNCHRONOUS:
            waits.append(handled)
    if observer is not None and at_once:
        observer.handled("key", groups.clock.seconds() - started)
    return waits


def _all(waits: list[Deferred[None]]) -> Deferred[None]:
    if not waits:
        return succeed(None)
    done: Deferred[None] = DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)
    return done
