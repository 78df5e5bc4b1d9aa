# -*- test-case-name: tests.core.test_runner -*-
"""
Running a JMAP request for a user, the same over every transport (RFC 8620
§3.1, RFC 8887 §4.3.3): parse it, take one of the user's
``maxConcurrentRequests`` slots (§2), execute it, give the slot back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from jmap_twisted.core import jsonio
from jmap_twisted.core.engine import Engine
from jmap_twisted.core.limits import ConcurrencyLimiter, CoreLimits
from jmap_twisted.core.registry import Capability
from jmap_twisted.core.request import parse_request
from jmap_twisted.errors import LimitExceeded
from jmap_twisted.interfaces import IPrincipal

#: Requests of one user that may wait for a slot (over WebSocket; HTTP
#: requests over the limit are refused at once).
REQUEST_QUEUE = 256
#: Requests waiting for a slot may hold at most this many times
#: maxSizeRequest octets between them, per user.
QUEUED_BYTES_FACTOR = 4

Release = Callable[[], None]


class OctetBudget:
    """
    Octets held for each user, bounded: what the connections of one user
    may hold between them (requests waiting for a slot, unfinished
    messages), however many connections the user opens.

    :param limit: the octets one user may hold.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, user_id: str) -> int:
        """
        The octets the user holds now.
        """
        return self._held.get(user_id, 0)

    def take(self, user_id: str, octets: int) -> bool:
        """
        Hold ``octets`` more for the user, unless that would exceed the
        limit (then nothing is taken).
        """
        held = self._held.get(user_id, 0)
        if held + octets > self.limit:
            return False
        self._held[user_id] = held + octets
        return True

    def give(self, user_id: str, octets: int) -> None:
        """
        Give back octets taken before.
        """
        left = self._held.get(user_id, 0) - octets
        if left > 0:
            self._held[user_id] = left
        else:
            self._held.pop(user_id, None)


class RequestRunner:
    """
    Runs requests within each user's concurrency limit.

    :param engine: executes parsed requests.
    :param capabilities: the capabilities a request may use.
    :param limits: ``maxConcurrentRequests``, ``maxCallsInRequest`` and
        ``maxSizeRequest`` (which bounds what waits).
    """

    def __init__(
        self,
        engine: Engine,
        capabilities: Mapping[str, Capability],
        limits: CoreLimits,
    ) -> None:
        self._engine = engine
        self._capabilities = capabilities
        self._max_calls = limits.max_calls_in_request
        #: The user's slots, shared by every transport.
        self.limiter = ConcurrencyLimiter(
            limits.max_concurrent_requests, "maxConcurrentRequests", queue_bound=REQUEST_QUEUE
        )
        #: Octets of the user's requests waiting for a slot.
        self.queued = OctetBudget(QUEUED_BYTES_FACTOR * limits.max_size_request)

    async def run(
        self, principal: IPrincipal, value: object, release: Release | None = None
    ) -> dict[str, Any]:
        """
        Run one request (its JSON value) now.

        :param release: gives back a slot already taken for it; ``None``
            takes one now.
        :raises LimitExceeded: every slot of the user is taken.
        :raises RequestLevelError: the request is not a valid Request.
        """
        try:
            request = parse_request(value, self._capabilities, self._max_calls)
            if release is None:
                release = self.limiter.try_acquire(principal.user.id)
        except BaseException:
            if release is not None:
                release()
            raise
        try:
            return await self._engine.execute(principal, request)
        finally:
            release()

    def submit(
        self,
        principal: IPrincipal,
        value: object,
        payload: bytes,
        unwrap: Callable[[Any], object] = lambda value: value,
    ) -> Awaitable[dict[str, Any]]:
        """
        Run a request now if the user has a slot free (most finish without
        waiting: awaiting the result runs it on the spot), or else once one
        frees.  While it waits it holds its message's octets, not the parsed
        value (several times larger), and is parsed again when its turn
        comes.

        :param value: the parsed message.
        :param payload: the message's octets.
        :param unwrap: the Request inside a parsed message (a WebSocket
            message carries ``@type`` and ``id`` beside it).
        :return: the response, once awaited.
        :raises LimitExceeded: too many requests of the user wait already.
        """
        user_id = principal.user.id
        if self.limiter.in_use(user_id) < self.limiter.limit:
            return self.run(principal, unwrap(value))
        size = len(payload)
        if not self.queued.take(user_id, size):
            raise LimitExceeded(
                "maxConcurrentRequests",
                "Too many requests are waiting for this user; wait for responses.",
            )
        try:
            waiting = self.limiter.acquire(user_id)
        except BaseException:
            self.queued.give(user_id, size)
            raise
        return Deferred.fromCoroutine(self._when_free(principal, waiting, payload, unwrap))

    async def _when_free(
        self,
        principal: IPrincipal,
        waiting: Deferred[Release],
        payload: bytes,
        unwrap: Callable[[Any], object],
    ) -> dict[str, Any]:
        try:
            release = await waiting
        finally:
            self.queued.give(principal.user.id, len(payload))
        try:
            value = unwrap(jsonio.loads(payload))  # parsed once already: cannot fail
        except BaseException:
            release()
            raise
        del payload
        return await self.run(principal, value, release)
