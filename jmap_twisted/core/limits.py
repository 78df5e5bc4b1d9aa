"""
The core capability's limits (RFC 8620 §2) and the per-user concurrency
limiter that every transport shares.

Every limit here is advertised in the session and enforced by the code that
names it; :meth:`CoreLimits.as_capability` is the single source of the
advertised values.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed

from jmap_twisted.errors import LimitExceeded


@frozen
class CoreLimits:
    """
    The limits of ``urn:ietf:params:jmap:core``.
    """

    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_size_request: int = 10_000_000
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 16
    max_objects_in_get: int = 500
    max_objects_in_set: int = 500

    def as_capability(self, collations: list[str]) -> dict[str, Any]:
        """
        The capability object advertised in the session.
        """
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": collations,
        }


class ConcurrencyLimiter:
    """
    Counts work in progress per user and bounds it.

    :meth:`try_acquire` refuses at once when the user is at the limit (the
    HTTP API's behaviour); :meth:`acquire` waits in a bounded per-user queue
    (for transports that may queue, such as a WebSocket).  Both give back a
    release function that must be called exactly once; calling it again does
    nothing.

    :param limit: how many may run at once per user.
    :param limit_name: the session's name of the limit, used in errors.
    :param queue_bound: how many may wait per user in :meth:`acquire`.
    """

    def __init__(self, limit: int, limit_name: str, queue_bound: int = 0) -> None:
        self.limit = limit
        self.limit_name = limit_name
        self.queue_bound = queue_bound
        self._running: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, deque[Deferred[Callable[[], None]]]] = {}
        self._handoffs: deque[str] = deque()
        self._handing_off = False

    def in_use(self, user_id: str) -> int:
        """
        How many slots the user holds now.
        """
        return self._running.get(user_id, 0)

    def try_acquire(self, user_id: str) -> Callable[[], None]:
        """
        Take a slot now.

        :raises LimitExceeded: the user already holds every slot.
        """
        if self._running[user_id] >= self.limit:
            raise LimitExceeded(
                self.limit_name,
                f"At most {self.limit} may be in progress at once for one user.",
            )
        return self._take(user_id)

    def acquire(self, user_id: str) -> Deferred[Callable[[], None]]:
        """
        Take a slot, waiting for one if need be.

        :raises LimitExceeded: (synchronously) the wait queue is full.
        """
        if self._running[user_id] < self.limit:
            return succeed(self._take(user_id))
        queue = self._waiting.setdefault(user_id, deque())
        if len(queue) >= self.queue_bound:
            raise LimitExceeded(
                self.limit_name,
                f"At most {self.limit} may run and {self.queue_bound} wait for one user.",
            )

        def cancel(d: Deferred[Callable[[], None]]) -> None:
            queue.remove(d)
            if not queue and self._waiting.get(user_id) is queue:
                del self._waiting[user_id]
                if not self._running.get(user_id):
                    self._running.pop(user_id, None)

        waiter: Deferred[Callable[[], None]] = Deferred(cancel)
        queue.append(waiter)
        return waiter

    def _take(self, user_id: str) -> Callable[[], None]:
        self._running[user_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._release(user_id)

        return release

    def _release(self, user_id: str) -> None:
        self._running[user_id] -= 1
        self._handoffs.append(user_id)
        if self._handing_off:
            # A waiter's work finished synchronously inside the hand-off
            # below: let the outer loop continue, so that thousands of
            # queued requests do not recurse once each.
            return
        self._handing_off = True
        try:
            while self._handoffs:
                released = self._handoffs.popleft()
                queue = self._waiting.get(released)
                if queue and self._running[released] < self.limit:
                    waiter = queue.popleft()
                    if not queue:
                        del self._waiting[released]
                    waiter.callback(self._take(released))
                elif not self._running.get(released) and released not in self._waiting:
                    self._running.pop(released, None)
        finally:
            self._handing_off = False
