# -*- test-case-name: tests.auth.test_throttle -*-
"""
What keeps password checks from being turned against the server: a
bounded queue for the scrypt runs, and limits on failed logins per client
address and per username.

Each scrypt run costs about 0.1 s of a core and 32 MiB, so unbounded,
a few hundred wrong passwords sent at once queue minutes of hashing and
hundreds of MiB, and a legitimate login waits behind all of them.  The
refusals here carry the seconds after which to retry, for the
``Retry-After`` header of RFC 9110 §10.2.3: 503 when the server is busy,
429 (RFC 6585 §4) when one client or username asked too often.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from jmap_twisted.interfaces import IJMAPReactor

T = TypeVar("T")


class LoginRefused(Exception):
    """
    A login refused before its credentials were checked; try again later.

    :ivar retry_after: whole seconds to wait, at least 1.
    :ivar status: the HTTP status answering it.
    """

    status = 503

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = max(1, math.ceil(retry_after))


class HashingBusy(LoginRefused):
    """
    The password hashing queue is full: the server as a whole is asked for
    more logins than it can check (503).
    """

    status = 503


class LoginThrottled(LoginRefused):
    """
    This client address or this username failed too many logins lately, or
    has too many of them being checked at once (429).
    """

    status = 429


def client_key(address: str) -> str:
    """
    What a client address is counted as: the address itself, but for IPv6
    its /64 network, the least one host is usually given.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@frozen
class LoginLimits:
    """
    How hard password logins may be pushed.

    :ivar threads: scrypt runs at once (each holds 32 MiB at the default
        cost); more wait, up to as many again, then logins get 503.
    :ivar per_client: checks of one client address running or waiting at
        once; more get 429.
    :ivar address_burst: failed logins a client address may make in a row
        before its password logins get 429; 0 turns both per-address
        limits off (behind a reverse proxy, every client has its address).
    :ivar user_burst: the same, per username (whatever the address).
    :ivar refill: seconds after which one more failure is allowed.
    :ivar remembered: addresses and usernames whose failures are
        remembered (the least recently failing are forgotten first).
    :ivar cache_ttl: seconds a successful check is remembered.
    :ivar cache_size: successful checks remembered.
    """

    threads: int = 2
    per_client: int = 2
    address_burst: int = 10
    user_burst: int = 10
    refill: float = 6.0
    remembered: int = 10_000
    cache_ttl: float = 300.0
    cache_size: int = 10_000


@define
class _Bucket:
    tokens: float
    stamp: float


class FailureLimiter:
    """
    A token bucket of failed logins per key (a client address, a username).

    Each key may fail ``burst`` times in a row, then once per ``interval``
    seconds.  The least recently seen keys are forgotten beyond ``size``
    keys, so memory stays bounded whatever the number of addresses or
    names an attacker uses.

    :param clock: the time source.
    :param burst: failures allowed at once.
    :param interval: seconds for one more failure to be allowed.
    :param size: keys remembered.
    """

    def __init__(self, clock: IReactorTime, burst: int, interval: float, size: int) -> None:
        if burst < 1 or interval <= 0 or size < 1:
            raise ValueError("burst, interval and size must be positive")
        self._clock = clock
        self._burst = burst
        self._interval = interval
        self._size = size
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()

    def _refilled(self, key: object) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = self._clock.seconds()
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) / self._interval)
        bucket.stamp = now
        if bucket.tokens >= self._burst:
            # Back to a clean slate: nothing left to remember.
            del self._buckets[key]
            return None
        return bucket

    def retry_after(self, key: object) -> float:
        """
        Seconds until ``key`` may try again: 0 when it may now.
        """
        bucket = self._refilled(key)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) * self._interval

    def failed(self, key: object) -> bool:
        """
        Count a failure of ``key``.

        :return: whether this very failure used up what ``key`` was
            allowed (so that it is logged once, not at every attempt).
        """
        bucket = self._refilled(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self._burst), self._clock.seconds())
        self._buckets.move_to_end(key)
        before = bucket.tokens
        bucket.tokens = max(0.0, before - 1)
        while len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
        return before >= 1 > bucket.tokens

    def __len__(self) -> int:
        return len(self._buckets)


@define(eq=False)
class _Job:
    client: object
    work: Callable[[], Any]
    result: Deferred[Any]
    started: bool = field(default=False)


class HashingQueue:
    """
    Runs password hashing in the reactor's thread pool, at most
    ``threads`` at once, with at most ``waiting`` more waiting their turn.

    A job beyond that is refused at once with :class:`HashingBusy`, and a
    client with ``per_client`` jobs running or waiting gets
    :class:`LoginThrottled` for more, so that one address cannot fill the
    whole queue.  A job cancelled while it waits (its client went away)
    never runs, and its password is dropped.

    :param reactor: provides ``getThreadPool`` and ``callFromThread``.
    :param threads: jobs running at once (each scrypt run holds its memory).
    :param waiting: jobs waiting beyond those; default ``threads``.
    :param per_client: jobs of one client running or waiting; default
        ``threads``.
    """

    def __init__(
        self,
        reactor: IJMAPReactor,
        threads: int = 2,
        waiting: int | None = None,
        per_client: int | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be positive")
        self._reactor = reactor
        self._threads = threads
        self._waiting_bound = threads if waiting is None else waiting
        self._per_client = threads if per_client is None else per_client
        self._running = 0
        self._waiting: deque[_Job] = deque()
        self._clients: dict[object, int] = {}

    @property
    def running(self) -> int:
        """
        Jobs now in a thread.
        """
        return self._running

    @property
    def waiting(self) -> int:
        """
        Jobs waiting for a thread.
        """
        return len(self._waiting)

    def run(self, client: object, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run ``work(*args)`` in a thread when there is room.

        :param client: what the per-client share is counted by (an
            address; ``None`` for an unknown one).
        :raises HashingBusy: the queue is full.
        :raises LoginThrottled: ``client`` has its full share queued.
        """
        if self._running + len(self._waiting) >= self._threads + self._waiting_bound:
            raise HashingBusy(1)
        if self._clients.get(client, 0) >= self._per_client:
            raise LoginThrottled(1)
        job = _Job(client, lambda: work(*args), Deferred(lambda _: self._cancel(job)))
        self._clients[client] = self._clients.get(client, 0) + 1
        self._waiting.append(job)
        self._start_next()
        return job.result

    def _cancel(self, job: _Job) -> None:
        # A running job finishes in its thread (scrypt cannot be stopped),
        # keeping its place until then; a waiting one is dropped.
        if not job.started:
            self._waiting.remove(job)
            job.work = _dropped
            self._release(job.client)

    def _release(self, client: object) -> None:
        left = self._clients[client] - 1
        if left:
            self._clients[client] = left
        else:
            del self._clients[client]

    def _start_next(self) -> None:
        while self._waiting and self._running < self._threads:
            job = self._waiting.popleft()
            job.started = True
            self._running += 1
            work, job.work = job.work, _dropped  # the password goes with the thread
            done = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work)
            done.addBoth(self._finished, job)

    def _finished(self, outcome: object, job: _Job) -> None:
        self._running -= 1
        self._release(job.client)
        # A cancelled job's outcome has nowhere to go.
        if not job.result.called:
            if isinstance(outcome, Failure):
                job.result.errback(outcome)
            else:
                job.result.callback(outcome)
        self._start_next()


def _dropped() -> None:
    raise AssertionError("a hashing job ran twice")


@define(eq=False)
class _Shared:
    job: Deferred[Any]
    waiters: list[Deferred[Any]] = field(factory=list)


class InFlight:
    """
    Shares one run of a check among the callers asking the same question
    at once: a client that opens several connections with the same
    credentials costs one hash, and takes one place in the queue.

    Each caller gets its own :class:`Deferred`; cancelling it detaches
    that caller only, and the shared run is cancelled when no caller is
    left.
    """

    def __init__(self) -> None:
        self._shared: dict[bytes, _Shared] = {}

    def __len__(self) -> int:
        return len(self._shared)

    def join(self, key: bytes, start: Callable[[], Deferred[T]]) -> Deferred[T]:
        """
        The outcome of the run for ``key`` in progress, or of ``start()``.

        :param key: what identifies the question (a keyed hash of it, not
            the secret itself).
        :param start: begins the run; what it raises, the caller gets.
        """
        shared = self._shared.get(key)
        fresh = shared is None
        if shared is None:
            shared = _Shared(start())
            self._shared[key] = shared
        waiter: Deferred[T] = Deferred(lambda d: self._leave(shared, d))
        shared.waiters.append(waiter)
        if fresh:
            # Only now: the run may be over already.
            shared.job.addBoth(self._settle, key, shared)
        return waiter

    def _leave(self, shared: _Shared, waiter: Deferred[Any]) -> None:
        shared.waiters.remove(waiter)
        if not shared.waiters:
            shared.job.cancel()

    def _settle(self, outcome: object, key: bytes, shared: _Shared) -> None:
        if self._shared.get(key) is shared:
            del self._shared[key]
        waiters, shared.waiters = shared.waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)
