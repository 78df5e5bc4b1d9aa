"""
The per-user concurrency limiter.
"""

import pytest

from jmap_twisted.core.limits import ConcurrencyLimiter, CoreLimits
from jmap_twisted.errors import LimitExceeded


def test_try_acquire_refuses_past_the_limit_per_user() -> None:
    """
    A user at the limit is refused with the limit's name; other users are
    not affected; releasing frees a slot, and releasing twice frees one.
    """
    limiter = ConcurrencyLimiter(2, "maxConcurrentRequests")
    first = limiter.try_acquire("alice")
    limiter.try_acquire("alice")
    with pytest.raises(LimitExceeded) as info:
        limiter.try_acquire("alice")
    assert info.value.limit == "maxConcurrentRequests"
    limiter.try_acquire("bob")
    first()
    first()
    assert limiter.in_use("alice") == 1
    limiter.try_acquire("alice")
    with pytest.raises(LimitExceeded):
        limiter.try_acquire("alice")


def test_acquire_queues_in_order_up_to_the_bound() -> None:
    """
    Waiters get slots in arrival order as slots are released; past the
    queue bound the limit error is raised at once.
    """
    limiter = ConcurrencyLimiter(1, "maxConcurrentRequests", queue_bound=2)
    release = limiter.acquire("u").result
    got: list[str] = []
    second = limiter.acquire("u")
    second.addCallback(lambda r: got.append("second") or r)
    third = limiter.acquire("u")
    third.addCallback(lambda r: got.append("third") or r)
    with pytest.raises(LimitExceeded):
        limiter.acquire("u")
    release()
    assert got == ["second"]
    assert limiter.in_use("u") == 1
    second.result()
    assert got == ["second", "third"]
    third.result()
    assert limiter.in_use("u") == 0


def test_cancelled_waiter_leaves_the_queue() -> None:
    """
    Cancelling a waiting acquisition frees its place in the queue.
    """
    limiter = ConcurrencyLimiter(1, "x", queue_bound=1)
    release = limiter.acquire("u").result
    waiter = limiter.acquire("u")
    waiter.cancel()
    waiter.addErrback(lambda f: None)
    limiter.acquire("u").addErrback(lambda f: None)
    release()
    assert limiter.in_use("u") == 1


def test_capability_lists_every_limit() -> None:
    """
    The advertised capability names every core limit (RFC 8620 §2).
    """
    capability = CoreLimits().as_capability(["i;octet"])
    assert set(capability) == {
        "maxSizeUpload",
        "maxConcurrentUpload",
        "maxSizeRequest",
        "maxConcurrentRequests",
        "maxCallsInRequest",
        "maxObjectsInGet",
        "maxObjectsInSet",
        "collationAlgorithms",
    }
