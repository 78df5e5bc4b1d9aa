"""
In-memory dead letters, and the redelivery of dead letters an operator
asked for.
"""

from __future__ import annotations

import secrets

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from jmap_twisted.bus.events import UnknownEvent
from jmap_twisted.interfaces import IEvent, IEventBus, IEventDeadLetters

log = Logger()


@implementer(IEventDeadLetters)
class MemoryDeadLetters:
    """
    Dead letters kept in memory (lost at restart).
    """

    def __init__(self) -> None:
        self._letters: dict[str, dict[str, IEvent]] = {}
        self._requested: dict[tuple[str, str], None] = {}

    def store(self, group: str, event: IEvent) -> Deferred[str]:
        insertion_id = secrets.token_hex(8)
        self._letters.setdefault(group, {})[insertion_id] = event
        return succeed(insertion_id)

    def groups(self) -> Deferred[list[str]]:
        return succeed(sorted(g for g, letters in self._letters.items() if letters))

    def ids(self, group: str) -> Deferred[list[str]]:
        return succeed(list(self._letters.get(group, {})))

    def fetch(self, group: str, insertion_id: str) -> Deferred[IEvent | None]:
        return succeed(self._letters.get(group, {}).get(insertion_id))

    def remove(self, group: str, insertion_id: str) -> Deferred[None]:
        self._letters.get(group, {}).pop(insertion_id, None)
        self._requested.pop((group, insertion_id), None)
        return succeed(None)

    def request_redelivery(self, group: str, insertion_id: str | None) -> Deferred[int]:
        wanted = list(self._letters.get(group, {})) if insertion_id is None else [insertion_id]
        marked = 0
        for letter in wanted:
            if letter in self._letters.get(group, {}):
                self._requested[(group, letter)] = None
                marked += 1
        return succeed(marked)

    def requested(self) -> Deferred[list[tuple[str, str]]]:
        return succeed(list(self._requested))


async def redeliver_requested(bus: IEventBus, dead_letters: IEventDeadLetters) -> int:
    """
    Redeliver every dead letter an operator marked whose group has a
    listener on ``bus``, and remove it; if it fails again, the bus
    dead-letters it anew.  Letters of groups the bus does not have stay
    marked (another bus may have them).  Returns how many were redelivered.
    """
    count = 0
    for group, insertion_id in await dead_letters.requested():
        try:
            event = await dead_letters.fetch(group, insertion_id)
        except UnknownEvent:
            log.warn(
                "Dead letter {insertion_id} of {group} cannot be read; leaving it",
                insertion_id=insertion_id,
                group=group,
            )
            continue
        if event is None:
            await dead_letters.remove(group, insertion_id)
            continue
        try:
            await bus.redeliver(group, event)
        except KeyError:
            continue
        await dead_letters.remove(group, insertion_id)
        count += 1
    return count
